//! The WebSocket event stream (`GET /api/events`): the node's [`Event`]s as
//! JSON text frames, one event per frame, from the moment the socket opens.
//!
//! The owner gets every event. A browser guest gets only the events about
//! itself (its offers' progress, its messages, its own peer entry) and the
//! messages of the rooms it is in; its socket
//! being open is what makes it `connected` in the owner's peer list.
//!
//! A client that reads too slowly skips the oldest events (the node's event
//! ring is bounded) rather than slowing the node; the UI refetches lists on
//! reconnect, so it never shows a stale state for long.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;

use super::auth::Caller;
use super::{ApiResult, App};
use crate::event::Event;
use crate::identity::PeerId;

pub(crate) fn routes() -> Router<App> {
    Router::new().route("/api/events", get(upgrade))
}

async fn upgrade(
    State(app): State<App>,
    caller: Caller,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let node = app.node()?;
    // Subscribe before answering, so nothing after the upgrade is missed.
    let events = node.subscribe();
    drop(node);
    Ok(ws.on_upgrade(move |socket| run(app, caller, socket, events)))
}

/// Whether a guest should see `e`.
fn concerns(guest: &PeerId, e: &Event) -> bool {
    match e {
        Event::MessageReceived { message } => message.from == *guest || message.to == *guest,
        Event::MessageStatus { peer, .. } => peer == guest,
        Event::PeerUpdated { peer } | Event::PeerConnected { peer, .. } => peer.id == *guest,
        Event::PeerLost { id } => id == guest,
        Event::Offer { peer, .. }
        | Event::Progress { peer, .. }
        | Event::TransferDone { peer, .. }
        | Event::TransferFailed { peer, .. }
        | Event::TransferCancelled { peer, .. }
        | Event::TransferRejected { peer, .. }
        | Event::TransferComplete { peer, .. } => peer == guest,
        _ => false,
    }
}

/// Whether the guest `guest`'s socket gets `e`: events about itself, and
/// the messages of the rooms it is in.
pub(super) fn shown_to_guest(app: &App, guest: &PeerId, e: &Event) -> bool {
    match e {
        Event::RoomMessage { room, .. } => app.node().is_ok_and(|n| n.guest_in_room(guest, room)),
        _ => concerns(guest, e),
    }
}

/// An event as a guest may see it: where files are on the owner's disk
/// (landed, or sent from) is none of its business (the file name is enough).
fn for_guest(e: Event) -> Event {
    let name = |path: &str| {
        std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match e {
        Event::TransferDone {
            id,
            peer,
            direction,
            path,
            bytes,
            blake3,
        } => Event::TransferDone {
            id,
            peer,
            direction,
            path: name(&path),
            bytes,
            blake3,
        },
        Event::TransferFailed {
            id,
            peer,
            direction,
            path: Some(path),
            error,
        } => Event::TransferFailed {
            id,
            peer,
            direction,
            path: Some(name(&path)),
            error,
        },
        other => other,
    }
}

async fn run(app: App, caller: Caller, mut socket: WebSocket, mut events: crate::EventStream) {
    if let Caller::Guest(id) = caller
        && let Some(peer) = app.guests.socket_opened(&id)
    {
        let verification_code = peer.verification_code.clone();
        app.emit(Event::PeerConnected {
            peer,
            verification_code,
        });
    }
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                let e = match caller {
                    Caller::Owner => e,
                    Caller::Guest(id) if shown_to_guest(&app, &id, &e) => for_guest(e),
                    Caller::Guest(_) => continue,
                };
                let text = serde_json::to_string(&e).expect("events serialize");
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                // A guest whose session ended (logout, block) is done.
                if let Caller::Guest(id) = caller && !app.guests.is_guest(&id) {
                    break;
                }
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = app.stop.cancelled() => break,
        }
    }
    if let Caller::Guest(id) = caller
        && app.guests.socket_closed(&id)
    {
        app.emit(Event::PeerDisconnected {
            id,
            reason: Some("the browser closed the page".into()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Trust;
    use crate::proto::wire::DeviceKind;

    #[test]
    fn a_guest_sees_file_names_not_where_they_are_on_the_owners_disk() {
        use crate::proto::transfer::{Direction, TransferId};
        let peer = PeerId::from_bytes([1; 32]);
        for direction in [Direction::Send, Direction::Receive] {
            let done = for_guest(Event::TransferDone {
                id: TransferId(1),
                peer,
                direction,
                path: "/home/owner/private/report.pdf".into(),
                bytes: 3,
                blake3: String::new(),
            });
            assert!(
                matches!(&done, Event::TransferDone { path, .. } if path == "report.pdf"),
                "{done:?}"
            );
            let failed = for_guest(Event::TransferFailed {
                id: TransferId(1),
                peer,
                direction,
                path: Some("/home/owner/private/report.pdf".into()),
                error: "x".into(),
            });
            assert!(
                matches!(&failed, Event::TransferFailed { path: Some(p), .. } if p == "report.pdf"),
                "{failed:?}"
            );
        }
    }

    #[test]
    fn guests_see_only_their_own_events() {
        let me = PeerId::from_bytes([1; 32]);
        let other = PeerId::from_bytes([2; 32]);
        let info = |id| crate::PeerInfo {
            id,
            name: "x".into(),
            kind: DeviceKind::Browser,
            addrs: vec![],
            trust: Trust::Unknown,
            connected: true,
            verification_code: "000000".into(),
            localsend: None,
        };
        assert!(concerns(&me, &Event::PeerUpdated { peer: info(me) }));
        assert!(!concerns(&me, &Event::PeerUpdated { peer: info(other) }));
        assert!(!concerns(&me, &Event::PeerFound { peer: info(other) }));
        assert!(!concerns(
            &me,
            &Event::Error {
                message: "x".into()
            }
        ));
        assert!(!concerns(
            &me,
            &Event::Listening {
                id: other,
                name: "n".into(),
                addrs: vec![],
                web: None
            }
        ));
    }
}
