//! The local control socket: lets `peerconnect peers`, `send`, `msg`, ... use the
//! node that `peerconnect up` runs on the same data dir, instead of starting a
//! second node with the same identity.
//!
//! A Unix socket `control.sock` in the data dir (mode 0600 from its creation on,
//! see [`bind_private`], in a 0700 dir, so only the owner of the data dir can
//! drive the node) speaks JSON lines: the client writes one
//! [`Request`]; the node answers with zero or more `{"event":…}` lines (progress of
//! long requests) and ends with one `{"ok":…}` or `{"error":…}` line.
//! [`Request::Events`] is the one request without an end: it streams every event
//! until the client hangs up, starting with the node's `listening` event so the
//! client knows it is subscribed ([`subscribe`] does this).

use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, Trust};
use crate::node::Node;
use crate::proto::messaging::MessageId;

mod transfer;

/// Longest request line accepted.
const MAX_REQUEST: usize = 1 << 20;

/// What a client asks of the running node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// This node's id, name, addresses and the web UI's owner link.
    Id,
    /// Live peers.
    Peers,
    /// Set the trust of a peer named by `peer` (id, prefix, name).
    SetTrust { peer: String, trust: Trust },
    /// Join `room` (if not in it yet) and stream it: the last `history`
    /// messages, then each new one, as `room_message` event lines, until the
    /// client closes its side; then leave the room if this request joined it,
    /// and answer `{"ok":…}`.
    RoomWatch { room: String, history: usize },
    /// Say `text` in `room`, joining it for the purpose if needed (and leaving
    /// again after). With `wait_ms` > 0, first wait that long at most for a
    /// neighbour in the room, and answer once the neighbours have read it:
    /// `{"ok":{"message":…,"reached":[…]}}`.
    RoomSay {
        room: String,
        text: String,
        wait_ms: u64,
    },
    /// Leave `room`.
    RoomLeave { room: String },
    /// Rooms joined, with neighbour counts.
    Rooms,
    /// Stored messages of `room`, oldest first (see `Node::room_history`).
    RoomHistory {
        room: String,
        before: Option<crate::proto::rooms::RoomMessageId>,
        limit: usize,
    },
    /// Send files and folders to each peer in `to` (id, prefix, name or
    /// `HOST:PORT`); streams the transfers' events until each one ends.
    /// A peer named by id, prefix or name that is not known yet is waited
    /// for up to `wait_secs` (default 5).
    Send {
        to: Vec<String>,
        paths: Vec<std::path::PathBuf>,
        #[serde(default)]
        wait_secs: Option<f64>,
        /// Send the one file in `paths` down a relay tree over `to`.
        #[serde(default)]
        tree: bool,
        /// Send to the members of this room (`to` then adds to them).
        #[serde(default)]
        room: Option<String>,
        /// The PIN to give LocalSend devices among `to` that ask for one.
        #[serde(default)]
        pin: Option<String>,
    },
    /// Stream incoming offers and transfers; with `yes`, accept every offer
    /// (into `dir`, else the node's download folder); with `once`, end after
    /// the first accepted transfer ends.
    Receive {
        dir: Option<std::path::PathBuf>,
        yes: bool,
        once: bool,
    },
    /// Answer an offer: accept all of it (into `dir`, else the download
    /// folder), or refuse it.
    Answer {
        id: crate::net::transfer::TransferId,
        accept: bool,
        dir: Option<std::path::PathBuf>,
    },
    /// Find peers through the DHT by id or name.
    Find { query: String },
    /// The id and name of the peer `peer` names (id, prefix, name, or
    /// `HOST:PORT`, which is dialed).
    ResolvePeer { peer: String },
    /// Send a direct message; with `wait_secs`, wait up to that long for the
    /// peer to acknowledge it. Answers `{"message":…,"status":…}`.
    SendMessage {
        peer: String,
        text: String,
        #[serde(default)]
        reply_to: Option<MessageId>,
        #[serde(default)]
        wait_secs: Option<f64>,
    },
    /// A page of the conversation with `peer` (see `Node::conversation`).
    Conversation {
        peer: String,
        #[serde(default)]
        before: Option<MessageId>,
        #[serde(default = "default_history_page")]
        limit: usize,
    },
    /// Every conversation with its last message and unread count.
    Conversations,
    /// Mark messages from `peer` up to `up_to` read (sends read receipts).
    MarkRead { peer: String, up_to: MessageId },
    /// Transfers (live, then recent finished ones) and the transfer service's
    /// counters: `{"transfers":[…],"stats":{…}}` (`stats.bytes_sent` counts
    /// what this node relayed in a tree too).
    Transfers,
    /// Stream every event from now on as `{"event":…}` lines, until the client
    /// hangs up or the node stops. The first line is the node's `listening`
    /// event, written once the node is subscribed.
    Events,
}

