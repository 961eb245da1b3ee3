//! Sans-IO protocol state machines.
//!
//! Nothing in here does IO, reads a clock, or draws from an unseeded RNG: time
//! arrives as a [`Duration`](std::time::Duration) since an epoch chosen by the
//! driver (`now`), randomness from a seeded RNG handed in at construction, and every
//! effect leaves as output data (send this to that peer, deliver this, wake me at
//! that time). Two drivers run the same code: the tokio actor in [`crate::net`] and
//! the discrete-event simulator in [`sim`].
//!
//! Maps whose iteration order can reach an output are ordered (`BTreeMap`), so one
//! seed replays one run exactly.

pub mod discovery;
pub mod gossip;
pub mod hyparview;
pub mod kademlia;
pub mod messaging;
pub mod mux;
pub mod plumtree;
pub mod roaming;
pub mod rooms;
pub mod rumor;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod transfer;
pub mod wire;
