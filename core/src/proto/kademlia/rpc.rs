//! The RPCs (IPTPS 2002, §2.3): answering requests, matching answers to the
//! requests we sent, timeouts, and the routing-table bookkeeping every message
//! implies (§2.2: any message from a node is a sighting of it).
//!
//! Order of checks for a request: rate limit per source address, then the
//! sender enters the routing table, then the answer. For an answer: it must
//! match a pending request (RPC id, address, PeerId) or it is dropped as
//! unsolicited before anything else looks at it.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use super::lookup::{Active, Phase, merge_found};
use super::record_store::{Accepted, Refused};
use super::routing_table::Update;
use super::{
    Contact, Key, MAX_CONTACTS, MAX_RECORDS, Message, OutEvent, RECORD_BUDGET, Record, RecordError,
    State, Timer,
};
use crate::identity::PeerId;

pub(super) struct Pending {
    pub(super) to: Contact,
    pub(super) key: Key,
    pub(super) purpose: Purpose,
    /// Kept to send again after a timeout.
    message: Message,
    attempts: u32,
}

#[derive(Clone, Copy)]
pub(super) enum Purpose {
    Lookup(u64),
    Store(u64),
    /// Ping of the oldest entry of a full bucket.
    Evict,
}

impl<R: Rng> State<R> {
    pub(super) fn new_rpc(&mut self) -> u64 {
        loop {
            let rpc = self.rng.random::<u64>();
            if !self.pending.contains_key(&rpc) {
                return rpc;
            }
        }
    }

    pub(super) fn request(
        &mut self,
        to: Contact,
        rpc: u64,
        purpose: Purpose,
        message: Message,
        out: &mut Vec<OutEvent>,
    ) {
        self.pending.insert(
            rpc,
            Pending {
                to,
                key: to.key(),
                purpose,
                message: message.clone(),
                attempts: 1,
            },
        );
        self.send(to.addr, message, out);
        out.push(OutEvent::ScheduleTimer(
            self.config.request_timeout,
            Timer::Rpc(rpc),
        ));
    }

    pub(super) fn send(&mut self, to: SocketAddr, message: Message, out: &mut Vec<OutEvent>) {
        self.stats.sent += 1;
        out.push(OutEvent::Send(to, message));
    }

    pub(super) fn on_message(
        &mut self,
        now: Duration,
        from: SocketAddr,
        message: Message,
        out: &mut Vec<OutEvent>,
    ) {
        self.stats.received += 1;
        if message.check().is_err() || message.from() == self.id {
            self.stats.malformed += 1;
            return;
        }
        if !message.is_request() {
            self.on_response(now, from, message, out);
            return;
        }
        let Some(sender) = self.admit(now, from, message.from(), out) else {
            return;
        };
        match message {
            Message::Ping { rpc, .. } => self.on_ping(sender, rpc, out),
            Message::FindNode { rpc, target, .. } => self.on_find_node(sender, rpc, target, out),
            Message::FindValue { rpc, key, .. } => self.on_find_value(now, sender, rpc, key, out),
            Message::Store { rpc, record, .. } => self.on_store(now, sender, rpc, record, out),
            Message::Pong { .. }
            | Message::Nodes { .. }
            | Message::Value { .. }
            | Message::Stored { .. } => {}
        }
    }

    /// Rate-limits a request and lets its sender into the routing table.
    fn admit(
        &mut self,
        now: Duration,
        from: SocketAddr,
        id: PeerId,
        out: &mut Vec<OutEvent>,
    ) -> Option<Contact> {
        if !self.limiter.allow(from, now) {
            self.stats.rate_limited += 1;
            return None;
        }
        let sender = Contact::new(id, from);
        if !sender.is_dialable() {
            self.stats.malformed += 1;
            return None;
        }
        self.saw(now, sender, out);
        Some(sender)
    }

    fn on_ping(&mut self, sender: Contact, rpc: u64, out: &mut Vec<OutEvent>) {
        self.send(sender.addr, Message::Pong { from: self.id, rpc }, out);
    }

    fn closest_for(&self, target: &Key, asker: &PeerId) -> Vec<Contact> {
        let count = self.config.k.min(MAX_CONTACTS);
        let mut v = self.table.closest(target, count + 1);
        v.retain(|c| c.id != *asker);
        v.truncate(count);
        v
    }

