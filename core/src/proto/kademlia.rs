//! Kademlia DHT (Maymounkov & Mazières, "Kademlia: A Peer-to-peer Information
//! System Based on the XOR Metric", IPTPS 2002), sans-IO.
//!
//! What it is for: finding a peer by its PeerId or device name where LAN
//! discovery cannot reach it (multicast blocked, another VLAN, client isolation),
//! through any peer both sides know. It also stores small signed user values.
//!
//! # Shape
//!
//! [`State`] is one node. The driver feeds it [`InEvent`]s with the time `now`
//! (a [`Duration`] since the driver's epoch; the state never reads a clock) and
//! carries out the [`OutEvent`]s it returns: send this [`Message`] to that
//! address, wake me with this [`Timer`] after that delay, tell the user this
//! [`Event`]. Randomness (RPC ids, refresh targets) comes from the RNG given to
//! [`State::new`], and every map whose order reaches the output is a `BTreeMap`,
//! so the simulator (`proto::sim::dht`) replays a run exactly from its seed.
//! Record expiry is wall-clock time: `State::new` takes the Unix time (ms) of the
//! driver's epoch, and wall time is that plus `now`.
//!
//! # The protocol
//!
//! - Keys are 256-bit BLAKE3 hashes ([`Key`]), distance is XOR; k = 20, α = 3.
//! - [`routing_table`]: k-buckets with the least-recently-seen rule: a full
//!   bucket pings its oldest contact and only replaces it if it does not answer,
//!   newcomers wait in a replacement cache (§2.2, §4.1); buckets with no lookup
//!   for [`Config::refresh_interval`] are refreshed with a lookup of a random key
//!   in them, and joining refreshes every bucket beyond our nearest neighbour
//!   that the self-lookup left empty (§2.3 refreshes all of them).
//! - [`query`]: the iterative lookup fed answers and timeouts; FIND_NODE returns
//!   the k nearest nodes that answered, FIND_VALUE stops once
//!   [`Config::value_quorum`] nodes returned matching records.
//! - STORE goes to the k nearest nodes found by a lookup. Publishers re-sign and
//!   republish their records every [`Config::republish_interval`]; nodes holding
//!   records re-store them to the current k nearest every
//!   [`Config::replicate_interval`] unless someone just did (§2.5).
//! - [`record`]: every record is signed by its publisher, carries a sequence
//!   number and an absolute expiry; bad signatures, older sequences and oversize
//!   values are refused and counted in [`Stats`].
//! - Name search: a peer publishes its [`PeerInfo`] both under its own key and
//!   under `BLAKE3("name:" + lowercased name)`. A key holds one record per
//!   publisher, so all devices sharing a name are found by one lookup.
//!
//! # Bad input
//!
//! Undecodable or over-cap messages, forged or stale records, and requests over
//! the per-source rate ([`Config::rate`], a token bucket per address) are
//! dropped and counted. Answers are taken only from the address and PeerId a
//! request went to, with the RPC id it carried; anything else is counted as
//! unsolicited and ignored (and does not touch the routing table).
//!
//! Not authenticated: a node's claim to a PeerId in a request is believed for
//! routing (as in the paper). What is returned to the user (records) is signed,
//! so a lying node can waste lookups but cannot make us accept a false address.

pub mod key;
mod lookup;
pub mod message;
pub mod query;
pub mod record;
pub mod record_store;
pub mod routing_table;
mod rpc;
pub mod token_bucket;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use crate::identity::{Identity, PeerId};
use crate::proto::wire::{self, Datagram};

pub use key::{Contact, Distance, KEY_BITS, Key, normalize_name};
pub use message::{MAX_CONTACTS, MAX_RECORDS, Message, RECORD_BUDGET};
pub use query::LookupStats;
pub use record::{
    MAX_ADDRS, MAX_RECORD_LEN, MAX_VALUE_LEN, PeerInfo, PeerRecord, Record, RecordError, UserValue,
    Value,
};

