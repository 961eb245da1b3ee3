//! The `send` and `receive` requests: start or accept transfers, then follow
//! them until they end, passing their events to the client. One loop
//! ([`follow`]) does the following for both, whether the client is the CLI
//! over the control socket or in process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::Sink;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::net::transfer::TransferId;
use crate::node::{EventStream, Node};
use crate::proto::transfer::Selection;

/// How long a peer named by id, prefix or name may take to show up, unless
/// the request says.
pub(super) const FIND_WAIT_SECS: f64 = 5.0;

/// How long the cancels of a client that went away may take to reach the
/// peers (a node of the client's own stops right after).
const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// Sends `paths` to every peer of `to` (each resolved by
/// [`Node::resolve_peer`], waiting up to `wait`), passing the transfers' events
/// to the sink until each transfer ends; cancels them if the client goes away.
/// How a `send` request reaches its receivers.
pub(super) struct How {
    /// One file down a relay tree ([`Node::send_tree`]).
    pub tree: bool,
    /// To a room's members ([`Node::send_to_room`]).
    pub room: Option<String>,
    /// The PIN for LocalSend devices ([`Node::set_localsend_pin`]).
    pub pin: Option<String>,
}

pub(super) async fn send(
    node: &Node,
    to: &[String],
    paths: &[PathBuf],
    wait: Duration,
    how: How,
    sink: &Sink,
) -> Result<serde_json::Value> {
    let mut events = node.subscribe();
    let mut peers = Vec::new();
    for spec in to {
        peers.push(node.resolve_peer(spec, wait).await?);
    }
    if let Some(pin) = &how.pin {
        let devices: Vec<_> = peers
            .iter()
            .filter(|p| node.set_localsend_pin(**p, Some(pin.clone())).is_ok())
            .collect();
        if devices.is_empty() {
            return Err(Error::Invalid(
                "a PIN is for LocalSend devices, and none is among the receivers".into(),
            ));
        }
    }
    let ids = match (how.room, how.tree, paths) {
        (Some(room), _, _) if peers.is_empty() => node.send_to_room(&room, paths).await?,
        (Some(_), _, _) => {
            return Err(Error::Invalid(
                "send to a room or to peers, not both".into(),
            ));
        }
        (None, true, [one]) => node.send_tree(&peers, one).await?,
        (None, true, _) => {
            return Err(Error::Invalid("a relay tree sends exactly one file".into()));
        }
        (None, false, _) => node.send_files_to(&peers, paths).await?,
    };
    let ends = follow(node, &mut events, sink, ids.into_iter().collect(), None).await?;
    Ok(serde_json::json!({ "transfers": ends }))
}

/// Streams offers and incoming transfers to the sink, accepting offers with
/// `yes` (into `dir`, else the download folder); with `once`, ends after the
/// first accepted transfer ends.
pub(super) async fn receive(
    node: &Node,
    dir: Option<PathBuf>,
    yes: bool,
    once: bool,
    sink: &Sink,
) -> Result<serde_json::Value> {
    // `events`: the backlog too, so a node of the client's own reports where
    // it listens first.
    let mut events = node.events();
    let incoming = Incoming { dir, yes, once };
    let ends = follow(node, &mut events, sink, BTreeSet::new(), Some(&incoming)).await?;
    Ok(match ends.into_values().next() {
        Some(e) => serde_json::json!({ "ended": e }),
        None => serde_json::Value::Null,
    })
}

/// What a `receive` request does with offers.
struct Incoming {
    dir: Option<PathBuf>,
    yes: bool,
    once: bool,
}

/// Follows the transfers `open` (and, with `incoming`, every transfer offered
/// meanwhile) until they end, passing their events and error events to the
/// sink. Returns the event that ended each one. Without `incoming` it ends
/// when all of `open` have ended; with it, when the client goes away, or
/// (`once`) after the first accepted transfer ends.
async fn follow(
    node: &Node,
    events: &mut EventStream,
    sink: &Sink,
    mut open: BTreeSet<TransferId>,
    incoming: Option<&Incoming>,
) -> Result<BTreeMap<String, Event>> {
    let mut ends = BTreeMap::new();
    while incoming.is_some() || !open.is_empty() {
        let e = tokio::select! {
            e = events.recv() => e.ok_or(Error::Shutdown)?,
            _ = sink.closed() => {
                if incoming.is_none() {
                    gone(node, events, open).await;
                }
                return Err(Error::Invalid("the client went away".into()));
            }
        };
        let relevant = match &e {
            Event::Offer { id, .. } if incoming.is_some() => open.insert(*id),
            Event::Error { .. } => true,
            Event::Listening { .. } => incoming.is_some(),
            e => e.transfer_id().is_some_and(|id| open.contains(&id)),
        };
        if !relevant {
            continue;
        }
        if !sink.event(e.clone()).await {
            if incoming.is_none() {
                gone(node, events, open).await;
            }
            return Err(Error::Invalid("the client went away".into()));
        }
        if let (
            Some(Incoming { dir, yes: true, .. }),
            Event::Offer {
                id,
                auto_accepted: false,
                ..
            },
        ) = (incoming, &e)
        {
            let res = match dir {
                Some(d) => node.accept_offer_into(*id, Selection::All, d.clone()),
                None => node.accept_offer(*id, Selection::All),
            };
            if let Err(err) = res {
                let _ = node.reject_offer(*id);
                let message = format!("cannot accept offer {id}: {err}");
                let _ = sink.event(Event::Error { message }).await;
            }
        }
        let Some(id) = e.transfer_id().filter(|_| e.ends_transfer()) else {
            continue;
        };
        open.remove(&id);
        let refused = matches!(e, Event::TransferRejected { .. });
        ends.insert(id.to_string(), e);
        if incoming.is_some_and(|i| i.once) && !refused {
            break;
        }
    }
    Ok(ends)
}

/// The client went away: cancels what it sent (`open`, unless it was
/// receiving: the node accepted those, they go on) and waits a little for the
/// cancels to reach the peers.
async fn gone(node: &Node, events: &mut EventStream, mut open: BTreeSet<TransferId>) {
    for id in &open {
        let _ = node.cancel_transfer(*id);
    }
    let _ = tokio::time::timeout(CANCEL_GRACE, async {
        while !open.is_empty() {
            let Some(e) = events.recv().await else { return };
            if let Some(id) = e.transfer_id().filter(|_| e.ends_transfer()) {
                open.remove(&id);
            }
        }
    })
    .await;
}