    fn on_find_node(&mut self, sender: Contact, rpc: u64, target: Key, out: &mut Vec<OutEvent>) {
        let closer = self.closest_for(&target, &sender.id);
        self.send(
            sender.addr,
            Message::Nodes {
                from: self.id,
                rpc,
                closer,
            },
            out,
        );
    }

    fn on_find_value(
        &mut self,
        now: Duration,
        sender: Contact,
        rpc: u64,
        key: Key,
        out: &mut Vec<OutEvent>,
    ) {
        let mut records = self.local_records(&key, self.wall_ms(now));
        let mut used = 0;
        records.retain(|r| {
            used += r.encoded_len();
            used <= RECORD_BUDGET
        });
        records.truncate(MAX_RECORDS);
        let closer = self.closest_for(&key, &sender.id);
        let message = Message::Value {
            from: self.id,
            rpc,
            records,
            closer,
        };
        self.send(sender.addr, message, out);
    }

    fn on_store(
        &mut self,
        now: Duration,
        sender: Contact,
        rpc: u64,
        record: Record,
        out: &mut Vec<OutEvent>,
    ) {
        let accepted = self.accept_record(now, record);
        self.send(
            sender.addr,
            Message::Stored {
                from: self.id,
                rpc,
                accepted,
            },
            out,
        );
    }

    /// Validates and stores a record sent to us; counts why not.
    fn accept_record(&mut self, now: Duration, record: Record) -> bool {
        if record.publisher == self.id {
            // our own records live in `own`; a copy from elsewhere adds nothing
            return self.own.get(&record.key) == Some(&record);
        }
        if let Err(e) = record.validate(self.wall_ms(now), self.config.max_record_ttl) {
            self.count_refusal(e);
            return false;
        }
        match self.store.put(record, now) {
            Ok(Accepted::New | Accepted::Replaced) => {
                self.stats.stored += 1;
                true
            }
            Ok(Accepted::Unchanged) => true,
            Err(Refused::Stale) => {
                self.stats.stale_records += 1;
                false
            }
            Err(Refused::Full | Refused::PublisherFull) => {
                self.stats.store_full += 1;
                false
            }
        }
    }

    fn count_refusal(&mut self, e: RecordError) {
        match e {
            RecordError::BadSignature => self.stats.bad_signature += 1,
            RecordError::Expired | RecordError::TooLongLived => self.stats.expired_records += 1,
            RecordError::TooLarge(_)
            | RecordError::TooManyAddrs(_)
            | RecordError::UndialableAddr
            | RecordError::NameTooLong
            | RecordError::WrongKey => self.stats.invalid_records += 1,
        }
    }

    /// Takes the pending request an answer belongs to, if it is one of ours:
    /// same RPC id, from the address and PeerId we asked.
    fn take_pending(&mut self, from: SocketAddr, message: &Message) -> Option<Pending> {
        let matches = self
            .pending
            .get(&message.rpc())
            .is_some_and(|p| p.to.addr == from && p.to.id == message.from());
        if !matches {
            self.stats.unsolicited += 1;
            return None;
        }
        self.pending.remove(&message.rpc())
    }

    fn on_response(
        &mut self,
        now: Duration,
        from: SocketAddr,
        message: Message,
        out: &mut Vec<OutEvent>,
    ) {
        let Some(p) = self.take_pending(from, &message) else {
            return;
        };
        self.saw(now, p.to, out);
        match (message, p.purpose) {
            (Message::Pong { .. }, Purpose::Evict) => {}
            (Message::Nodes { closer, .. }, Purpose::Lookup(qid)) => {
                self.on_nodes(now, qid, &p, closer, out)
            }
            (
                Message::Value {
                    records, closer, ..
                },
                Purpose::Lookup(qid),
            ) => self.on_value(now, qid, &p, records, closer, out),
            (Message::Stored { accepted, .. }, Purpose::Store(qid)) => {
                self.on_stored(now, qid, accepted, out)
            }
            (_, purpose) => {
                // an answer of the wrong kind: the peer is broken
                self.stats.malformed += 1;
                self.on_rpc_failed(now, &p, purpose, out);
            }
        }
    }

    fn on_nodes(
        &mut self,
        now: Duration,
        qid: u64,
        p: &Pending,
        closer: Vec<Contact>,
        out: &mut Vec<OutEvent>,
    ) {
        let closer = usable(self.id, closer);
        if let Some(a) = self.queries.get_mut(&qid) {
            a.query.on_success(&p.key, closer);
            self.drive(now, qid, out);
        }
    }

