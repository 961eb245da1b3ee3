//! The direct-messaging service: one task owns the [`messaging::State`] and
//! feeds it the node's real links, store and clock.
//!
//! - Incoming `Dm` frames arrive from the [`Router`] on a bounded queue
//!   ([`INBOX_CAPACITY`]); the task takes up to [`INBOX_BATCH`] at a time, stores
//!   their messages in one transaction (duplicates dropped by id), emits
//!   [`Event::MessageReceived`] for the new ones and only then acknowledges
//!   them all.
//! - [`Links::subscribe`] tells it when sessions come and go: on `Up` it flushes
//!   that peer's outbox (in order, a page of at most the window at a time) and
//!   the read receipts it owes; on `Down`, messages sent but not acknowledged go
//!   back to pending. At start, messages a previous run left `sent` are pending
//!   again (they are resent; the receiver drops what it already has).
//! - Writes await room in the peer's queue (backpressure). Messaging alone can
//!   never fill it (at most a window of deliveries and a window of acks are in
//!   flight each way, both below the queue's capacity), so two nodes bursting at
//!   each other cannot deadlock; a write that still waits [`SEND_STALL`] counts
//!   as failed and that peer's outbox pauses, then restarts from its oldest
//!   unacknowledged message.
//! - Peers it holds unacknowledged messages for are dialed (at their known
//!   addresses) when a message is sent and then with backoff
//!   ([`REDIAL_MIN`]..[`REDIAL_MAX`]) until a session is up; discovery,
//!   `--connect` and peers dialing us bring sessions up as well.
//!
//! Every status change is emitted as [`Event::MessageStatus`].
//!
//! **Local peers** (browser guests of the web UI, [`crate::net::guest`]) have
//! no session: they read and write through this node. Their messages take
//! the same store path and the same id generator, without the protocol: a
//! message to a local peer is stored and `delivered` at once (the peer reads
//! it from this node), a message from one is stored as received and emitted
//! like any other, it takes no read receipts, and the page showing our
//! messages marks them `read` ([`Handle::local_peer_read`]).
//!
//! The public API (send, history, conversations, read marks) is the
//! [`Node`](crate::Node) methods of `node/messages.rs`, which call the
//! [`Handle`] and the store.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::event::{Event, Trust};
use crate::identity::PeerId;
use crate::net::links::{LinkEvent, Links, Router};
use crate::net::timers::{Timers, sleep_until_opt};
use crate::proto::messaging::{
    self, Envelope, IdGen, InEvent, MAX_IDS_PER_FRAME, MessageId, MessageInfo, OutEvent, Queued,
    State, Status, Timer, check_text,
};
use crate::proto::wire;
use crate::store::{Store, now_ms};

/// Capacity of the router's queue of incoming direct-messaging frames.
pub const INBOX_CAPACITY: usize = 256;
/// Most incoming frames handled, and their messages stored, in one go.
pub const INBOX_BATCH: usize = 64;
/// Largest page of history [`Node::conversation`](crate::Node::conversation)
/// returns.
pub const MAX_HISTORY_PAGE: usize = 1000;
/// Commands waiting for the service, at most.
const COMMAND_CAPACITY: usize = 64;
/// A write that waits this long for room in a peer's queue has failed.
pub const SEND_STALL: Duration = Duration::from_secs(10);
/// How often the service looks for peers it holds messages for.
const REDIAL_CHECK: Duration = Duration::from_secs(2);
/// First wait before dialing a peer again after a failed dial.
pub const REDIAL_MIN: Duration = Duration::from_secs(2);
/// Longest wait between dials of a peer we hold messages for.
pub const REDIAL_MAX: Duration = Duration::from_secs(60);

/// Counters and bounds of the messaging service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessagingStats {
    /// The protocol's own counters (invalid frames, most in flight, ...).
    pub protocol: messaging::Stats,
    /// The configured bounds.
    pub window: usize,
    pub inbox_capacity: usize,
    pub inbox_batch: usize,
    /// Most outgoing messages loaded from the store at once.
    pub max_outbox_rows: usize,
    /// Most incoming frames handled in one batch.
    pub max_inbox_batch: usize,
    /// New messages stored.
    pub received: u64,
    /// Deliveries dropped because the message was already stored.
    pub duplicates: u64,
    /// Dials started to reach peers we hold messages for.
    pub dials: u64,
    /// Writes that stalled for [`SEND_STALL`].
    pub stalled_writes: u64,
}

