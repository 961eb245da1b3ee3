//! Direct messages between two peers: ids, the message model, the wire messages
//! and the outbox rules, as a sans-IO state machine.
//!
//! # Model
//!
//! A message has a [`MessageId`] (128 bits, ULID layout: 48 bits of Unix time in
//! milliseconds, then 80 bits of randomness; ids from one node only ever grow,
//! see [`IdGen`]), a sender and a receiver, the sender's wall-clock time, UTF-8
//! text of at most [`MAX_TEXT_LEN`] bytes and an optional reply-to id. Its
//! [`Status`] on the sender's side moves `pending → sent → delivered → read`;
//! the only step back is `sent → pending`, when the session it was sent on ends
//! before the receiver acknowledged it.
//!
//! # Protocol
//!
//! The session's control stream is reliable and ordered while it lives, and
//! that is all the rules below assume:
//!
//! - **Outbox.** Every outgoing message is stored as `pending` before anything
//!   else happens. While a session to its peer is up, pending messages leave in
//!   the order they were stored (the store's sequence number), at most
//!   [`Config::window`] unacknowledged at a time; the driver loads them from the
//!   store a page at a time ([`OutEvent::LoadOutbox`]), so a burst of any size
//!   never sits in memory.
//! - **Exactly once.** The receiver stores a [`Message::Deliver`] (dropping a
//!   duplicate by its id), and only then answers [`Message::Ack`]. An ack makes
//!   the message `delivered`. When a session ends, everything sent on it but not
//!   acknowledged goes back to `pending` and is sent again, in order, on the next
//!   session; the receiver's dedup turns "at least once" into "exactly once".
//! - **Order.** Resending always restarts from the oldest unacknowledged
//!   message, and a frame is only ever written to the session it was meant for
//!   ([`OutEvent::Send::session`]), so the receiver stores a peer's messages in
//!   the order they were sent.
//! - **Read receipts.** [`Message::Read`] tells the sender the receiving user
//!   has seen some of its messages. Receipts owed while the peer is away are
//!   kept by the driver and flushed on the next session
//!   ([`OutEvent::FlushReceipts`]).
//!
//! Bad input from the peer (oversize text, too many ids in one frame) is dropped,
//! counted in [`Stats::invalid`] and reported as [`OutEvent::Invalid`]; the
//! session goes on.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::identity::PeerId;

/// Largest message text, in bytes of UTF-8 (64 KiB).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Most ids one [`Message::Ack`] or [`Message::Read`] may carry.
pub const MAX_IDS_PER_FRAME: usize = 256;

/// Why a message cannot be sent (checked before anything is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message text is {len} bytes; the limit is {max} bytes (64 KiB)")]
    TooLong { len: usize, max: usize },
    #[error("cannot send a message to yourself")]
    ToSelf,
    #[error("peer {0} is blocked; unblock it to exchange messages")]
    Blocked(String),
    #[error("no message {0} in the conversation with {1}")]
    UnknownMessage(MessageId, String),
    #[error("browser guest {0} has left; it cannot receive messages")]
    GuestLeft(String),
}

/// Checks `text` against [`MAX_TEXT_LEN`].
pub fn check_text(text: &str) -> Result<(), Error> {
    if text.len() > MAX_TEXT_LEN {
        return Err(Error::TooLong {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    Ok(())
}

/// A message id: time-ordered, unique, 128 bits (ULID layout).
///
/// Serialized as 16 big-endian bytes in binary formats and as its 26-character
/// Crockford base32 text (upper case, sorts like the id) in human-readable ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(u128);

const RANDOM_BITS: u32 = 80;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of the text form.
pub const MESSAGE_ID_TEXT_LEN: usize = 26;

impl MessageId {
    /// The id made of a millisecond timestamp (low 48 bits used) and 80 random bits.
    pub fn from_parts(ms: u64, random: u128) -> Self {
        let ms = u128::from(ms & ((1 << 48) - 1));
        Self((ms << RANDOM_BITS) | (random & ((1 << RANDOM_BITS) - 1)))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The creation time the id carries (ms since the Unix epoch).
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> RANDOM_BITS) as u64
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; MESSAGE_ID_TEXT_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (MESSAGE_ID_TEXT_LEN - 1 - i);
            *c = CROCKFORD[((self.0 >> shift) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&out).expect("ascii"))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Why a string is not a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMessageIdError {
    #[error("a message id has {MESSAGE_ID_TEXT_LEN} characters, this one has {0}")]
    Length(usize),
    #[error("a message id uses Crockford base32 (0-9, A-Z without I, L, O, U), found {0:?}")]
    Character(char),
    #[error("message id is out of range (first character must be 0-7)")]
    Overflow,
}

impl FromStr for MessageId {
    type Err = ParseMessageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != MESSAGE_ID_TEXT_LEN || !s.is_ascii() {
            return Err(ParseMessageIdError::Length(s.chars().count()));
        }
        let mut v: u128 = 0;
        for (i, c) in s.chars().enumerate() {
            let upper = c.to_ascii_uppercase() as u8;
            let digit = CROCKFORD
                .iter()
                .position(|&a| a == upper)
                .ok_or(ParseMessageIdError::Character(c))? as u128;
            if i == 0 && digit > 7 {
                return Err(ParseMessageIdError::Overflow);
            }
            v = (v << 5) | digit;
        }
        Ok(Self(v))
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.to_bytes().serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 16]>::deserialize(d).map(Self::from_bytes)
        }
    }
}

/// Makes this node's message ids: time-ordered, and strictly increasing even
/// when several are made in one millisecond or the wall clock steps back (then
/// the next id is the last one plus one, as ULID's monotonic mode does).
#[derive(Debug, Clone, Default)]
pub struct IdGen {
    last: Option<MessageId>,
}

impl IdGen {
    /// A generator continuing after `last` (the newest id this node made before,
    /// e.g. read back from the store after a restart).
    pub fn new(last: Option<MessageId>) -> Self {
        Self { last }
    }

    pub fn next(&mut self, now_ms: u64, rng: &mut impl RngCore) -> MessageId {
        let mut random = [0u8; 16];
        rng.fill_bytes(&mut random[6..]);
        let fresh = MessageId::from_parts(now_ms, u128::from_be_bytes(random));
        let id = match self.last {
            Some(last) if fresh <= last => MessageId(last.0.wrapping_add(1)),
            _ => fresh,
        };
        self.last = Some(id);
        id
    }
}

/// Where an outgoing message is (an incoming one is `Delivered` until the user
/// reads it, then `Read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stored, waiting for a session to the peer.
    Pending,
    /// Written to a session; no acknowledgement yet.
    Sent,
    /// The receiver has stored it.
    Delivered,
    /// The receiving user has seen it.
    Read,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Pending,
            1 => Self::Sent,
            2 => Self::Delivered,
            3 => Self::Read,
            _ => return None,
        })
    }

    /// The statuses a message may move to `self` from: forward only, except that
    /// an unacknowledged `Sent` goes back to `Pending`. The store applies updates
    /// only to rows in one of these.
    pub fn allowed_from(self) -> &'static [Status] {
        match self {
            Self::Pending => &[Self::Sent],
            Self::Sent => &[Self::Pending],
            Self::Delivered => &[Self::Pending, Self::Sent],
            Self::Read => &[Self::Pending, Self::Sent, Self::Delivered],
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message as it travels: the sender and receiver are the two ends of the
/// authenticated session it arrives on, so they are not repeated here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MessageId,
    /// The sender's wall clock when the user sent it (ms since the Unix epoch).
    pub sent_ms: u64,
    pub text: String,
    pub reply_to: Option<MessageId>,
}

