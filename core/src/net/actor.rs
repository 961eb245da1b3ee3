//! The node actor: one task that owns the node's protocol state and turns its
//! outputs into IO.
//!
//! Everything that happens to a node arrives here as an [`Input`] over a bounded
//! channel (a datagram, an authenticated connection, a message from a peer, a
//! closed session, a command from the [`Node`](crate::Node) handle) or as a due
//! timer, and is handled in one `select!` loop. Slow work (TLS handshakes,
//! dialing, socket reads) runs in spawned tasks that report back as inputs, so
//! the loop never waits on the network.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::accept::Admission;
use crate::config::Config;
use crate::event::{Event, PeerInfo, Trust};
use crate::identity::{Identity, PeerId, verification_code};
use crate::net::discovery::Sockets;
use crate::net::links::{Links, PeerLink, Router};
use crate::net::mux::{BoxedLane, LaneDialer, MuxConfig, MuxSession, Side};
use crate::net::timers::{Timers, sleep_until_opt};
use crate::net::transport::{self, Connection, Transport, read_frame};
use crate::proto::discovery as disco;
use crate::proto::wire::{self, DeviceKind, Hello, Message};
use crate::store::Store;

/// Capacity of the actor's input channel.
const INPUT_CAPACITY: usize = 1024;
/// Capacity of each peer's outgoing control-message queue.
const PEER_QUEUE: usize = 256;
/// When discovery finds a peer with a lower id than ours, we wait this long for
/// it to dial us before dialing it ourselves (avoids two lanes from one race).
const FALLBACK_DIAL_DELAY: Duration = Duration::from_secs(2);
/// Longest wait between re-dials of a `--connect` address.
const MAX_REDIAL: Duration = Duration::from_secs(60);
/// Resource: outgoing dials to addresses that a discovery datagram (whose
/// source address anyone on the LAN can spoof) named. Limit: this many started
/// per second on average, in bursts of at most [`DISCOVERY_DIAL_BURST`], one at
/// a time per address, and in progress they count against `auto_connect`. At
/// the limit: the dial is skipped; the peer's next announcement tries again.
const DISCOVERY_DIALS_PER_SEC: f64 = 4.0;
/// Largest burst of discovery-triggered dials (see [`DISCOVERY_DIALS_PER_SEC`]).
const DISCOVERY_DIAL_BURST: f64 = 8.0;
/// Resource: lanes (TLS connections) of one session, each a socket and a
/// connection slot. Limit: twice the lanes the multiplexer dials for bulk
/// streams (both sides may dial at once). At the limit: a further lane is
/// closed right after its handshake, logged and counted in
/// `Stats::lanes_refused`; the session and its lanes go on.
const MAX_LANES_PER_SESSION: usize = 8;
/// At start, untrusted peers are re-dialed only if we were connected to them
/// within this long (stored rows of peers are touched only by connections).
const RECONNECT_RECENT: Duration = Duration::from_secs(24 * 3600);