use lookup::{Active, Goal, Group};
use record_store::RecordStore;
use routing_table::RoutingTable;
use rpc::Pending;
use token_bucket::TokenBuckets;

/// Tunables; the defaults suit a LAN of up to tens of thousands of nodes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bucket size and replication factor.
    pub k: usize,
    /// Requests in flight per lookup.
    pub alpha: usize,
    /// How long to wait for an answer to one attempt of a request.
    pub request_timeout: Duration,
    /// Times a request is sent again after a timeout before the peer counts
    /// as failed (one lost datagram should not drop a live peer).
    pub retries: u32,
    /// Failed requests in a row after which a contact is stale: left out of
    /// lookups and answers, and replaced as soon as someone can take its place.
    /// Each failure already means `1 + retries` silent attempts (the paper
    /// counts 5 single attempts; on a LAN silence is rarely congestion).
    pub stale_after: u32,
    /// Size of each bucket's replacement cache.
    pub replacement_cache: usize,
    /// A bucket with no lookup for this long is refreshed.
    pub refresh_interval: Duration,
    /// Lifetime of the records we publish.
    pub record_ttl: Duration,
    /// Records expiring further ahead than this are refused.
    pub max_record_ttl: Duration,
    /// How often we re-sign and re-store our own records (< `record_ttl`).
    pub republish_interval: Duration,
    /// How often held records are re-stored to the current k nearest (well
    /// under `record_ttl`, so nodes that joined near a key get its records
    /// while they still matter).
    pub replicate_interval: Duration,
    /// A FIND_VALUE stops once this many nodes returned matching records.
    pub value_quorum: usize,
    /// Records held for others, in all and per key.
    pub max_records: usize,
    pub max_records_per_key: usize,
    /// Lookups running at once; beyond it commands are refused as busy.
    pub max_queries: usize,
    /// Requests per second accepted from one address (0: unlimited) ...
    pub rate: u32,
    /// ... after a burst of this many.
    pub burst: u32,
    /// Source addresses tracked by the rate limiter.
    pub max_sources: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            request_timeout: Duration::from_secs(1),
            retries: 1,
            stale_after: 1,
            replacement_cache: 8,
            refresh_interval: Duration::from_secs(3600),
            record_ttl: Duration::from_secs(3600),
            max_record_ttl: Duration::from_secs(24 * 3600),
            republish_interval: Duration::from_secs(20 * 60),
            replicate_interval: Duration::from_secs(10 * 60),
            value_quorum: 2,
            max_records: 16 * 1024,
            max_records_per_key: 64,
            max_queries: 256,
            rate: 100,
            burst: 200,
            max_sources: 4096,
        }
    }
}

/// Names a command so its result can be matched; chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Tag(pub u64);

/// What the user (through the driver) asks of the DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join: look ourselves up, then refresh every bucket beyond our nearest
    /// neighbour. Needs at least one contact ([`InEvent::AddContact`]).
    Bootstrap,
    /// The k nodes nearest `target`.
    FindNode(Key),
    /// The current record of a peer.
    FindPeer(PeerId),
    /// The records of every peer with this device name (case-insensitive).
    FindName(String),
    /// The values published under a user key, one per publisher.
    Get(Vec<u8>),
    /// Publishes a value (at most [`MAX_VALUE_LEN`] bytes) under a user key.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Publishes (and keeps republishing) our addresses and device name.
    PublishSelf {
        name: String,
        addrs: Vec<SocketAddr>,
    },
}

/// What the driver feeds in.
#[derive(Debug, Clone)]
pub enum InEvent {
    /// Start the periodic timers (refresh, republish, replicate, expire).
    Start,
    /// A datagram arrived on the DHT socket.
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A message arrived, already decoded (simulator).
    Message {
        from: SocketAddr,
        message: Message,
    },
    Timer(Timer),
    /// A peer learnt elsewhere (discovery, `--connect`, the peer store).
    AddContact(Contact),
    Command {
        tag: Tag,
        command: Command,
    },
}

