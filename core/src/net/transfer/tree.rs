//! The relay tree on real nodes: drives [`crate::proto::transfer::tree`]'s
//! coordinator (on the sender) and members (on the receivers) with mux
//! streams and files. Every decision (who relays to whom, what to send, what
//! to keep, repairs) is the state machines'; this is the IO edge.
//!
//! # Streams
//!
//! Every stream of a session starts with [`StreamKind::Tree`] and an [`Open`]:
//!
//! - `Open::Offer{session}`, sender → receiver: the usual offer follows
//!   ([`super::send::offer_frames`]) and the receiver answers it as any offer
//!   ([`super::recv::run`]: consent per receiver, resume folder, space
//!   check). Once accepted, the stream carries the session's frames between
//!   the coordinator and that member (and the sender's groups when it is the
//!   member's parent).
//! - `Open::Join{session}`, member → member: opened by whichever side sends
//!   first (a child subscribing to its parent); the parent's address comes
//!   from the coordinator (`Frame::Peer`, from the sender's peer table) and
//!   the node's usual dial path.
//!
//! After the `Open` (and the offer), a stream carries [`Frame`]s; a
//! `Group{index, len}` frame is followed by `len` raw bytes (at most
//! [`MAX_GROUP`]). Received bytes are hashed against the outline by the
//! member before anything is written or forwarded.
//!
//! # Bounds
//!
//! Groups in flight per child: the state machine's window. Frames queued per
//! stream: [`WRITE_QUEUE`]; a peer whose queue is full is treated as lost
//! (the machine repairs around it). Streams per peer into one session:
//! [`STREAMS_PER_PEER`]. A session with no input for [`IDLE`] ends.
//!
//! # Limits
//!
//! One regular file per tree transfer. Pause is not supported (the file keeps
//! flowing); cancelling ends this node's part only. The receiver's copy is
//! written to its `.part` and renamed into place once every group is
//! verified, exactly like a normal transfer's; it then keeps serving its
//! children until the coordinator releases it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::stream::Shared as SharedStream;
use super::{Ctl, Meter, Outcome, Shared, fs, hex, progress_event};
use crate::event::Event;
use crate::identity::PeerId;
use crate::net::mux::MuxStream;
use crate::net::transport::read_frame;
use crate::proto::transfer::progress::{INTERVAL, Progress};
use crate::proto::transfer::tree::{
    self, Config, InEvent, Message, OutEvent, Timer, coordinator, member,
};
use crate::proto::transfer::verified::{Geometry, MAX_GROUP, Outline, OutlineBuilder};
use crate::proto::transfer::{Direction, Manifest, TransferId, TransferState, sender};
use crate::proto::wire::{StreamKind, encode_frame};

/// Frames queued to one stream's writer (the window bounds the groups).
const WRITE_QUEUE: usize = 64;
/// Inputs queued to a session's task.
const INPUT_QUEUE: usize = 256;
/// Most streams one peer holds into one session (two members may open one
/// each way at the same time).
const STREAMS_PER_PEER: usize = 2;
/// A session that hears nothing for this long ends.
const IDLE: Duration = Duration::from_secs(60);
/// The `Open` of a new stream must arrive within this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A member gives up reaching another after this long (it is then lost).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size while hashing the sender's file for its outline.
const HASH_READ: usize = 1 << 20;

/// What a tree stream is for (its first frame after the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Open {
    /// The sender offers the session's file (an offer follows).
    Offer { session: u64 },
    /// A member links to another member of the session.
    Join { session: u64 },
}

/// A frame of a session's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Frame {
    Msg(Message),
    /// (coordinator → member) Where `peer`, a parent-to-be, listens.
    Peer {
        peer: PeerId,
        addrs: Vec<SocketAddr>,
    },
}

