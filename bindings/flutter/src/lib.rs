//! PeerConnect for Dart and Flutter, through flutter_rust_bridge.
//!
//! [`api`] is what Dart sees: the same surface as the uniffi binding
//! (`bindings/uniffi`), a `PeerConnect` object whose methods are a few lines
//! over [`peerconnect::Node`], events as a Dart `Stream` fed by a `StreamSink`.
//! `frb_generated.rs` and the Dart files in `dart/lib/src/rust/` are written
//! by `flutter_rust_bridge_codegen` (see README.md) and committed.

pub mod api;
#[allow(
    clippy::all,
    clippy::pedantic,
    unused,
    unsafe_op_in_unsafe_fn,
    rust_2018_idioms,
    non_camel_case_types,
    missing_docs
)]
#[rustfmt::skip] // as the codegen writes it, so regenerating needs no formatting step
mod frb_generated;