/// What the state machine asks of the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum OutEvent {
    /// Encode as `wire::Datagram::Dht` and send to the address.
    Send(SocketAddr, Message),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The request with this RPC id times out.
    Rpc(u64),
    Refresh,
    Republish,
    Replicate,
    Expire,
}

/// Results for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The command tagged `tag` finished.
    Done {
        tag: Tag,
        outcome: Outcome,
        lookup: LookupStats,
    },
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Bootstrap's self-lookup ended; the table holds `contacts` entries.
    Bootstrapped {
        contacts: usize,
    },
    /// The nearest nodes that answered, nearest first.
    Closest(Vec<Contact>),
    /// The peer's newest valid record, if anyone had one.
    Peer(Option<PeerRecord>),
    /// One record per peer with the name.
    Named(Vec<PeerRecord>),
    Values(Vec<UserValue>),
    /// A record was stored on `replicas` nodes (for `PublishSelf`: the fewer of
    /// its two records).
    Stored {
        replicas: usize,
    },
    /// The command's record is invalid (e.g. a value over the size cap).
    Refused(RecordError),
    /// Too many lookups running; try again later.
    Busy,
}

/// Counters of what came in and what was done with it; cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages received (before any check).
    pub received: u64,
    /// Messages sent.
    pub sent: u64,
    /// Undecodable datagrams and messages over a cap.
    pub malformed: u64,
    /// Answers no request of ours was waiting for.
    pub unsolicited: u64,
    /// Requests dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Records whose signature did not verify.
    pub bad_signature: u64,
    /// Records older than (or conflicting with) the one held.
    pub stale_records: u64,
    /// Records already expired, or expiring too far ahead.
    pub expired_records: u64,
    /// Records over the size caps, at the wrong key, or with bad addresses.
    pub invalid_records: u64,
    /// Records accepted by STORE.
    pub stored: u64,
    /// Valid records refused because the store is full.
    pub store_full: u64,
    /// Requests that timed out (each attempt counts).
    pub timeouts: u64,
    /// Requests sent again after a timeout.
    pub retries: u64,
    /// Commands refused because too many lookups were running.
    pub busy: u64,
}

/// The Kademlia state of one node.
pub struct State<R> {
    config: Config,
    identity: Identity,
    id: PeerId,
    key: Key,
    wall_epoch_ms: u64,
    rng: R,
    table: RoutingTable,
    store: RecordStore,
    /// Our own records by key, re-signed on every republish.
    own: BTreeMap<Key, Record>,
    last_seq: u64,
    pending: BTreeMap<u64, Pending>,
    queries: BTreeMap<u64, Active>,
    next_query: u64,
    groups: BTreeMap<Tag, Group>,
    limiter: TokenBuckets,
    stats: Stats,
}

impl<R> std::fmt::Debug for State<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("id", &self.id)
            .field("contacts", &self.table.len())
            .field("records", &self.store.len())
            .field("queries", &self.queries.len())
            .finish_non_exhaustive()
    }
}

