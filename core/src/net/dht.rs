//! The DHT over UDP: one tokio task owns a socket and a [`kademlia::State`] and
//! feeds it datagrams, timers and commands; [`DhtHandle`]s talk to the task.
//!
//! The state machine (Kademlia, IPTPS 2002; see [`kademlia`]) does all protocol
//! work; this driver only moves bytes and time:
//!
//! - every datagram received is handed to the state as `InEvent::Datagram`
//!   (decoding, validation, rate limiting and counting happen there); every
//!   `OutEvent::Send` is encoded as `wire::Datagram::Dht` and sent;
//! - `OutEvent::ScheduleTimer` goes into an ordered timer list; the task sleeps
//!   until the earliest is due;
//! - `now` is the monotonic time since the task started, and the state's wall
//!   clock (record expiry) is the system time at start plus `now`, so a clock
//!   step during a run does not make records expire early or late.
//!
//! Handles send commands over a bounded channel with a oneshot for the answer:
//! no lock around the state, and a flood of callers waits instead of growing a
//! queue. The task ends on [`DhtHandle::shutdown`] or when every handle is gone.
//!
//! Bootstrap: feed it contacts from LAN discovery, `--connect` and the peer
//! store with [`DhtHandle::add_contact`], then call [`DhtHandle::bootstrap`].
//! Two LAN segments that share one peer resolve each other through it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::identity::{Identity, PeerId};
use crate::net::timers::{Timers, sleep_until_opt};
use crate::proto::kademlia::{
    self, Command, Contact, Event, InEvent, Key, LookupStats, OutEvent, Outcome, PeerRecord,
    RecordError, Stats, Tag, Timer, UserValue,
};
use crate::proto::wire::{self, Datagram, MAX_DATAGRAM_LEN};

mod presence;
pub(crate) use presence::attach;

/// Commands waiting for the task, at most.
const CHANNEL_CAPACITY: usize = 64;

/// Why a DHT call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the DHT task has stopped")]
    Stopped,
    #[error("too many DHT lookups are running; try again")]
    Busy,
    #[error("the DHT refused the record: {0}")]
    Refused(RecordError),
    #[error("the DHT answered a {0} command with something else")]
    Unexpected(&'static str),
}

enum Request {
    AddContact(Contact),
    Command {
        command: Command,
        reply: oneshot::Sender<(Outcome, LookupStats)>,
    },
    Stats(oneshot::Sender<Stats>),
    Shutdown,
}

/// Starts DHT tasks.
#[derive(Debug)]
pub struct Dht;

impl Dht {
    /// Spawns the task serving `socket` as `identity` (on the current tokio
    /// runtime) and returns a handle to it and the task's handle.
    pub fn spawn(
        identity: Identity,
        socket: UdpSocket,
        config: kademlia::Config,
    ) -> std::io::Result<(DhtHandle, JoinHandle<()>)> {
        let local_addr = socket.local_addr()?;
        let wall_epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let id = identity.peer_id();
        let rng = ChaCha8Rng::from_seed(rand::random());
        let state = kademlia::State::new(config, identity, wall_epoch_ms, rng);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let actor = Actor {
            state,
            socket,
            rx,
            epoch: Instant::now(),
            timers: Timers::default(),
            waiting: BTreeMap::new(),
            next_tag: 0,
        };
        let task = tokio::spawn(actor.run());
        Ok((DhtHandle { tx, id, local_addr }, task))
    }
}

/// A cheap, cloneable handle on a running DHT task.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    tx: mpsc::Sender<Request>,
    id: PeerId,
    local_addr: SocketAddr,
}

impl DhtHandle {
    /// Our PeerId.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The UDP address the task listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Tells the DHT about a peer found elsewhere (discovery, `--connect`, the
    /// peer store). It enters the routing table like any peer we heard from.
    pub async fn add_contact(&self, id: PeerId, addr: SocketAddr) -> Result<(), Error> {
        self.tx
            .send(Request::AddContact(Contact::new(id, addr)))
            .await
            .map_err(|_| Error::Stopped)
    }

    async fn command(&self, command: Command) -> Result<(Outcome, LookupStats), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Command { command, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        match rx.await.map_err(|_| Error::Stopped)? {
            (Outcome::Busy, _) => Err(Error::Busy),
            (Outcome::Refused(e), _) => Err(Error::Refused(e)),
            other => Ok(other),
        }
    }