fn default_history_page() -> usize {
    50
}

/// One line of the node's answer.
///
/// `Event` comes first: an untagged enum takes the first variant that
/// parses, and an event with an `error` field (`transfer_failed`) would
/// otherwise parse as the request's [`Reply::Error`] and end it (a tree send
/// with one receiver lost ended `peerconnect send` there, with no output).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Event(Event),
    Ok { ok: serde_json::Value },
    Error { error: String },
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves the control socket of `node` until the node shuts down: each
/// connection is one request, read as a line, run by [`dispatch`], its
/// progress and answer written back as lines.
#[cfg(unix)]
pub(crate) fn serve(node: Node) -> Option<tokio::task::JoinHandle<()>> {
    let path = socket_path(node.data_dir());
    let listener = match bind_private(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no control socket; CLI commands will start their own node");
            return None;
        }
    };
    let weak = node.downgrade();
    drop(node);
    Some(tokio::spawn(async move {
        let mut backoff = crate::accept::Backoff::default();
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => {
                    backoff.reset();
                    s
                }
                Err(e) => {
                    let wait = backoff.failed();
                    tracing::debug!(error = %e, ?wait, "control socket: accept failed");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let Some(node) = weak.upgrade() else { return };
            tokio::spawn(serve_one(node, stream));
        }
    }))
}

/// One connection of the control socket.
#[cfg(unix)]
async fn serve_one(node: Node, stream: tokio::net::UnixStream) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r).take(MAX_REQUEST as u64);
    let mut line = String::new();
    if r.read_line(&mut line).await.is_err() {
        return;
    }
    let req = match serde_json::from_str::<Request>(&line) {
        Ok(req) => req,
        Err(e) => {
            let error = format!("bad request: {e}");
            let _ = write_line(&mut w, &Reply::Error { error }).await;
            return;
        }
    };
    let mut r = r.into_inner();
    let (sink, events, done) = Sink::channel();
    let mut events = Some(events);
    let run = dispatch(node, req, &sink);
    tokio::pin!(run);
    let mut scratch = [0u8; 64];
    let mut reading = true;
    let reply = loop {
        tokio::select! {
            reply = &mut run => break reply,
            Some(e) = next_event(&mut events) => {
                if write_line(&mut w, &Reply::Event(e)).await.is_err() {
                    // The client hung up: the request sees its sink closed.
                    events = None;
                }
            }
            // The client closes its side (or sends anything): it is done.
            _ = r.read(&mut scratch), if reading => {
                reading = false;
                done.cancel();
            }
        }
    };
    if let Some(rx) = events.as_mut() {
        while let Ok(e) = rx.try_recv() {
            if write_line(&mut w, &Reply::Event(e)).await.is_err() {
                return;
            }
        }
    }
    let _ = write_line(&mut w, &reply).await;
}

/// The next event of `rx`; never resolves once it is gone.
async fn next_event(rx: &mut Option<mpsc::Receiver<Event>>) -> Option<Event> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Events waiting for a slow client, at most (then the request waits).
const SINK_QUEUE: usize = 256;

/// Where [`dispatch`] writes the progress of a request (its event lines), and
/// how it learns that the client is done with it: the client dropped the
/// receiver of [`Sink::channel`] (hung up), or cancelled its token (closed its
/// side, which ends a streaming request such as [`Request::RoomWatch`]).
pub struct Sink {
    events: mpsc::Sender<Event>,
    done: CancellationToken,
}

impl Sink {
    /// A sink, the receiver of its events, and the token that tells it the
    /// client is done.
    pub fn channel() -> (Sink, mpsc::Receiver<Event>, CancellationToken) {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let done = CancellationToken::new();
        let sink = Sink {
            events: tx,
            done: done.clone(),
        };
        (sink, rx, done)
    }

    /// Passes `e` to the client; false if it has gone away.
    async fn event(&self, e: Event) -> bool {
        !self.done.is_cancelled() && self.events.send(e).await.is_ok()
    }