enum Command {
    Send {
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
        reply: oneshot::Sender<Result<MessageInfo>>,
    },
    MarkRead {
        peer: PeerId,
        up_to: MessageId,
        local: bool,
        reply: oneshot::Sender<Result<usize>>,
    },
    /// A message to a local peer: stored and delivered at once.
    SendLocal {
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
        reply: oneshot::Sender<Result<MessageInfo>>,
    },
    /// A message a local peer wrote to us.
    ReceiveLocal {
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
        reply: oneshot::Sender<Result<MessageInfo>>,
    },
    /// A local peer read our messages up to `up_to`.
    LocalRead {
        peer: PeerId,
        up_to: MessageId,
        reply: oneshot::Sender<Result<usize>>,
    },
    Stats(oneshot::Sender<MessagingStats>),
}

/// The node's way to the service.
#[derive(Debug)]
pub(crate) struct Handle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Send { .. } => "Send",
            Self::MarkRead { .. } => "MarkRead",
            Self::SendLocal { .. } => "SendLocal",
            Self::ReceiveLocal { .. } => "ReceiveLocal",
            Self::LocalRead { .. } => "LocalRead",
            Self::Stats(_) => "Stats",
        })
    }
}

impl Handle {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Stores `text` for `peer` as pending and has the service deliver it
    /// (see [`Node::send_message`](crate::Node::send_message)).
    pub async fn send(
        &self,
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<MessageInfo> {
        check_text(&text)?;
        self.call(|reply| Command::Send {
            peer,
            text,
            reply_to,
            reply,
        })
        .await?
    }

    /// Marks messages from `peer` up to `up_to` read and queues the receipts
    /// (none for a `local` peer: it takes no receipts).
    pub async fn mark_read(&self, peer: PeerId, up_to: MessageId, local: bool) -> Result<usize> {
        self.call(|reply| Command::MarkRead {
            peer,
            up_to,
            local,
            reply,
        })
        .await?
    }

    /// Stores `text` for the local peer `peer`, delivered at once.
    pub async fn send_local(
        &self,
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<MessageInfo> {
        check_text(&text)?;
        self.call(|reply| Command::SendLocal {
            peer,
            text,
            reply_to,
            reply,
        })
        .await?
    }

    /// Stores `text` written to us by the local peer `peer` and announces it.
    pub async fn receive_local(
        &self,
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<MessageInfo> {
        check_text(&text)?;
        self.call(|reply| Command::ReceiveLocal {
            peer,
            text,
            reply_to,
            reply,
        })
        .await?
    }

    /// The local peer `peer` has seen our messages up to `up_to`: they are
    /// `read`. Returns how many changed.
    pub async fn local_peer_read(&self, peer: PeerId, up_to: MessageId) -> Result<usize> {
        self.call(|reply| Command::LocalRead { peer, up_to, reply })
            .await?
    }

    pub async fn stats(&self) -> Result<MessagingStats> {
        self.call(Command::Stats).await
    }
}

/// The service, wired to the router and the links but not running yet.
pub(crate) struct Prepared {
    me: PeerId,
    inbox: mpsc::Receiver<(PeerId, messaging::Message)>,
    commands: mpsc::Receiver<Command>,
    link_events: broadcast::Receiver<LinkEvent>,
    events: broadcast::Sender<Event>,
}

/// Sets up the service's channels: the router's queue for `Dm` frames and a
/// subscription to `links` taken now, so no session that comes up before the
/// task runs is missed.
pub(crate) fn prepare(
    router: &mut Router,
    links: &Links,
    me: PeerId,
    events: broadcast::Sender<Event>,
) -> (Handle, Prepared) {
    let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
    router.dm = Some(inbox_tx);
    let (cmd_tx, commands) = mpsc::channel(COMMAND_CAPACITY);
    let handle = Handle { commands: cmd_tx };
    let prepared = Prepared {
        me,
        inbox,
        commands,
        link_events: links.subscribe(),
        events,
    };
    (handle, prepared)
}

impl Prepared {
    /// Spawns the service task (it ends when the node drops its handle).
    pub(crate) fn spawn(self, store: Arc<Store>, links: Arc<Links>) -> JoinHandle<()> {
        let config = messaging::Config::default();
        let (dial_tx, dial_rx) = mpsc::channel(64);
        let stats = MessagingStats {
            window: config.window,
            inbox_capacity: INBOX_CAPACITY,
            inbox_batch: INBOX_BATCH,
            ..MessagingStats::default()
        };
        let service = Service {
            me: self.me,
            state: State::new(config),
            store,
            links,
            events: self.events,
            ids: IdGen::default(),
            rng: ChaCha8Rng::from_seed(rand::random()),
            start: Instant::now(),
            timers: Timers::default(),
            broken: HashSet::new(),
            to_store: Vec::new(),
            redial: BTreeMap::new(),
            dial_tx,
            stats,
        };
        tokio::spawn(service.run(self.inbox, self.commands, self.link_events, dial_rx))
    }
}

/// Dialing a peer we hold messages for.
#[derive(Debug)]
struct Redial {
    dialing: bool,
    next: Instant,
    backoff: Duration,
}

struct Service {
    me: PeerId,
    state: State,
    store: Arc<Store>,
    links: Arc<Links>,
    events: broadcast::Sender<Event>,
    ids: IdGen,
    rng: ChaCha8Rng,
    start: Instant,
    timers: Timers<Timer>,
    /// Sessions a write to stalled on: nothing more is written to them until
    /// the protocol resumes them, so no later message overtakes the lost one.
    broken: HashSet<(PeerId, u64)>,
    /// Messages received in the current batch, waiting to be stored.
    to_store: Vec<(PeerId, Envelope)>,
    redial: BTreeMap<PeerId, Redial>,
    dial_tx: mpsc::Sender<(PeerId, std::result::Result<(), String>)>,
    stats: MessagingStats,
}

impl Service {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<(PeerId, messaging::Message)>,
        mut commands: mpsc::Receiver<Command>,
        mut link_events: broadcast::Receiver<LinkEvent>,
        mut dial_rx: mpsc::Receiver<(PeerId, std::result::Result<(), String>)>,
    ) {
        match self.store.requeue_sent_messages() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(n, "messages left sent by the last run are pending again"),
            Err(e) => self.fail(format!("cannot requeue sent messages: {e}")),
        }
        match self.store.last_outgoing_message_id() {
            Ok(last) => self.ids = IdGen::new(last),
            Err(e) => self.fail(format!("cannot read the last message id: {e}")),
        }
        self.resync().await;
        let mut redial_tick = tokio::time::interval(REDIAL_CHECK);
        loop {
            let next_timer = self.timers.next_deadline();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => return,
                },
                Some(first) = inbox.recv() => self.on_inbox(first, &mut inbox).await,
                ev = link_events.recv() => match ev {
                    Ok(LinkEvent::Up { peer, session }) => {
                        self.redial.remove(&peer);
                        self.feed(InEvent::LinkUp { peer, session }).await;
                    }
                    Ok(LinkEvent::Down { peer, session }) => {
                        self.broken.remove(&(peer, session));
                        self.feed(InEvent::LinkDown { peer, session }).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resync().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some((peer, res)) = dial_rx.recv() => self.on_dialed(peer, res),
                _ = redial_tick.tick() => self.redial_waiting_peers(),
                _ = sleep_until_opt(next_timer) => self.fire_timers().await,
            }
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn fail(&self, message: String) {
        tracing::warn!("{message}");
        self.emit(Event::Error { message });
    }

    /// Brings the protocol's view of sessions in line with the links (at start,
    /// and after missing link events).
    async fn resync(&mut self) {
        for (peer, session) in self.state.links() {
            if self.links.get(&peer).is_none_or(|l| l.session != session) {
                self.feed(InEvent::LinkDown { peer, session }).await;
            }
        }
        for peer in self.links.connected() {
            if let Some(link) = self.links.get(&peer) {
                let session = link.session;
                self.feed(InEvent::LinkUp { peer, session }).await;
            }
        }
    }

    /// Runs one input through the protocol and carries out everything it asks
    /// for, feeding back answers (outbox pages, failed writes) until it is quiet.
    async fn feed(&mut self, first: InEvent) {
        let mut queue = VecDeque::from([first]);
        let mut out = Vec::new();
        while let Some(ev) = queue.pop_front() {
            self.state.handle(self.start.elapsed(), ev, &mut out);
            for o in std::mem::take(&mut out) {
                match o {
                    OutEvent::Send {
                        peer,
                        session,
                        message,
                    } => {
                        if let Some(failed) = self.send(peer, session, message).await {
                            queue.push_back(failed);
                        }
                    }
                    OutEvent::LoadOutbox {
                        peer,
                        load,
                        after,
                        limit,
                    } => {
                        let rows = match self.store.outbox_page(&peer, after, limit) {
                            Ok(rows) => rows,
                            Err(e) => {
                                self.fail(format!("cannot read the outbox: {e}"));
                                Vec::new()
                            }
                        };
                        self.stats.max_outbox_rows = self.stats.max_outbox_rows.max(rows.len());
                        queue.push_back(InEvent::OutboxPage { peer, load, rows });
                    }
                    OutEvent::SetStatus { peer, ids, status } => {
                        self.set_status(peer, &ids, status)
                    }
                    OutEvent::Store { peer, envelope } => self.to_store.push((peer, envelope)),
                    OutEvent::FlushReceipts { peer, session } => {
                        self.flush_receipts(peer, session).await
                    }
                    OutEvent::ScheduleTimer(delay, t) => {
                        self.timers.insert(Instant::now() + delay, t);
                    }
                    OutEvent::Invalid { peer, reason } => {
                        tracing::debug!(%peer, %reason, "dropping an invalid direct message frame");
                    }
                }
            }
        }
    }

    /// Writes one frame to `peer` (on `session` only, if given). Returns the
    /// protocol input to feed if the write stalled.
    async fn send(
        &mut self,
        peer: PeerId,
        session: Option<u64>,
        message: messaging::Message,
    ) -> Option<InEvent> {
        let link = self.links.get(&peer)?;
        if session.is_some_and(|s| s != link.session) || self.broken.contains(&(peer, link.session))
        {
            return None; // the session it was meant for is gone or paused
        }
        let frame = wire::Message::Dm(message);
        match tokio::time::timeout(SEND_STALL, link.control.send(Box::new(frame))).await {
            Ok(_) => None, // a closed queue means the session is ending: `Down` follows
            Err(_) => {
                self.stats.stalled_writes += 1;
                self.broken.insert((peer, link.session));
                Some(InEvent::SendFailed {
                    peer,
                    session: link.session,
                })
            }
        }
    }

    fn set_status(&mut self, peer: PeerId, ids: &[MessageId], status: Status) {
        match self.store.set_outgoing_status(&peer, ids, status) {
            Ok(changed) => {
                for id in changed {
                    self.emit(Event::MessageStatus { id, peer, status });
                }
            }
            Err(e) => self.fail(format!("cannot record message status {status}: {e}")),
        }
    }

    /// Sends the read receipts owed to `peer`, a frame at a time.
    async fn flush_receipts(&mut self, peer: PeerId, session: u64) {
        loop {
            let owed = match self.store.owed_receipts(&peer, MAX_IDS_PER_FRAME) {
                Ok(o) if !o.is_empty() => o,
                Ok(_) => return,
                Err(e) => return self.fail(format!("cannot read owed receipts: {e}")),
            };
            let Some(link) = self.links.get(&peer).filter(|l| l.session == session) else {
                return;
            };
            let ids = owed.iter().map(|(_, id)| *id).collect();
            let frame = wire::Message::Dm(messaging::Message::Read { ids });
            if !matches!(
                tokio::time::timeout(SEND_STALL, link.control.send(Box::new(frame))).await,
                Ok(Ok(()))
            ) {
                return; // still owed; sent on the next session
            }
            let seqs: Vec<u64> = owed.iter().map(|(seq, _)| *seq).collect();
            if let Err(e) = self.store.clear_receipts(&seqs) {
                return self.fail(format!("cannot record sent receipts: {e}"));
            }
        }
    }

    async fn on_inbox(
        &mut self,
        first: (PeerId, messaging::Message),
        inbox: &mut mpsc::Receiver<(PeerId, messaging::Message)>,
    ) {
        let mut batch = vec![first];
        while batch.len() < INBOX_BATCH {
            match inbox.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        self.stats.max_inbox_batch = self.stats.max_inbox_batch.max(batch.len());
        for (peer, message) in batch {
            self.feed(InEvent::Received { peer, message }).await;
        }
        self.store_received().await;
    }

    /// Stores the batch's messages in one transaction, announces the new ones,
    /// then acknowledges all of them (duplicates too: their first ack was lost).
    async fn store_received(&mut self) {
        if self.to_store.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.to_store);
        let fresh = match self.store.insert_incoming(&items, now_ms()) {
            Ok(f) => f,
            Err(e) => {
                // Not acknowledged: the sender keeps them and sends them again.
                return self.fail(format!("cannot store received messages: {e}"));
            }
        };
        let mut acks: Vec<(PeerId, Vec<MessageId>)> = Vec::new();
        for ((peer, e), new) in items.into_iter().zip(fresh) {
            match acks.last_mut() {
                Some((p, ids)) if *p == peer => ids.push(e.id),
                _ => acks.push((peer, vec![e.id])),
            }
            if !new {
                self.stats.duplicates += 1;
                continue;
            }
            self.announce_received(peer, e);
        }
        for (peer, ids) in acks {
            self.feed(InEvent::Stored { peer, ids }).await;
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send {
                peer,
                text,
                reply_to,
                reply,
            } => {
                let queued = match self.queue_message(peer, text, reply_to) {
                    Ok(q) => q,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let e = &queued.envelope;
                let _ = reply.send(Ok(MessageInfo {
                    id: e.id,
                    from: self.me,
                    to: peer,
                    outgoing: true,
                    sent_ms: e.sent_ms,
                    text: e.text.clone(),
                    reply_to: e.reply_to,
                    status: Status::Pending,
                }));
                self.feed(InEvent::Queued {
                    peer,
                    message: queued,
                })
                .await;
                if !self.links.is_connected(&peer) {
                    self.dial(peer);
                }
            }
            Command::MarkRead {
                peer,
                up_to,
                local,
                reply,
            } => {
                let res = match self.store.mark_incoming_read(&peer, &up_to) {
                    Ok(Some(n)) => Ok(n),
                    Ok(None) => Err(messaging::Error::UnknownMessage(up_to, peer.short()).into()),
                    Err(e) => Err(e.into()),
                };
                let changed = matches!(res, Ok(n) if n > 0);
                let _ = reply.send(res);
                if local {
                    // A local peer takes no receipts: none is kept owed.
                    self.drop_receipts(peer);
                } else if changed && let Some(link) = self.links.get(&peer) {
                    self.flush_receipts(peer, link.session).await;
                }
            }
            Command::SendLocal {
                peer,
                text,
                reply_to,
                reply,
            } => {
                let res = self.queue_message(peer, text, reply_to).map(|q| {
                    self.set_status(peer, &[q.envelope.id], Status::Delivered);
                    let e = q.envelope;
                    MessageInfo {
                        id: e.id,
                        from: self.me,
                        to: peer,
                        outgoing: true,
                        sent_ms: e.sent_ms,
                        text: e.text,
                        reply_to: e.reply_to,
                        status: Status::Delivered,
                    }
                });
                let _ = reply.send(res);
            }
            Command::ReceiveLocal {
                peer,
                text,
                reply_to,
                reply,
            } => {
                let _ = reply.send(self.receive_local(peer, text, reply_to));
            }
            Command::LocalRead { peer, up_to, reply } => {
                let _ = reply.send(self.local_read(peer, up_to));
            }
            Command::Stats(reply) => {
                let mut s = self.stats.clone();
                s.protocol = self.state.stats().clone();
                let _ = reply.send(s);
            }
        }
    }

    /// Checks and stores a new outgoing message as pending.
    fn queue_message(
        &mut self,
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<Queued> {
        check_text(&text)?;
        if peer == self.me {
            return Err(messaging::Error::ToSelf.into());
        }
        if self.store.trust(&peer)? == Trust::Blocked {
            return Err(messaging::Error::Blocked(peer.short()).into());
        }
        let now = now_ms();
        let envelope = Envelope {
            id: self.ids.next(now, &mut self.rng),
            sent_ms: now,
            text,
            reply_to,
        };
        let seq = self.store.insert_outgoing(&peer, &envelope, now)?;
        Ok(Queued { seq, envelope })
    }

    /// Stores a message the local peer `peer` wrote, with an id of ours, and
    /// announces it.
    fn receive_local(
        &mut self,
        peer: PeerId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<MessageInfo> {
        check_text(&text)?;
        let now = now_ms();
        let e = Envelope {
            id: self.ids.next(now, &mut self.rng),
            sent_ms: now,
            text,
            reply_to,
        };
        self.store.insert_incoming(&[(peer, e.clone())], now)?;
        Ok(self.announce_received(peer, e))
    }

    /// Counts and announces a message from `peer` that was just stored (a
    /// peer's, or a local peer's).
    fn announce_received(&mut self, peer: PeerId, e: Envelope) -> MessageInfo {
        self.stats.received += 1;
        let message = MessageInfo {
            id: e.id,
            from: peer,
            to: self.me,
            outgoing: false,
            sent_ms: e.sent_ms,
            text: e.text,
            reply_to: e.reply_to,
            status: Status::Delivered,
        };
        self.emit(Event::MessageReceived {
            message: message.clone(),
        });
        message
    }

    /// Marks our messages to the local peer `peer`, up to `up_to`, read.
    fn local_read(&mut self, peer: PeerId, up_to: MessageId) -> Result<usize> {
        let page = self
            .store
            .conversation(&self.me, &peer, None, MAX_HISTORY_PAGE)?
            .unwrap_or_default();
        let Some(end) = page.iter().position(|m| m.id == up_to) else {
            return Err(messaging::Error::UnknownMessage(up_to, peer.short()).into());
        };
        let ids: Vec<MessageId> = page[..=end]
            .iter()
            .filter(|m| m.outgoing && m.status < Status::Read)
            .map(|m| m.id)
            .collect();
        let changed = self.store.set_outgoing_status(&peer, &ids, Status::Read)?;
        for id in &changed {
            self.emit(Event::MessageStatus {
                id: *id,
                peer,
                status: Status::Read,
            });
        }
        Ok(changed.len())
    }

    /// Forgets the read receipts owed to `peer` (a local peer takes none).
    fn drop_receipts(&mut self, peer: PeerId) {
        let owed = match self.store.owed_receipts(&peer, usize::MAX >> 1) {
            Ok(o) => o,
            Err(e) => return self.fail(format!("cannot read owed receipts: {e}")),
        };
        let seqs: Vec<u64> = owed.into_iter().map(|(seq, _)| seq).collect();
        if let Err(e) = self.store.clear_receipts(&seqs) {
            self.fail(format!("cannot clear receipts: {e}"));
        }
    }

    /// Dials `peer` in the background unless a dial is running or backing off.
    fn dial(&mut self, peer: PeerId) {
        let now = Instant::now();
        let r = self.redial.entry(peer).or_insert(Redial {
            dialing: false,
            next: now,
            backoff: REDIAL_MIN,
        });
        if r.dialing || r.next > now {
            return;
        }
        r.dialing = true;
        self.stats.dials += 1;
        let links = self.links.clone();
        let done = self.dial_tx.clone();
        tokio::spawn(async move {
            let res = links.dial(peer, Vec::new()).await;
            let _ = done.send((peer, res)).await;
        });
    }

    fn on_dialed(&mut self, peer: PeerId, res: std::result::Result<(), String>) {
        let Some(r) = self.redial.get_mut(&peer) else {
            return;
        };
        r.dialing = false;
        match res {
            Ok(()) => {
                self.redial.remove(&peer);
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot reach a peer we hold messages for");
                r.next = Instant::now() + r.backoff;
                r.backoff = (r.backoff * 2).min(REDIAL_MAX);
            }
        }
    }

    /// Dials the peers we hold unacknowledged messages for that are not connected.
    fn redial_waiting_peers(&mut self) {
        let peers = match self.store.peers_with_unacked_messages(256) {
            Ok(p) => p,
            Err(e) => return self.fail(format!("cannot read the outbox: {e}")),
        };
        for peer in peers {
            if !self.links.is_connected(&peer) {
                self.dial(peer);
            }
        }
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.timers.pop_due(now) {
            let Timer::Resume { peer, session } = &t;
            self.broken.remove(&(*peer, *session));
            self.feed(InEvent::Timer(t)).await;
        }
    }
}