    /// Joins the DHT through the contacts added so far: looks ourselves up and
    /// refreshes our buckets. Returns the number of contacts in the table.
    pub async fn bootstrap(&self) -> Result<usize, Error> {
        match self.command(Command::Bootstrap).await?.0 {
            Outcome::Bootstrapped { contacts } => Ok(contacts),
            _ => Err(Error::Unexpected("bootstrap")),
        }
    }

    /// The k nodes nearest `target` that answered, nearest first.
    pub async fn find_node(&self, target: Key) -> Result<Vec<Contact>, Error> {
        match self.command(Command::FindNode(target)).await?.0 {
            Outcome::Closest(c) => Ok(c),
            _ => Err(Error::Unexpected("find_node")),
        }
    }

    /// The newest valid record `peer` published about itself, if any node has it.
    pub async fn find_peer(&self, peer: PeerId) -> Result<Option<PeerRecord>, Error> {
        match self.command(Command::FindPeer(peer)).await?.0 {
            Outcome::Peer(p) => Ok(p),
            _ => Err(Error::Unexpected("find_peer")),
        }
    }

    /// The records of all peers whose device name is `name`, ignoring case and
    /// surrounding spaces (several devices may share a name).
    pub async fn find_by_name(&self, name: &str) -> Result<Vec<PeerRecord>, Error> {
        match self.command(Command::FindName(name.to_owned())).await?.0 {
            Outcome::Named(p) => Ok(p),
            _ => Err(Error::Unexpected("find_by_name")),
        }
    }

    /// Publishes where we can be reached and our device name, under our key and
    /// our name's key; the task republishes them until the next call replaces
    /// them. Returns on how many nodes the records were stored (the fewer of
    /// the two).
    pub async fn publish_self(&self, addrs: Vec<SocketAddr>, name: &str) -> Result<usize, Error> {
        let command = Command::PublishSelf {
            name: name.to_owned(),
            addrs,
        };
        match self.command(command).await?.0 {
            Outcome::Stored { replicas } => Ok(replicas),
            _ => Err(Error::Unexpected("publish_self")),
        }
    }

    /// Publishes `value` (at most [`kademlia::MAX_VALUE_LEN`] bytes) under `key`;
    /// returns on how many nodes it was stored.
    pub async fn put(&self, key: &[u8], value: Vec<u8>) -> Result<usize, Error> {
        let command = Command::Put {
            key: key.to_vec(),
            value,
        };
        match self.command(command).await?.0 {
            Outcome::Stored { replicas } => Ok(replicas),
            _ => Err(Error::Unexpected("put")),
        }
    }

    /// The values published under `key`, one per publisher.
    pub async fn get(&self, key: &[u8]) -> Result<Vec<UserValue>, Error> {
        match self.command(Command::Get(key.to_vec())).await?.0 {
            Outcome::Values(v) => Ok(v),
            _ => Err(Error::Unexpected("get")),
        }
    }

    /// The state machine's counters.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Stats(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Stops the task (pending commands fail with [`Error::Stopped`]).
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown).await;
    }
}

struct Actor {
    state: kademlia::State<ChaCha8Rng>,
    socket: UdpSocket,
    rx: mpsc::Receiver<Request>,
    epoch: Instant,
    timers: Timers<Timer>,
    waiting: BTreeMap<Tag, oneshot::Sender<(Outcome, LookupStats)>>,
    next_tag: u64,
}