    /// Resolves once the client has hung up or is done.
    async fn closed(&self) {
        tokio::select! {
            _ = self.events.closed() => {}
            _ = self.done.cancelled() => {}
        }
    }
}

/// Binds the control socket at `path` so that no other local user can ever
/// connect to it: it is bound in a fresh `0700` directory beside `path`,
/// given mode `0600` there, and only then renamed into place (a socket
/// bound in the open, even for an instant before a chmod, is usable by
/// anyone who connects in that instant, and keeps such a connection).
#[cfg(unix)]
fn bind_private(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    // We hold the data dir lock, so a socket or staging dir left here is stale.
    let _ = std::fs::remove_file(path);
    // Short names: a socket path may not exceed about 100 bytes.
    let staging = dir.join(format!(".c{:08x}", rand::random::<u32>()));
    std::fs::DirBuilder::new()
        .mode(crate::data_dir::DIR_MODE)
        .create(&staging)?;
    let res = (|| {
        let tmp = staging.join("s");
        let listener = tokio::net::UnixListener::bind(&tmp)?;
        std::fs::set_permissions(
            &tmp,
            std::fs::Permissions::from_mode(crate::data_dir::FILE_MODE),
        )?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    res
}

/// Runs `req` on `node`: the one implementation of every [`Request`], for the
/// control socket and for a client that runs its node in process alike.
/// Progress goes to `sink`; the answer is returned.
pub async fn dispatch(node: Node, req: Request, sink: &Sink) -> Reply {
    // The streams hold the node weakly: a node shutting down ends them.
    match req {
        Request::RoomWatch { room, history } => {
            let weak = node.downgrade();
            drop(node);
            return watch_room(weak, &room, history, sink).await;
        }
        Request::Events => {
            let weak = node.downgrade();
            drop(node);
            return stream_events(weak, sink).await;
        }
        _ => {}
    }
    let node = &node;
    let res: crate::Result<serde_json::Value> = async {
        Ok(match req {
            // The owner link is safe to give here: only the node's user can
            // open this socket.
            Request::Id => serde_json::json!({
                "id": node.id(),
                "name": node.name(),
                "addrs": node.listen_addrs(),
                "owner_url": owner_url(node),
            }),
            Request::Peers => serde_json::to_value(node.peers().await?).expect("peers serialize"),
            Request::Transfers => serde_json::json!({
                "transfers": node.transfers()?,
                "stats": node.transfer_stats(),
            }),
            Request::SetTrust { peer, trust } => {
                let id = node.resolve_peer(&peer, Duration::ZERO).await?;
                node.set_trust(id, trust).await?;
                serde_json::json!({ "id": id, "trust": trust })
            }
            Request::RoomWatch { .. } | Request::Events => unreachable!("streamed above"),
            Request::RoomSay {
                room,
                text,
                wait_ms,
            } => {
                // A room the node is in only for browser guests is joined for
                // this say and left after.
                let joined_here = !node.owner_in_room(&room);
                node.join_room(&room).await?;
                let res = if wait_ms == 0 {
                    node.room_say(&room, &text)
                        .await
                        .map(|message| crate::rooms::RoomSaid {
                            message,
                            reached: Vec::new(),
                        })
                } else {
                    let wait = std::time::Duration::from_millis(wait_ms);
                    node.room_say_and_wait(&room, &text, wait).await
                };
                if joined_here {
                    node.leave_room(&room).await?;
                }
                serde_json::to_value(res?).expect("room messages serialize")
            }
            Request::RoomLeave { room } => {
                node.leave_room(&room).await?;
                serde_json::json!({ "room": room })
            }
            Request::Rooms => serde_json::to_value(node.rooms().await?).expect("rooms serialize"),
            Request::RoomHistory {
                room,
                before,
                limit,
            } => serde_json::to_value(node.room_history(&room, before, limit)?)
                .expect("room messages serialize"),
            Request::Send {
                to,
                paths,
                wait_secs,
                tree,
                room,
                pin,
            } => {
                let wait = secs(wait_secs.unwrap_or(transfer::FIND_WAIT_SECS));
                let how = transfer::How { tree, room, pin };
                transfer::send(node, &to, &paths, wait, how, sink).await?
            }
            Request::Receive { dir, yes, once } => {
                transfer::receive(node, dir, yes, once, sink).await?
            }
            Request::Answer { id, accept, dir } => {
                match (accept, dir) {
                    (false, _) => node.reject_offer(id)?,
                    (true, None) => node.accept_offer(id, Default::default())?,
                    (true, Some(d)) => node.accept_offer_into(id, Default::default(), d)?,
                }
                serde_json::json!({ "id": id, "accepted": accept })
            }
            Request::Find { query } => {
                serde_json::to_value(node.find(&query).await?).expect("records serialize")
            }
            Request::ResolvePeer { peer } => {
                let id = node.resolve_peer(&peer, Duration::ZERO).await?;
                // Be connected, so the peer can answer; offline is fine too.
                let links = node.links().clone();
                tokio::spawn(async move { links.dial(id, Vec::new()).await });
                let live = node.peers().await?.into_iter().find(|p| p.id == id);
                let name = match live {
                    Some(p) => p.name,
                    None => node.store().peer(&id)?.map(|p| p.name).unwrap_or_default(),
                };
                serde_json::json!({ "id": id, "name": name })
            }
            Request::SendMessage {
                peer,
                text,
                reply_to,
                wait_secs,
            } => {
                let id = node.resolve_peer(&peer, Duration::ZERO).await?;
                let (message, status) = match wait_secs {
                    Some(w) => {
                        node.send_message_and_wait(id, text, reply_to, secs(w))
                            .await?
                    }
                    None => {
                        let m = node.send_message(id, text, reply_to).await?;
                        let status = m.status;
                        (m, status)
                    }
                };
                serde_json::json!({ "message": message, "status": status })
            }
            Request::Conversation {
                peer,
                before,
                limit,
            } => {
                let id = node.resolve_peer(&peer, Duration::ZERO).await?;
                serde_json::to_value(node.conversation(id, before, limit)?)
                    .expect("messages serialize")
            }
            Request::Conversations => {
                serde_json::to_value(node.conversations()?).expect("conversations serialize")
            }
            Request::MarkRead { peer, up_to } => {
                let id = node.resolve_peer(&peer, Duration::ZERO).await?;
                serde_json::json!({ "marked": node.mark_read(id, up_to).await? })
            }
        })
    }
    .await;
    match res {
        Ok(ok) => Reply::Ok { ok },
        Err(e) => Reply::Error {
            error: e.to_string(),
        },
    }
}

/// `secs` seconds, within 0 s..1 h.
/// The owner's web link, for `id` (none without a web UI, or in a build
/// without one).
fn owner_url(node: &Node) -> Option<String> {
    #[cfg(feature = "web")]
    return node.web().map(|w| w.owner_url.clone());
    #[cfg(not(feature = "web"))]
    {
        let _ = node;
        None
    }
}

fn secs(secs: f64) -> Duration {
    Duration::from_secs_f64(if secs.is_finite() {
        secs.clamp(0.0, 3600.0)
    } else {
        0.0
    })
}

/// Writes `v` as one JSON line (requests, replies and events alike).
async fn write_line(
    w: &mut (impl AsyncWriteExt + Unpin),
    v: &impl Serialize,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(v).expect("control messages serialize");
    out.push(b'\n');
    w.write_all(&out).await
}

/// Streams a room to a client until it is done (see [`Request::RoomWatch`]).
/// Holds the node weakly: a node shutting down ends the stream.
async fn watch_room(weak: crate::node::WeakNode, room: &str, history: usize, sink: &Sink) -> Reply {
    let setup = async {
        let node = weak.upgrade().ok_or(crate::Error::Shutdown)?;
        // Subscribe before reading the history: a message arriving in between
        // shows up in both, and is printed once.
        let events = node.subscribe_events();
        let joined_here = !node.owner_in_room(room);
        node.join_room(room).await?;
        let past = node.room_history(room, None, history)?;
        Ok::<_, crate::Error>((events, joined_here, past))
    };
    let (mut events, joined_here, past) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            return Reply::Error {
                error: e.to_string(),
            };
        }
    };
    let mut shown = std::collections::HashSet::new();
    let joined = Event::RoomJoined {
        room: room.to_string(),
    };
    let mut ok = sink.event(joined).await;
    for message in past {
        shown.insert(message.id);
        let e = Event::RoomMessage {
            room: room.to_string(),
            message,
        };
        ok = ok && sink.event(e).await;
    }
    while ok {
        tokio::select! {
            e = events.recv() => match e {
                Ok(Event::RoomMessage { room: r, message }) if r == room => {
                    if shown.remove(&message.id) {
                        continue;
                    }
                    ok = sink.event(Event::RoomMessage { room: r, message }).await;
                }
                Ok(Event::RoomLeft { room: r }) if r == room => {
                    return Reply::Error { error: format!("left room {room:?}") };
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let e = Event::Error { message: format!("missed {n} events (too slow)") };
                    ok = sink.event(e).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Reply::Error { error: "the node has shut down".into() };
                }
            },
            _ = sink.closed() => break,
        }
    }
    let left = match weak.upgrade() {
        Some(node) if joined_here => node.leave_room(room).await.is_ok(),
        _ => false,
    };
    Reply::Ok {
        ok: serde_json::json!({ "room": room, "left": left }),
    }
}