    fn on_value(
        &mut self,
        now: Duration,
        qid: u64,
        p: &Pending,
        records: Vec<Record>,
        closer: Vec<Contact>,
        out: &mut Vec<OutEvent>,
    ) {
        let wall = self.wall_ms(now);
        let (quorum, max_ttl) = (self.config.value_quorum, self.config.max_record_ttl);
        let closer = usable(self.id, closer);
        let Some(a) = self.queries.get_mut(&qid) else {
            return;
        };
        let target = a.query.target();
        let mut good = Vec::new();
        let mut refusals = Vec::new();
        for r in records {
            if r.key != target {
                continue;
            }
            match r.validate(wall, max_ttl) {
                Ok(()) => good.push(r),
                Err(e) => refusals.push(e),
            }
        }
        let depth = a.query.depth(&p.key).unwrap_or(0);
        if a.query.on_success(&p.key, closer) && merge_found(a, &good, wall) {
            a.holders += 1;
            a.value_hops.get_or_insert(depth + 1);
            if a.holders >= quorum {
                a.query.stop();
            }
        }
        for e in refusals {
            self.count_refusal(e);
        }
        self.drive(now, qid, out);
    }

    pub(super) fn on_stored(
        &mut self,
        now: Duration,
        qid: u64,
        accepted: bool,
        out: &mut Vec<OutEvent>,
    ) {
        if let Some(Active {
            phase: Phase::Storing { waiting, acks },
            ..
        }) = self.queries.get_mut(&qid)
        {
            *waiting -= 1;
            *acks += usize::from(accepted);
            self.drive(now, qid, out);
        }
    }

    /// An attempt of request `rpc` went unanswered: send it again while
    /// retries last, then count the peer as failed. A late answer to an
    /// earlier attempt carries the same RPC id and is taken.
    pub(super) fn on_rpc_timeout(&mut self, now: Duration, rpc: u64, out: &mut Vec<OutEvent>) {
        let Some(p) = self.pending.get_mut(&rpc) else {
            return;
        };
        self.stats.timeouts += 1;
        if p.attempts <= self.config.retries {
            p.attempts += 1;
            let (to, message, purpose) = (p.to.addr, p.message.clone(), p.purpose);
            self.stats.retries += 1;
            if let Purpose::Lookup(qid) = purpose
                && let Some(a) = self.queries.get_mut(&qid)
            {
                a.query.note_retry();
            }
            self.send(to, message, out);
            out.push(OutEvent::ScheduleTimer(
                self.config.request_timeout,
                Timer::Rpc(rpc),
            ));
            return;
        }
        if let Some(p) = self.pending.remove(&rpc) {
            self.on_rpc_failed(now, &p, p.purpose, out);
        }
    }

    /// A request went unanswered (or was answered with nonsense).
    pub(super) fn on_rpc_failed(
        &mut self,
        now: Duration,
        p: &Pending,
        purpose: Purpose,
        out: &mut Vec<OutEvent>,
    ) {
        match purpose {
            Purpose::Evict => {
                self.table.on_ping_timeout(&p.to.id);
            }
            Purpose::Lookup(qid) => {
                self.table.on_failure(&p.to.id);
                if let Some(a) = self.queries.get_mut(&qid) {
                    a.query.on_failure(&p.key);
                    self.drive(now, qid, out);
                }
            }
            Purpose::Store(qid) => {
                self.table.on_failure(&p.to.id);
                self.on_stored(now, qid, false, out);
            }
        }
    }

    /// We heard from `contact`: the least-recently-seen rule, pinging the head
    /// of a full bucket if the table asks for it.
    pub(super) fn saw(&mut self, now: Duration, contact: Contact, out: &mut Vec<OutEvent>) {
        if let Update::Full { ping: Some(oldest) } = self.table.on_seen(contact, contact.key(), now)
        {
            let rpc = self.new_rpc();
            let message = Message::Ping { from: self.id, rpc };
            self.request(oldest, rpc, Purpose::Evict, message, out);
        }
    }
}

