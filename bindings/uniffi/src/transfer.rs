//! File transfer: offer files and folders to a peer, answer offers, steer and
//! list transfers.
//!
//! The protocol (manifest, resume, hashing, free-space check) is the core's.
//! A transfer is named by its id, 16 hex digits. What happens after a call
//! arrives as events: `Offer` on the receiver, then `Progress`, one
//! `TransferDone` per verified file, and one final `TransferComplete`,
//! `TransferFailed` (no path), `TransferCancelled` or `TransferRejected`.

use std::path::PathBuf;

use peerconnect::OfferEntry as CoreOfferEntry;
use peerconnect::net::transfer::TransferInfo as CoreTransferInfo;
use peerconnect::proto::transfer::{
    Direction as CoreDirection, Selection, TransferId, TransferState as CoreState,
};

use crate::error::ApiError;
use crate::node::PeerConnect;

/// Which way a transfer goes, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Direction {
    Send,
    Receive,
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TransferState {
    /// Waiting for the receiver's answer.
    Offered,
    Running,
    Paused,
    /// Stopped by a lost peer or a shutdown; sending the same files again
    /// resumes it.
    Interrupted,
    /// Every selected file arrived and was verified.
    Complete,
    /// Over, with some files (or the whole transfer) failed.
    Failed,
    Cancelled,
    Rejected,
    /// A later offer of the same files took over its partial files.
    Resumed,
}

/// One entry of an offer: a file, or a folder (`dir`, `size` 0).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OfferEntry {
    /// Relative path, `/`-separated.
    pub path: String,
    pub size: u64,
    pub dir: bool,
}

/// A transfer as [`PeerConnect::transfers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TransferInfo {
    pub id: String,
    pub peer: String,
    pub direction: Direction,
    pub state: TransferState,
    pub files: u64,
    pub total_bytes: u64,
    /// Bytes the receiver holds (resumed prefixes included).
    pub done_bytes: u64,
    /// File bytes that crossed the network in this attempt (live transfers).
    pub transferred: u64,
    /// Whether it is running, paused or waiting for an answer now.
    pub live: bool,
    pub error: Option<String>,
}

impl From<CoreDirection> for Direction {
    fn from(d: CoreDirection) -> Self {
        match d {
            CoreDirection::Send => Self::Send,
            CoreDirection::Receive => Self::Receive,
        }
    }
}

impl From<CoreState> for TransferState {
    fn from(s: CoreState) -> Self {
        match s {
            CoreState::Offered => Self::Offered,
            CoreState::Running => Self::Running,
            CoreState::Paused => Self::Paused,
            CoreState::Interrupted => Self::Interrupted,
            CoreState::Complete => Self::Complete,
            CoreState::Failed => Self::Failed,
            CoreState::Cancelled => Self::Cancelled,
            CoreState::Rejected => Self::Rejected,
            CoreState::Resumed => Self::Resumed,
        }
    }
}

impl From<CoreOfferEntry> for OfferEntry {
    fn from(e: CoreOfferEntry) -> Self {
        Self {
            path: e.path,
            size: e.size,
            dir: e.dir,
        }
    }
}

impl From<CoreTransferInfo> for TransferInfo {
    fn from(t: CoreTransferInfo) -> Self {
        Self {
            id: t.id.to_string(),
            peer: t.peer.to_string(),
            direction: t.direction.into(),
            state: t.state.into(),
            files: t.files,
            total_bytes: t.total_bytes,
            done_bytes: t.done_bytes,
            transferred: t.transferred,
            live: t.live,
            error: t.error,
        }
    }
}

fn transfer_id(id: &str) -> Result<TransferId, ApiError> {
    id.parse().map_err(ApiError::Invalid)
}

#[uniffi::export(async_runtime = "tokio")]
impl PeerConnect {
    /// Offers `paths` (files and folders, sent with everything below them) to
    /// `peer` and returns the transfer's id at once; the rest arrives as
    /// events. `Invalid` if a path cannot be read, `NotFound` if the peer
    /// cannot be reached.
    pub async fn send_files(&self, peer: String, paths: Vec<String>) -> Result<String, ApiError> {
        let peer = self.peer(&peer).await?;
        let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
        Ok(self.node.send_files(peer, &paths).await?.to_string())
    }

    /// Offers `paths` to every member of room `room` this node knows (one
    /// file to 3 or more goes down a relay tree); returns one transfer id per
    /// member at once, the rest arrives as events. `Invalid` if no member is
    /// known yet or a path cannot be read.
    pub async fn send_to_room(
        &self,
        room: String,
        paths: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
        let ids = self.node.send_to_room(&room, &paths).await?;
        Ok(ids.into_iter().map(|id| id.to_string()).collect())
    }

    /// Offers the one file `path` to each of `peers` and sends it down a
    /// relay tree over those who accept (each receiver forwards verified
    /// parts to a few others); returns one transfer id per peer, in order.
    /// `Invalid` if `path` is not one regular file, `NotFound` if a peer
    /// cannot be reached.
    pub async fn send_tree(
        &self,
        peers: Vec<String>,
        path: String,
    ) -> Result<Vec<String>, ApiError> {
        let mut ids = Vec::with_capacity(peers.len());
        for p in &peers {
            ids.push(self.peer(p).await?);
        }
        let sent = self
            .node
            .send_tree(&ids, std::path::Path::new(&path))
            .await?;
        Ok(sent.into_iter().map(|id| id.to_string()).collect())
    }

    /// Accepts all of offer `id` (from `Event::Offer`) into the download
    /// folder. `Invalid` if the offer is not waiting or does not fit in the
    /// free space there.
    pub fn accept_offer(&self, id: String) -> Result<(), ApiError> {
        Ok(self.node.accept_offer(transfer_id(&id)?, Selection::All)?)
    }

    /// Like [`PeerConnect::accept_offer`], into folder `dir` (created if missing).
    pub fn accept_offer_into(&self, id: String, dir: String) -> Result<(), ApiError> {
        Ok(self
            .node
            .accept_offer_into(transfer_id(&id)?, Selection::All, dir.into())?)
    }

    /// Refuses offer `id`; the sender sees `TransferRejected`.
    pub fn reject_offer(&self, id: String) -> Result<(), ApiError> {
        Ok(self.node.reject_offer(transfer_id(&id)?)?)
    }

    /// Pauses a running transfer (this side stops; the peer waits).
    pub fn pause_transfer(&self, id: String) -> Result<(), ApiError> {
        Ok(self.node.pause_transfer(transfer_id(&id)?)?)
    }

    /// Resumes a paused transfer.
    pub fn resume_transfer(&self, id: String) -> Result<(), ApiError> {
        Ok(self.node.resume_transfer(transfer_id(&id)?)?)
    }

    /// Cancels a transfer (either side; the peer is told). Partial files of
    /// an incoming transfer are deleted; finished ones are kept.
    pub fn cancel_transfer(&self, id: String) -> Result<(), ApiError> {
        Ok(self.node.cancel_transfer(transfer_id(&id)?)?)
    }

    /// Live transfers, then the most recent finished or interrupted ones.
    pub fn transfers(&self) -> Result<Vec<TransferInfo>, ApiError> {
        Ok(self
            .node
            .transfers()?
            .into_iter()
            .map(TransferInfo::from)
            .collect())
    }
}