impl<R: Rng> State<R> {
    /// A node with an empty table. `wall_epoch_ms` is the Unix time in ms at the
    /// driver's `now = 0`.
    pub fn new(config: Config, identity: Identity, wall_epoch_ms: u64, rng: R) -> Self {
        let id = identity.peer_id();
        let key = Key::for_peer(&id);
        Self {
            table: RoutingTable::new(key, config.k, config.replacement_cache, config.stale_after),
            store: RecordStore::new(key, config.max_records, config.max_records_per_key),
            limiter: TokenBuckets::new(config.rate, config.burst, config.max_sources),
            config,
            identity,
            id,
            key,
            wall_epoch_ms,
            rng,
            own: BTreeMap::new(),
            last_seq: 0,
            pending: BTreeMap::new(),
            queries: BTreeMap::new(),
            next_query: 0,
            groups: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> PeerId {
        self.id
    }

    pub fn key(&self) -> Key {
        self.key
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    pub fn record_store(&self) -> &RecordStore {
        &self.store
    }

    /// Lookups under way (user and maintenance).
    pub fn active_queries(&self) -> usize {
        self.queries.len()
    }

    fn wall_ms(&self, now: Duration) -> u64 {
        self.wall_epoch_ms
            .saturating_add(u64::try_from(now.as_millis()).unwrap_or(u64::MAX))
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, now: Duration, event: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        match event {
            InEvent::Start => {
                let c = &self.config;
                out.push(OutEvent::ScheduleTimer(
                    c.refresh_interval / 4,
                    Timer::Refresh,
                ));
                out.push(OutEvent::ScheduleTimer(
                    c.republish_interval,
                    Timer::Republish,
                ));
                out.push(OutEvent::ScheduleTimer(
                    c.replicate_interval,
                    Timer::Replicate,
                ));
                out.push(OutEvent::ScheduleTimer(expire_every(c), Timer::Expire));
            }
            InEvent::Datagram { from, bytes } => match wire::decode_datagram::<Datagram>(&bytes) {
                Ok(Datagram::Dht(message)) => self.on_message(now, from, message, &mut out),
                Ok(_) | Err(_) => {
                    self.stats.received += 1;
                    self.stats.malformed += 1;
                }
            },
            InEvent::Message { from, message } => self.on_message(now, from, message, &mut out),
            InEvent::Timer(t) => self.on_timer(now, t, &mut out),
            InEvent::AddContact(c) => {
                if c.id != self.id && c.is_dialable() {
                    self.saw(now, c, &mut out);
                }
            }
            InEvent::Command { tag, command } => self.on_command(now, tag, command, &mut out),
        }
        out
    }

    fn on_command(&mut self, now: Duration, tag: Tag, command: Command, out: &mut Vec<OutEvent>) {
        if self.queries.len() >= self.config.max_queries {
            self.stats.busy += 1;
            done(out, tag, Outcome::Busy, LookupStats::default());
            return;
        }
        match command {
            Command::Bootstrap => self.start(now, Goal::Bootstrap, Some(tag), self.key, out),
            Command::FindNode(target) => self.start(now, Goal::Nodes, Some(tag), target, out),
            Command::FindPeer(peer) => {
                self.start(now, Goal::Peer(peer), Some(tag), Key::for_peer(&peer), out)
            }
            Command::FindName(name) => {
                let key = Key::for_name(&name);
                self.start(now, Goal::Name(name), Some(tag), key, out)
            }
            Command::Get(key) => {
                self.start(now, Goal::Values, Some(tag), Key::for_value(&key), out)
            }
            Command::Put { value, .. } if value.len() > MAX_VALUE_LEN => {
                let refused = Outcome::Refused(RecordError::TooLarge(value.len()));
                done(out, tag, refused, LookupStats::default());
            }
            Command::Put { key, value } => {
                let record = self.sign(now, Key::for_value(&key), Value::Bytes(value));
                match record.check_shape() {
                    Ok(()) => self.publish(now, record, Some(tag), out),
                    Err(e) => done(out, tag, Outcome::Refused(e), LookupStats::default()),
                }
            }
            Command::PublishSelf { name, addrs } => self.publish_self(now, tag, name, addrs, out),
        }
    }

    fn on_timer(&mut self, now: Duration, timer: Timer, out: &mut Vec<OutEvent>) {
        match timer {
            Timer::Rpc(rpc) => self.on_rpc_timeout(now, rpc, out),
            Timer::Refresh => {
                for b in self
                    .table
                    .buckets_to_refresh(now, self.config.refresh_interval)
                {
                    if self.queries.len() >= self.config.max_queries {
                        break;
                    }
                    let target = self.key.random_in_bucket(b, &mut self.rng);
                    self.start(now, Goal::Refresh, None, target, out);
                }
                out.push(OutEvent::ScheduleTimer(
                    self.config.refresh_interval / 4,
                    Timer::Refresh,
                ));
            }
            Timer::Republish => {
                self.republish(now, out);
                out.push(OutEvent::ScheduleTimer(
                    self.config.republish_interval,
                    Timer::Republish,
                ));
            }
            Timer::Replicate => {
                self.replicate(now, out);
                out.push(OutEvent::ScheduleTimer(
                    self.config.replicate_interval,
                    Timer::Replicate,
                ));
            }
            Timer::Expire => {
                let wall = self.wall_ms(now);
                self.store.expire(wall);
                out.push(OutEvent::ScheduleTimer(
                    expire_every(&self.config),
                    Timer::Expire,
                ));
            }
        }
    }
}

fn expire_every(c: &Config) -> Duration {
    (c.record_ttl / 8).max(Duration::from_secs(1))
}

fn done(out: &mut Vec<OutEvent>, tag: Tag, outcome: Outcome, lookup: LookupStats) {
    out.push(OutEvent::Emit(Event::Done {
        tag,
        outcome,
        lookup,
    }));
}

#[cfg(test)]
pub(crate) mod tests {
    //! A tiny synchronous LAN of `State`s for the unit tests of this module and
    //! its children: 1 ms per message, timers in order, nothing lost unless a
    //! node is marked down.

    use super::*;
    use crate::proto::sim::{self, Scheduler, SimRng};
    use std::collections::BTreeSet;

    pub(crate) const EPOCH_MS: u64 = 1_700_000_000_000;

    pub(crate) fn identity(i: usize) -> Identity {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        Identity::from_secret(secret)
    }

    pub(crate) fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4000))
    }

