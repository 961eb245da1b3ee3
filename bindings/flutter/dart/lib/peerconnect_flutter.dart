/// PeerConnect for Dart and Flutter: call `await RustLib.init()` once, then
/// `PeerConnect.start(config: ...)`. Generated from the Rust crate
/// `peerconnect-flutter`; see its README.md.
library;

export 'src/rust/api.dart';
export 'src/rust/frb_generated.dart' show RustLib;
