//! What the node does with lookups: runs the commands (find a node, a peer, a
//! name, a value; store; publish ourselves), republishes our records and
//! replicates the ones held for others (IPTPS 2002, §2.3 and §2.5).
//!
//! Each command becomes one [`Query`] plus a [`Goal`]: what to ask (FIND_NODE
//! or FIND_VALUE), when to stop early (a FIND_VALUE with
//! [`Config::value_quorum`](super::Config::value_quorum) answers), and what to do
//! at the end (report, or STORE records on the k nearest found). Records met on
//! the way are validated before they count; the newest per publisher wins.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use super::query::Query;
use super::rpc::Purpose;
use super::{
    Contact, Key, LookupStats, MAX_ADDRS, Message, OutEvent, Outcome, PeerInfo, RECORD_BUDGET,
    Record, RecordError, State, Tag, Value, done, normalize_name, record,
};
use crate::identity::PeerId;
use crate::proto::wire::MAX_NAME_LEN;

pub(super) enum Goal {
    Bootstrap,
    Refresh,
    Nodes,
    Peer(PeerId),
    Name(String),
    Values,
    /// Look up the key, then store these records on the k nearest.
    Store(Vec<Record>),
}

pub(super) enum Phase {
    Lookup,
    Storing { waiting: usize, acks: usize },
}

pub(super) struct Active {
    pub(super) query: Query,
    goal: Goal,
    tag: Option<Tag>,
    pub(super) phase: Phase,
    /// FIND_VALUE: the newest valid record per publisher so far.
    pub(super) found: BTreeMap<PeerId, Record>,
    /// FIND_VALUE: nodes (us included) that returned a matching record.
    pub(super) holders: usize,
    /// FIND_VALUE: hops to the first holder.
    pub(super) value_hops: Option<u32>,
}

/// One command split into several lookups (publishing our peer record under
/// two keys) reports once, when all are done.
pub(super) struct Group {
    remaining: usize,
    replicas: usize,
}