    pub(crate) fn node(i: usize, config: Config) -> State<SimRng> {
        State::new(config, identity(i), EPOCH_MS, sim::rng(7, i as u64))
    }

    pub(crate) struct Lan {
        pub(crate) nodes: Vec<State<SimRng>>,
        pub(crate) down: BTreeSet<usize>,
        pub(crate) sched: Scheduler<(usize, InEvent)>,
        pub(crate) done: BTreeMap<Tag, (Outcome, LookupStats)>,
        next_tag: u64,
    }

    impl Lan {
        pub(crate) fn new(n: usize, config: Config) -> Self {
            Self {
                nodes: (0..n).map(|i| node(i, config.clone())).collect(),
                down: BTreeSet::new(),
                sched: Scheduler::new(),
                done: BTreeMap::new(),
                next_tag: 0,
            }
        }

        pub(crate) fn contact(&self, i: usize) -> Contact {
            Contact::new(self.nodes[i].id(), addr(i))
        }

        fn index(&self, a: SocketAddr) -> Option<usize> {
            (0..self.nodes.len()).find(|i| addr(*i) == a)
        }

        pub(crate) fn input(&mut self, i: usize, event: InEvent) {
            if self.down.contains(&i) {
                return;
            }
            let now = self.sched.now();
            for o in self.nodes[i].handle(now, event) {
                match o {
                    OutEvent::Send(to, message) => {
                        if let Some(j) = self.index(to) {
                            let ev = InEvent::Message {
                                from: addr(i),
                                message,
                            };
                            self.sched.schedule(Duration::from_millis(1), (j, ev));
                        }
                    }
                    OutEvent::ScheduleTimer(d, t) => self.sched.schedule(d, (i, InEvent::Timer(t))),
                    OutEvent::Emit(Event::Done {
                        tag,
                        outcome,
                        lookup,
                    }) => {
                        self.done.insert(tag, (outcome, lookup));
                    }
                }
            }
        }