/// Passes every event from now on to the client until it is done or the
/// node stops, starting with the node's `listening` event (so the client
/// knows it is subscribed).
async fn stream_events(weak: crate::node::WeakNode, sink: &Sink) -> Reply {
    let Some(node) = weak.upgrade() else {
        return Reply::Error {
            error: crate::Error::Shutdown.to_string(),
        };
    };
    let mut events = node.subscribe();
    let hello = Event::Listening {
        id: node.id(),
        name: node.name().to_string(),
        addrs: node.listen_addrs().to_vec(),
        web: None,
    };
    // The stream must not keep a stopped node alive.
    drop(node);
    let mut ok = sink.event(hello).await;
    while ok {
        tokio::select! {
            e = events.recv() => match e {
                Some(e) => ok = sink.event(e).await,
                None => break,
            },
            _ = sink.closed() => break,
        }
    }
    Reply::Ok {
        ok: serde_json::Value::Null,
    }
}

/// Client side: subscribes to the events of the node running on `data_dir`
/// ([`Request::Events`]). Returns once the node is streaming, so no event after
/// this call is missed (`Ok(None)`: no node runs there). The receiver ends when
/// the node stops; a reader that falls far behind makes the node skip events.
#[cfg(unix)]
pub async fn subscribe(
    data_dir: &Path,
) -> std::io::Result<Option<tokio::sync::mpsc::Receiver<Event>>> {
    let Some(mut stream) = Stream::open(data_dir, &Request::Events).await? else {
        return Ok(None);
    };
    match stream.next().await? {
        Some(Reply::Event(_)) => {}
        Some(other) => {
            return Err(std::io::Error::other(format!(
                "unexpected answer to an events request: {other:?}"
            )));
        }
        None => return Err(std::io::Error::other("the node closed the control socket")),
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        // `stream` keeps the write half open: closing it would end the stream.
        while let Ok(Some(reply)) = stream.next().await {
            if let Reply::Event(e) = reply
                && tx.send(e).await.is_err()
            {
                return;
            }
        }
    });
    Ok(Some(rx))
}