/// The sessions this node takes part in, by id: where members' links go.
#[derive(Debug, Default)]
pub(super) struct Sessions(Mutex<BTreeMap<u64, mpsc::Sender<Input>>>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tree input")
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, mpsc::Sender<Input>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One receiver of a tree the sender offers to (registered as a transfer).
pub(super) struct Receiver {
    pub id: TransferId,
    pub peer: PeerId,
    pub ctl: watch::Receiver<Ctl>,
    pub meter: Arc<Meter>,
}

/// A receiver that accepted a tree offer.
pub(super) struct Joined {
    pub session: u64,
    pub id: TransferId,
    /// The sender (the coordinator).
    pub peer: PeerId,
    pub stream: SharedStream,
    pub target: PathBuf,
    pub size: u64,
}

enum Input {
    /// A stream to `peer`, ready for frames (dialed or accepted).
    Link(PeerId, SharedStream),
    DialFailed(PeerId),
    Frame(PeerId, Frame),
    Group(PeerId, u32, Vec<u8>),
    Closed(PeerId, u64),
    Stored(u32, Result<(), String>),
    Timer(Timer),
    Stop,
}

/// What a stream's writer sends.
enum Write {
    Frame(Frame),
    Group { index: u32, start: u64, len: u32 },
}

/// A tree stream a peer opened to this node.
pub(super) async fn incoming(sh: Arc<Shared>, peer: PeerId, mut stream: MuxStream) {
    let open = tokio::time::timeout(OPEN_TIMEOUT, read_frame::<Open, _>(&mut stream)).await;
    let Ok(Ok(Ok(open))) = open else {
        sh.count_protocol_error();
        stream.reset(crate::proto::transfer::RESET_PROTOCOL);
        return;
    };
    match open {
        Open::Offer { session } => {
            let trusted = sh.store.trust(&peer).ok() == Some(crate::event::Trust::Trusted);
            match sh.budget.admit(peer, trusted) {
                Ok(slot) => {
                    let s = SharedStream::new(stream);
                    super::recv::run(sh, peer, s, slot, None, Some(session)).await;
                }
                Err(reason) => super::recv::refuse(stream, reason).await,
            }
        }
        Open::Join { session } => {
            let tx = sh.trees.lock().get(&session).cloned();
            match tx {
                Some(tx) => {
                    let _ = tx.send(Input::Link(peer, SharedStream::new(stream))).await;
                }
                None => stream.reset(crate::proto::transfer::RESET_CANCELLED),
            }
        }
    }
}

/// The streams of one session, by peer.
struct Wires {
    sh: Arc<Shared>,
    session: u64,
    input: mpsc::Sender<Input>,
    file: Arc<File>,
    /// The writer of each peer's primary stream, and the stream's number.
    conns: BTreeMap<PeerId, (u64, mpsc::Sender<Write>)>,
    /// Further streams from a peer: read, never written (kept open).
    spare: BTreeMap<PeerId, Vec<(u64, SharedStream)>>,
    /// Writes waiting for a dial.
    dialing: BTreeMap<PeerId, Vec<Write>>,
    addrs: BTreeMap<PeerId, Vec<SocketAddr>>,
    next: u64,
}

impl Wires {
    fn new(sh: Arc<Shared>, session: u64, input: mpsc::Sender<Input>, file: Arc<File>) -> Self {
        Self {
            sh,
            session,
            input,
            file,
            conns: BTreeMap::new(),
            spare: BTreeMap::new(),
            dialing: BTreeMap::new(),
            addrs: BTreeMap::new(),
            next: 0,
        }
    }

    /// Takes a stream to `peer`; `false` if the peer holds too many.
    fn link(&mut self, peer: PeerId, s: SharedStream) -> bool {
        let no = self.next;
        self.next += 1;
        if self.conns.contains_key(&peer) {
            let spare = self.spare.entry(peer).or_default();
            if spare.len() + 1 >= STREAMS_PER_PEER {
                s.reset(crate::proto::transfer::RESET_PROTOCOL);
                return false;
            }
            spare.push((no, s.clone()));
        } else {
            let (tx, rx) = mpsc::channel(WRITE_QUEUE);
            tokio::spawn(write_loop(
                self.sh.clone(),
                s.clone(),
                rx,
                self.file.clone(),
            ));
            for w in self.dialing.remove(&peer).unwrap_or_default() {
                let _ = tx.try_send(w);
            }
            self.conns.insert(peer, (no, tx));
        }
        tokio::spawn(read_loop(peer, no, s, self.input.clone()));
        true
    }

    /// Queues `w` to `peer`, dialing it first if needed; `false` if the peer
    /// is lost (its queue is full or its stream gone).
    fn send(&mut self, peer: PeerId, w: Write) -> bool {
        if let Some((_, tx)) = self.conns.get(&peer) {
            if tx.try_send(w).is_ok() {
                return true;
            }
            self.conns.remove(&peer);
            return false;
        }
        if let Some(q) = self.dialing.get_mut(&peer) {
            if q.len() >= WRITE_QUEUE {
                return false;
            }
            q.push(w);
            return true;
        }
        self.dialing.insert(peer, vec![w]);
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        let (sh, input, session) = (self.sh.clone(), self.input.clone(), self.session);
        tokio::spawn(async move {
            let res = tokio::time::timeout(DIAL_TIMEOUT, dial(&sh, peer, addrs, session))
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            let _ = input
                .send(match res {
                    Ok(s) => Input::Link(peer, s),
                    Err(e) => {
                        tracing::debug!(peer = %peer.short(), error = %e, "tree: cannot reach a member");
                        Input::DialFailed(peer)
                    }
                })
                .await;
        });
        true
    }

    /// Whether stream `no` is `peer`'s primary one (its end loses the peer).
    fn closed(&mut self, peer: PeerId, no: u64) -> bool {
        if let Some(spare) = self.spare.get_mut(&peer) {
            spare.retain(|(n, _)| *n != no);
        }
        if self.conns.get(&peer).is_some_and(|(n, _)| *n == no) {
            self.conns.remove(&peer);
            return true;
        }
        false
    }

    fn disconnect(&mut self, peer: PeerId) {
        self.conns.remove(&peer);
        self.spare.remove(&peer);
        self.dialing.remove(&peer);
    }
}

/// Opens a member-to-member stream of `session` to `peer`.
async fn dial(
    sh: &Shared,
    peer: PeerId,
    addrs: Vec<SocketAddr>,
    session: u64,
) -> Result<SharedStream, String> {
    sh.links.dial(peer, addrs).await?;
    let link = sh.links.get(&peer).ok_or("the link went down")?;
    let s = link
        .mux
        .open_bulk_stream()
        .await
        .map_err(|e| format!("cannot open a stream: {e}"))?;
    let s = SharedStream::new(s);
    let mut head = Vec::new();
    encode_frame(&StreamKind::Tree, &mut head).expect("small");
    encode_frame(&Open::Join { session }, &mut head).expect("small");
    let mut w = s.clone();
    w.write_all(&head).await.map_err(|e| e.to_string())?;
    Ok(s)
}

async fn read_loop(peer: PeerId, no: u64, mut r: SharedStream, input: mpsc::Sender<Input>) {
    loop {
        let item = match read_frame::<Frame, _>(&mut r).await {
            Ok(Ok(Frame::Msg(Message::Group { index, len }))) if len as u64 <= MAX_GROUP => {
                let mut buf = vec![0; len as usize];
                if r.read_exact(&mut buf).await.is_err() {
                    break;
                }
                Input::Group(peer, index, buf)
            }
            Ok(Ok(Frame::Msg(Message::Group { .. }))) => {
                r.reset(crate::proto::transfer::RESET_PROTOCOL);
                break;
            }
            Ok(Ok(f)) => Input::Frame(peer, f),
            Ok(Err(_)) => {
                r.reset(crate::proto::transfer::RESET_PROTOCOL);
                break;
            }
            Err(_) => break,
        };
        if input.send(item).await.is_err() {
            return;
        }
    }
    let _ = input.send(Input::Closed(peer, no)).await;
}

async fn write_loop(
    sh: Arc<Shared>,
    mut w: SharedStream,
    mut rx: mpsc::Receiver<Write>,
    file: Arc<File>,
) {
    let mut buf = Vec::new();
    while let Some(item) = rx.recv().await {
        buf.clear();
        let mut data = 0;
        match item {
            Write::Frame(f) => {
                if encode_frame(&f, &mut buf).is_err() {
                    continue;
                }
            }
            Write::Group { index, start, len } => {
                encode_frame(&Frame::Msg(Message::Group { index, len }), &mut buf).expect("small");
                let head = buf.len();
                let file = file.clone();
                let mut owned = std::mem::take(&mut buf);
                let res = tokio::task::spawn_blocking(move || {
                    owned.resize(head + len as usize, 0);
                    file.read_exact_at(&mut owned[head..], start)
                        .map(|()| owned)
                })
                .await;
                match res {
                    Ok(Ok(b)) => buf = b,
                    _ => {
                        w.reset(crate::proto::transfer::RESET_CANCELLED);
                        return;
                    }
                }
                data = len as u64;
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
        sh.count_sent(data);
    }
    let _ = w.shutdown().await;
}

/// Feeds `ScheduleTimer` back as an input after its delay.
fn schedule(input: &mpsc::Sender<Input>, after: Duration, timer: Timer) {
    let input = input.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = input.send(Input::Timer(timer)).await;
    });
}

/// Hashes the sender's file into its outline (BLAKE3 root and group digests).
fn outline_of(file: &File, size: u64) -> Result<Outline, String> {
    let geo = Geometry::for_size(size).map_err(|e| e.to_string())?;
    let mut b = OutlineBuilder::new(geo);
    let mut buf = vec![0; HASH_READ];
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(HASH_READ as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(|e| format!("reading the file: {e}"))?;
        b.update(&buf[..n]);
        pos += n as u64;
    }
    b.finish()
        .ok_or_else(|| "the file changed while it was hashed".into())
}

// ---------------------------------------------------------------- sender

/// A receiver as the coordinator's driver tracks it.
struct Tracked {
    id: TransferId,
    meter: Arc<Meter>,
    progress: Progress,
    ended: bool,
}

/// Runs a tree transfer on the sender: offers the file to every receiver,
/// then coordinates the session over those who accepted.
pub(super) async fn send(
    sh: Arc<Shared>,
    manifest: Arc<Manifest>,
    source: PathBuf,
    receivers: Vec<Receiver>,
) {
    let size = manifest.total_bytes();
    let prepared = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            let file = fs::open_existing(&source).map_err(|e| e.to_string())?;
            if file.metadata().map_err(|e| e.to_string())?.len() != size {
                return Err("the file changed size since it was offered".to_string());
            }
            let outline = outline_of(&file, size)?;
            Ok((file, outline))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    };
    let (file, outline) = match prepared {
        Ok(p) => p,
        Err(e) => {
            for r in receivers {
                end(
                    &sh,
                    r.id,
                    r.peer,
                    Outcome::Failed(e.clone()),
                    &r.meter,
                    size,
                    0,
                );
            }
            return;
        }
    };
    let session: u64 = rand::random();
    // Every offer goes out at once; each receiver answers on its own.
    let (answers_tx, mut answers_rx) = mpsc::channel(receivers.len().max(1));
    let mut tracked: BTreeMap<PeerId, Tracked> = BTreeMap::new();
    for r in receivers {
        let tx = answers_tx.clone();
        let (sh2, manifest2) = (sh.clone(), manifest.clone());
        let (id, peer, mut ctl) = (r.id, r.peer, r.ctl);
        tokio::spawn(async move {
            let res = offer(&sh2, id, peer, &manifest2, session, &mut ctl).await;
            let _ = tx.send((peer, res)).await;
        });
        tracked.insert(
            r.peer,
            Tracked {
                id: r.id,
                meter: r.meter,
                progress: Progress::new(1, size),
                ended: false,
            },
        );
    }
    drop(answers_tx);
    let (input_tx, mut input) = mpsc::channel(INPUT_QUEUE);
    let mut wires = Wires::new(sh.clone(), session, input_tx.clone(), Arc::new(file));
    let geo = *outline.geometry();
    let sent = Sent {
        geo,
        root: outline.root(),
        name: source.display().to_string(),
    };
    let epoch = tokio::time::Instant::now();
    let me = sh.me;
    let mut coord = coordinator::State::new(Config::default(), me, outline, None);
    while let Some((peer, res)) = answers_rx.recv().await {
        let t = tracked.get_mut(&peer).expect("offered");
        match res {
            Ok(s) => {
                sh.set_state(t.id, TransferState::Running);
                t.progress.start_file(0, size, 0);
                wires.link(peer, s);
                let _ = coord.join(epoch.elapsed(), peer, None);
            }
            Err(o) => {
                t.ended = true;
                end(&sh, t.id, peer, o, &t.meter, size, 0);
            }
        }
    }
    if tracked.values().all(|t| t.ended) {
        return;
    }
    let mut told: BTreeSet<(PeerId, PeerId)> = BTreeSet::new();
    let out = coord.begin(epoch.elapsed());
    let mut over = coordinate(&sh, &mut wires, &mut tracked, &mut told, &sent, out);
    while !over {
        let Ok(Some(i)) = tokio::time::timeout(IDLE, input.recv()).await else {
            break;
        };
        let now = epoch.elapsed();
        let ev = match i {
            Input::Link(peer, s) => {
                wires.link(peer, s);
                continue;
            }
            Input::DialFailed(peer) => InEvent::PeerLost(peer),
            Input::Frame(peer, Frame::Msg(msg)) => {
                if let (Message::Report { have }, Some(t)) = (&msg, tracked.get_mut(&peer)) {
                    report(&sh, peer, t, have, &geo);
                }
                InEvent::Message(peer, msg)
            }
            Input::Frame(..) | Input::Stored(..) | Input::Stop => continue,
            // The sender is everyone's source: it takes no groups.
            Input::Group(..) => continue,
            Input::Closed(peer, no) => {
                if no != u64::MAX && !wires.closed(peer, no) {
                    continue;
                }
                InEvent::PeerLost(peer)
            }
            Input::Timer(t) => InEvent::Timer(t),
        };
        let out = coord.handle(now, ev);
        over = coordinate(&sh, &mut wires, &mut tracked, &mut told, &sent, out);
    }
    for (peer, t) in &tracked {
        if !t.ended {
            let why = if over {
                "the relay tree ended first"
            } else {
                "the relay tree went quiet"
            };
            end(
                &sh,
                t.id,
                *peer,
                Outcome::Interrupted(why.into()),
                &t.meter,
                size,
                t.progress.done_bytes(),
            );
        }
    }
}