        /// Delivers everything due within `d` from now (periodic timers keep
        /// the queue from ever emptying).
        pub(crate) fn advance(&mut self, d: Duration) {
            let until = self.sched.now() + d;
            for _ in 0..1_000_000 {
                let Some((_, (i, ev))) = self.sched.pop_until(until) else {
                    return;
                };
                self.input(i, ev);
            }
            panic!("the LAN did not settle");
        }

        /// Lets every exchange under way finish (requests time out after 1 s).
        pub(crate) fn settle(&mut self) {
            self.advance(Duration::from_secs(30));
        }

        /// Runs `command` on node `i` to its end.
        pub(crate) fn run(&mut self, i: usize, command: Command) -> (Outcome, LookupStats) {
            let tag = Tag(self.next_tag);
            self.next_tag += 1;
            self.input(i, InEvent::Command { tag, command });
            self.settle();
            self.done.remove(&tag).expect("the command reported")
        }

        /// Every node knows node 0 and bootstraps, one after the other.
        pub(crate) fn join_all(&mut self) {
            for i in 1..self.nodes.len() {
                let c = self.contact(0);
                self.input(i, InEvent::AddContact(c));
                let (outcome, _) = self.run(i, Command::Bootstrap);
                assert!(matches!(outcome, Outcome::Bootstrapped { contacts } if contacts > 0));
            }
        }
    }

    #[test]
    fn peers_resolve_each_other_by_id() {
        let mut lan = Lan::new(40, Config::default());
        lan.join_all();
        for i in [3, 17, 39] {
            let name = format!("node {i}");
            let (o, _) = lan.run(
                i,
                Command::PublishSelf {
                    name,
                    addrs: vec![addr(i)],
                },
            );
            assert!(
                matches!(o, Outcome::Stored { replicas } if replicas > 0),
                "{o:?}"
            );
        }
        for (from, to) in [(0, 3), (5, 17), (39, 3), (17, 39)] {
            let id = lan.nodes[to].id();
            let (o, _) = lan.run(from, Command::FindPeer(id));
            let Outcome::Peer(Some(p)) = o else {
                panic!("{from} did not find {to}: {o:?}");
            };
            assert_eq!(
                (p.id, p.addrs, p.name),
                (id, vec![addr(to)], format!("node {to}"))
            );
        }
    }

    #[test]
    fn unknown_peer_is_not_found() {
        let mut lan = Lan::new(10, Config::default());
        lan.join_all();
        let stranger = identity(999).peer_id();
        assert_eq!(
            lan.run(4, Command::FindPeer(stranger)).0,
            Outcome::Peer(None)
        );
    }

    #[test]
    fn every_device_sharing_a_name_is_found_whatever_the_case() {
        let mut lan = Lan::new(30, Config::default());
        lan.join_all();
        for (i, name) in [(2, "Kitchen iPad"), (9, "kitchen ipad "), (20, "Desk")] {
            let cmd = Command::PublishSelf {
                name: name.into(),
                addrs: vec![addr(i)],
            };
            lan.run(i, cmd);
        }
        let (o, _) = lan.run(25, Command::FindName("KITCHEN IPAD".into()));
        let Outcome::Named(found) = o else {
            panic!("{o:?}")
        };
        let mut ids: Vec<_> = found.iter().map(|p| p.id).collect();
        ids.sort();
        let mut want = vec![lan.nodes[2].id(), lan.nodes[9].id()];
        want.sort();
        assert_eq!(ids, want);
    }

