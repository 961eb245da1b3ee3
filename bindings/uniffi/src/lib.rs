//! PeerConnect for Kotlin, Swift and Python, through uniffi proc-macros.
//!
//! A thin adapter: every exported method is a few lines over the core's public
//! API ([`peerconnect::Node`]); anything more belongs in the core. Foreign code
//! sees one object, [`PeerConnect`], plain records and enums mirroring the core's
//! ([`Event`], [`Peer`], [`Trust`], ...), and one flat [`ApiError`].
//!
//! # Layout
//!
//! - [`node`]: the [`PeerConnect`] object: start, shut down, events, peers, trust,
//!   DHT lookups.
//! - [`config`]: [`NodeConfig`], what a node starts from.
//! - [`event`]: [`Event`] and the records it carries.
//! - [`error`]: [`ApiError`], the core's errors folded into what a caller acts on.
//! - [`messaging`]: direct messages ([`Message`]).
//! - [`transfer`]: sending files and folders, answering offers, pausing,
//!   resuming, cancelling and listing transfers ([`TransferInfo`]).
//! - [`rooms`]: group chat by room name ([`RoomMessage`]).
//!
//! Each feature adds its methods in its own file as another
//! `#[uniffi::export] impl PeerConnect` block; uniffi merges them.
//!
//! Bindings are generated from the built library: see `generate.sh`.

pub mod config;
pub mod error;
pub mod event;
pub mod messaging;
pub mod node;
pub mod rooms;
pub mod transfer;

pub use config::NodeConfig;
pub use error::ApiError;
pub use event::{DeviceKind, Event, FoundPeer, Peer, Trust};
pub use messaging::{DeliveryStatus, Message};
pub use node::{PeerConnect, WebUi};
pub use rooms::{RoomInfo, RoomMessage, RoomSaid};
pub use transfer::{Direction, OfferEntry, TransferInfo, TransferState};

uniffi::setup_scaffolding!("peerconnect");