/// Offers the file on a new tree stream and waits for the answer.
async fn offer(
    sh: &Shared,
    id: TransferId,
    peer: PeerId,
    manifest: &Manifest,
    session: u64,
    ctl: &mut watch::Receiver<Ctl>,
) -> Result<SharedStream, Outcome> {
    let link = sh
        .links
        .get(&peer)
        .ok_or_else(|| Outcome::Interrupted(format!("not connected to {}", peer.short())))?;
    let s = link
        .mux
        .open_bulk_stream()
        .await
        .map_err(|e| Outcome::Interrupted(format!("cannot open a stream: {e}")))?;
    let s = SharedStream::new(s);
    let mut head = Vec::new();
    encode_frame(&StreamKind::Tree, &mut head).expect("small");
    encode_frame(&Open::Offer { session }, &mut head).expect("small");
    let mut w = s.clone();
    for frame in std::iter::once(head).chain(super::send::offer_frames(id, manifest)) {
        w.write_all(&frame)
            .await
            .map_err(|e| Outcome::Interrupted(e.to_string()))?;
    }
    let mut r = s.clone();
    let mut state = sender::State::new(manifest);
    super::send::await_answer(sh, &s, &mut r, &mut state, ctl).await?;
    if state.files() != [0] {
        return Err(Outcome::Rejected("the receiver selected nothing".into()));
    }
    Ok(s)
}