/// Requests from the [`Node`](crate::Node) handle.
#[derive(Debug)]
pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Connect {
        addr: SocketAddr,
        expected: Option<PeerId>,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    SetTrust {
        id: PeerId,
        trust: Trust,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Make sure a session to `peer` is up (see [`Links::dial`]).
    Dial {
        peer: PeerId,
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Stats(oneshot::Sender<Stats>),
    /// Close this session to `peer` (see [`Links::close`]).
    Close {
        peer: PeerId,
        session: u64,
    },
    Shutdown(oneshot::Sender<()>),
}

/// Counters a user or test can read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub discovery: disco::Stats,
    pub sessions: usize,
    pub handshakes_failed: u64,
    pub connections_refused_blocked: u64,
    pub bad_frames: u64,
    /// Streams peers opened with a bad or unserved header (reset).
    pub bad_streams: u64,
    /// Incoming connections closed before their handshake because their
    /// address (or everyone together) had too many handshakes in progress.
    pub handshakes_refused: u64,
    /// New peer keys refused because their IP address already held
    /// `max_sessions_per_ip` sessions.
    pub sessions_refused_per_ip: u64,
    /// Lanes refused because their session already had [`MAX_LANES_PER_SESSION`].
    pub lanes_refused: u64,
    /// Discovery-triggered dials skipped by the rate limit or `auto_connect`.
    pub discovery_dials_skipped: u64,
}

/// What tasks report to the actor.
pub(crate) enum Input {
    Datagram(SocketAddr, Vec<u8>),
    /// A peer DNS-SD hears (`net::mdns`).
    Hint(disco::Hint),
    Connected {
        /// Boxed: a TLS connection is over a KiB, and every slot of the
        /// actor's input queue would be that big.
        conn: Box<Connection>,
        hello: Hello,
        /// The address we dialed (None for accepted connections).
        dialed: Option<SocketAddr>,
    },
    /// A connection dialed for `Node::connect`: its caller is answered once the
    /// session is in the peer table, so a call right after (`peers`, `resolve`
    /// by name) sees the peer.
    ConnectedFor {
        conn: Box<Connection>,
        hello: Hello,
        dialed: SocketAddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    DialFailed {
        addr: SocketAddr,
        expected: Option<PeerId>,
        error: String,
    },
    HandshakeFailed,
    /// This host's addresses changed (`net::netwatch`): the whole new set.
    LocalAddrs(std::collections::BTreeSet<IpAddr>),
    HandshakeRefused,
    RefusedBlocked,
    FromPeer {
        peer: PeerId,
        session: u64,
        msg: Message,
    },
    BadFrame {
        peer: PeerId,
        session: u64,
        error: String,
    },
    SessionClosed {
        peer: PeerId,
        session: u64,
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Discovery(TimerKind),
    FallbackDial(PeerId),
    Redial(SocketAddr),
    Keepalive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Announce,
    Expire,
}

impl From<disco::Timer> for TimerKind {
    fn from(t: disco::Timer) -> Self {
        match t {
            disco::Timer::Announce => Self::Announce,
            disco::Timer::Expire => Self::Expire,
        }
    }
}

/// What we know about a peer right now.
#[derive(Debug, Clone)]
struct Peer {
    name: String,
    kind: DeviceKind,
    /// Addresses proven to reach this peer: a connection to it (pinned to its
    /// key) succeeded there, or it connected to us from there. Only these are
    /// stored.
    addrs: Vec<SocketAddr>,
    /// Addresses discovery heard of, not proven yet: dialed (pinned to the
    /// peer's key), never stored. A replayed announcement can put any address
    /// here, so they come after the proven ones.
    candidates: Vec<SocketAddr>,
    trust: Trust,
    discovered: bool,
}

impl Peer {
    /// Every address to try, proven ones first.
    fn dial_addrs(&self) -> Vec<SocketAddr> {
        let mut out = self.addrs.clone();
        for a in &self.candidates {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }
}

/// A token bucket for dials that discovery datagrams trigger.
#[derive(Debug)]
struct DialBudget {
    tokens: f64,
    at: Instant,
}

impl DialBudget {
    fn new() -> Self {
        Self {
            tokens: DISCOVERY_DIAL_BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * DISCOVERY_DIALS_PER_SEC;
        self.tokens = (self.tokens + refill).min(DISCOVERY_DIAL_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A live session to a peer.
struct Session {
    id: u64,
    instance: u64,
    /// The IP address the session's first connection came from or went to.
    ip: IpAddr,
    /// Our address of its newest connection (see `proto::roaming`).
    local: Option<IpAddr>,
    mux: MuxSession,
    tx: mpsc::Sender<Box<Message>>,
    last_heard: Instant,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.mux.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Shared between the actor and the accept tasks: checked right after the TLS
/// handshake so blocked peers never get further.
pub(crate) type Blocklist = Arc<RwLock<HashSet<PeerId>>>;

pub(crate) struct Actor {
    identity: Identity,
    instance: u64,
    config: Config,
    store: Arc<Store>,
    transport: Transport,
    events: broadcast::Sender<Event>,
    listen_port: u16,
    discovery: Option<(disco::State<StdRng>, Sockets)>,
    peers: BTreeMap<PeerId, Peer>,
    sessions: HashMap<PeerId, Session>,
    dialing: HashSet<SocketAddr>,
    /// Peers being dialed because discovery heard of them (count against
    /// `auto_connect`).
    discovery_dialing: HashSet<PeerId>,
    discovery_dials: DialBudget,
    /// `--connect` targets and how long to wait before the next attempt.
    redial: BTreeMap<SocketAddr, Duration>,
    timers: Timers<Timer>,
    start: Instant,
    next_session: u64,
    blocked: Blocklist,
    stats: Stats,
    links: Arc<Links>,
    router: Router,
    /// Callers of `Links::dial` waiting for a session to a peer.
    dial_waiters: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    cmd_rx: mpsc::Receiver<Command>,
    input_rx: mpsc::Receiver<Input>,
    input_tx: mpsc::Sender<Input>,
    tasks: Vec<JoinHandle<()>>,
}

/// What `Node::start` needs back from the actor's setup.
pub(crate) struct Started {
    pub listen_addrs: Vec<SocketAddr>,
    pub join: JoinHandle<()>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Addresses others can dial for a listener bound to `local`: the concrete
/// interface addresses when bound to a wildcard, never `0.0.0.0`.
fn dialable_addrs(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut out = Vec::new();
    let mut loopback = Vec::new();
    if let Ok(ifs) = if_addrs::get_if_addrs() {
        for i in ifs {
            let ip = i.ip();
            if ip.is_ipv4() != local.is_ipv4() {
                continue;
            }
            if let std::net::IpAddr::V6(v6) = ip
                && (v6.segments()[0] & 0xffc0) == 0xfe80
            {
                continue; // link-local needs a scope; discovery supplies those
            }
            if ip.is_loopback() {
                loopback.push(SocketAddr::new(ip, local.port()));
            } else {
                out.push(SocketAddr::new(ip, local.port()));
            }
        }
    }
    out.extend(loopback);
    out.dedup();
    out
}

impl Actor {
    /// Binds the listener and discovery sockets and spawns the actor.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn spawn(
        config: Config,
        identity: Identity,
        store: Arc<Store>,
        events: broadcast::Sender<Event>,
        cmd_rx: mpsc::Receiver<Command>,
        links: Arc<Links>,
        router: Router,
        web_url: Option<String>,
    ) -> crate::Result<Started> {
        let transport = Transport::new(&identity, config.max_connections)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| crate::Error::io(format!("listening on {}", config.listen), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| crate::Error::io("listener address", e))?;
        let listen_addrs = dialable_addrs(local);
        let instance: u64 = rand::random();
        let (input_tx, input_rx) = mpsc::channel(INPUT_CAPACITY);

        let blocked: Blocklist = Arc::new(RwLock::new(
            store
                .peers()?
                .into_iter()
                .filter(|p| p.trust == Trust::Blocked)
                .map(|p| p.id)
                .collect(),
        ));

        let mut tasks = Vec::new();
        let discovery = if config.discovery.enabled {
            let sockets = Sockets::bind(&config.discovery).map_err(|e| {
                crate::Error::io(format!("discovery port {}", config.discovery.port), e)
            })?;
            let (dtx, mut drx) = mpsc::channel::<(SocketAddr, Vec<u8>)>(512);
            tasks.extend(sockets.spawn_readers(dtx));
            let itx = input_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((from, bytes)) = drx.recv().await {
                    if itx.send(Input::Datagram(from, bytes)).await.is_err() {
                        return;
                    }
                }
            }));
            let dcfg = disco::Config {
                announce_interval: config.discovery.announce_interval,
                expiry: config.discovery.expiry,
                ..disco::Config::default()
            };
            let state = disco::State::new(
                dcfg,
                identity.clone(),
                instance,
                config.name.clone(),
                config.kind,
                local.port(),
                StdRng::from_os_rng(),
            );
            Some((state, sockets))
        } else {
            None
        };
        // DNS-SD is one more discovery source: on only with discovery, so
        // nothing multicasts where discovery was turned off.
        if config.discovery.enabled && config.discovery.mdns {
            let itx = input_tx.clone();
            let hand = move |h| {
                !matches!(
                    itx.try_send(Input::Hint(h)),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            };
            match crate::net::mdns::spawn(&config, identity.peer_id(), local.port(), hand) {
                Ok(t) => tasks.push(t),
                // The node works without it (its own discovery is up).
                Err(message) => {
                    tracing::warn!("{message}");
                    let _ = events.send(Event::Error { message });
                }
            }
        }

        // Follow this host's addresses where they can change under us: on a
        // LAN (discovery) or with a peer beyond loopback. Nodes on loopback
        // only (tests, benchmarks of many nodes) need no watcher.
        let beyond_loopback = config.connect.iter().any(|c| {
            c.parse::<SocketAddr>()
                .map_or(true, |a| !a.ip().is_loopback())
        });
        if config.discovery.enabled || beyond_loopback {
            let itx = input_tx.clone();
            tasks.push(crate::net::netwatch::spawn(move |local| {
                use crate::net::netwatch::Report;
                match itx.try_send(Input::LocalAddrs(local)) {
                    Ok(()) => Report::Taken,
                    Err(mpsc::error::TrySendError::Full(_)) => Report::Busy,
                    Err(mpsc::error::TrySendError::Closed(_)) => Report::Stop,
                }
            }));
        }

        // Handshakes in progress, per source address and in total.
        let pending = Admission::new(
            crate::config::MAX_PENDING_HANDSHAKES.max(config.max_pending_handshakes_per_ip),
            config.max_pending_handshakes_per_ip,
        );
        tasks.push(spawn_accept_loop(
            listener,
            transport.clone(),
            input_tx.clone(),
            blocked.clone(),
            hello(&config, instance, local.port()),
            pending,
        ));

        let actor = Actor {
            identity,
            instance,
            listen_port: local.port(),
            config,
            store,
            transport,
            events,
            discovery,
            peers: BTreeMap::new(),
            sessions: HashMap::new(),
            dialing: HashSet::new(),
            discovery_dialing: HashSet::new(),
            discovery_dials: DialBudget::new(),
            redial: BTreeMap::new(),
            timers: Timers::default(),
            start: Instant::now(),
            next_session: 0,
            blocked,
            stats: Stats::default(),
            links,
            router,
            dial_waiters: HashMap::new(),
            cmd_rx,
            input_rx,
            input_tx,
            tasks,
        };
        let addrs = listen_addrs.clone();
        let join = tokio::spawn(actor.run(addrs, web_url));
        Ok(Started { listen_addrs, join })
    }

    fn emit(&self, e: Event) {
        // The node's own services learn of peers on their own channel.
        if let Event::PeerFound { peer }
        | Event::PeerUpdated { peer }
        | Event::PeerConnected { peer, .. } = &e
        {
            self.links.set_seen(peer.id, peer.addrs.clone());
        }
        let _ = self.events.send(e);
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(mut self, listen_addrs: Vec<SocketAddr>, web: Option<String>) {
        self.emit(Event::Listening {
            id: self.identity.peer_id(),
            name: self.config.name.clone(),
            addrs: listen_addrs,
            web,
        });
        self.on_start().await;
        loop {
            let next = self.timers.next_deadline();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown();
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.shutdown();
                        return;
                    }
                },
                Some(input) = self.input_rx.recv() => self.on_input(input).await,
                _ = sleep_until_opt(next) => {
                    let now = Instant::now();
                    while let Some(t) = self.timers.pop_due(now) {
                        self.on_timer(t).await;
                    }
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, s) in self.sessions.drain() {
            drop(s);
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.timers.clear();
    }

    async fn on_start(&mut self) {
        if self.discovery.is_some() {
            self.drive_discovery(disco::InEvent::Start).await;
        }
        // Fallback addresses given by the user.
        let mut targets = Vec::new();
        for spec in self.config.connect.clone() {
            match tokio::net::lookup_host(spec.as_str()).await {
                Ok(mut addrs) => {
                    if let Some(a) = addrs.next() {
                        targets.push(a);
                    }
                }
                Err(e) => self.emit(Event::Error {
                    message: format!("cannot resolve --connect {spec}: {e}"),
                }),
            }
        }
        for addr in targets {
            self.redial.insert(addr, Duration::from_secs(1));
            self.dial(addr, None);
        }
        // Peers met before: probe each once. Only trusted ones and those we
        // were connected to lately: any key can get itself stored, and a
        // restart must not dial wherever strangers left their addresses.
        if self.config.reconnect_known {
            let known = self.store.peers().unwrap_or_default();
            let recent = wall_ms().saturating_sub(RECONNECT_RECENT.as_millis() as u64);
            for p in known
                .into_iter()
                .filter(|p| {
                    !p.addrs.is_empty()
                        && (p.trust == Trust::Trusted
                            || (p.trust == Trust::Unknown && p.last_seen_ms >= recent))
                })
                .take(self.config.auto_connect)
            {
                if let Some(addr) = p.addrs.first() {
                    self.dial(*addr, Some(p.id));
                }
            }
        }
        let at = Instant::now() + self.config.keepalive;
        self.timers.insert(at, Timer::Keepalive);
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Connect {
                addr,
                expected,
                reply,
            } => {
                let t = self.transport.clone();
                let tx = self.input_tx.clone();
                let h = hello(&self.config, self.instance, self.listen_port);
                tokio::spawn(async move {
                    match dial_once(&t, addr, expected, &h).await {
                        Ok((conn, hello)) => {
                            let _ = tx
                                .send(Input::ConnectedFor {
                                    conn: Box::new(conn),
                                    hello,
                                    dialed: addr,
                                    reply,
                                })
                                .await;
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                });
            }
            Command::SetTrust { id, trust, reply } => {
                let res = self.set_trust(id, trust);
                let _ = reply.send(res.map_err(|e| e.to_string()));
            }
            Command::Dial { peer, addrs, reply } => {
                if self.sessions.contains_key(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                if self.is_blocked(&peer) {
                    let _ = reply.send(Err(format!("{peer} is blocked")));
                    return;
                }
                let mut all = addrs;
                if let Some(p) = self.peers.get(&peer) {
                    all.extend(p.dial_addrs());
                }
                if let Ok(Some(p)) = self.store.peer(&peer) {
                    all.extend(p.addrs);
                }
                let mut seen = HashSet::new();
                all.retain(|a| seen.insert(*a));
                all.sort_by_key(|a| !a.is_ipv4());
                if all.is_empty() {
                    let _ = reply.send(Err(format!("no known address for {}", peer.short())));
                    return;
                }
                self.dial_waiters.entry(peer).or_default().push(reply);
                self.dial_any(peer, all);
            }
            Command::Stats(reply) => {
                let mut s = self.stats.clone();
                if let Some((d, _)) = &self.discovery {
                    s.discovery = d.stats();
                }
                s.sessions = self.sessions.len();
                s.lanes_refused += self
                    .sessions
                    .values()
                    .map(|x| x.mux.lanes_refused())
                    .sum::<u64>();
                s.bad_streams = self
                    .router
                    .bad_streams
                    .load(std::sync::atomic::Ordering::Relaxed);
                let _ = reply.send(s);
            }
            Command::Close { peer, session } => {
                if self.sessions.get(&peer).is_some_and(|s| s.id == session) {
                    // Checked again here, under the lock `hold()` takes: a
                    // hold taken after `Links::close` queued this command
                    // keeps the session.
                    let links = self.links.clone();
                    links.unless_held(&peer, || {
                        self.close_session(peer, Some("no longer needed".into()))
                    });
                }
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn set_trust(&mut self, id: PeerId, trust: Trust) -> Result<(), crate::store::StoreError> {
        self.store.set_trust(&id, trust)?;
        {
            let mut b = self.blocked.write().unwrap_or_else(|p| p.into_inner());
            if trust == Trust::Blocked {
                b.insert(id);
            } else {
                b.remove(&id);
            }
        }
        if trust == Trust::Blocked && self.sessions.remove(&id).is_some() {
            self.emit(Event::PeerDisconnected {
                id,
                reason: Some("blocked".into()),
            });
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.trust = trust;
            let info = self.peer_info(&id);
            if let Some(info) = info {
                self.emit(Event::PeerUpdated { peer: info });
            }
        }
        Ok(())
    }

    async fn on_input(&mut self, input: Input) {
        match input {
            Input::Datagram(from, bytes) => {
                self.drive_discovery(disco::InEvent::Datagram {
                    from,
                    bytes,
                    wall_ms: wall_ms(),
                })
                .await;
            }
            Input::Hint(h) => self.drive_discovery(disco::InEvent::Hint(h)).await,
            Input::Connected {
                conn,
                hello,
                dialed,
            } => self.on_connected(*conn, hello, dialed),
            Input::ConnectedFor {
                conn,
                hello,
                dialed,
                reply,
            } => {
                let peer = conn.peer;
                self.on_connected(*conn, hello, Some(dialed));
                let res = if self.sessions.contains_key(&peer) {
                    Ok(peer)
                } else if peer == self.identity.peer_id() {
                    Err("that address is this node".to_string())
                } else if self.is_blocked(&peer) {
                    Err(format!("{peer} is blocked"))
                } else {
                    Err("the session was refused (too many sessions from that address)".into())
                };
                let _ = reply.send(res);
            }
            Input::DialFailed {
                addr,
                expected,
                error,
            } => {
                self.dialing.remove(&addr);
                if let Some(peer) = expected {
                    self.discovery_dialing.remove(&peer);
                }
                if let Some(peer) = expected
                    && !self.sessions.contains_key(&peer)
                {
                    for w in self.dial_waiters.remove(&peer).unwrap_or_default() {
                        let _ = w.send(Err(error.clone()));
                    }
                }
                tracing::debug!(%addr, ?expected, %error, "dial failed");
                if let Some(backoff) = self.redial.get_mut(&addr) {
                    let wait = *backoff;
                    *backoff = (*backoff * 2).min(MAX_REDIAL);
                    if wait == Duration::from_secs(1) {
                        self.emit(Event::Error {
                            message: format!("cannot connect to {addr}: {error} (retrying)"),
                        });
                    }
                    self.timers
                        .insert(Instant::now() + wait, Timer::Redial(addr));
                }
            }
            Input::HandshakeFailed => self.stats.handshakes_failed += 1,
            Input::LocalAddrs(local) => self.on_local_addrs(local).await,
            Input::HandshakeRefused => self.stats.handshakes_refused += 1,
            Input::RefusedBlocked => self.stats.connections_refused_blocked += 1,
            Input::FromPeer { peer, session, msg } => {
                let Some(s) = self.sessions.get_mut(&peer) else {
                    return;
                };
                if s.id != session {
                    return;
                }
                s.last_heard = Instant::now();
                match msg {
                    Message::Ping(n) => {
                        let _ = s.tx.try_send(Box::new(Message::Pong(n)));
                    }
                    Message::Pong(n) => self.links.on_pong(n),
                    _ => {}
                }
            }
            Input::BadFrame {
                peer,
                session,
                error,
            } => {
                self.stats.bad_frames += 1;
                tracing::debug!(%peer, %error, "dropping session after a bad frame");
                if self.sessions.get(&peer).is_some_and(|s| s.id == session) {
                    self.close_session(peer, Some(format!("protocol error: {error}")));
                }
            }
            Input::SessionClosed {
                peer,
                session,
                reason,
            } => {
                if self.sessions.get(&peer).is_some_and(|s| s.id == session) {
                    self.close_session(peer, reason);
                    self.redial_discovered(peer);
                }
            }
        }
    }

    /// This host's addresses changed: discovery joins and announces from the
    /// new ones at once, and each session made from an address that went away
    /// is dialed again so that it moves to a new lane (`proto::roaming`).
    async fn on_local_addrs(&mut self, local: std::collections::BTreeSet<IpAddr>) {
        if let Some((_, sockets)) = &mut self.discovery {
            sockets.refresh_interfaces();
            self.drive_discovery(disco::InEvent::NetworkChanged).await;
        }
        let stranded = crate::proto::roaming::stranded(
            self.sessions.iter().map(|(p, s)| (*p, s.local)),
            &local,
        );
        for peer in stranded {
            let addrs = self
                .peers
                .get(&peer)
                .map(Peer::dial_addrs)
                .unwrap_or_default();
            if addrs.is_empty() {
                continue;
            }
            tracing::info!(%peer, ?addrs, "our address of a session went away: dialing a new lane");
            self.dial_any(peer, addrs);
        }
    }

    /// A session that ended without anyone wanting it to (its lanes died, the
    /// peer stopped answering): if discovery still hears the peer, dial it
    /// again as on hearing it for the first time.
    fn redial_discovered(&mut self, peer: PeerId) {
        if self.sessions.contains_key(&peer) || self.is_blocked(&peer) {
            return;
        }
        let Some(p) = self.peers.get(&peer).filter(|p| p.discovered) else {
            return;
        };
        let addrs = p.dial_addrs();
        if self.identity.peer_id() < peer {
            // Freshest heard address first: the proven ones may be the ones
            // that just went away.
            if let Some(addr) = best_addr(&p.candidates).or_else(|| best_addr(&addrs)) {
                self.discovery_dial(addr, peer);
            }
        } else {
            self.timers.insert(
                Instant::now() + FALLBACK_DIAL_DELAY,
                Timer::FallbackDial(peer),
            );
        }
    }

    fn close_session(&mut self, peer: PeerId, reason: Option<String>) {
        let Some(s) = self.sessions.remove(&peer) else {
            return;
        };
        self.links.set_down(peer, s.id);
        self.stats.lanes_refused += s.mux.lanes_refused();
        drop(s);
        self.emit(Event::PeerDisconnected { id: peer, reason });
        let discovered = self.peers.get(&peer).is_some_and(|p| p.discovered);
        if !discovered {
            self.peers.remove(&peer);
            self.emit(Event::PeerLost { id: peer });
        }
        // A --connect target that dropped: try again.
        let targets: Vec<SocketAddr> = self.redial.keys().copied().collect();
        for addr in targets {
            if !self.is_connected_to_addr(addr) {
                self.redial.insert(addr, Duration::from_secs(1));
                self.timers
                    .insert(Instant::now() + Duration::from_secs(1), Timer::Redial(addr));
            }
        }
    }

    fn is_connected_to_addr(&self, addr: SocketAddr) -> bool {
        self.peers
            .iter()
            .any(|(id, p)| p.addrs.contains(&addr) && self.sessions.contains_key(id))
    }

    fn on_connected(&mut self, conn: Connection, hello: Hello, dialed: Option<SocketAddr>) {
        let peer = conn.peer;
        if let Some(addr) = dialed {
            self.dialing.remove(&addr);
        }
        self.discovery_dialing.remove(&peer);
        if peer == self.identity.peer_id() {
            tracing::debug!("dropping a connection to ourselves");
            return;
        }
        if self.is_blocked(&peer) {
            self.stats.connections_refused_blocked += 1;
            return;
        }
        // The address to reach this peer again: what we dialed, or the address it
        // connected from with the port it listens on.
        let addr = dialed.unwrap_or_else(|| SocketAddr::new(conn.remote.ip(), hello.listen_port));
        if let Some(s) = self.sessions.get_mut(&peer) {
            if s.instance == hello.instance {
                // Another lane of the session (or the session moving to a new
                // address, see `proto::roaming`). The session task refuses
                // lanes past MAX_LANES_PER_SESSION: it alone sees lanes in the
                // order they are added.
                if let Ok(local) = conn.local_addr() {
                    s.local = Some(local.ip());
                }
                let mux = s.mux.clone();
                tokio::spawn(async move { mux.add_lane(conn).await });
                // The key proved this address: the peer's first from now on.
                if hello.listen_port != 0
                    && let Some(p) = self.peers.get_mut(&peer)
                    && p.addrs.first() != Some(&addr)
                {
                    p.addrs.retain(|a| *a != addr);
                    p.addrs.insert(0, addr);
                    p.addrs.truncate(8);
                    let _ = self
                        .store
                        .upsert_peer(&peer, &p.name, p.kind, &p.addrs, wall_ms());
                }
                return;
            }
            // The peer restarted: its old session is void.
            self.close_session(peer, Some("peer restarted".into()));
        }
        let ip = conn.remote.ip();
        let from_ip = self.sessions.values().filter(|s| s.ip == ip).count();
        if from_ip >= self.config.max_sessions_per_ip {
            self.stats.sessions_refused_per_ip += 1;
            tracing::debug!(
                %peer,
                %ip,
                limit = self.config.max_sessions_per_ip,
                "refusing a session: too many peer keys from one address"
            );
            for w in self.dial_waiters.remove(&peer).unwrap_or_default() {
                let _ = w.send(Err(format!("too many sessions from {ip}")));
            }
            return;
        }
        let trust = self.store.trust(&peer).unwrap_or_default();
        let is_new = !self.peers.contains_key(&peer);
        let entry = self.peers.entry(peer).or_insert_with(|| Peer {
            name: hello.name.clone(),
            kind: hello.kind,
            addrs: Vec::new(),
            candidates: Vec::new(),
            trust,
            discovered: false,
        });
        entry.name = hello.name.clone();
        entry.kind = hello.kind;
        if hello.listen_port != 0 && !entry.addrs.contains(&addr) {
            entry.addrs.insert(0, addr);
            entry.addrs.truncate(8);
        }
        let addrs = entry.addrs.clone();
        if let Err(e) = self
            .store
            .upsert_peer(&peer, &hello.name, hello.kind, &addrs, wall_ms())
        {
            tracing::warn!(error = %e, "cannot remember peer");
        }
        self.start_session(peer, hello.instance, conn, addr);
        for w in self.dial_waiters.remove(&peer).unwrap_or_default() {
            let _ = w.send(Ok(()));
        }
        let info = self.peer_info(&peer).expect("peer inserted above");
        if is_new {
            self.emit(Event::PeerFound { peer: info.clone() });
        }
        let code = info.verification_code.clone();
        self.emit(Event::PeerConnected {
            peer: info,
            verification_code: code,
        });
    }

    fn start_session(&mut self, peer: PeerId, instance: u64, conn: Connection, addr: SocketAddr) {
        let ip = conn.remote.ip();
        let local = conn.local_addr().ok().map(|a| a.ip());
        self.next_session += 1;
        let id = self.next_session;
        let side = if self.identity.peer_id() < peer {
            Side::Low
        } else {
            Side::High
        };
        let mux = MuxSession::with_dialer(
            MuxConfig {
                max_lanes_held: MAX_LANES_PER_SESSION,
                ..MuxConfig::default()
            },
            side,
            Some(self.lane_dialer(peer, addr)),
        );
        let (tx, mut rx) = mpsc::channel::<Box<Message>>(PEER_QUEUE);
        // Published before the session's tasks start: a frame the peer sends
        // the moment its side is up (a queued message) is answered on this
        // session, never dropped for want of a link (an ack was, when the
        // tasks could run before the link was published).
        self.links.set_up(
            peer,
            PeerLink {
                session: id,
                control: tx.clone(),
                mux: mux.clone(),
            },
        );
        let input = self.input_tx.clone();
        let router = self.router.clone();
        let m = mux.clone();
        let session_task = tokio::spawn(async move {
            m.add_lane(conn).await;
            let Some(control) = m.control().await else {
                return;
            };
            let (mut r, mut w) = tokio::io::split(control);
            let reader_input = input.clone();
            let reader = async move {
                loop {
                    match read_frame::<Message, _>(&mut r).await {
                        Ok(Ok(msg)) => {
                            // Each kind goes straight to the service that owns it;
                            // awaiting a full service queue pushes back on the peer.
                            let delivered = match msg {
                                Message::Ping(_) | Message::Pong(_) => reader_input
                                    .send(Input::FromPeer {
                                        peer,
                                        session: id,
                                        msg,
                                    })
                                    .await
                                    .is_ok(),
                                Message::Gossip(m) => match &router.gossip {
                                    Some(tx) => tx.send((peer, m)).await.is_ok(),
                                    None => true,
                                },
                                Message::Dm(m) => match &router.dm {
                                    Some(tx) => tx.send((peer, m)).await.is_ok(),
                                    None => true,
                                },
                            };
                            if !delivered {
                                return None;
                            }
                        }
                        Ok(Err(e)) => {
                            let _ = reader_input
                                .send(Input::BadFrame {
                                    peer,
                                    session: id,
                                    error: e.to_string(),
                                })
                                .await;
                            return None;
                        }
                        Err(e) => return Some(e.to_string()),
                    }
                }
            };
            let writer = async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = Vec::new();
                while let Some(msg) = rx.recv().await {
                    buf.clear();
                    if let Err(e) = wire::encode_frame(&msg, &mut buf) {
                        tracing::warn!(error = %e, "dropping unencodable message");
                        continue;
                    }
                    if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
            };
            let reason = tokio::select! {
                r = reader => r,
                _ = writer => None,
                _ = m.closed() => Some("connection closed".to_string()),
            };
            let _ = input
                .send(Input::SessionClosed {
                    peer,
                    session: id,
                    reason,
                })
                .await;
        });
        let accept = crate::net::streams::spawn_accept_loop(peer, mux.clone(), self.router.clone());
        #[cfg(test)]
        tests::publish_delay(self.identity.peer_id());
        self.sessions.insert(
            peer,
            Session {
                id,
                instance,
                ip,
                local,
                mux,
                tx,
                last_heard: Instant::now(),
                tasks: vec![session_task, accept],
            },
        );
    }

    fn is_blocked(&self, id: &PeerId) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Dials `addr` in the background, once at a time per address.
    fn dial(&mut self, addr: SocketAddr, expected: Option<PeerId>) {
        if let Some(id) = expected
            && (self.sessions.contains_key(&id) || self.is_blocked(&id))
        {
            return;
        }
        if !self.dialing.insert(addr) {
            return;
        }
        let t = self.transport.clone();
        let tx = self.input_tx.clone();
        let h = hello(&self.config, self.instance, self.listen_port);
        tokio::spawn(async move {
            let input = match dial_once(&t, addr, expected, &h).await {
                Ok((conn, hello)) => Input::Connected {
                    conn: Box::new(conn),
                    hello,
                    dialed: Some(addr),
                },
                Err(e) => Input::DialFailed {
                    addr,
                    expected,
                    error: e.to_string(),
                },
            };
            let _ = tx.send(input).await;
        });
    }

    /// Dials `peer` at `addr` because discovery heard of it: within the rate
    /// limit, and only while sessions plus such dials in progress stay under
    /// `auto_connect`.
    fn discovery_dial(&mut self, addr: SocketAddr, peer: PeerId) {
        if self.discovery_dialing.contains(&peer) {
            return;
        }
        if self.dialing.contains(&addr) {
            self.stats.discovery_dials_skipped += 1;
            return;
        }
        if self.sessions.len() + self.discovery_dialing.len() >= self.config.auto_connect
            || !self.discovery_dials.take(Instant::now())
        {
            self.stats.discovery_dials_skipped += 1;
            return;
        }
        self.discovery_dialing.insert(peer);
        self.dial(addr, Some(peer));
        if !self.dialing.contains(&addr) {
            // dial() declined (connected meanwhile, or blocked)
            self.discovery_dialing.remove(&peer);
        }
    }

    /// How the mux session to `peer` opens more lanes for bulk streams: a new TLS
    /// connection to the address the session was reached at, with the usual
    /// Hello. The peer's actor adds it to its side of the same session.
    fn lane_dialer(&self, peer: PeerId, addr: SocketAddr) -> LaneDialer {
        let t = self.transport.clone();
        let h = hello(&self.config, self.instance, self.listen_port);
        Arc::new(move || {
            let t = t.clone();
            let h = h.clone();
            Box::pin(async move {
                let (conn, _) = dial_once(&t, addr, Some(peer), &h)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Ok(Box::new(conn) as BoxedLane)
            })
        })
    }

    /// Dials `addrs` one after the other until one reaches `peer`.
    fn dial_any(&mut self, peer: PeerId, addrs: Vec<SocketAddr>) {
        let t = self.transport.clone();
        let tx = self.input_tx.clone();
        let h = hello(&self.config, self.instance, self.listen_port);
        tokio::spawn(async move {
            let mut last = None;
            for addr in addrs {
                match dial_once(&t, addr, Some(peer), &h).await {
                    Ok((conn, hello)) => {
                        let _ = tx
                            .send(Input::Connected {
                                conn: Box::new(conn),
                                hello,
                                dialed: Some(addr),
                            })
                            .await;
                        return;
                    }
                    Err(e) => last = Some((addr, e.to_string())),
                }
            }
            if let Some((addr, error)) = last {
                let _ = tx
                    .send(Input::DialFailed {
                        addr,
                        expected: Some(peer),
                        error,
                    })
                    .await;
            }
        });
    }

    async fn on_timer(&mut self, t: Timer) {
        match t {
            Timer::Discovery(kind) => {
                if kind == TimerKind::Announce
                    && let Some((_, sockets)) = &mut self.discovery
                {
                    sockets.refresh_interfaces();
                }
                let t = match kind {
                    TimerKind::Announce => disco::Timer::Announce,
                    TimerKind::Expire => disco::Timer::Expire,
                };
                self.drive_discovery(disco::InEvent::Timer(t)).await;
            }
            Timer::FallbackDial(peer) => {
                // Freshest heard address first (the proven ones may have gone).
                if !self.sessions.contains_key(&peer)
                    && let Some(addr) = self.peers.get(&peer).and_then(|p| {
                        best_addr(&p.candidates).or_else(|| best_addr(&p.dial_addrs()))
                    })
                {
                    self.discovery_dial(addr, peer);
                }
            }
            Timer::Redial(addr) => {
                if !self.is_connected_to_addr(addr) {
                    self.dial(addr, None);
                }
            }
            Timer::Keepalive => {
                let now = Instant::now();
                let dead: Vec<PeerId> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| now.duration_since(s.last_heard) > self.config.keepalive * 3)
                    .map(|(p, _)| *p)
                    .collect();
                for p in dead {
                    self.close_session(p, Some("peer stopped answering".into()));
                    self.redial_discovered(p);
                }
                let nonce = self.now().as_millis() as u64;
                for s in self.sessions.values() {
                    let _ = s.tx.try_send(Box::new(Message::Ping(nonce)));
                }
                self.timers
                    .insert(now + self.config.keepalive, Timer::Keepalive);
            }
        }
    }

    async fn drive_discovery(&mut self, input: disco::InEvent) {
        let now = self.now();
        let Some((state, _)) = &mut self.discovery else {
            return;
        };
        let outs = state.handle(now, wall_ms(), input);
        for out in outs {
            match out {
                disco::OutEvent::Broadcast(bytes) => {
                    if let Some((_, sockets)) = &self.discovery {
                        sockets.send_to_lan(&bytes).await;
                    }
                }
                disco::OutEvent::Unicast(to, bytes) => {
                    if let Some((_, sockets)) = &self.discovery {
                        sockets.send_to(to, &bytes).await;
                    }
                }
                disco::OutEvent::ScheduleTimer(delay, t) => {
                    self.timers
                        .insert(Instant::now() + delay, Timer::Discovery(t.into()));
                }
                disco::OutEvent::Emit(e) => self.on_discovery_event(e),
            }
        }
    }

    fn on_discovery_event(&mut self, e: disco::Event) {
        match e {
            disco::Event::Discovered(d) | disco::Event::Updated(d) => {
                if self.is_blocked(&d.id) {
                    return;
                }
                let trust = self.store.trust(&d.id).unwrap_or_default();
                let is_new = !self.peers.contains_key(&d.id);
                let p = self.peers.entry(d.id).or_insert_with(|| Peer {
                    name: d.name.clone(),
                    kind: d.kind,
                    addrs: Vec::new(),
                    candidates: Vec::new(),
                    trust,
                    discovered: true,
                });
                p.discovered = true;
                p.name = d.name.clone();
                p.kind = d.kind;
                // Heard, not proven: the address becomes the peer's (and is
                // stored) only once a connection pinned to its key succeeds.
                p.candidates = d.addrs.clone();
                p.candidates.truncate(8);
                let addrs = p.dial_addrs();
                let info = self.peer_info(&d.id).expect("inserted above");
                if is_new {
                    self.emit(Event::PeerFound { peer: info });
                } else {
                    self.emit(Event::PeerUpdated { peer: info });
                }
                if !self.sessions.contains_key(&d.id) {
                    if self.identity.peer_id() < d.id {
                        if let Some(addr) = best_addr(&addrs) {
                            self.discovery_dial(addr, d.id);
                        }
                    } else if self.sessions.len() < self.config.auto_connect {
                        self.timers.insert(
                            Instant::now() + FALLBACK_DIAL_DELAY,
                            Timer::FallbackDial(d.id),
                        );
                    }
                }
            }
            disco::Event::Expired(id) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.discovered = false;
                }
                if !self.sessions.contains_key(&id) {
                    self.peers.remove(&id);
                    self.emit(Event::PeerLost { id });
                }
            }
        }
    }

    fn peer_info(&self, id: &PeerId) -> Option<PeerInfo> {
        let p = self.peers.get(id)?;
        Some(PeerInfo {
            id: *id,
            name: p.name.clone(),
            kind: p.kind,
            addrs: p.dial_addrs(),
            trust: p.trust,
            connected: self.sessions.contains_key(id),
            verification_code: verification_code(&self.identity.peer_id(), id),
            localsend: None,
        })
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        self.peers
            .keys()
            .filter_map(|id| self.peer_info(id))
            .collect()
    }
}

/// IPv4 first: on most LANs it is the address that works without a scope id.
fn best_addr(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

fn hello(config: &Config, instance: u64, listen_port: u16) -> Hello {
    Hello {
        instance,
        name: config.name.clone(),
        kind: config.kind,
        listen_port,
    }
}

async fn dial_once(
    t: &Transport,
    addr: SocketAddr,
    expected: Option<PeerId>,
    ours: &Hello,
) -> Result<(Connection, Hello), transport::Error> {
    let mut conn = t.connect(addr, expected).await?;
    let theirs = conn.exchange_hello(ours).await?;
    Ok((conn, theirs))
}

fn spawn_accept_loop(
    listener: TcpListener,
    transport: Transport,
    input: mpsc::Sender<Input>,
    blocked: Blocklist,
    ours: Hello,
    pending: Admission,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = crate::accept::Backoff::default();
        loop {
            let (tcp, from) = match listener.accept().await {
                Ok(x) => {
                    backoff.reset();
                    x
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    let wait = backoff.failed();
                    tracing::warn!(error = %e, retry_in = ?wait, "accept failed");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            // Before any TLS work: a host (or everyone) with too many
            // handshakes in progress gets its new connection closed.
            let Some(slot) = pending.admit(from.ip()) else {
                drop(tcp);
                if input.try_send(Input::HandshakeRefused).is_err() {
                    tracing::debug!(%from, "handshake refused (not counted: actor busy)");
                }
                continue;
            };
            let transport = transport.clone();
            let input = input.clone();
            let blocked = blocked.clone();
            let ours = ours.clone();
            tokio::spawn(async move {
                let handshake = async {
                    let mut conn = transport.accept(tcp, from).await?;
                    if blocked
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&conn.peer)
                    {
                        return Ok(None);
                    }
                    let theirs = conn.exchange_hello(&ours).await?;
                    Ok::<_, transport::Error>(Some((conn, theirs)))
                };
                // One deadline for TLS and Hello together.
                let res = tokio::time::timeout(transport::HANDSHAKE_TIMEOUT, handshake)
                    .await
                    .unwrap_or(Err(transport::Error::Timeout(from)));
                drop(slot);
                let msg = match res {
                    Ok(Some((conn, hello))) => Input::Connected {
                        conn: Box::new(conn),
                        hello,
                        dialed: None,
                    },
                    Ok(None) => Input::RefusedBlocked,
                    Err(e) => {
                        tracing::debug!(%from, error = %e, "incoming handshake failed");
                        Input::HandshakeFailed
                    }
                };
                let _ = input.send(msg).await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::identity::PeerId;
    use crate::proto::messaging::Status;
    use crate::{Config, Event, Node};

    /// A node made slow between starting a session's tasks and the end of
    /// `start_session` (as a preempted actor thread is).
    static PUBLISH_DELAY: Mutex<Option<(PeerId, Duration)>> = Mutex::new(None);

    pub(super) fn publish_delay(me: PeerId) {
        let delay = *PUBLISH_DELAY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((who, d)) = delay
            && who == me
        {
            std::thread::sleep(d);
        }
    }

    /// A peer that sends a queued message the moment a session comes up
    /// (here: its outbox held it while the receiver was away) gets it
    /// acknowledged in that session, however slowly the receiver's actor
    /// finishes setting the session up. The receiver used to store the
    /// message and drop the ack ("no session" yet), leaving it `sent` on the
    /// sender's side until some later session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_sent_the_moment_a_session_comes_up_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let a = Node::start(Config::local(dir.path().join("a")))
            .await
            .unwrap();
        let b = Node::start(Config::local(dir.path().join("b")))
            .await
            .unwrap();
        // b knows a (so it can queue for it), then a goes away for a moment.
        let a_id = b.connect(a.listen_addrs()[0], None).await.unwrap();
        a.shutdown().await.unwrap();
        let mut be = b.events();
        let m = b
            .send_message(a_id, "queued while away".to_string(), None)
            .await
            .unwrap();
        assert_eq!(m.status, Status::Pending);
        *PUBLISH_DELAY.lock().unwrap() = Some((a_id, Duration::from_millis(300)));
        // a comes back (same identity) on a port of its own: its old one may
        // have been taken meanwhile by another test's socket on this busy
        // machine, and which port it listens on does not matter here.
        let a = Node::start(Config::local(dir.path().join("a")))
            .await
            .unwrap();
        assert_eq!(a.id(), a_id);
        b.connect(a.listen_addrs()[0], Some(a_id)).await.unwrap();
        let acked = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match be.recv().await {
                    Some(Event::MessageStatus { id, status, .. })
                        if id == m.id && status == Status::Delivered =>
                    {
                        return;
                    }
                    Some(_) => {}
                    None => panic!("event stream ended"),
                }
            }
        })
        .await;
        *PUBLISH_DELAY.lock().unwrap() = None;
        let on_a = a.conversation(b.id(), None, 10).unwrap();
        assert_eq!(on_a.len(), 1, "{on_a:?}");
        assert!(
            acked.is_ok(),
            "a stored the message but b never saw it acknowledged"
        );
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
}
