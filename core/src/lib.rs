//! PeerConnect: find devices on the LAN and exchange files and messages with
//! them directly, with no cloud, account or server.
//!
//! # Layout
//!
//! - [`proto`]: sans-IO protocol state machines (wire format, discovery, ...),
//!   driven by [`net`] in production and by `proto::sim` in simulations.
//! - [`identity`]: the node's ed25519 key pair and [`PeerId`].

pub mod identity;
pub mod net;
pub mod proto;

pub use identity::{Identity, PeerId};
