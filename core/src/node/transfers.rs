//! File transfers: the [`Node`] methods over the transfer service
//! ([`crate::net::transfer`]), which holds the state and the tasks.

use std::path::PathBuf;

use super::Node;
use crate::error::Result;
use crate::identity::PeerId;
use crate::net::transfer::{TransferInfo, TransferStats};
use crate::proto::transfer::{Selection, TransferId};

/// Receivers from which [`Node::send_to_room`] sends one file down a relay
/// tree: with 3, separate copies already take 3× one receiver's time on the
/// sender's uplink, the tree about 1× (docs/benchmarks.md, "Relay tree
/// simulation"); with 2 the tree's setup buys little.
pub const TREE_FROM: usize = 3;

impl Node {
    /// Offers `paths` (files and folders) to `peer` and returns at once with the
    /// transfer's id; what happens next arrives as events (subscribe with
    /// [`Node::events`] before calling). Fails if a path cannot be read or the
    /// peer cannot be reached.
    pub async fn send_files(&self, peer: PeerId, paths: &[PathBuf]) -> Result<TransferId> {
        Ok(self.send_files_to(&[peer], paths).await?[0])
    }

    /// Offers `paths` to several peers at once: one transfer each, in parallel.
    pub async fn send_files_to(
        &self,
        peers: &[PeerId],
        paths: &[PathBuf],
    ) -> Result<Vec<TransferId>> {
        self.transfer_service().send(peers, paths).await
    }

    /// Offers one file to each of `peers` and sends it down a relay tree over
    /// those who accept ([`crate::proto::transfer::tree`]): each receiver
    /// forwards verified groups to a few others, so the sender uploads the
    /// file about once. Consent stays per receiver (each gets the usual
    /// [`Event::Offer`](crate::Event::Offer)). Returns one transfer id per
    /// receiver at once; events and [`Node::transfers`] follow each as for
    /// [`Node::send_files_to`]. Fails if `path` is not one regular file or a
    /// peer cannot be reached.
    pub async fn send_tree(
        &self,
        peers: &[PeerId],
        path: &std::path::Path,
    ) -> Result<Vec<TransferId>> {
        self.transfer_service().send_tree(peers, path).await
    }

    /// Offers `paths` to the members of room `name` this node knows (its
    /// neighbours in the room's overlay that proved membership): one file to
    /// [`TREE_FROM`] receivers or more goes down a relay tree
    /// ([`Node::send_tree`]), anything else as separate transfers.
    pub async fn send_to_room(&self, name: &str, paths: &[PathBuf]) -> Result<Vec<TransferId>> {
        let members = self.room_neighbors(name).await?;
        if members.is_empty() {
            return Err(crate::Error::Invalid(format!(
                "no member of room {name:?} is known yet"
            )));
        }
        match paths {
            [one] if members.len() >= TREE_FROM && one.is_file() => {
                self.send_tree(&members, one).await
            }
            _ => self.send_files_to(&members, paths).await,
        }
    }

    /// Accepts an offer ([`Event::Offer`](crate::Event::Offer)) into the download folder: all of it
    /// ([`Selection::All`]), some entries, or none (which rejects it). Fails if
    /// the offer is not waiting, the selection names no entry of it, or the
    /// selected files do not fit in the free space there.
    pub fn accept_offer(&self, id: TransferId, selection: Selection) -> Result<()> {
        self.decide(id, Some((selection, None)))
    }

    /// Like [`Node::accept_offer`], into `dir` instead of the download folder.
    pub fn accept_offer_into(
        &self,
        id: TransferId,
        selection: Selection,
        dir: PathBuf,
    ) -> Result<()> {
        self.decide(id, Some((selection, Some(dir))))
    }

    /// Refuses an offer.
    pub fn reject_offer(&self, id: TransferId) -> Result<()> {
        self.decide(id, None)
    }

    fn decide(&self, id: TransferId, accept: Option<(Selection, Option<PathBuf>)>) -> Result<()> {
        self.transfer_service().decide(id, accept)
    }

    /// Incoming transfers from senders that are not PeerConnect nodes (a
    /// browser guest's uploads): see [`crate::net::transfer::local`].
    pub fn local_transfers(&self) -> crate::net::transfer::local::LocalTransfers {
        self.transfer_service().local()
    }

    /// Pauses a transfer (this side stops reading or writing; the peer waits).
    pub fn pause_transfer(&self, id: TransferId) -> Result<()> {
        self.transfer_service().ctl(id, |c| c.paused = true)
    }

    /// Resumes a paused transfer.
    pub fn resume_transfer(&self, id: TransferId) -> Result<()> {
        self.transfer_service().ctl(id, |c| c.paused = false)
    }

    /// Cancels a transfer (either side; the peer is told). Partial files of a
    /// cancelled incoming transfer are deleted; finished files are kept.
    pub fn cancel_transfer(&self, id: TransferId) -> Result<()> {
        self.transfer_service().ctl(id, |c| c.cancelled = true)
    }

    /// Live transfers, then the most recent finished or interrupted ones.
    pub fn transfers(&self) -> Result<Vec<TransferInfo>> {
        self.transfer_service().list()
    }

    /// The transfer service's counters.
    pub fn transfer_stats(&self) -> TransferStats {
        self.transfer_service().stats()
    }
}