/// Client side: sends `req` to the node running on `data_dir`, calling
/// `on_event` for each progress event. `Ok(None)` means no node is running there.
#[cfg(unix)]
pub async fn call(
    data_dir: &Path,
    req: &Request,
    on_event: impl FnMut(Event),
) -> std::io::Result<Option<Result<serde_json::Value, String>>> {
    let Some(stream) = Stream::open(data_dir, req).await? else {
        return Ok(None);
    };
    Call::Socket(stream).answer(on_event).await.map(Some)
}

/// A request in progress on the control socket (client side): read its
/// lines with [`Stream::next`]; [`Call::finish`] ends a streaming one.
#[cfg(unix)]
pub struct Stream {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    w: tokio::net::unix::OwnedWriteHalf,
}

#[cfg(unix)]
impl Stream {
    /// Sends `req` to the node running on `data_dir`; `None` if none runs there.
    pub async fn open(data_dir: &Path, req: &Request) -> std::io::Result<Option<Stream>> {
        let path = socket_path(data_dir);
        let stream = match tokio::net::UnixStream::connect(&path).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (r, mut w) = stream.into_split();
        write_line(&mut w, req).await?;
        Ok(Some(Stream {
            lines: BufReader::new(r).lines(),
            w,
        }))
    }

    /// The next line: an event, or the final answer (then the stream is over).
    /// `None` when the node closed the socket.
    pub async fn next(&mut self) -> std::io::Result<Option<Reply>> {
        let Some(l) = self.lines.next_line().await? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(&l).unwrap_or_else(|e| {
            Reply::Error {
                error: format!("bad reply from node: {e}"),
            }
        })))
    }
}