impl<R: Rng> State<R> {
    pub(super) fn publish_self(
        &mut self,
        now: Duration,
        tag: Tag,
        name: String,
        addrs: Vec<SocketAddr>,
        out: &mut Vec<OutEvent>,
    ) {
        if name.len() > MAX_NAME_LEN {
            done(
                out,
                tag,
                Outcome::Refused(RecordError::NameTooLong),
                LookupStats::default(),
            );
            return;
        }
        let mut usable: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if Contact::new(self.id, a).is_dialable() && !usable.contains(&a) {
                usable.push(a);
            }
        }
        usable.truncate(MAX_ADDRS);
        let info = PeerInfo {
            name,
            addrs: usable,
        };
        // a new name replaces the old one: stop republishing the old records
        self.own.retain(|_, r| !matches!(r.value, Value::Peer(_)));
        let records = self.self_records(now, &info);
        self.groups.insert(
            tag,
            Group {
                remaining: records.len(),
                replicas: usize::MAX,
            },
        );
        for r in records {
            self.publish(now, r, Some(tag), out);
        }
    }

    /// Our peer record under our key and, if we have a name, under the name's.
    pub(super) fn self_records(&mut self, now: Duration, info: &PeerInfo) -> Vec<Record> {
        let mut keys = vec![self.key];
        if !normalize_name(&info.name).is_empty() {
            keys.push(Key::for_name(&info.name));
        }
        keys.into_iter()
            .map(|k| self.sign(now, k, Value::Peer(info.clone())))
            .collect()
    }

    /// Signs `value` under `key` with the next sequence number and our TTL.
    pub(super) fn sign(&mut self, now: Duration, key: Key, value: Value) -> Record {
        let wall = self.wall_ms(now);
        self.last_seq = (self.last_seq + 1).max(wall);
        let ttl = u64::try_from(self.config.record_ttl.as_millis()).unwrap_or(u64::MAX);
        Record::sign(
            &self.identity,
            key,
            self.last_seq,
            wall.saturating_add(ttl),
            value,
        )
    }

    pub(super) fn publish(
        &mut self,
        now: Duration,
        record: Record,
        tag: Option<Tag>,
        out: &mut Vec<OutEvent>,
    ) {
        let key = record.key;
        self.own.insert(key, record.clone());
        self.start(now, Goal::Store(vec![record]), tag, key, out);
    }

    pub(super) fn start(
        &mut self,
        now: Duration,
        goal: Goal,
        tag: Option<Tag>,
        target: Key,
        out: &mut Vec<OutEvent>,
    ) {
        let seeds = self.table.closest(&target, self.config.k);
        self.table.mark_lookup(&target, now);
        let mut active = Active {
            query: Query::new(target, self.config.k, self.config.alpha, seeds),
            goal,
            tag,
            phase: Phase::Lookup,
            found: BTreeMap::new(),
            holders: 0,
            value_hops: None,
        };
        if matches!(active.goal, Goal::Peer(_) | Goal::Name(_) | Goal::Values) {
            let wall = self.wall_ms(now);
            let local: Vec<Record> = self.local_records(&target, wall);
            if merge_found(&mut active, &local, wall) {
                active.holders += 1;
                active.value_hops = Some(0);
                if active.holders >= self.config.value_quorum {
                    active.query.stop();
                }
            }
        }
        let qid = self.next_query;
        self.next_query += 1;
        self.queries.insert(qid, active);
        self.drive(now, qid, out);
    }

    /// Our own record (if any) and the records we hold under `key`, unexpired.
    pub(super) fn local_records(&self, key: &Key, wall: u64) -> Vec<Record> {
        let mut v: Vec<Record> = self.own.get(key).cloned().into_iter().collect();
        v.extend(
            self.store
                .for_reply(key, RECORD_BUDGET)
                .into_iter()
                .filter(|r| r.publisher != self.id),
        );
        v.retain(|r| r.expires_ms > wall);
        v
    }

    /// Sends what a query wants sent, and finishes it when it is done.
    pub(super) fn drive(&mut self, now: Duration, qid: u64, out: &mut Vec<OutEvent>) {
        let Some(active) = self.queries.get_mut(&qid) else {
            return;
        };
        match active.phase {
            Phase::Lookup => {
                let target = active.query.target();
                let find_value =
                    matches!(active.goal, Goal::Peer(_) | Goal::Name(_) | Goal::Values);
                let asks = active.query.next_requests();
                let finished = active.query.is_finished();
                for to in asks {
                    let rpc = self.new_rpc();
                    let message = if find_value {
                        Message::FindValue {
                            from: self.id,
                            rpc,
                            key: target,
                        }
                    } else {
                        Message::FindNode {
                            from: self.id,
                            rpc,
                            target,
                        }
                    };
                    self.request(to, rpc, Purpose::Lookup(qid), message, out);
                }
                if finished {
                    self.finish_lookup(now, qid, out);
                }
            }
            Phase::Storing { waiting: 0, acks } => {
                self.complete(qid, Outcome::Stored { replicas: acks }, out)
            }
            Phase::Storing { .. } => {}
        }
    }

    pub(super) fn finish_lookup(&mut self, now: Duration, qid: u64, out: &mut Vec<OutEvent>) {
        let Some(active) = self.queries.get_mut(&qid) else {
            return;
        };
        let outcome = match &active.goal {
            Goal::Bootstrap => Outcome::Bootstrapped {
                contacts: self.table.len(),
            },
            Goal::Refresh => Outcome::Closest(Vec::new()),
            Goal::Nodes => Outcome::Closest(active.query.closest()),
            Goal::Peer(peer) => Outcome::Peer(active.found.get(peer).and_then(Record::peer_record)),
            Goal::Name(name) => Outcome::Named(
                active
                    .found
                    .values()
                    .filter_map(Record::peer_record)
                    .filter(|p| record::matches_name(p, name))
                    .collect(),
            ),
            Goal::Values => Outcome::Values(
                active
                    .found
                    .values()
                    .filter_map(Record::user_value)
                    .collect(),
            ),
            Goal::Store(records) => {
                let target = active.query.target();
                let mut targets = active.query.closest();
                // we hold the records ourselves: if we are one of the k
                // nearest, k - 1 others make k copies (a lookup never lists us)
                let ours = self.key.distance(&target);
                if targets.len() >= self.config.k
                    && targets
                        .last()
                        .is_some_and(|c| c.key().distance(&target) > ours)
                {
                    targets.pop();
                }
                let records = records.clone();
                active.phase = Phase::Storing {
                    waiting: targets.len() * records.len(),
                    acks: 0,
                };
                for to in targets {
                    for record in &records {
                        let rpc = self.new_rpc();
                        let message = Message::Store {
                            from: self.id,
                            rpc,
                            record: record.clone(),
                        };
                        self.request(to, rpc, Purpose::Store(qid), message, out);
                    }
                }
                self.drive(now, qid, out);
                return;
            }
        };
        let bootstrap = matches!(active.goal, Goal::Bootstrap);
        self.complete(qid, outcome, out);
        if bootstrap {
            // Joining refreshes the buckets beyond our nearest neighbour
            // (§2.3), but only those the self-lookup left empty: a bucket that
            // holds a contact already leads a lookup into its range. Refreshing
            // every one cost a lookup (~46 messages) per bucket: 1,010
            // messages per join at 2,000 nodes in the simulator, 317 without,
            // for lookups as short and as exact (docs/benchmarks.md, issue 21).
            let empty: Vec<usize> = self
                .table
                .buckets_to_refresh(now, self.config.refresh_interval)
                .into_iter()
                .filter(|b| self.table.bucket_is_empty(*b))
                .collect();
            for b in empty {
                // As on the refresh timer: the rest are still due then. (A
                // contact near our id makes almost every bucket due at once.)
                if self.queries.len() >= self.config.max_queries {
                    break;
                }
                let target = self.key.random_in_bucket(b, &mut self.rng);
                self.start(now, Goal::Refresh, None, target, out);
            }
        }
    }

    /// Ends query `qid` and reports to its tag, if any.
    pub(super) fn complete(&mut self, qid: u64, outcome: Outcome, out: &mut Vec<OutEvent>) {
        let Some(active) = self.queries.remove(&qid) else {
            return;
        };
        let mut lookup = active.query.stats();
        if let Some(h) = active.value_hops {
            lookup.hops = h;
        }
        let Some(tag) = active.tag else {
            return;
        };
        if let (Some(group), Outcome::Stored { replicas }) = (self.groups.get_mut(&tag), &outcome) {
            group.remaining -= 1;
            group.replicas = group.replicas.min(*replicas);
            if group.remaining > 0 {
                return;
            }
            let replicas = group.replicas;
            self.groups.remove(&tag);
            done(out, tag, Outcome::Stored { replicas }, lookup);
            return;
        }
        done(out, tag, outcome, lookup);
    }

    /// Re-signs our records with a new sequence number and expiry, and stores
    /// them again on the (current) k nearest.
    pub(super) fn republish(&mut self, now: Duration, out: &mut Vec<OutEvent>) {
        let old: Vec<Record> = self.own.values().cloned().collect();
        for r in old {
            let fresh = self.sign(now, r.key, r.value);
            self.publish(now, fresh, None, out);
        }
    }

    /// Re-stores held records (not ours) to the current k nearest of their key,
    /// skipping keys stored within the interval (§2.5), a bounded number of keys
    /// per round.
    pub(super) fn replicate(&mut self, now: Duration, out: &mut Vec<OutEvent>) {
        let room = self.config.max_queries.saturating_sub(self.queries.len()) / 2;
        let due = self
            .store
            .due_for_replication(now, self.config.replicate_interval);
        for key in due.into_iter().take(room) {
            let records: Vec<Record> = self.store.get(&key).map(|s| s.record.clone()).collect();
            self.store.mark_replicated(&key, now);
            self.start(now, Goal::Store(records), None, key, out);
        }
    }
}

