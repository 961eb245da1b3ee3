//! Tokio drivers: the IO edge of the node.
//!
//! One actor per node owns the protocol state machines of [`crate::proto`] and
//! feeds them real sockets and timers; per-connection tasks talk to it over
//! bounded channels.

pub mod transport;