/// The error a `{"error":…}` answer stands for, if its kind matters to a
/// client (the CLI's exit codes): the text [`dispatch`] wrote for it, parsed
/// back. `None`: any other failure.
pub fn reply_error(text: &str) -> Option<crate::Error> {
    use crate::Error;
    use crate::proto::messaging::Error as Messaging;
    if let Some(spec) = text.strip_prefix("peer not found: ") {
        return Some(Error::PeerNotFound(spec.to_string()));
    }
    if let Some(why) = text.strip_prefix("invalid argument: ") {
        return Some(Error::Invalid(why.to_string()));
    }
    if let Some((spec, which)) = text.split_once(" matches several peers: ") {
        return Some(Error::AmbiguousPeer(spec.to_string(), which.to_string()));
    }
    if let Some(peer) = text
        .strip_prefix("peer ")
        .and_then(|t| t.strip_suffix(" is blocked; unblock it to exchange messages"))
    {
        return Some(Error::Messaging(Messaging::Blocked(peer.to_string())));
    }
    (text == Messaging::ToSelf.to_string()).then_some(Error::Messaging(Messaging::ToSelf))
}

/// Where a client's requests go: the node running on a data dir (through its
/// control socket), or a node of the client's own, whose requests
/// [`dispatch`] runs in process. Either way a request gives the same events
/// and answer.
pub enum Client {
    /// The node `peerconnect up` runs on this data dir.
    #[cfg(unix)]
    Running(PathBuf),
    /// A node of the client's own, stopped by [`Client::close`].
    Own(Node),
}

impl Client {
    /// The node running on `data_dir`, if one answers there.
    #[cfg(unix)]
    pub async fn running(data_dir: &Path) -> std::io::Result<Option<Client>> {
        Ok(call(data_dir, &Request::Id, |_| {})
            .await?
            .map(|_| Client::Running(data_dir.to_path_buf())))
    }

    /// Starts `req`; read its events and answer from the [`Call`].
    pub async fn start(&self, req: Request) -> std::io::Result<Call> {
        match self {
            #[cfg(unix)]
            Client::Running(dir) => match Stream::open(dir, &req).await? {
                Some(s) => Ok(Call::Socket(s)),
                None => Err(std::io::Error::other("the running node stopped")),
            },
            Client::Own(node) => {
                let (sink, events, done) = Sink::channel();
                let node = node.clone();
                let reply = tokio::spawn(async move { dispatch(node, req, &sink).await });
                Ok(Call::Own {
                    events,
                    done,
                    reply: Some(reply),
                })
            }
        }
    }

    /// Runs `req` to its end, calling `on_event` for each progress event.
    pub async fn call(
        &self,
        req: Request,
        on_event: impl FnMut(Event),
    ) -> std::io::Result<Result<serde_json::Value, String>> {
        self.start(req).await?.answer(on_event).await
    }

    /// The node of our own, if this client runs one.
    pub fn own(&self) -> Option<&Node> {
        match self {
            Client::Own(node) => Some(node),
            #[cfg(unix)]
            Client::Running(_) => None,
        }
    }

    /// Stops the node of our own, if any.
    pub async fn close(self) -> crate::Result<()> {
        match self {
            Client::Own(node) => node.shutdown().await,
            #[cfg(unix)]
            Client::Running(_) => Ok(()),
        }
    }
}

/// A request in progress ([`Client::start`]): its events, then its answer.
pub enum Call {
    #[cfg(unix)]
    Socket(Stream),
    Own {
        events: mpsc::Receiver<Event>,
        done: CancellationToken,
        reply: Option<tokio::task::JoinHandle<Reply>>,
    },
}

