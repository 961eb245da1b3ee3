//! PeerConnect: find devices on the LAN and exchange files and messages with
//! them directly, with no cloud, account or server.
//!
//! ```no_run
//! # async fn demo() -> peerconnect::Result<()> {
//! let node = peerconnect::Node::start(peerconnect::Config::new("/tmp/pc")).await?;
//! let mut events = node.events();
//! while let Some(event) = events.recv().await {
//!     println!("{}", serde_json::to_string(&event).unwrap());
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`node`]: [`Node`], the public handle; starts every service, shuts down cleanly.
//! - [`config`]: [`Config`] with defaults that work on a LAN out of the box.
//! - [`event`]: [`Event`], the one stream every front end consumes.
//! - [`identity`]: the node's ed25519 key pair and [`PeerId`].
//! - [`data_dir`]: the data dir and its files, private to the node's user.
//! - [`store`]: SQLite: peers, trust, direct messages (transfers as they land).
//! - Direct messages: [`Node::send_message`], [`Node::conversation`], ... (in
//!   [`net::messaging`]), their protocol in [`proto::messaging`].
//! - [`proto`]: sans-IO protocol state machines (wire format, discovery, ...),
//!   driven by [`net`] in production and by `proto::sim` in simulations.
//! - [`net`]: tokio drivers: TLS transport, discovery sockets, the node actor,
//!   the gossip service.
//! - [`rooms`]: group chat rooms on gossip (signed messages, history).
//! - [`localsend`]: the LocalSend protocol beside our own (discovery and
//!   receiving from the LocalSend app).
//! - [`web`]: the web UI (axum): embedded static files, REST API, WebSocket
//!   events, PIN access for browser guests.

// Without the web server (a lean app library), the browser guests' registry
// and the local transfer adapter it feeds are compiled but never called.
#![cfg_attr(not(feature = "web"), allow(dead_code))]

pub(crate) mod accept;
pub mod config;
pub mod control;
pub mod data_dir;
pub mod error;
pub mod event;
pub mod identity;
pub mod localsend;
pub mod net;
pub mod node;
pub mod proto;
pub mod rooms;
pub mod store;
#[cfg(feature = "web")]
pub mod web;

pub use config::Config;
pub use error::{Error, Result};
pub use event::{Event, PeerInfo, Trust};
pub use identity::{Identity, PeerId};
pub use node::{EventStream, Node};
pub use proto::rooms::RoomMessage;
pub use proto::transfer::OfferEntry;