/// A member's report: its progress, as that receiver's transfer shows it.
fn report(sh: &Shared, peer: PeerId, t: &mut Tracked, have: &[u32], geo: &Geometry) {
    let groups: u64 = have.iter().map(|&h| h as u64).sum();
    let done = (groups * geo.group_size()).min(geo.size());
    let before = t.progress.done_bytes();
    if done > before {
        t.progress.add(done - before);
    }
    t.meter.done.store(done, Ordering::Relaxed);
    t.meter.transferred.store(done, Ordering::Relaxed);
    let snap = t.progress.snapshot(sh.now());
    sh.emit(progress_event(
        t.id,
        peer,
        Direction::Send,
        &snap,
        None,
        false,
    ));
}

/// The file a coordinator sends.
struct Sent {
    geo: Geometry,
    root: [u8; 32],
    /// As the sender's events name it.
    name: String,
}

/// Carries out the coordinator's outputs; `true` once the session is over.
fn coordinate(
    sh: &Arc<Shared>,
    wires: &mut Wires,
    tracked: &mut BTreeMap<PeerId, Tracked>,
    told: &mut BTreeSet<(PeerId, PeerId)>,
    file: &Sent,
    out: Vec<OutEvent>,
) -> bool {
    let (geo, root) = (file.geo, file.root);
    let mut over = false;
    let mut lost = Vec::new();
    for o in out {
        match o {
            OutEvent::Send(to, msg) => {
                if let Message::Attach { parent, .. } = &msg
                    && *parent != sh.me
                    && told.insert((to, *parent))
                {
                    let addrs = sh
                        .store
                        .peer(parent)
                        .ok()
                        .flatten()
                        .map(|p| p.addrs)
                        .unwrap_or_default();
                    let peer = *parent;
                    if !wires.send(to, Write::Frame(Frame::Peer { peer, addrs })) {
                        lost.push(to);
                    }
                }
                if !wires.send(to, Write::Frame(Frame::Msg(msg))) {
                    lost.push(to);
                }
            }
            OutEvent::SendGroup { to, index } => {
                let r = geo.range(index);
                let w = Write::Group {
                    index,
                    start: r.start,
                    len: (r.end - r.start) as u32,
                };
                if !wires.send(to, w) {
                    lost.push(to);
                }
            }
            OutEvent::Disconnect(peer) => wires.disconnect(peer),
            OutEvent::ScheduleTimer(after, t) => schedule(&wires.input, after, t),
            OutEvent::Store { .. } | OutEvent::Discard { .. } => {}
            OutEvent::Emit(e) => match e {
                tree::Event::ReceiverComplete(peer) => {
                    if let Some(t) = tracked.get_mut(&peer).filter(|t| !t.ended) {
                        t.ended = true;
                        t.progress.end_file(geo.size(), t.progress.file_done());
                        sh.count_file(Direction::Send);
                        sh.emit(Event::TransferDone {
                            id: t.id,
                            peer,
                            direction: Direction::Send,
                            path: file.name.clone(),
                            bytes: geo.size(),
                            blake3: hex(&root),
                        });
                        end(
                            sh,
                            t.id,
                            peer,
                            Outcome::Complete { ok: 1, failed: 0 },
                            &t.meter,
                            geo.size(),
                            geo.size(),
                        );
                    }
                }
                tree::Event::ReceiverLost(peer) => {
                    if let Some(t) = tracked.get_mut(&peer).filter(|t| !t.ended) {
                        t.ended = true;
                        let done = t.progress.done_bytes();
                        end(
                            sh,
                            t.id,
                            peer,
                            Outcome::Interrupted("the receiver left the relay tree".into()),
                            &t.meter,
                            geo.size(),
                            done,
                        );
                    }
                }
                tree::Event::Moved {
                    stripe,
                    child,
                    to,
                    reason,
                } => {
                    tracing::info!(stripe, child = %child.short(), to = %to.short(), ?reason, "tree: moved a receiver");
                }
                tree::Event::AllComplete => over = true,
                tree::Event::Failed(reason) => {
                    for (peer, t) in tracked.iter_mut().filter(|(_, t)| !t.ended) {
                        t.ended = true;
                        let done = t.progress.done_bytes();
                        end(
                            sh,
                            t.id,
                            *peer,
                            Outcome::Failed(reason.clone()),
                            &t.meter,
                            geo.size(),
                            done,
                        );
                    }
                    over = true;
                }
                tree::Event::Complete | tree::Event::Released | tree::Event::Corrupt { .. } => {}
            },
        }
    }
    for peer in lost {
        // Fed back as a lost peer on the next turn: its stream is dropped.
        wires.disconnect(peer);
        let _ = wires.input.try_send(Input::Closed(peer, u64::MAX));
    }
    over || tracked.values().all(|t| t.ended)
}