impl Call {
    /// The next line: an event, or the answer (then the request is over).
    /// `None` after the answer.
    pub async fn next(&mut self) -> std::io::Result<Option<Reply>> {
        match self {
            #[cfg(unix)]
            Call::Socket(s) => s.next().await,
            Call::Own { events, reply, .. } => {
                if let Some(e) = events.recv().await {
                    return Ok(Some(Reply::Event(e)));
                }
                // The sink is gone: the request has ended.
                match reply.take() {
                    Some(r) => Ok(Some(r.await.map_err(std::io::Error::other)?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Reads the request to its end: `on_event` for each event, then the
    /// answer.
    pub async fn answer(
        mut self,
        mut on_event: impl FnMut(Event),
    ) -> std::io::Result<Result<serde_json::Value, String>> {
        while let Some(reply) = self.next().await? {
            match reply {
                Reply::Ok { ok } => return Ok(Ok(ok)),
                Reply::Error { error } => return Ok(Err(error)),
                Reply::Event(e) => on_event(e),
            }
        }
        Ok(Err("the node closed the request".into()))
    }

    /// Tells the request the client is done (ends a streaming one: the
    /// socket's client closes its side) and waits for its answer.
    pub async fn finish(mut self) -> std::io::Result<Result<serde_json::Value, String>> {
        match &mut self {
            #[cfg(unix)]
            Call::Socket(s) => s.w.shutdown().await?,
            Call::Own { done, .. } => done.cancel(),
        }
        self.answer(|_| {}).await
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_control_socket_is_private_even_in_an_open_dir() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = socket_path(d.path());
        std::fs::write(&path, b"stale").unwrap();
        let listener = bind_private(&path).unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // It is the listening socket, and nothing else was left beside it.
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, client) = tokio::join!(listener.accept(), client);
        accepted.unwrap();
        client.unwrap();
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("control.sock")]);
    }

    /// Issue 14, L8: the socket never exists at its path with a mode another
    /// local user could connect through, not even for the instant between
    /// `bind` and `chmod`: it arrives there only by a rename of a socket made
    /// private elsewhere. The kernel's own record (inotify) of the data dir
    /// shows a move of `control.sock` into it, never its creation there.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_control_socket_is_moved_into_place_never_created_in_the_open() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = socket_path(d.path());
        let mut listener = None;
        let events = dir_events(d.path(), || listener = Some(bind_private(&path).unwrap()));
        let sock: Vec<u32> = events
            .iter()
            .filter(|(_, name)| name == "control.sock")
            .map(|(mask, _)| *mask)
            .collect();
        assert!(
            sock.iter().any(|m| m & libc::IN_MOVED_TO != 0),
            "control.sock never moved into the data dir: {events:?}"
        );
        assert!(
            sock.iter().all(|m| m & libc::IN_CREATE == 0),
            "control.sock was created in the open data dir (usable by anyone until its chmod): {events:?}"
        );
        assert!(listener.is_some());
    }

    /// The (mask, name) of what inotify saw created, moved into or changed in
    /// `dir` while `f` ran.
    #[cfg(target_os = "linux")]
    fn dir_events(dir: &Path, f: impl FnOnce()) -> Vec<(u32, String)> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain syscalls on a descriptor this function owns and closes.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `c` is a valid C string for the call's duration.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd,
                c.as_ptr(),
                libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB,
            )
        };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        f();
        // The kernel queued the events as the calls in `f` happened.
        let mut buf = vec![0u8; 64 << 10];
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let read_error = std::io::Error::last_os_error();
        // SAFETY: `fd` is ours and not used after this.
        unsafe { libc::close(fd) };
        assert!(n > 0, "no inotify events: {read_error}");
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut out = Vec::new();
        let mut at = 0;
        while at + head <= n as usize {
            // SAFETY: the kernel wrote whole events; the read copes with any alignment.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name = &buf[at + head..at + head + ev.len as usize];
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_string();
            out.push((ev.mask, name));
            at += head + ev.len as usize;
        }
        out
    }
}

#[cfg(test)]
mod reply_tests {
    use super::*;

    #[test]
    fn a_failed_transfer_event_stays_an_event_and_errors_stay_errors() {
        let e = Event::TransferFailed {
            id: "00000000000000aa".parse().unwrap(),
            peer: crate::Identity::generate().peer_id(),
            direction: crate::proto::transfer::Direction::Send,
            path: None,
            error: "the receiver left the relay tree".into(),
        };
        let line = serde_json::to_string(&Reply::Event(e.clone())).unwrap();
        let back: Reply = serde_json::from_str(&line).unwrap();
        assert!(
            matches!(back, Reply::Event(Event::TransferFailed { .. })),
            "{back:?}"
        );
        let back: Reply = serde_json::from_str(r#"{"error":"no such peer"}"#).unwrap();
        assert!(matches!(back, Reply::Error { .. }), "{back:?}");
        let back: Reply = serde_json::from_str(r#"{"ok":{"transfers":{}}}"#).unwrap();
        assert!(matches!(back, Reply::Ok { .. }), "{back:?}");
    }
}