/// Direct-messaging frames on a session's control stream (`wire::Message::Dm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A message for the receiver to store and acknowledge.
    Deliver(Envelope),
    /// These messages are stored on the receiver's side.
    Ack { ids: Vec<MessageId> },
    /// The receiving user has seen these messages.
    Read { ids: Vec<MessageId> },
}

/// A message as front ends show it (history, events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    pub id: MessageId,
    pub from: PeerId,
    pub to: PeerId,
    /// Whether this node sent it.
    pub outgoing: bool,
    /// The sender's wall clock when it was sent (ms since the Unix epoch).
    pub sent_ms: u64,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reply_to: Option<MessageId>,
    pub status: Status,
}

impl MessageInfo {
    /// The other side of the conversation.
    pub fn peer(&self) -> PeerId {
        if self.outgoing { self.to } else { self.from }
    }
}

/// One conversation in the list of conversations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub peer: PeerId,
    /// The peer's device name as last seen ("" if never seen).
    pub name: String,
    pub last: MessageInfo,
    /// Incoming messages not marked read yet.
    pub unread: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Most messages sent to one peer and not yet acknowledged. Also the largest
    /// page of the outbox the driver is asked to load.
    pub window: usize,
    /// After a write to a session fails, wait this long before sending to that
    /// peer again on the same session.
    pub resume_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: 64,
            resume_after: Duration::from_secs(5),
        }
    }
}

/// Counters a user or test can read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Frames dropped as invalid (oversize text, too many ids).
    pub invalid: u64,
    /// Acks for messages not in flight (normal after a resend).
    pub acks_unmatched: u64,
    /// Most messages in flight to one peer at once, ever.
    pub max_in_flight: usize,
    /// Largest outbox page requested.
    pub max_page: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Start sending to `peer` again after a failed write on `session`.
    Resume { peer: PeerId, session: u64 },
}

/// A pending message loaded from the store: its sequence number there (the
/// order of the outbox) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub envelope: Envelope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InEvent {
    /// A session to `peer` is up.
    LinkUp {
        peer: PeerId,
        session: u64,
    },
    /// The session is gone.
    LinkDown {
        peer: PeerId,
        session: u64,
    },
    /// A new outgoing message was stored as pending.
    Queued {
        peer: PeerId,
        message: Queued,
    },
    /// The answer to [`OutEvent::LoadOutbox`] number `load`: pending messages
    /// after `after`, oldest first, at most the `limit` asked for.
    OutboxPage {
        peer: PeerId,
        load: u64,
        rows: Vec<Queued>,
    },
    /// A frame from `peer`.
    Received {
        peer: PeerId,
        message: Message,
    },
    /// The driver stored (or already had) these messages from `peer`.
    Stored {
        peer: PeerId,
        ids: Vec<MessageId>,
    },
    /// Writing to `session` failed or stalled.
    SendFailed {
        peer: PeerId,
        session: u64,
    },
    Timer(Timer),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent {
    /// Write `message` to `peer`: on `session` only (if it is no longer the
    /// peer's session, drop it), or on whatever session is up for `None`.
    Send {
        peer: PeerId,
        session: Option<u64>,
        message: Message,
    },
    /// Load up to `limit` pending outgoing messages to `peer` with a sequence
    /// number above `after`, oldest first; answer with [`InEvent::OutboxPage`]
    /// carrying the same `load` number.
    LoadOutbox {
        peer: PeerId,
        load: u64,
        after: Option<u64>,
        limit: usize,
    },
    /// Move these outgoing messages to `peer` to `status` (where
    /// [`Status::allowed_from`] allows it) and tell the user.
    SetStatus {
        peer: PeerId,
        ids: Vec<MessageId>,
        status: Status,
    },
    /// Store this message from `peer` unless it is already stored; then answer
    /// [`InEvent::Stored`] (duplicates included: they are acknowledged again).
    Store {
        peer: PeerId,
        envelope: Envelope,
    },
    /// Send the read receipts owed to `peer`.
    FlushReceipts {
        peer: PeerId,
        session: u64,
    },
    ScheduleTimer(Duration, Timer),
    /// `peer` sent something invalid (dropped and counted).
    Invalid {
        peer: PeerId,
        reason: String,
    },
}

