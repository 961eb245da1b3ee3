//! `peerconnect bench <what>`: benchmarks that print a table (JSON with `--json`).

pub mod abuse;
pub mod child;
pub mod dht;
pub mod gossip;
pub mod load;
pub mod mux;
pub mod transfer;
pub mod tree;