/// Ends one receiver's transfer with `outcome`, its progress at `done`.
fn end(
    sh: &Shared,
    id: TransferId,
    peer: PeerId,
    outcome: Outcome,
    meter: &Meter,
    size: u64,
    done: u64,
) {
    let mut p = Progress::new(1, size);
    p.start_file(0, size, 0);
    p.add(done);
    if done >= size {
        p.end_file(size, done);
    }
    let hint = "sending it again starts over";
    sh.finish(
        id,
        peer,
        Direction::Send,
        outcome,
        p.snapshot(sh.now()),
        meter,
        hint,
    );
}

// ---------------------------------------------------------------- receiver

/// Runs this node's part of a tree session once its user accepted the offer:
/// returns how the file ended (its copy then keeps serving its children in
/// the background until the coordinator releases it).
pub(super) async fn member(
    sh: Arc<Shared>,
    j: Joined,
    mut ctl: watch::Receiver<Ctl>,
    meter: &Meter,
    progress: &mut Progress,
) -> Outcome {
    *progress = Progress::new(1, j.size);
    progress.start_file(0, j.size, 0);
    let part = fs::part_path(&j.target);
    let file = {
        let p = part.clone();
        match tokio::task::spawn_blocking(move || fs::open_part(&p, 0)).await {
            Ok(Ok(f)) => Arc::new(f),
            Ok(Err(e)) => return Outcome::Failed(format!("cannot open {}: {e}", part.display())),
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    };
    let (input_tx, input) = mpsc::channel(INPUT_QUEUE);
    {
        let mut trees = sh.trees.lock();
        if trees.contains_key(&j.session) {
            return Outcome::Failed("this node is already in that relay tree".into());
        }
        trees.insert(j.session, input_tx.clone());
    }
    let (done_tx, mut done_rx) = oneshot::channel();
    let (bytes_tx, mut bytes_rx) = watch::channel(0u64);
    let (id, peer, size) = (j.id, j.peer, j.size);
    tokio::spawn(run_member(
        sh.clone(),
        j,
        part,
        file,
        input_tx.clone(),
        input,
        done_tx,
        bytes_tx,
    ));
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            res = &mut done_rx => {
                let outcome = res.unwrap_or_else(|_| Outcome::Failed("the relay tree session ended".into()));
                let done = *bytes_rx.borrow();
                let had = progress.done_bytes();
                if done > had {
                    progress.add(done - had);
                }
                if matches!(outcome, Outcome::Complete { .. }) {
                    progress.end_file(size, progress.file_done());
                }
                return outcome;
            }
            _ = bytes_rx.changed() => {
                let done = *bytes_rx.borrow_and_update();
                let had = progress.done_bytes();
                if done > had {
                    progress.add(done - had);
                }
                meter.done.store(done, Ordering::Relaxed);
                meter.transferred.store(done, Ordering::Relaxed);
            }
            _ = tick.tick() => {
                if let Some(snap) = progress.poll(sh.now()) {
                    sh.emit(progress_event(id, peer, Direction::Receive, &snap, None, false));
                }
            }
            () = async { let _ = ctl.wait_for(|c| c.cancelled).await; } => {
                let _ = input_tx.send(Input::Stop).await;
                return Outcome::Cancelled { by_peer: false };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_member(
    sh: Arc<Shared>,
    j: Joined,
    part: PathBuf,
    file: Arc<File>,
    input_tx: mpsc::Sender<Input>,
    mut input: mpsc::Receiver<Input>,
    done_tx: oneshot::Sender<Outcome>,
    bytes_tx: watch::Sender<u64>,
) {
    let mut done_tx = Some(done_tx);
    let mut wires = Wires::new(sh.clone(), j.session, input_tx, file.clone());
    wires.link(j.peer, j.stream.clone());
    let epoch = tokio::time::Instant::now();
    let mut m = member::State::new(Config::default(), j.peer);
    let mut geo: Option<Geometry> = None;
    let mut root = [0; 32];
    let mut stored: u64 = 0;
    let mut finish = |o: Outcome| {
        if let Some(tx) = done_tx.take() {
            let _ = tx.send(o);
        }
    };
    loop {
        let Ok(Some(i)) = tokio::time::timeout(IDLE, input.recv()).await else {
            finish(Outcome::Interrupted("the relay tree went quiet".into()));
            break;
        };
        let now = epoch.elapsed();
        let mut bytes = None;
        let ev = match i {
            Input::Link(peer, s) => {
                wires.link(peer, s);
                continue;
            }
            Input::DialFailed(peer) => InEvent::PeerLost(peer),
            Input::Frame(_, Frame::Peer { peer, addrs }) => {
                wires
                    .addrs
                    .insert(peer, addrs.into_iter().take(8).collect());
                continue;
            }
            Input::Frame(from, Frame::Msg(msg)) => {
                if let Message::Start {
                    size,
                    group,
                    root: r,
                    ..
                } = &msg
                    && from == j.peer
                {
                    match Geometry::new(*size, *group) {
                        Ok(g) if g.size() == j.size => {
                            geo = Some(g);
                            root = *r;
                        }
                        _ => {
                            finish(Outcome::Failed(
                                "the relay tree's file is not the one offered".into(),
                            ));
                            break;
                        }
                    }
                }
                InEvent::Message(from, msg)
            }
            Input::Group(from, index, buf) => {
                let Some(g) = geo.as_ref() else { continue };
                let digest = crate::proto::transfer::verified::group_digest(g, index, &buf)
                    .unwrap_or([0; 32]);
                bytes = Some(buf);
                InEvent::Received {
                    from,
                    index,
                    digest,
                }
            }
            Input::Closed(peer, no) => {
                if no != u64::MAX && !wires.closed(peer, no) {
                    continue;
                }
                InEvent::PeerLost(peer)
            }
            Input::Stored(index, Ok(())) => {
                if let Some(g) = geo.as_ref() {
                    stored += g.len_of(index);
                    bytes_tx.send_replace(stored);
                }
                sh.count_received(geo.map_or(0, |g| g.len_of(index)));
                InEvent::Stored { index }
            }
            Input::Stored(_, Err(e)) => {
                finish(Outcome::Failed(format!("writing {}: {e}", part.display())));
                break;
            }
            Input::Timer(t) => InEvent::Timer(t),
            Input::Stop => break,
        };
        let mut lost = Vec::new();
        let mut released = false;
        for o in m.handle(now, ev) {
            match o {
                OutEvent::Send(to, msg) => {
                    if !wires.send(to, Write::Frame(Frame::Msg(msg))) {
                        lost.push(to);
                    }
                }
                OutEvent::SendGroup { to, index } => {
                    let Some(g) = geo.as_ref() else { continue };
                    let r = g.range(index);
                    let w = Write::Group {
                        index,
                        start: r.start,
                        len: (r.end - r.start) as u32,
                    };
                    if !wires.send(to, w) {
                        lost.push(to);
                    }
                }
                OutEvent::Store { index } => {
                    let (Some(g), Some(buf)) = (geo.as_ref(), bytes.take()) else {
                        continue;
                    };
                    let pos = g.range(index).start;
                    let (file, input) = (file.clone(), wires.input.clone());
                    tokio::spawn(async move {
                        let res = tokio::task::spawn_blocking(move || file.write_all_at(&buf, pos))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                        let _ = input.send(Input::Stored(index, res)).await;
                    });
                }
                OutEvent::Discard { .. } => bytes = None,
                OutEvent::Disconnect(peer) => wires.disconnect(peer),
                OutEvent::ScheduleTimer(after, t) => schedule(&wires.input, after, t),
                OutEvent::Emit(e) => match e {
                    tree::Event::Complete => {
                        let outcome = place(&sh, &j, &part, &file, root).await;
                        finish(outcome);
                    }
                    tree::Event::Released => released = true,
                    tree::Event::Corrupt { from, index } => {
                        sh.emit(Event::Error {
                            message: format!(
                                "{} sent a corrupt {} in a relay tree: dropped, fetched elsewhere",
                                from.short(),
                                index.map_or("outline".to_string(), |i| format!("group {i}"))
                            ),
                        });
                    }
                    tree::Event::Failed(reason) => {
                        finish(Outcome::Failed(reason));
                        released = true;
                    }
                    _ => {}
                },
            }
        }
        for peer in lost {
            wires.disconnect(peer);
            let _ = wires.input.try_send(Input::Closed(peer, u64::MAX));
        }
        if released {
            break;
        }
    }
    sh.trees.lock().remove(&j.session);
}

/// The file is whole and verified: syncs it if asked, renames the `.part`
/// into place and says so, as a normal transfer does.
async fn place(
    sh: &Arc<Shared>,
    j: &Joined,
    part: &std::path::Path,
    file: &Arc<File>,
    root: [u8; 32],
) -> Outcome {
    let (part2, target, file, sync) = (
        part.to_path_buf(),
        j.target.clone(),
        file.clone(),
        sh.config.sync,
    );
    let placed = tokio::task::spawn_blocking(move || {
        if sync {
            file.sync_all()?;
        }
        fs::place(&part2, &target)
    })
    .await;
    match placed {
        Ok(Ok(path)) => {
            sh.count_file(Direction::Receive);
            sh.emit(Event::TransferDone {
                id: j.id,
                peer: j.peer,
                direction: Direction::Receive,
                path: path.display().to_string(),
                bytes: j.size,
                blake3: hex(&root),
            });
            Outcome::Complete { ok: 1, failed: 0 }
        }
        Ok(Err(e)) => Outcome::Failed(format!("cannot put the file in place: {e}")),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Entry points for the fuzz targets (not an API).
#[doc(hidden)]
pub mod fuzzing {
    use std::fmt::Debug;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::{Frame, MAX_GROUP, Message, Open};
    use crate::identity::PeerId;
    use crate::proto::transfer::tree::LostReason;
    use crate::proto::wire;

    /// Reads `bytes` as a member reads a session stream: the opening frame
    /// ([`super::incoming`]), then frame after frame ([`super::read_loop`]),
    /// the raw bytes of a group skipped by its length. The stream ends where
    /// a frame does not decode or is cut short, or at a group longer than
    /// `MAX_GROUP` (which the member resets). Every frame read must encode to
    /// bytes that decode to the same frame. Returns the frames read.
    pub fn stream(bytes: &[u8]) -> usize {
        let Ok(Some((open, mut at))) = wire::decode_frame::<Open>(bytes) else {
            return 0;
        };
        round_trip(&open);
        let mut frames = 0;
        while let Ok(Some((frame, used))) = wire::decode_frame::<Frame>(&bytes[at..]) {
            round_trip(&frame);
            frames += 1;
            at += used;
            if let Frame::Msg(Message::Group { len, .. }) = frame {
                if len as u64 > MAX_GROUP || len as usize > bytes.len() - at {
                    break;
                }
                at += len as usize;
            }
        }
        frames
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
        let mut buf = Vec::new();
        wire::encode_frame(v, &mut buf).expect("what decoded encodes");
        let back: T = wire::decode_exact_frame(&buf).expect("what encoded decodes");
        assert_eq!(&back, v, "decode∘encode changed the frame");
    }

    /// Real session streams, each as one input: a coordinator's offer and
    /// the frames a member gets, and a relay's stream with its groups.
    pub fn seeds() -> Vec<(String, Vec<u8>)> {
        let peer = PeerId::from_bytes([7; 32]);
        let mut offer = Vec::new();
        frame(&mut offer, &Open::Offer { session: 42 });
        for m in [
            Message::Start {
                size: 3 << 20,
                group: 1 << 20,
                root: [1; 32],
                stripes: 2,
            },
            Message::Attach {
                stripe: 1,
                parent: peer,
            },
            Message::Serve {
                stripe: 0,
                child: peer,
            },
            Message::Lost {
                stripe: 0,
                parent: peer,
                reason: LostReason::Gone,
            },
            Message::Release,
        ] {
            frame(&mut offer, &Frame::Msg(m));
        }
        frame(
            &mut offer,
            &Frame::Peer {
                peer,
                addrs: vec!["127.0.0.1:4000".parse().expect("addr")],
            },
        );
        let mut relay = Vec::new();
        frame(&mut relay, &Open::Join { session: 42 });
        frame(
            &mut relay,
            &Frame::Msg(Message::Subscribe {
                stripe: 0,
                outline: true,
                have: vec![0b101],
            }),
        );
        frame(
            &mut relay,
            &Frame::Msg(Message::Outline {
                first: 0,
                digests: vec![[2; 32], [3; 32]],
            }),
        );
        frame(&mut relay, &Frame::Msg(Message::Group { index: 0, len: 5 }));
        relay.extend_from_slice(b"12345");
        frame(&mut relay, &Frame::Msg(Message::Ack { index: 0 }));
        vec![("offer".into(), offer), ("relay".into(), relay)]
    }

    fn frame<T: Serialize>(out: &mut Vec<u8>, v: &T) {
        wire::encode_frame(v, out).expect("small");
    }
}