/// Merges validated records into a FIND_VALUE's findings (newest sequence per
/// publisher); returns whether any of them is what the lookup looks for.
pub(super) fn merge_found(active: &mut Active, records: &[Record], wall: u64) -> bool {
    let mut any = false;
    for r in records {
        if r.expires_ms <= wall {
            continue;
        }
        let wanted = match &active.goal {
            Goal::Peer(p) => r.publisher == *p && matches!(r.value, Value::Peer(_)),
            Goal::Name(n) => r.peer_record().is_some_and(|p| record::matches_name(&p, n)),
            Goal::Values => matches!(r.value, Value::Bytes(_)),
            _ => false,
        };
        if !wanted {
            continue;
        }
        any = true;
        match active.found.get(&r.publisher) {
            Some(held) if held.seq >= r.seq => {}
            _ => {
                active.found.insert(r.publisher, r.clone());
            }
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::super::tests::{EPOCH_MS, Lan, addr, identity, node};
    use super::super::{Command, Config, Event, InEvent, Timer};
    use super::*;
    use crate::proto::sim::SimRng;

    const T0: Duration = Duration::from_secs(1);

    fn sends(out: &[OutEvent]) -> Vec<(SocketAddr, Message)> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send(a, m) => Some((*a, m.clone())),
                _ => None,
            })
            .collect()
    }

    fn outcome(out: &[OutEvent]) -> Option<(Outcome, LookupStats)> {
        out.iter().find_map(|o| match o {
            OutEvent::Emit(Event::Done {
                outcome, lookup, ..
            }) => Some((outcome.clone(), *lookup)),
            _ => None,
        })
    }

    fn contact(i: usize) -> Contact {
        Contact::new(identity(i).peer_id(), addr(i))
    }

    fn index_of(a: SocketAddr) -> usize {
        (0..1000).find(|i| addr(*i) == a).unwrap()
    }

    /// Node 0 knowing nodes 1..=n.
    fn knowing(n: usize, config: Config) -> State<SimRng> {
        let mut s = node(0, config);
        for i in 1..=n {
            s.handle(T0, InEvent::AddContact(contact(i)));
        }
        s
    }

    fn answer(s: &mut State<SimRng>, at: Duration, from: usize, message: Message) -> Vec<OutEvent> {
        s.handle(
            at,
            InEvent::Message {
                from: addr(from),
                message,
            },
        )
    }

    #[test]
    fn find_node_is_fed_answers_and_timeouts_until_the_k_nearest_answered() {
        let config = Config {
            k: 3,
            alpha: 2,
            ..Config::default()
        };
        let mut s = knowing(6, config);
        let target = Key::for_peer(&identity(100).peer_id());
        let mut out = s.handle(
            T0,
            InEvent::Command {
                tag: Tag(1),
                command: Command::FindNode(target),
            },
        );
        let dead = 2; // never answers
        let mut now = T0;
        let mut result = None;
        for _ in 0..50 {
            if let Some(r) = outcome(&out) {
                result = Some(r);
                break;
            }
            let asked = sends(&out);
            let timers: Vec<Timer> = out
                .iter()
                .filter_map(|o| match o {
                    OutEvent::ScheduleTimer(_, t) => Some(*t),
                    _ => None,
                })
                .collect();
            assert!(asked.len() <= 2, "at most alpha requests at once");
            out = Vec::new();
            now += Duration::from_millis(1);
            for ((to, m), t) in asked.into_iter().zip(timers) {
                let i = index_of(to);
                let Message::FindNode { rpc, .. } = m else {
                    panic!("{m:?}")
                };
                if i == dead {
                    now += Duration::from_secs(1);
                    out.extend(s.handle(now, InEvent::Timer(t)));
                } else {
                    // everyone answers that they know only node 7
                    let reply = Message::Nodes {
                        from: identity(i).peer_id(),
                        rpc,
                        closer: vec![contact(7)],
                    };
                    out.extend(answer(&mut s, now, i, reply));
                }
            }
        }
        let (Outcome::Closest(found), stats) = result.expect("the lookup finished") else {
            panic!()
        };
        let mut alive: Vec<Contact> = [1, 3, 4, 5, 6, 7].into_iter().map(contact).collect();
        alive.sort_by_key(|c| c.key().distance(&target));
        alive.truncate(3);
        assert_eq!(found, alive);
        assert_eq!(
            stats.failures,
            u32::from(found.len() < 6 && s.stats().timeouts > 0)
        );
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

    /// Starts FindPeer(node 50) on a node knowing 1..=5; returns the requests.
    fn find_peer_50(config: Config) -> (State<SimRng>, Vec<(usize, u64)>) {
        let mut s = knowing(5, config);
        let out = s.handle(
            T0,
            InEvent::Command {
                tag: Tag(1),
                command: Command::FindPeer(identity(50).peer_id()),
            },
        );
        let asked = sends(&out)
            .into_iter()
            .map(|(to, m)| match m {
                Message::FindValue { rpc, .. } => (index_of(to), rpc),
                other => panic!("{other:?}"),
            })
            .collect();
        (s, asked)
    }

    fn value(from: usize, rpc: u64, records: Vec<Record>) -> Message {
        Message::Value {
            from: identity(from).peer_id(),
            rpc,
            records,
            closer: vec![],
        }
    }

    #[test]
    fn find_value_stops_once_the_quorum_answered_and_the_newest_wins() {
        let (mut s, asked) = find_peer_50(Config::default());
        assert_eq!(asked.len(), 3);
        let (a, rpc_a) = asked[0];
        let (b, rpc_b) = asked[1];
        let out = answer(&mut s, T0, a, value(a, rpc_a, vec![peer_record(50, 7)]));
        assert!(outcome(&out).is_none(), "one holder is not a quorum");
        let out = answer(&mut s, T0, b, value(b, rpc_b, vec![peer_record(50, 9)]));
        let (Outcome::Peer(Some(p)), stats) = outcome(&out).expect("quorum of 2 reached") else {
            panic!()
        };
        assert_eq!(p.seq, 9);
        assert_eq!(stats.hops, 1);
        assert!(sends(&out).is_empty(), "nothing more is asked");
    }

    #[test]
    fn forged_record_in_an_answer_is_not_believed_and_counted() {
        let config = Config {
            value_quorum: 1,
            ..Config::default()
        };
        let (mut s, asked) = find_peer_50(config);
        let mut forged = peer_record(50, 3);
        forged.seq = 4; // signature no longer matches
        let (a, rpc) = asked[0];
        let out = answer(&mut s, T0, a, value(a, rpc, vec![forged]));
        assert!(outcome(&out).is_none());
        assert_eq!(s.stats().bad_signature, 1);
        // nobody else knows anything: the lookup ends empty-handed
        let mut waiting: Vec<(usize, u64)> = asked[1..].to_vec();
        for (to, m) in sends(&out) {
            if let Message::FindValue { rpc, .. } = m {
                waiting.push((index_of(to), rpc));
            }
        }
        for _ in 0..10 {
            let Some((i, rpc)) = waiting.pop() else { break };
            let out = answer(&mut s, T0, i, value(i, rpc, vec![]));
            if let Some((o, _)) = outcome(&out) {
                assert_eq!(o, Outcome::Peer(None));
                return;
            }
            for (to, m) in sends(&out) {
                if let Message::FindValue { rpc, .. } = m {
                    waiting.push((index_of(to), rpc));
                }
            }
        }
        panic!("the lookup did not end");
    }

    #[test]
    fn records_of_another_key_in_an_answer_are_ignored() {
        let config = Config {
            value_quorum: 1,
            ..Config::default()
        };
        let (mut s, asked) = find_peer_50(config);
        let (a, rpc) = asked[0];
        let out = answer(&mut s, T0, a, value(a, rpc, vec![peer_record(51, 1)]));
        assert!(outcome(&out).is_none());
    }

    #[test]
    fn too_many_lookups_at_once_are_refused_as_busy() {
        let config = Config {
            max_queries: 1,
            ..Config::default()
        };
        let mut s = knowing(3, config);
        let cmd = |tag| InEvent::Command {
            tag: Tag(tag),
            command: Command::FindNode(Key([1; 32])),
        };
        assert!(outcome(&s.handle(T0, cmd(1))).is_none());
        let out = s.handle(T0, cmd(2));
        assert_eq!(outcome(&out).map(|o| o.0), Some(Outcome::Busy));
        assert_eq!(s.stats().busy, 1);
    }

    #[test]
    fn bootstrap_refreshes_no_more_buckets_than_lookups_allowed_at_once() {
        // A contact sharing a long prefix with our id makes every bucket from
        // its own outward due for a refresh once the bootstrap ends.
        let config = Config {
            max_queries: 2,
            ..Config::default()
        };
        let mut s = node(0, config);
        let me = s.key();
        let near = (1..4000)
            .find(|i| {
                let b = me
                    .distance(&Key::for_peer(&identity(*i).peer_id()))
                    .bucket();
                b.is_some_and(|b| b <= super::super::KEY_BITS - 10)
            })
            .expect("an id within 2^-9 of ours");
        s.handle(T0, InEvent::AddContact(contact(near)));
        let out = s.handle(
            T0,
            InEvent::Command {
                tag: Tag(1),
                command: Command::Bootstrap,
            },
        );
        let (_, Message::FindNode { rpc, .. }) = sends(&out)[0] else {
            panic!("no FIND_NODE sent");
        };
        let reply = Message::Nodes {
            from: identity(near).peer_id(),
            rpc,
            closer: Vec::new(),
        };
        let out = answer(&mut s, T0, near, reply);
        assert!(matches!(
            outcome(&out),
            Some((Outcome::Bootstrapped { .. }, _))
        ));
        assert!(
            s.active_queries() <= 2,
            "{} lookups running, the limit is 2",
            s.active_queries()
        );
    }

    #[test]
    fn lookups_route_around_nodes_that_went_silent() {
        let mut lan = Lan::new(60, Config::default());
        lan.join_all();
        let down = [4, 9, 13, 21, 22, 30, 41, 55];
        lan.down.extend(down);
        for (source, target) in [(0, 17), (33, 2), (59, 40)] {
            let key = Key::for_peer(&lan.nodes[target].id());
            let (Outcome::Closest(found), stats) = lan.run(source, Command::FindNode(key)) else {
                panic!()
            };
            let mut live: Vec<Contact> = (0..60)
                .filter(|i| !down.contains(i) && *i != source)
                .map(|i| lan.contact(i))
                .collect();
            live.sort_by_key(|c| c.key().distance(&key));
            live.truncate(20);
            assert_eq!(found, live, "{source} -> {target}");
            assert!(stats.hops >= 1);
        }
    }

    #[test]
    fn publishing_stores_on_the_k_nearest_nodes() {
        let config = Config {
            k: 5,
            ..Config::default()
        };
        let mut lan = Lan::new(30, config);
        lan.join_all();
        let key = Key::for_value(b"x");
        let mut nearest: Vec<usize> = (0..30).collect();
        nearest.sort_by_key(|i| Key::for_peer(&lan.nodes[*i].id()).distance(&key));
        // a publisher among the 5 nearest counts as one of the 5 copies
        let publisher = if nearest[..5].contains(&3) {
            3
        } else {
            nearest[0]
        };
        let (o, _) = lan.run(
            publisher,
            Command::Put {
                key: b"x".to_vec(),
                value: b"y".to_vec(),
            },
        );
        assert_eq!(o, Outcome::Stored { replicas: 4 });
        for (rank, i) in nearest.iter().enumerate() {
            let holds = lan.nodes[*i].record_store().get(&key).count() == 1;
            assert_eq!(
                holds,
                rank < 5 && *i != publisher,
                "node {i} of rank {rank}"
            );
        }
        let far = nearest[29];
        let (o, _) = lan.run(
            far,
            Command::Put {
                key: b"x".to_vec(),
                value: b"z".to_vec(),
            },
        );
        assert_eq!(
            o,
            Outcome::Stored { replicas: 5 },
            "a far publisher stores 5 copies"
        );
    }

    #[test]
    fn replication_re_stores_held_records_on_the_current_nearest() {
        let config = Config {
            k: 3,
            ..Config::default()
        };
        let mut lan = Lan::new(20, config.clone());
        lan.join_all();
        lan.run(
            3,
            Command::Put {
                key: b"x".to_vec(),
                value: b"y".to_vec(),
            },
        );
        let key = Key::for_value(b"x");
        let holders = |lan: &Lan| -> Vec<usize> {
            (0..lan.nodes.len())
                .filter(|i| lan.nodes[*i].record_store().get(&key).count() > 0)
                .collect()
        };
        let before = holders(&lan);
        assert_eq!(before.len(), 3);
        // the nearest holder dies; an hour later the others replicate to the
        // new third-nearest
        lan.down.insert(before[0]);
        let later = config.replicate_interval + Duration::from_secs(1);
        for i in before[1..].iter().copied() {
            lan.sched
                .schedule(later, (i, InEvent::Timer(Timer::Replicate)));
        }
        lan.advance(later + Duration::from_secs(10));
        let after: Vec<usize> = holders(&lan)
            .into_iter()
            .filter(|i| *i != before[0])
            .collect();
        assert_eq!(after.len(), 3, "{before:?} -> {after:?}");
    }
}