/// Contacts from an answer that are worth asking: not us, dialable.
fn usable(me: PeerId, closer: Vec<Contact>) -> impl Iterator<Item = Contact> {
    closer
        .into_iter()
        .filter(move |c| c.id != me && c.is_dialable())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{EPOCH_MS, addr, identity, node};
    use super::super::{Command, Config, InEvent, Stats, Tag, Value};
    use super::*;
    use crate::proto::kademlia::PeerInfo;
    use crate::proto::sim::SimRng;
    use crate::proto::wire::{self, Datagram};

    const T0: Duration = Duration::from_secs(1);

    fn msg(n: &mut State<SimRng>, from: usize, message: Message) -> Vec<OutEvent> {
        n.handle(
            T0,
            InEvent::Message {
                from: addr(from),
                message,
            },
        )
    }

    fn sent(out: &[OutEvent]) -> Vec<(SocketAddr, Message)> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send(a, m) => Some((*a, m.clone())),
                _ => None,
            })
            .collect()
    }

    fn peer_record(signer: usize, seq: u64) -> Record {
        let id = identity(signer);
        let info = PeerInfo {
            name: format!("n{signer}"),
            addrs: vec![addr(signer)],
        };
        Record::sign(
            &id,
            Key::for_peer(&id.peer_id()),
            seq,
            EPOCH_MS + 3_600_000,
            Value::Peer(info),
        )
    }

    fn store(n: &mut State<SimRng>, from: usize, record: Record) -> bool {
        let out = msg(
            n,
            from,
            Message::Store {
                from: identity(from).peer_id(),
                rpc: 9,
                record,
            },
        );
        match sent(&out).as_slice() {
            [
                (
                    _,
                    Message::Stored {
                        accepted, rpc: 9, ..
                    },
                ),
            ] => *accepted,
            other => panic!("expected one Stored answer, got {other:?}"),
        }
    }

    #[test]
    fn ping_is_answered_and_the_sender_enters_the_table() {
        let mut n = node(0, Config::default());
        let out = msg(
            &mut n,
            1,
            Message::Ping {
                from: identity(1).peer_id(),
                rpc: 5,
            },
        );
        assert_eq!(
            sent(&out),
            vec![(
                addr(1),
                Message::Pong {
                    from: n.id(),
                    rpc: 5
                }
            )]
        );
        assert!(n.routing_table().get(&identity(1).peer_id()).is_some());
    }

    #[test]
    fn unsolicited_answers_are_ignored_and_counted() {
        let mut n = node(0, Config::default());
        let closer = vec![Contact::new(identity(7).peer_id(), addr(7))];
        let out = msg(
            &mut n,
            1,
            Message::Nodes {
                from: identity(1).peer_id(),
                rpc: 42,
                closer,
            },
        );
        assert!(out.is_empty());
        assert_eq!(n.stats().unsolicited, 1);
        assert!(
            n.routing_table().is_empty(),
            "an unsolicited answer teaches nothing"
        );
    }

    #[test]
    fn answers_are_taken_only_from_the_address_and_peer_asked() {
        let mut n = node(0, Config::default());
        n.handle(
            T0,
            InEvent::AddContact(Contact::new(identity(1).peer_id(), addr(1))),
        );
        let out = n.handle(
            T0,
            InEvent::Command {
                tag: Tag(1),
                command: Command::FindNode(Key([0; 32])),
            },
        );
        let [(to, Message::FindNode { rpc, .. })] = sent(&out)[..] else {
            panic!("one FIND_NODE to our only contact");
        };
        assert_eq!(to, addr(1));
        let answer = |from: PeerId| Message::Nodes {
            from,
            rpc,
            closer: vec![],
        };
        // right rpc, wrong address; right address, wrong PeerId
        assert!(msg(&mut n, 2, answer(identity(1).peer_id())).is_empty());
        assert!(msg(&mut n, 1, answer(identity(2).peer_id())).is_empty());
        assert_eq!(n.stats().unsolicited, 2);
        // the real answer ends the lookup
        let out = msg(&mut n, 1, answer(identity(1).peer_id()));
        assert!(out.iter().any(|o| matches!(o, OutEvent::Emit(_))));
        // and a replay of it is unsolicited
        msg(&mut n, 1, answer(identity(1).peer_id()));
        assert_eq!(n.stats().unsolicited, 3);
    }

    #[test]
    fn forged_store_is_refused_and_counted() {
        let mut n = node(0, Config::default());
        let mut forged = peer_record(1, 1);
        if let Value::Peer(info) = &mut forged.value {
            info.addrs = vec!["10.6.6.6:4000".parse().unwrap()];
        }
        assert!(!store(&mut n, 2, forged));
        assert_eq!(n.stats().bad_signature, 1);
        assert!(n.record_store().is_empty());
    }

    #[test]
    fn stale_store_is_refused_and_counted() {
        let mut n = node(0, Config::default());
        assert!(store(&mut n, 1, peer_record(1, 5)));
        assert!(
            !store(&mut n, 2, peer_record(1, 4)),
            "a replay of an older version"
        );
        assert!(store(&mut n, 1, peer_record(1, 6)));
        let s = n.stats();
        assert_eq!((s.stored, s.stale_records), (2, 1));
        let held: Vec<u64> = n
            .record_store()
            .get(&Key::for_peer(&identity(1).peer_id()))
            .map(|s| s.record.seq)
            .collect();
        assert_eq!(held, vec![6]);
    }

    #[test]
    fn oversized_and_misplaced_records_are_refused_and_counted() {
        let mut n = node(0, Config::default());
        let id = identity(1);
        let big = Record::sign(
            &id,
            Key::for_value(b"k"),
            1,
            EPOCH_MS + 60_000,
            Value::Bytes(vec![0; 2000]),
        );
        assert!(!store(&mut n, 1, big));
        let mut elsewhere = peer_record(1, 1);
        elsewhere.key = Key::for_peer(&identity(3).peer_id());
        assert!(!store(&mut n, 1, elsewhere));
        let expired = Record::sign(
            &id,
            Key::for_value(b"k"),
            1,
            EPOCH_MS,
            Value::Bytes(vec![1]),
        );
        assert!(!store(&mut n, 1, expired));
        let s = n.stats();
        assert_eq!((s.invalid_records, s.expired_records, s.stored), (2, 1, 0));
    }

    #[test]
    fn flooding_source_is_rate_limited_and_others_still_served() {
        let config = Config {
            rate: 10,
            burst: 5,
            ..Config::default()
        };
        let mut n = node(0, config);
        let ping = |i: usize| Message::Ping {
            from: identity(i).peer_id(),
            rpc: 1,
        };
        let answered = (0..50)
            .filter(|_| !msg(&mut n, 1, ping(1)).is_empty())
            .count();
        assert_eq!(answered, 5);
        assert_eq!(n.stats().rate_limited, 45);
        assert!(
            !msg(&mut n, 2, ping(2)).is_empty(),
            "another source is unaffected"
        );
        // a second later the flooder has 10 more tokens
        let later = (0..50)
            .filter(|_| {
                let m = InEvent::Message {
                    from: addr(1),
                    message: ping(1),
                };
                !n.handle(T0 + Duration::from_secs(1), m).is_empty()
            })
            .count();
        assert_eq!(later, 5, "refilled up to the burst");
    }

    #[test]
    fn garbage_and_foreign_datagrams_are_counted_as_malformed() {
        let mut n = node(0, Config::default());
        for bytes in [vec![], vec![wire::VERSION, 0xff, 0xff], vec![99, 1, 2]] {
            assert!(
                n.handle(
                    T0,
                    InEvent::Datagram {
                        from: addr(1),
                        bytes
                    }
                )
                .is_empty()
            );
        }
        let ann = crate::proto::discovery::SignedAnnounce::sign(
            crate::proto::discovery::Announce {
                id: identity(1).peer_id(),
                instance: 1,
                name: "x".into(),
                kind: crate::proto::wire::DeviceKind::Laptop,
                tcp_port: 1,
                version: wire::VERSION,
                timestamp_ms: 0,
                reply: false,
            },
            &identity(1),
        );
        let bytes = wire::encode_datagram(&Datagram::Announce(ann)).unwrap();
        assert!(
            n.handle(
                T0,
                InEvent::Datagram {
                    from: addr(1),
                    bytes
                }
            )
            .is_empty()
        );
        assert_eq!(
            n.stats(),
            Stats {
                received: 4,
                malformed: 4,
                ..Stats::default()
            }
        );
    }

    #[test]
    fn answers_over_the_contact_cap_are_malformed() {
        let mut n = node(0, Config::default());
        let closer = (0..=MAX_CONTACTS)
            .map(|i| Contact::new(identity(i + 10).peer_id(), addr(i + 10)))
            .collect();
        msg(
            &mut n,
            1,
            Message::Nodes {
                from: identity(1).peer_id(),
                rpc: 1,
                closer,
            },
        );
        assert_eq!(n.stats().malformed, 1);
    }

    #[test]
    fn messages_claiming_to_be_from_us_are_dropped() {
        let mut n = node(0, Config::default());
        let me = n.id();
        assert!(msg(&mut n, 1, Message::Ping { from: me, rpc: 1 }).is_empty());
        assert!(n.routing_table().is_empty());
    }

    #[test]
    fn find_node_answer_leaves_out_the_asker_and_holds_at_most_k() {
        let config = Config {
            k: 4,
            ..Config::default()
        };
        let mut n = node(0, config);
        for i in 1..40 {
            n.handle(
                T0,
                InEvent::AddContact(Contact::new(identity(i).peer_id(), addr(i))),
            );
        }
        let asker = identity(1).peer_id();
        let out = msg(
            &mut n,
            1,
            Message::FindNode {
                from: asker,
                rpc: 3,
                target: Key::for_peer(&asker),
            },
        );
        let [(_, Message::Nodes { closer, .. })] = &sent(&out)[..] else {
            panic!("one answer")
        };
        assert!(closer.len() <= 4 && !closer.is_empty());
        assert!(closer.iter().all(|c| c.id != asker));
    }

    /// Identities (by index) whose keys fall in the far half of node 0's space.
    fn far_from_node_0(count: usize) -> Vec<usize> {
        let me = Key::for_peer(&identity(0).peer_id());
        (1..1000)
            .filter(|i| {
                me.distance(&Key::for_peer(&identity(*i).peer_id()))
                    .bucket()
                    == Some(255)
            })
            .take(count)
            .collect()
    }

    #[test]
    fn full_bucket_pings_its_oldest_entry_and_evicts_it_when_silent() {
        let config = Config {
            k: 1,
            ..Config::default()
        };
        let mut n = node(0, config);
        let [old, new] = far_from_node_0(2)[..] else {
            panic!()
        };
        msg(
            &mut n,
            old,
            Message::Ping {
                from: identity(old).peer_id(),
                rpc: 1,
            },
        );
        let out = msg(
            &mut n,
            new,
            Message::Ping {
                from: identity(new).peer_id(),
                rpc: 2,
            },
        );
        let ping = sent(&out)
            .into_iter()
            .find_map(|(to, m)| match m {
                Message::Ping { rpc, .. } if to == addr(old) => Some(rpc),
                _ => None,
            })
            .expect("the oldest entry is pinged");
        assert!(
            n.routing_table().get(&identity(new).peer_id()).is_none(),
            "newcomer waits"
        );
        // one silence is as likely a lost datagram as a dead peer: ask again
        let out = n.handle(
            T0 + Duration::from_secs(1),
            InEvent::Timer(Timer::Rpc(ping)),
        );
        let me = n.id();
        assert_eq!(
            sent(&out),
            vec![(
                addr(old),
                Message::Ping {
                    from: me,
                    rpc: ping
                }
            )]
        );
        assert!(n.routing_table().get(&identity(old).peer_id()).is_some());
        n.handle(
            T0 + Duration::from_secs(2),
            InEvent::Timer(Timer::Rpc(ping)),
        );
        assert!(n.routing_table().get(&identity(old).peer_id()).is_none());
        assert!(n.routing_table().get(&identity(new).peer_id()).is_some());
    }

    #[test]
    fn full_bucket_keeps_its_oldest_entry_when_it_answers() {
        let config = Config {
            k: 1,
            ..Config::default()
        };
        let mut n = node(0, config);
        let [old, new] = far_from_node_0(2)[..] else {
            panic!()
        };
        msg(
            &mut n,
            old,
            Message::Ping {
                from: identity(old).peer_id(),
                rpc: 1,
            },
        );
        let out = msg(
            &mut n,
            new,
            Message::Ping {
                from: identity(new).peer_id(),
                rpc: 2,
            },
        );
        let ping = sent(&out)
            .into_iter()
            .find_map(|(_, m)| match m {
                Message::Ping { rpc, .. } => Some(rpc),
                _ => None,
            })
            .unwrap();
        msg(
            &mut n,
            old,
            Message::Pong {
                from: identity(old).peer_id(),
                rpc: ping,
            },
        );
        n.handle(
            T0 + Duration::from_secs(2),
            InEvent::Timer(Timer::Rpc(ping)),
        );
        assert!(n.routing_table().get(&identity(old).peer_id()).is_some());
        assert!(n.routing_table().get(&identity(new).peer_id()).is_none());
        assert_eq!(n.stats().timeouts, 0);
    }
}