    #[test]
    fn renamed_peer_is_found_under_its_new_name_only_in_its_own_record() {
        let mut lan = Lan::new(20, Config::default());
        lan.join_all();
        let publish = |name: &str| Command::PublishSelf {
            name: name.into(),
            addrs: vec![addr(5)],
        };
        lan.run(5, publish("old"));
        lan.run(5, publish("new"));
        let id = lan.nodes[5].id();
        let Outcome::Peer(Some(p)) = lan.run(12, Command::FindPeer(id)).0 else {
            panic!("not found")
        };
        assert_eq!(p.name, "new", "the newer sequence wins");
        let Outcome::Named(v) = lan.run(12, Command::FindName("new".into())).0 else {
            panic!()
        };
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn user_values_are_stored_and_read_back_per_publisher() {
        let mut lan = Lan::new(25, Config::default());
        lan.join_all();
        let put = |v: &[u8]| Command::Put {
            key: b"room:lobby".to_vec(),
            value: v.to_vec(),
        };
        assert!(
            matches!(lan.run(3, put(b"from 3")).0, Outcome::Stored { replicas } if replicas > 0)
        );
        lan.run(8, put(b"from 8"));
        lan.run(3, put(b"from 3, again"));
        let Outcome::Values(mut v) = lan.run(20, Command::Get(b"room:lobby".to_vec())).0 else {
            panic!()
        };
        v.sort_by_key(|u| u.publisher);
        let mut want = vec![
            (lan.nodes[3].id(), b"from 3, again".to_vec()),
            (lan.nodes[8].id(), b"from 8".to_vec()),
        ];
        want.sort();
        let got: Vec<_> = v.into_iter().map(|u| (u.publisher, u.value)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn value_over_the_cap_is_refused_before_anything_is_sent() {
        let mut n = node(0, Config::default());
        let out = n.handle(
            Duration::ZERO,
            InEvent::Command {
                tag: Tag(1),
                command: Command::Put {
                    key: b"k".to_vec(),
                    value: vec![0; MAX_VALUE_LEN + 1],
                },
            },
        );
        assert_eq!(
            out,
            vec![OutEvent::Emit(Event::Done {
                tag: Tag(1),
                outcome: Outcome::Refused(RecordError::TooLarge(MAX_VALUE_LEN + 1)),
                lookup: LookupStats::default(),
            })]
        );
    }

    #[test]
    fn start_schedules_the_maintenance_timers() {
        let mut n = node(0, Config::default());
        let timers: Vec<Timer> = n
            .handle(Duration::ZERO, InEvent::Start)
            .into_iter()
            .filter_map(|o| match o {
                OutEvent::ScheduleTimer(_, t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(
            timers,
            [
                Timer::Refresh,
                Timer::Republish,
                Timer::Replicate,
                Timer::Expire
            ]
        );
    }

    #[test]
    fn republish_re_signs_our_records_with_a_newer_sequence() {
        let mut lan = Lan::new(10, Config::default());
        lan.join_all();
        lan.run(
            4,
            Command::PublishSelf {
                name: "a".into(),
                addrs: vec![addr(4)],
            },
        );
        let id = lan.nodes[4].id();
        let Outcome::Peer(Some(first)) = lan.run(1, Command::FindPeer(id)).0 else {
            panic!()
        };
        lan.sched.schedule(
            Duration::from_secs(60),
            (4, InEvent::Timer(Timer::Republish)),
        );
        lan.advance(Duration::from_secs(90));
        let Outcome::Peer(Some(second)) = lan.run(1, Command::FindPeer(id)).0 else {
            panic!()
        };
        assert!(second.seq > first.seq);
        assert!(second.expires_ms > first.expires_ms);
    }

    #[test]
    fn held_records_expire() {
        let mut lan = Lan::new(8, Config::default());
        lan.join_all();
        lan.run(
            2,
            Command::PublishSelf {
                name: "a".into(),
                addrs: vec![addr(2)],
            },
        );
        let held: usize = lan.nodes.iter().map(|n| n.record_store().len()).sum();
        assert!(held > 0);
        let ttl = Config::default().record_ttl;
        for i in 0..8 {
            lan.sched.schedule(
                ttl + Duration::from_secs(1),
                (i, InEvent::Timer(Timer::Expire)),
            );
        }
        lan.advance(ttl + Duration::from_secs(2));
        let held: usize = lan.nodes.iter().map(|n| n.record_store().len()).sum();
        assert_eq!(held, 0);
    }
}