impl Actor {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN + 1];
        self.input(InEvent::Start).await;
        loop {
            let next = self.timers.next_deadline();
            tokio::select! {
                req = self.rx.recv() => match req {
                    None | Some(Request::Shutdown) => break,
                    Some(req) => self.on_request(req).await,
                },
                got = self.socket.recv_from(&mut buf) => match got {
                    Ok((len, from)) => {
                        let bytes = buf[..len].to_vec();
                        self.input(InEvent::Datagram { from, bytes }).await;
                    }
                    Err(e) => {
                        // e.g. an ICMP error surfacing on Linux: not fatal
                        tracing::debug!(error = %e, "dht socket receive error");
                    }
                },
                () = sleep_until_opt(next) => self.fire_timers().await,
            }
        }
        tracing::debug!(id = %self.state.id().short(), "dht task stopped");
    }

    async fn on_request(&mut self, req: Request) {
        match req {
            Request::AddContact(c) => self.input(InEvent::AddContact(c)).await,
            Request::Command { command, reply } => {
                let tag = Tag(self.next_tag);
                self.next_tag += 1;
                self.waiting.insert(tag, reply);
                self.input(InEvent::Command { tag, command }).await;
            }
            Request::Stats(reply) => {
                let _ = reply.send(self.state.stats());
            }
            Request::Shutdown => {}
        }
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        // bounded: only timers already due, each fired once
        while let Some(timer) = self.timers.pop_due(now) {
            self.input(InEvent::Timer(timer)).await;
        }
    }

    async fn input(&mut self, event: InEvent) {
        let now = self.epoch.elapsed();
        for out in self.state.handle(now, event) {
            match out {
                OutEvent::Send(to, message) => {
                    match wire::encode_datagram(&Datagram::Dht(message)) {
                        Ok(bytes) => {
                            if let Err(e) = self.socket.send_to(&bytes, to).await {
                                tracing::debug!(%to, error = %e, "dht send failed");
                            }
                        }
                        Err(e) => tracing::warn!(%to, error = %e, "dht message not encodable"),
                    }
                }
                OutEvent::ScheduleTimer(delay, timer) => {
                    self.timers.insert(Instant::now() + delay, timer);
                }
                OutEvent::Emit(Event::Done {
                    tag,
                    outcome,
                    lookup,
                }) => {
                    if let Some(reply) = self.waiting.remove(&tag) {
                        let _ = reply.send((outcome, lookup));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::kademlia::{Message, PeerInfo, Record, Value};
    use std::time::Duration;

    /// Long enough for any honest lookup on loopback; a hang fails the test
    /// instead of blocking CI.
    const DEADLINE: Duration = Duration::from_secs(60);

    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(DEADLINE, f)
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
    }

    async fn spawn_node(seed: u8) -> (DhtHandle, JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Dht::spawn(
            Identity::from_secret([seed; 32]),
            socket,
            kademlia::Config::default(),
        )
        .unwrap()
    }

    /// Polls `stats` until `cond` holds (or the deadline passes).
    async fn stats_until(h: &DhtHandle, cond: impl Fn(&Stats) -> bool) -> Stats {
        within("waiting on stats", async {
            loop {
                let s = h.stats().await.unwrap();
                if cond(&s) {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    #[tokio::test]
    async fn thirty_nodes_bootstrapped_from_one_resolve_every_peer_record() {
        let mut nodes = Vec::new();
        for i in 0..30u8 {
            nodes.push(spawn_node(i + 1).await);
        }
        let handles: Vec<DhtHandle> = nodes.iter().map(|(h, _)| h.clone()).collect();
        let first = handles[0].clone();
        within("bootstrap", async {
            let joins = handles[1..].iter().map(|h| {
                let first = first.clone();
                async move {
                    h.add_contact(first.id(), first.local_addr()).await.unwrap();
                    h.bootstrap().await.unwrap()
                }
            });
            let contacts = futures::future::join_all(joins).await;
            assert!(contacts.iter().all(|c| *c > 0));
        })
        .await;
        within("publish", async {
            let publishes = handles.iter().enumerate().map(|(i, h)| async move {
                h.publish_self(vec![h.local_addr()], &format!("Node {i}"))
                    .await
                    .unwrap()
            });
            let replicas = futures::future::join_all(publishes).await;
            assert!(replicas.iter().all(|r| *r > 0), "{replicas:?}");
        })
        .await;
        within("resolve", async {
            let all: Vec<(PeerId, SocketAddr)> =
                handles.iter().map(|h| (h.id(), h.local_addr())).collect();
            let resolves = handles.iter().map(|h| {
                let all = all.clone();
                async move {
                    for (i, (id, addr)) in all.iter().enumerate() {
                        if *id == h.id() {
                            continue;
                        }
                        let rec = h.find_peer(*id).await.unwrap();
                        let rec = rec.unwrap_or_else(|| panic!("{:?} did not find {id:?}", h.id()));
                        assert_eq!(
                            (rec.id, rec.addrs, rec.name),
                            (*id, vec![*addr], format!("Node {i}"))
                        );
                    }
                }
            });
            futures::future::join_all(resolves).await;
        })
        .await;
        // and by name, case-insensitively
        let found = within("name", handles[7].find_by_name("node 21"))
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, handles[21].id());
        for (h, task) in nodes {
            h.shutdown().await;
            within("shutdown", task).await.unwrap();
        }
    }

    #[tokio::test]
    async fn forged_record_sent_over_udp_is_refused_and_counted() {
        let (node, task) = spawn_node(1).await;
        let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let victim = Identity::from_secret([9; 32]);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let info = PeerInfo {
            name: "victim".into(),
            addrs: vec!["127.0.0.1:1111".parse().unwrap()],
        };
        let mut record = Record::sign(
            &victim,
            Key::for_peer(&victim.peer_id()),
            1,
            wall + 60_000,
            Value::Peer(info),
        );
        // redirect the victim's address to the attacker's
        if let Value::Peer(info) = &mut record.value {
            info.addrs = vec![attacker.local_addr().unwrap()];
        }
        let store = Message::Store {
            from: Identity::from_secret([8; 32]).peer_id(),
            rpc: 77,
            record,
        };
        let bytes = wire::encode_datagram(&Datagram::Dht(store)).unwrap();
        attacker.send_to(&bytes, node.local_addr()).await.unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        let (len, _) = within("the store answer", attacker.recv_from(&mut buf))
            .await
            .unwrap();
        let answer: Datagram = wire::decode_datagram(&buf[..len]).unwrap();
        assert!(
            matches!(
                answer,
                Datagram::Dht(Message::Stored {
                    rpc: 77,
                    accepted: false,
                    ..
                })
            ),
            "{answer:?}"
        );
        // garbage and unsolicited answers are counted too
        attacker
            .send_to(b"\x01\xff\xff\xff", node.local_addr())
            .await
            .unwrap();
        let pong = Message::Pong {
            from: victim.peer_id(),
            rpc: 5,
        };
        let bytes = wire::encode_datagram(&Datagram::Dht(pong)).unwrap();
        attacker.send_to(&bytes, node.local_addr()).await.unwrap();
        let s = stats_until(&node, |s| s.malformed >= 1 && s.unsolicited >= 1).await;
        assert_eq!((s.bad_signature, s.stored), (1, 0));
        assert_eq!(node.find_peer(victim.peer_id()).await.unwrap(), None);
        node.shutdown().await;
        within("shutdown", task).await.unwrap();
    }

    #[tokio::test]
    async fn calls_after_shutdown_fail_as_stopped() {
        let (node, task) = spawn_node(3).await;
        node.shutdown().await;
        within("shutdown", task).await.unwrap();
        assert_eq!(node.stats().await, Err(Error::Stopped));
        assert_eq!(node.bootstrap().await, Err(Error::Stopped));
    }

    #[tokio::test]
    async fn oversized_put_is_refused() {
        let (node, task) = spawn_node(4).await;
        let err = node.put(b"k", vec![0; kademlia::MAX_VALUE_LEN + 1]).await;
        assert_eq!(
            err,
            Err(Error::Refused(RecordError::TooLarge(
                kademlia::MAX_VALUE_LEN + 1
            )))
        );
        node.shutdown().await;
        within("shutdown", task).await.unwrap();
    }

    #[tokio::test]
    async fn values_put_by_one_node_are_read_by_another() {
        let (a, ta) = spawn_node(5).await;
        let (b, tb) = spawn_node(6).await;
        b.add_contact(a.id(), a.local_addr()).await.unwrap();
        within("bootstrap", b.bootstrap()).await.unwrap();
        assert_eq!(
            within("put", a.put(b"greeting", b"hello".to_vec())).await,
            Ok(1)
        );
        let got = within("get", b.get(b"greeting")).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].publisher, got[0].value.as_slice()),
            (a.id(), &b"hello"[..])
        );
        for (h, t) in [(a, ta), (b, tb)] {
            h.shutdown().await;
            within("shutdown", t).await.unwrap();
        }
    }
}
