//! Tokio drivers: the IO edge of the node.
//!
//! One actor per node ([`actor`]) owns the protocol state machines of
//! [`crate::proto`] and feeds them real sockets and timers; per-connection tasks
//! talk to it over bounded channels.

pub(crate) mod actor;
pub mod dht;
pub mod discovery;
pub mod gossip;
pub(crate) mod guest;
pub mod links;
pub mod mdns;
pub mod messaging;
pub mod mux;
pub mod netwatch;
pub(crate) mod streams;
pub(crate) mod timers;
pub mod transfer;
pub mod transport;

pub use actor::Stats;