/// The outbox of one connected peer.
#[derive(Debug)]
struct Outbox {
    session: u64,
    /// Sent on this session, not acknowledged: (store sequence, id), oldest first.
    in_flight: VecDeque<(u64, MessageId)>,
    /// The newest sequence number handed to this session.
    cursor: Option<u64>,
    /// The outstanding page load: its number and how many rows it asked for.
    /// Answers to any other load are stale and ignored.
    loading: Option<(u64, usize)>,
    /// The store may hold pending messages after `cursor`.
    more: bool,
    /// A write failed; nothing is sent until the resume timer.
    stalled: bool,
    /// A message was queued while a page load was outstanding: the page may
    /// predate it, so a short page does not prove the outbox empty.
    queued_while_loading: bool,
}

impl Outbox {
    fn new(session: u64) -> Self {
        Self {
            session,
            in_flight: VecDeque::new(),
            cursor: None,
            loading: None,
            more: true,
            stalled: false,
            queued_while_loading: false,
        }
    }
}

/// The messaging state of one node: the outboxes of its connected peers.
#[derive(Debug)]
pub struct State {
    config: Config,
    outboxes: BTreeMap<PeerId, Outbox>,
    next_load: u64,
    stats: Stats,
}

impl State {
    pub fn new(config: Config) -> Self {
        assert!(config.window > 0, "messaging window must be at least 1");
        Self {
            config,
            outboxes: BTreeMap::new(),
            next_load: 0,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The peers this state believes connected, with their sessions.
    pub fn links(&self) -> Vec<(PeerId, u64)> {
        self.outboxes.iter().map(|(p, o)| (*p, o.session)).collect()
    }

    /// Messages in flight to `peer` right now.
    pub fn in_flight(&self, peer: &PeerId) -> usize {
        self.outboxes.get(peer).map_or(0, |o| o.in_flight.len())
    }

    /// Handles one input; outputs are appended to `out` in the order the driver
    /// must carry them out.
    pub fn handle(&mut self, _now: Duration, event: InEvent, out: &mut Vec<OutEvent>) {
        match event {
            InEvent::LinkUp { peer, session } => self.on_link_up(peer, session, out),
            InEvent::LinkDown { peer, session } => self.on_link_down(peer, session, out),
            InEvent::Queued { peer, message } => self.on_queued(peer, message, out),
            InEvent::OutboxPage { peer, load, rows } => self.on_outbox_page(peer, load, rows, out),
            InEvent::Received { peer, message } => match message {
                Message::Deliver(envelope) => self.on_deliver(peer, envelope, out),
                Message::Ack { ids } => self.on_ack(peer, ids, out),
                Message::Read { ids } => self.on_read(peer, ids, out),
            },
            InEvent::Stored { peer, ids } => self.send_acks(peer, ids, out),
            InEvent::SendFailed { peer, session } => self.on_send_failed(peer, session, out),
            InEvent::Timer(Timer::Resume { peer, session }) => self.on_resume(peer, session, out),
        }
    }

    fn on_link_up(&mut self, peer: PeerId, session: u64, out: &mut Vec<OutEvent>) {
        if let Some(o) = self.outboxes.get(&peer) {
            if o.session == session {
                return;
            }
            // We missed the old session's end: it is void all the same.
            let old = o.session;
            self.on_link_down(peer, old, out);
        }
        self.outboxes.insert(peer, Outbox::new(session));
        out.push(OutEvent::FlushReceipts { peer, session });
        self.load_more(peer, out);
    }

    fn on_link_down(&mut self, peer: PeerId, session: u64, out: &mut Vec<OutEvent>) {
        if self
            .outboxes
            .get(&peer)
            .is_none_or(|o| o.session != session)
        {
            return;
        }
        if let Some(mut o) = self.outboxes.remove(&peer) {
            requeue(peer, &mut o, out);
        }
    }

    fn on_queued(&mut self, peer: PeerId, message: Queued, out: &mut Vec<OutEvent>) {
        let window = self.config.window;
        let Some(o) = self.outboxes.get_mut(&peer) else {
            return; // sent when a session comes up
        };
        let caught_up = !o.more && o.loading.is_none() && !o.stalled;
        if caught_up && o.in_flight.len() < window && o.cursor.is_none_or(|c| message.seq > c) {
            let session = o.session;
            self.send_deliver(peer, session, vec![message], out);
        } else {
            o.more = true;
            o.queued_while_loading |= o.loading.is_some();
            self.load_more(peer, out);
        }
    }

    /// Asks the driver for the next page of the outbox if there is room.
    fn load_more(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) {
        let window = self.config.window;
        let Some(o) = self.outboxes.get_mut(&peer) else {
            return;
        };
        if o.loading.is_some() || !o.more || o.stalled || o.in_flight.len() >= window {
            return;
        }
        let limit = window - o.in_flight.len();
        self.next_load += 1;
        let load = self.next_load;
        o.loading = Some((load, limit));
        self.stats.max_page = self.stats.max_page.max(limit);
        out.push(OutEvent::LoadOutbox {
            peer,
            load,
            after: o.cursor,
            limit,
        });
    }

    fn on_outbox_page(
        &mut self,
        peer: PeerId,
        load: u64,
        rows: Vec<Queued>,
        out: &mut Vec<OutEvent>,
    ) {
        let Some(o) = self.outboxes.get_mut(&peer) else {
            return;
        };
        let Some((_, limit)) = o.loading.filter(|(l, _)| *l == load) else {
            return; // stale: asked before the outbox restarted
        };
        let session = o.session;
        o.loading = None;
        o.more = rows.len() >= limit || o.queued_while_loading;
        o.queued_while_loading = false;
        let cursor = o.cursor;
        let rows: Vec<Queued> = rows
            .into_iter()
            .filter(|r| cursor.is_none_or(|c| r.seq > c))
            .take(limit)
            .collect();
        self.send_deliver(peer, session, rows, out);
        self.load_more(peer, out);
    }

    /// Marks `rows` sent and writes them, in order.
    fn send_deliver(
        &mut self,
        peer: PeerId,
        session: u64,
        rows: Vec<Queued>,
        out: &mut Vec<OutEvent>,
    ) {
        let Some(o) = self.outboxes.get_mut(&peer) else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        out.push(OutEvent::SetStatus {
            peer,
            ids: rows.iter().map(|r| r.envelope.id).collect(),
            status: Status::Sent,
        });
        for r in rows {
            o.in_flight.push_back((r.seq, r.envelope.id));
            o.cursor = Some(r.seq);
            out.push(OutEvent::Send {
                peer,
                session: Some(session),
                message: Message::Deliver(r.envelope),
            });
        }
        self.stats.max_in_flight = self.stats.max_in_flight.max(o.in_flight.len());
    }

    fn on_deliver(&mut self, peer: PeerId, envelope: Envelope, out: &mut Vec<OutEvent>) {
        if let Err(e) = check_text(&envelope.text) {
            self.invalid(peer, format!("message {}: {e}", envelope.id), out);
            return;
        }
        out.push(OutEvent::Store { peer, envelope });
    }

    fn on_ack(&mut self, peer: PeerId, ids: Vec<MessageId>, out: &mut Vec<OutEvent>) {
        if !self.check_ids(peer, "ack", &ids, out) {
            return;
        }
        if let Some(o) = self.outboxes.get_mut(&peer) {
            for id in &ids {
                match o.in_flight.iter().position(|(_, x)| x == id) {
                    Some(i) => {
                        o.in_flight.remove(i);
                    }
                    None => self.stats.acks_unmatched += 1,
                }
            }
        } else {
            self.stats.acks_unmatched += ids.len() as u64;
        }
        out.push(OutEvent::SetStatus {
            peer,
            ids,
            status: Status::Delivered,
        });
        self.load_more(peer, out);
    }

    fn on_read(&mut self, peer: PeerId, ids: Vec<MessageId>, out: &mut Vec<OutEvent>) {
        if self.check_ids(peer, "read receipt", &ids, out) {
            out.push(OutEvent::SetStatus {
                peer,
                ids,
                status: Status::Read,
            });
        }
    }

    fn check_ids(
        &mut self,
        peer: PeerId,
        what: &str,
        ids: &[MessageId],
        out: &mut Vec<OutEvent>,
    ) -> bool {
        if ids.len() > MAX_IDS_PER_FRAME {
            self.invalid(
                peer,
                format!(
                    "{what} with {} ids (the limit is {MAX_IDS_PER_FRAME})",
                    ids.len()
                ),
                out,
            );
            return false;
        }
        true
    }

    fn invalid(&mut self, peer: PeerId, reason: String, out: &mut Vec<OutEvent>) {
        self.stats.invalid += 1;
        out.push(OutEvent::Invalid { peer, reason });
    }

    fn send_acks(&mut self, peer: PeerId, ids: Vec<MessageId>, out: &mut Vec<OutEvent>) {
        for chunk in ids.chunks(MAX_IDS_PER_FRAME) {
            out.push(OutEvent::Send {
                peer,
                session: None,
                message: Message::Ack {
                    ids: chunk.to_vec(),
                },
            });
        }
    }

    fn on_send_failed(&mut self, peer: PeerId, session: u64, out: &mut Vec<OutEvent>) {
        let resume_after = self.config.resume_after;
        let Some(o) = self
            .outboxes
            .get_mut(&peer)
            .filter(|o| o.session == session)
        else {
            return;
        };
        if o.stalled {
            return;
        }
        requeue(peer, o, out);
        o.stalled = true;
        out.push(OutEvent::ScheduleTimer(
            resume_after,
            Timer::Resume { peer, session },
        ));
    }

    fn on_resume(&mut self, peer: PeerId, session: u64, out: &mut Vec<OutEvent>) {
        let Some(o) = self
            .outboxes
            .get_mut(&peer)
            .filter(|o| o.session == session)
        else {
            return;
        };
        o.stalled = false;
        o.more = true;
        self.load_more(peer, out);
    }
}

/// Puts everything in flight back to pending and restarts the outbox from its
/// oldest message.
fn requeue(peer: PeerId, o: &mut Outbox, out: &mut Vec<OutEvent>) {
    if !o.in_flight.is_empty() {
        out.push(OutEvent::SetStatus {
            peer,
            ids: o.in_flight.drain(..).map(|(_, id)| id).collect(),
            status: Status::Pending,
        });
    }
    o.cursor = None;
    o.loading = None;
    o.more = true;
    o.queued_while_loading = false;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::identity::Identity;

    fn peer(n: u8) -> PeerId {
        Identity::from_secret([n; 32]).peer_id()
    }

    fn id(n: u128) -> MessageId {
        MessageId::from_parts(1_700_000_000_000, n)
    }

    fn queued(seq: u64) -> Queued {
        Queued {
            seq,
            envelope: Envelope {
                id: id(u128::from(seq)),
                sent_ms: 1,
                text: format!("m{seq}"),
                reply_to: None,
            },
        }
    }

    fn state(window: usize) -> State {
        State::new(Config {
            window,
            ..Config::default()
        })
    }

    fn run(s: &mut State, e: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        s.handle(Duration::ZERO, e, &mut out);
        out
    }

    fn delivered_seqs(out: &[OutEvent]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send {
                    message: Message::Deliver(e),
                    ..
                } => Some(e.text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn message_ids_sort_by_time_and_round_trip_as_text() {
        let mut g = IdGen::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = g.next(1_000, &mut rng);
        let b = g.next(2_000, &mut rng);
        assert!(a < b);
        assert_eq!(a.timestamp_ms(), 1_000);
        for x in [a, b, MessageId::from_bytes([0xff; 16]), MessageId(0)] {
            let text = x.to_string();
            assert_eq!(text.len(), MESSAGE_ID_TEXT_LEN);
            assert_eq!(text.parse::<MessageId>(), Ok(x));
            assert_eq!(text.to_lowercase().parse::<MessageId>(), Ok(x));
            // text order is id order
            assert_eq!(a.to_string() < b.to_string(), a < b);
        }
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), a);
        let bin = postcard::to_stdvec(&a).unwrap();
        assert_eq!(bin.len(), 16);
        assert_eq!(postcard::from_bytes::<MessageId>(&bin).unwrap(), a);
    }

    #[test]
    fn ids_grow_within_one_millisecond_and_when_the_clock_steps_back() {
        let mut g = IdGen::default();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut last = g.next(5_000, &mut rng);
        for now in [5_000, 5_000, 4_000, 0, 5_000, 5_001] {
            let next = g.next(now, &mut rng);
            assert!(next > last, "{next} after {last} at {now}");
            last = next;
        }
        // a restarted generator continues after the newest stored id
        let mut g2 = IdGen::new(Some(last));
        assert!(g2.next(10, &mut rng) > last);
    }

    #[test]
    fn bad_id_text_is_refused() {
        assert!(matches!(
            "abc".parse::<MessageId>(),
            Err(ParseMessageIdError::Length(3))
        ));
        let bad_char = format!("{}U", "0".repeat(25));
        assert!(matches!(
            bad_char.parse::<MessageId>(),
            Err(ParseMessageIdError::Character('U'))
        ));
        let too_big = format!("8{}", "0".repeat(25));
        assert_eq!(
            too_big.parse::<MessageId>(),
            Err(ParseMessageIdError::Overflow)
        );
    }

    #[test]
    fn text_over_64_kib_is_refused_with_its_size() {
        assert!(check_text(&"x".repeat(MAX_TEXT_LEN)).is_ok());
        let err = check_text(&"x".repeat(MAX_TEXT_LEN + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message text is 65537 bytes; the limit is 65536 bytes (64 KiB)"
        );
        // the limit counts bytes, not characters
        assert!(check_text(&"é".repeat(MAX_TEXT_LEN / 2 + 1)).is_err());
    }

    #[test]
    fn status_moves_forward_and_only_sent_goes_back_to_pending() {
        use Status::*;
        for to in [Pending, Sent, Delivered, Read] {
            for from in [Pending, Sent, Delivered, Read] {
                let allowed = to.allowed_from().contains(&from);
                let expected = from < to || (from == Sent && to == Pending);
                assert_eq!(allowed, expected, "{from} -> {to}");
            }
            assert_eq!(Status::from_u8(to.as_u8()), Some(to));
        }
        assert_eq!(Status::from_u8(4), None);
    }

    #[test]
    fn link_up_flushes_receipts_and_loads_a_window_of_the_outbox() {
        let mut s = state(3);
        let p = peer(1);
        let out = run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 7,
            },
        );
        assert_eq!(
            out,
            vec![
                OutEvent::FlushReceipts {
                    peer: p,
                    session: 7
                },
                OutEvent::LoadOutbox {
                    peer: p,
                    load: 1,
                    after: None,
                    limit: 3
                }
            ]
        );
        let out = run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1), queued(2), queued(5)],
            },
        );
        assert_eq!(delivered_seqs(&out), ["m1", "m2", "m5"]);
        assert!(matches!(
            &out[0],
            OutEvent::SetStatus { status: Status::Sent, ids, .. } if ids.len() == 3
        ));
        // the window is full: no further load until an ack
        assert!(!out.iter().any(|o| matches!(o, OutEvent::LoadOutbox { .. })));
        assert_eq!(s.in_flight(&p), 3);
    }

    #[test]
    fn acks_free_the_window_and_load_the_next_page_after_the_cursor() {
        let mut s = state(2);
        let p = peer(1);
        run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 1,
            },
        );
        run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1), queued(2)],
            },
        );
        let out = run(
            &mut s,
            InEvent::Received {
                peer: p,
                message: Message::Ack { ids: vec![id(1)] },
            },
        );
        assert_eq!(
            out,
            vec![
                OutEvent::SetStatus {
                    peer: p,
                    ids: vec![id(1)],
                    status: Status::Delivered
                },
                OutEvent::LoadOutbox {
                    peer: p,
                    load: 2,
                    after: Some(2),
                    limit: 1
                }
            ]
        );
        assert_eq!(s.stats().max_in_flight, 2);
        assert_eq!(s.stats().max_page, 2);
    }

    #[test]
    fn a_new_message_goes_out_at_once_when_the_outbox_is_caught_up() {
        let mut s = state(4);
        let p = peer(1);
        run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 1,
            },
        );
        // short page: the outbox is empty beyond it
        run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1)],
            },
        );
        let out = run(
            &mut s,
            InEvent::Queued {
                peer: p,
                message: queued(2),
            },
        );
        assert_eq!(delivered_seqs(&out), ["m2"]);
        // while disconnected, a queued message only waits in the store
        let q = peer(2);
        let out = run(
            &mut s,
            InEvent::Queued {
                peer: q,
                message: queued(3),
            },
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_message_queued_during_a_load_is_not_lost_by_a_short_page() {
        let mut s = state(4);
        let p = peer(1);
        run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 1,
            },
        );
        // queued while the first load is outstanding
        run(
            &mut s,
            InEvent::Queued {
                peer: p,
                message: queued(2),
            },
        );
        // the page was read before message 2 was stored
        let out = run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1)],
            },
        );
        assert_eq!(delivered_seqs(&out), ["m1"]);
        assert!(out.contains(&OutEvent::LoadOutbox {
            peer: p,
            load: 2,
            after: Some(1),
            limit: 3
        }));
    }

    #[test]
    fn link_down_returns_unacked_messages_to_pending_and_the_next_session_starts_over() {
        let mut s = state(4);
        let p = peer(1);
        run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 1,
            },
        );
        run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1), queued(2)],
            },
        );
        // a stale down for another session changes nothing
        assert!(
            run(
                &mut s,
                InEvent::LinkDown {
                    peer: p,
                    session: 0
                }
            )
            .is_empty()
        );
        let out = run(
            &mut s,
            InEvent::LinkDown {
                peer: p,
                session: 1,
            },
        );
        assert_eq!(
            out,
            vec![OutEvent::SetStatus {
                peer: p,
                ids: vec![id(1), id(2)],
                status: Status::Pending
            }]
        );
        let out = run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 2,
            },
        );
        assert!(out.contains(&OutEvent::LoadOutbox {
            peer: p,
            load: 2,
            after: None,
            limit: 4
        }));
        // the page asked for by the old session arrives late: ignored
        let out = run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(9)],
            },
        );
        assert!(out.is_empty());
    }

    #[test]
    fn an_up_for_a_new_session_voids_the_old_one() {
        let mut s = state(4);
        let p = peer(1);
        run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 1,
            },
        );
        run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1)],
            },
        );
        let out = run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 2,
            },
        );
        assert_eq!(
            out[0],
            OutEvent::SetStatus {
                peer: p,
                ids: vec![id(1)],
                status: Status::Pending
            }
        );
        assert!(out.contains(&OutEvent::LoadOutbox {
            peer: p,
            load: 2,
            after: None,
            limit: 4
        }));
    }

    #[test]
    fn deliveries_are_stored_then_acknowledged() {
        let mut s = state(4);
        let p = peer(1);
        let e = queued(1).envelope;
        let out = run(
            &mut s,
            InEvent::Received {
                peer: p,
                message: Message::Deliver(e.clone()),
            },
        );
        assert_eq!(
            out,
            vec![OutEvent::Store {
                peer: p,
                envelope: e
            }]
        );
        let ids: Vec<MessageId> = (0..300).map(id).collect();
        let out = run(
            &mut s,
            InEvent::Stored {
                peer: p,
                ids: ids.clone(),
            },
        );
        // acks go out on whatever session is up, split to the frame limit
        assert_eq!(out.len(), 2);
        assert!(matches!(
            &out[0],
            OutEvent::Send { session: None, message: Message::Ack { ids }, .. } if ids.len() == MAX_IDS_PER_FRAME
        ));
    }

    #[test]
    fn invalid_frames_are_counted_and_dropped() {
        let mut s = state(4);
        let p = peer(1);
        let mut e = queued(1).envelope;
        e.text = "x".repeat(MAX_TEXT_LEN + 1);
        let out = run(
            &mut s,
            InEvent::Received {
                peer: p,
                message: Message::Deliver(e),
            },
        );
        assert!(
            matches!(&out[..], [OutEvent::Invalid { reason, .. }] if reason.contains("65537 bytes"))
        );
        let ids: Vec<MessageId> = (0..MAX_IDS_PER_FRAME as u128 + 1).map(id).collect();
        for message in [
            Message::Ack { ids: ids.clone() },
            Message::Read { ids: ids.clone() },
        ] {
            let out = run(&mut s, InEvent::Received { peer: p, message });
            assert!(matches!(&out[..], [OutEvent::Invalid { .. }]));
        }
        assert_eq!(s.stats().invalid, 3);
        // acks and receipts for unknown ids are harmless store updates
        let out = run(
            &mut s,
            InEvent::Received {
                peer: p,
                message: Message::Read { ids: vec![id(5)] },
            },
        );
        assert_eq!(
            out,
            vec![OutEvent::SetStatus {
                peer: p,
                ids: vec![id(5)],
                status: Status::Read
            }]
        );
    }

    #[test]
    fn a_failed_write_requeues_and_resumes_after_a_pause() {
        let mut s = state(4);
        let p = peer(1);
        run(
            &mut s,
            InEvent::LinkUp {
                peer: p,
                session: 1,
            },
        );
        run(
            &mut s,
            InEvent::OutboxPage {
                peer: p,
                load: 1,
                rows: vec![queued(1), queued(2)],
            },
        );
        let out = run(
            &mut s,
            InEvent::SendFailed {
                peer: p,
                session: 1,
            },
        );
        let timer = Timer::Resume {
            peer: p,
            session: 1,
        };
        assert_eq!(
            out,
            vec![
                OutEvent::SetStatus {
                    peer: p,
                    ids: vec![id(1), id(2)],
                    status: Status::Pending
                },
                OutEvent::ScheduleTimer(Config::default().resume_after, timer.clone())
            ]
        );
        // stalled: new messages wait
        let out = run(
            &mut s,
            InEvent::Queued {
                peer: p,
                message: queued(3),
            },
        );
        assert!(out.is_empty());
        let out = run(&mut s, InEvent::Timer(timer));
        assert_eq!(
            out,
            vec![OutEvent::LoadOutbox {
                peer: p,
                load: 2,
                after: None,
                limit: 4
            }]
        );
    }

    /// Two peers' states joined by a link that can die at any moment, with the
    /// sender's store and the receiver's store modelled in memory, and outbox
    /// pages answered late (after messages queued meanwhile).
    struct Model {
        a: State,
        b: State,
        a_id: PeerId,
        b_id: PeerId,
        /// A's outbox: seq → (envelope, status).
        outbox: BTreeMap<u64, (Envelope, Status)>,
        next_seq: u64,
        /// B's store, in arrival order.
        received: Vec<MessageId>,
        session: Option<u64>,
        next_session: u64,
        a_to_b: VecDeque<Message>,
        b_to_a: VecDeque<Message>,
        /// Outbox pages read but not yet handed to A.
        pages: VecDeque<InEvent>,
        /// A write to the session failed: A's sends on it are dropped until its
        /// resume timer fires (what the driver does).
        broken: bool,
        resume: Option<Timer>,
        window: usize,
    }

    impl Model {
        fn new(window: usize) -> Self {
            Self {
                a: state(window),
                b: state(window),
                a_id: peer(1),
                b_id: peer(2),
                outbox: BTreeMap::new(),
                next_seq: 1,
                received: Vec::new(),
                session: None,
                next_session: 1,
                a_to_b: VecDeque::new(),
                b_to_a: VecDeque::new(),
                pages: VecDeque::new(),
                broken: false,
                resume: None,
                window,
            }
        }

        fn feed_a(&mut self, e: InEvent) {
            let mut out = Vec::new();
            self.a.handle(Duration::ZERO, e, &mut out);
            assert!(self.a.in_flight(&self.b_id) <= self.window);
            for o in out {
                match o {
                    OutEvent::Send {
                        session, message, ..
                    } => {
                        if self.session.is_some()
                            && !self.broken
                            && (session.is_none() || session == self.session)
                        {
                            self.a_to_b.push_back(message);
                        }
                    }
                    OutEvent::LoadOutbox {
                        load, after, limit, ..
                    } => {
                        let rows = self
                            .outbox
                            .iter()
                            .filter(|(seq, (_, st))| {
                                *st == Status::Pending && after.is_none_or(|a| **seq > a)
                            })
                            .take(limit)
                            .map(|(seq, (e, _))| Queued {
                                seq: *seq,
                                envelope: e.clone(),
                            })
                            .collect();
                        self.pages.push_back(InEvent::OutboxPage {
                            peer: self.b_id,
                            load,
                            rows,
                        });
                    }
                    OutEvent::SetStatus { ids, status, .. } => {
                        for (e, st) in self.outbox.values_mut() {
                            if ids.contains(&e.id) && status.allowed_from().contains(st) {
                                *st = status;
                            }
                        }
                    }
                    OutEvent::ScheduleTimer(_, t) => self.resume = Some(t),
                    OutEvent::FlushReceipts { .. } => {}
                    other => panic!("unexpected output of the sender: {other:?}"),
                }
            }
        }

        fn feed_b(&mut self, e: InEvent) {
            let mut out = Vec::new();
            self.b.handle(Duration::ZERO, e, &mut out);
            for o in out {
                match o {
                    OutEvent::Store { envelope, .. } => {
                        if !self.received.contains(&envelope.id) {
                            self.received.push(envelope.id);
                        }
                        let e = InEvent::Stored {
                            peer: self.a_id,
                            ids: vec![envelope.id],
                        };
                        self.feed_b(e);
                    }
                    OutEvent::Send { message, .. } => {
                        if self.session.is_some() {
                            self.b_to_a.push_back(message);
                        }
                    }
                    OutEvent::FlushReceipts { .. } | OutEvent::LoadOutbox { .. } => {}
                    other => panic!("unexpected output of the receiver: {other:?}"),
                }
            }
        }

        fn step(&mut self, action: u8) {
            match action % 10 {
                0 | 1 => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let envelope = queued(seq).envelope;
                    self.outbox.insert(seq, (envelope.clone(), Status::Pending));
                    let e = InEvent::Queued {
                        peer: self.b_id,
                        message: Queued { seq, envelope },
                    };
                    self.feed_a(e);
                }
                2 | 3 => {
                    if let Some(m) = self.a_to_b.pop_front() {
                        self.feed_b(InEvent::Received {
                            peer: self.a_id,
                            message: m,
                        });
                    }
                }
                4 => {
                    if let Some(m) = self.b_to_a.pop_front() {
                        self.feed_a(InEvent::Received {
                            peer: self.b_id,
                            message: m,
                        });
                    }
                }
                5 => {
                    if let Some(p) = self.pages.pop_front() {
                        self.feed_a(p);
                    }
                }
                6 => self.link_down(),
                7 => {
                    // a write fails: this frame and every later one is lost
                    if let Some(session) = self.session.filter(|_| !self.broken) {
                        self.broken = true;
                        self.feed_a(InEvent::SendFailed {
                            peer: self.b_id,
                            session,
                        });
                    }
                }
                8 => self.fire_resume(),
                _ => self.link_up(),
            }
        }

        fn fire_resume(&mut self) {
            if let Some(t) = self.resume.take() {
                self.broken = false;
                self.feed_a(InEvent::Timer(t));
            }
        }

        fn link_down(&mut self) {
            if let Some(s) = self.session.take() {
                self.broken = false;
                self.a_to_b.clear();
                self.b_to_a.clear();
                self.feed_a(InEvent::LinkDown {
                    peer: self.b_id,
                    session: s,
                });
                self.feed_b(InEvent::LinkDown {
                    peer: self.a_id,
                    session: s,
                });
            }
        }

        fn link_up(&mut self) {
            if self.session.is_none() {
                let s = self.next_session;
                self.next_session += 1;
                self.session = Some(s);
                self.feed_a(InEvent::LinkUp {
                    peer: self.b_id,
                    session: s,
                });
                self.feed_b(InEvent::LinkUp {
                    peer: self.a_id,
                    session: s,
                });
            }
        }

        /// Keeps the link up and moves everything until nothing moves.
        fn settle(&mut self) {
            self.fire_resume();
            self.link_up();
            for _ in 0..1_000_000 {
                if let Some(p) = self.pages.pop_front() {
                    self.feed_a(p);
                } else if let Some(m) = self.a_to_b.pop_front() {
                    self.feed_b(InEvent::Received {
                        peer: self.a_id,
                        message: m,
                    });
                } else if let Some(m) = self.b_to_a.pop_front() {
                    self.feed_a(InEvent::Received {
                        peer: self.b_id,
                        message: m,
                    });
                } else {
                    return;
                }
            }
            panic!("the model did not settle");
        }
    }

    fn arb_id() -> impl Strategy<Value = MessageId> {
        any::<[u8; 16]>().prop_map(MessageId::from_bytes)
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                arb_id(),
                any::<u64>(),
                ".{0,200}",
                proptest::option::of(arb_id())
            )
                .prop_map(|(id, sent_ms, text, reply_to)| Message::Deliver(Envelope {
                    id,
                    sent_ms,
                    text,
                    reply_to
                })),
            proptest::collection::vec(arb_id(), 0..20).prop_map(|ids| Message::Ack { ids }),
            proptest::collection::vec(arb_id(), 0..20).prop_map(|ids| Message::Read { ids }),
        ]
    }

    proptest! {
        #[test]
        fn dm_frames_round_trip_through_the_wire_codec(m in arb_message()) {
            use crate::proto::wire;
            let frame = wire::Message::Dm(m);
            let mut buf = Vec::new();
            wire::encode_frame(&frame, &mut buf).unwrap();
            prop_assert_eq!(wire::decode_exact_frame::<wire::Message>(&buf), Ok(frame));
        }

        #[test]
        fn message_ids_round_trip_as_text(id in arb_id()) {
            prop_assert_eq!(id.to_string().parse::<MessageId>(), Ok(id));
        }

        #[test]
        fn every_message_arrives_once_in_order_whatever_the_link_does(
            window in 1usize..6,
            actions in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut m = Model::new(window);
            for a in actions {
                m.step(a);
            }
            m.settle();
            let sent: Vec<MessageId> = m.outbox.values().map(|(e, _)| e.id).collect();
            prop_assert_eq!(&m.received, &sent);
            let unique: BTreeSet<_> = m.received.iter().collect();
            prop_assert_eq!(unique.len(), m.received.len());
            for (e, st) in m.outbox.values() {
                prop_assert_eq!(*st, Status::Delivered, "{}", e.text);
            }
            prop_assert!(m.a.stats().max_in_flight <= window);
        }
    }
}
