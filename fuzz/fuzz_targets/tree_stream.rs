#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| peerconnect_fuzz::tree_stream(data));
