//! Control-socket requests for transfers: `send` and `receive` of the CLI,
//! run by the node that `peerconnect up` runs, streaming their events back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::unix::OwnedWriteHalf;

use super::write_line;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::net::transfer::TransferId;
use crate::node::Node;
use crate::proto::transfer::Selection;

/// How long a peer named by id, prefix or name may take to show up.
const FIND_WAIT: Duration = Duration::from_secs(5);

/// Sends `paths` to every peer of `to`, writing the transfers' events to `w`
/// until each transfer ends; cancels them if the client goes away.
pub(super) async fn send(
    node: &Node,
    to: &[String],
    paths: &[PathBuf],
    w: &mut OwnedWriteHalf,
) -> Result<serde_json::Value> {
    let mut events = node.events();
    let mut peers = Vec::new();
    for spec in to {
        peers.push(node.find_peer(spec, FIND_WAIT).await?);
    }
    let ids = node.send_files_to(&peers, paths).await?;
    let mut open: BTreeSet<TransferId> = ids.iter().copied().collect();
    let mut ends = BTreeMap::new();
    while !open.is_empty() {
        let Some(e) = events.recv().await else {
            return Err(Error::Shutdown);
        };
        let Some(id) = e.transfer_id().filter(|id| open.contains(id)) else {
            continue;
        };
        if write_line(w, &e).await.is_err() {
            for id in &open {
                let _ = node.cancel_transfer(*id);
            }
            return Err(Error::Invalid("the client went away".into()));
        }
        if e.ends_transfer() {
            open.remove(&id);
            ends.insert(id.to_string(), e);
        }
    }
    Ok(serde_json::json!({ "transfers": ends }))
}

/// Streams offers and incoming transfers to `w`, accepting offers with `yes`.
pub(super) async fn receive(
    node: &Node,
    dir: Option<PathBuf>,
    yes: bool,
    once: bool,
    w: &mut OwnedWriteHalf,
) -> Result<serde_json::Value> {
    let mut events = node.events();
    let mut mine = BTreeSet::new();
    loop {
        let Some(e) = events.recv().await else {
            return Err(Error::Shutdown);
        };
        let relevant = match &e {
            Event::Offer { id, .. } => {
                mine.insert(*id);
                true
            }
            Event::Error { .. } => true,
            e => e.transfer_id().is_some_and(|id| mine.contains(&id)),
        };
        if !relevant {
            continue;
        }
        if write_line(w, &e).await.is_err() {
            return Err(Error::Invalid("the client went away".into()));
        }
        match &e {
            Event::Offer {
                id,
                auto_accepted: false,
                ..
            } if yes => {
                let res = match &dir {
                    Some(d) => node.accept_offer_into(*id, Selection::All, d.clone()),
                    None => node.accept_offer(*id, Selection::All),
                };
                if let Err(err) = res {
                    let _ = node.reject_offer(*id);
                    let _ = write_line(
                        w,
                        &Event::Error {
                            message: format!("cannot accept offer {id}: {err}"),
                        },
                    )
                    .await;
                }
            }
            Event::TransferRejected { id, .. } => {
                mine.remove(id);
            }
            e if once && e.ends_transfer() => {
                return Ok(serde_json::json!({ "ended": e }));
            }
            _ => {}
        }
    }
}
