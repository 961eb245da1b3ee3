//! The gossip simulator: N production [`gossip::State`]s on a virtual LAN.
//!
//! One run, all from one seed: nodes join (how: the [`Workload`]), the overlay
//! settles (shuffles fill passive views), then `broadcasts` messages are sent
//! from random nodes, one per [`SimConfig::broadcast_interval`] (the first
//! [`SimConfig::warmup`] build the Plumtree tree and are reported apart). Then
//! a fraction [`SimConfig::crash`] of the nodes crashes at once and
//! `broadcasts` more are sent, the first one [`SimConfig::crash_to_broadcast`]
//! after the crash, before most failures are even detected.
//!
//! Workloads:
//! - [`Workload::Staggered`]: node `i` joins at `i` × [`SimConfig::join_interval`]
//!   through 3 random earlier nodes (the first is the contact, the others
//!   fallbacks).
//! - [`Workload::AllAtOnce`]: every node joins at virtual time 0 (in index
//!   order) through 3 random other nodes, any of them, including nodes that
//!   have not joined yet or are joining themselves (the production state
//!   answers those as a non-member; the simulator does not special-case it).
//! - [`Workload::PartitionHeal`]: staggered joins (so that the cut, not the
//!   join pattern, is what is measured), the steady phase, then the nodes are
//!   cut into two random halves for `duration`: messages across the cut are
//!   not delivered, connections across it are reported lost to both ends
//!   after the failure detection delay (as for a crash), new sends and dials
//!   across it fail the same way. Broadcasts go on during the cut, one per
//!   interval, alternating sides. Then the cut heals (messages cross again;
//!   the nodes are told nothing) and broadcasts go on for
//!   [`SimConfig::after_heal`]. No crash in this workload.
//!
//! Every workload samples the connected components of the active-view graph
//! (live, joined nodes; a link counts in either direction) every
//! [`SimConfig::sample_interval`], and reports the time to one component: from
//! the last join (until the crash, if any) or from the heal, to the first
//! sample from which on every sample shows one component.
//!
//! The link model follows the transport: messages travel on per-pair
//! connections (TCP), so they arrive in order; a "lost" segment is retransmitted
//! and only delays its message (and those behind it) by [`SimConfig::rto`]. A
//! crashed node neither sends nor receives; peers holding a connection to it,
//! and peers that try to reach it, are told (`ConnectionLost`) after
//! [`SimConfig::failure_detection`] (±50 %).
//!
//! Metrics per broadcast (Leitão et al. use the same): delivery ratio among live
//! nodes; RMR, relative message redundancy, `m / (n - 1) - 1` where `m` counts
//! payload-carrying messages received and `n` the nodes that delivered (0 means
//! every node got the payload exactly once); LDH, the largest hop count of a
//! first delivery; messages per live node (payload, dissemination control,
//! membership) sent while the broadcast was the latest; and time to full
//! delivery. A broadcast sent during a cut is measured on its source's side
//! (delivery ratio, RMR); its deliveries on the other side are counted apart.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use rand::Rng;
use rand::seq::{IteratorRandom, SliceRandom};
use serde::{Serialize, Serializer};

use crate::identity::PeerId;
use crate::proto::gossip::{self, Body, Event, InEvent, OutEvent, Strategy, TopicId};
use crate::proto::hyparview::{PeerData, PeerInfo};
use crate::proto::plumtree::{self, MessageId, Payload};
use crate::proto::rumor;
use crate::proto::sim::{Network, Scheduler, SimRng, rng};

/// How the nodes join, and what the network does after the steady phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// One node per [`SimConfig::join_interval`], each through 3 random earlier
    /// nodes; then the crash.
    #[default]
    Staggered,
    /// Every node at virtual time 0, each through 3 random other nodes; then
    /// the crash.
    AllAtOnce,
    /// Staggered joins; `at` after the steady phase (which ends one broadcast
    /// interval after its last broadcast) the nodes are cut in two random
    /// halves for `duration`, then the cut heals.
    PartitionHeal {
        #[serde(rename = "at_ms", serialize_with = "ser_ms")]
        at: Duration,
        #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
        duration: Duration,
    },
}

impl Workload {
    /// A partition of 60 s right after the steady phase.
    pub fn partition_heal() -> Self {
        Workload::PartitionHeal {
            at: Duration::ZERO,
            duration: Duration::from_secs(60),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Staggered => "staggered",
            Workload::AllAtOnce => "all-at-once",
            Workload::PartitionHeal { .. } => "partition-heal",
        }
    }
}

impl std::str::FromStr for Workload {
    type Err = String;

    /// `staggered`, `all-at-once` or `partition-heal` (a 60 s cut).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "staggered" => Ok(Workload::Staggered),
            "all-at-once" => Ok(Workload::AllAtOnce),
            "partition-heal" => Ok(Workload::partition_heal()),
            _ => Err(format!(
                "unknown workload {s:?} (staggered, all-at-once, partition-heal)"
            )),
        }
    }
}

fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(ms(*d))
}

/// One simulation run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub strategy: Strategy,
    pub workload: Workload,
    /// Fraction of nodes that crash at once after the steady phase (0: none).
    pub crash: f64,
    /// Broadcasts measured in each phase (steady state, after the crash).
    pub broadcasts: usize,
    pub seed: u64,
    /// Broadcasts before the steady phase, reported as "warmup".
    pub warmup: usize,
    pub payload_len: usize,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Probability that a message needs a TCP retransmission.
    pub loss: f64,
    pub rto: Duration,
    pub join_interval: Duration,
    /// Quiet time between the last join and the first broadcast.
    pub settle: Duration,
    pub broadcast_interval: Duration,
    pub crash_to_broadcast: Duration,
    pub failure_detection: Duration,
    /// How long broadcasts go on after a partition heals.
    pub after_heal: Duration,
    /// How often the components of the active-view graph are sampled.
    pub sample_interval: Duration,
    pub gossip: gossip::Config,
    /// All at once: how many nodes each node can reach when it joins. 3 (the
    /// default): 3 random others. 1: each node is connected to one random
    /// earlier node (a random tree, as when every device on a LAN dialed the
    /// first peer it heard of) and reaches its tree neighbours.
    pub contacts: usize,
}

impl SimConfig {
    pub fn new(nodes: usize, strategy: Strategy, seed: u64) -> Self {
        let net = Network::lan(seed);
        Self {
            nodes,
            strategy,
            workload: Workload::Staggered,
            crash: 0.5,
            broadcasts: 10,
            seed,
            warmup: 2,
            payload_len: 64,
            min_latency: net.min_latency,
            max_latency: net.max_latency,
            loss: 0.0,
            rto: Duration::from_millis(200),
            join_interval: Duration::from_millis(1),
            settle: Duration::from_secs(20),
            broadcast_interval: Duration::from_secs(1),
            crash_to_broadcast: Duration::from_millis(100),
            failure_detection: Duration::from_millis(500),
            after_heal: Duration::from_secs(20),
            sample_interval: Duration::from_secs(1),
            gossip: gossip::Config::default(),
            contacts: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Warmup,
    Steady,
    AfterCrash,
    DuringCut,
    AfterHeal,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Steady => "steady",
            Phase::AfterCrash => "after crash",
            Phase::DuringCut => "during cut",
            Phase::AfterHeal => "after heal",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BroadcastReport {
    pub phase: Phase,
    pub source: usize,
    /// When it was sent (virtual time).
    pub start_ms: f64,
    /// During a cut: the source's side (0 or 1). `live_nodes`, `delivered`,
    /// the ratios and RMR then count that side only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<u8>,
    /// During a cut: nodes of the other side that delivered it (while the cut
    /// lasted: none; after the heal: the history a side got from the other).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_side_delivered: Option<usize>,
    pub live_nodes: usize,
    pub delivered: usize,
    pub delivery_ratio: f64,
    pub payload_messages: u64,
    pub rmr: f64,
    pub ldh: u16,
    pub payload_per_node: f64,
    pub control_per_node: f64,
    pub membership_per_node: f64,
    /// Until the last live node delivered; `None` if some never did.
    pub time_to_full_ms: Option<f64>,
    pub last_delivery_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: Phase,
    pub broadcasts: usize,
    pub mean_delivery_ratio: f64,
    pub min_delivery_ratio: f64,
    pub fully_delivered: usize,
    /// Σm / Σ(n - 1) - 1 over the phase's broadcasts.
    pub rmr: f64,
    pub max_ldh: u16,
    pub messages_per_node: f64,
    pub payload_per_node: f64,
    pub max_time_to_full_ms: Option<f64>,
    pub mean_last_delivery_ms: f64,
}

/// The shape of the overlay (active views of live nodes).
#[derive(Debug, Clone, Serialize)]
pub struct OverlayReport {
    pub live_nodes: usize,
    pub mean_active: f64,
    pub mean_passive: f64,
    /// Active-view entries naming a live peer that does not have us.
    pub asymmetric_links: usize,
    /// Active-view entries naming a crashed peer.
    pub dead_links: usize,
    pub isolated: usize,
    /// Size of the largest connected component of active links.
    pub largest_component: usize,
}

/// The cut of a [`Workload::PartitionHeal`] run.
#[derive(Debug, Clone, Serialize)]
pub struct CutReport {
    pub cut_at_ms: f64,
    pub healed_at_ms: f64,
    /// Live nodes on each side.
    pub sides: (usize, usize),
    /// Deliveries of a cut-time broadcast on the other side while the cut
    /// lasted (the network lets nothing across: must be 0).
    pub crossed_during_cut: usize,
    /// Of the cut-time broadcasts, the share of other-side deliveries that
    /// happened after the heal (each side getting the other's history).
    pub history_delivered_after_heal: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub strategy: Strategy,
    pub workload: Workload,
    pub seed: u64,
    pub crashed: usize,
    pub phases: Vec<PhaseReport>,
    pub broadcasts: Vec<BroadcastReport>,
    /// 1-based index of the first broadcast after the crash from which on every
    /// broadcast reached every live node.
    pub full_delivery_from_broadcast_after_crash: Option<usize>,
    /// The same for the broadcasts after the heal of a partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_delivery_from_broadcast_after_heal: Option<usize>,
    /// `(t_ms, components, largest)`: connected components of the active-view
    /// graph among live, joined nodes, and the size of the largest, sampled
    /// every [`SimConfig::sample_interval`] (each sample includes the events
    /// at its instant).
    pub components: Vec<(u64, usize, usize)>,
    /// Where [`Report::time_to_one_component_ms`] counts from: the last join,
    /// or the heal of a partition.
    pub one_component_from_ms: f64,
    /// From `one_component_from_ms` to the first sample from which on (until
    /// the crash, or the end) the live overlay is one component; `None` if it
    /// never settles into one. Resolution: the sample interval.
    pub time_to_one_component_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<CutReport>,
    /// Before the crash or the cut (or at the end, if neither).
    pub overlay_before_crash: OverlayReport,
    pub overlay_at_end: OverlayReport,
    /// Strikes and bans among honest simulated nodes (should stay 0 bans).
    pub strikes: u64,
    pub bans: u64,
    pub events: u64,
    pub virtual_time_ms: f64,
}

impl Report {
    pub fn phase(&self, phase: Phase) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    /// A human-readable summary.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "gossip simulation: {} nodes, strategy {:?}, workload {}, seed {}, crashed {}",
            self.nodes,
            self.strategy,
            self.workload.name(),
            self.seed,
            self.crashed
        );
        let _ = writeln!(
            s,
            "{:<12} {:>5} {:>9} {:>9} {:>5} {:>7} {:>4} {:>9} {:>9} {:>10}",
            "phase",
            "bcast",
            "delivery",
            "min",
            "full",
            "RMR",
            "LDH",
            "msgs/node",
            "pay/node",
            "full(ms)"
        );
        for p in &self.phases {
            let full = p
                .max_time_to_full_ms
                .map(|t| format!("{t:.1}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "{:<12} {:>5} {:>8.3}% {:>8.3}% {:>5} {:>7.4} {:>4} {:>9.2} {:>9.2} {:>10}",
                p.phase.name(),
                p.broadcasts,
                p.mean_delivery_ratio * 100.0,
                p.min_delivery_ratio * 100.0,
                p.fully_delivered,
                p.rmr,
                p.max_ldh,
                p.messages_per_node,
                p.payload_per_node,
                full
            );
        }
        let after: Vec<String> = self
            .broadcasts
            .iter()
            .filter(|b| b.phase == Phase::AfterCrash)
            .map(|b| format!("{:.2}%", b.delivery_ratio * 100.0))
            .collect();
        if !after.is_empty() {
            let _ = writeln!(s, "delivery per broadcast after crash: {}", after.join(" "));
            let _ = writeln!(
                s,
                "100 % delivery from broadcast after crash: {}",
                self.full_delivery_from_broadcast_after_crash
                    .map(|i| format!("#{i}"))
                    .unwrap_or_else(|| "never".into())
            );
        }
        if let Some(c) = &self.cut {
            let _ = writeln!(
                s,
                "cut {:.1}–{:.1} s, sides {} and {}: {} deliveries across it during the cut, {:.1} % of the other side's history delivered after the heal",
                c.cut_at_ms / 1000.0,
                c.healed_at_ms / 1000.0,
                c.sides.0,
                c.sides.1,
                c.crossed_during_cut,
                c.history_delivered_after_heal * 100.0
            );
            let after: Vec<String> = self
                .broadcasts
                .iter()
                .filter(|b| b.phase == Phase::AfterHeal)
                .map(|b| format!("{:.2}%", b.delivery_ratio * 100.0))
                .collect();
            let _ = writeln!(s, "delivery per broadcast after heal: {}", after.join(" "));
            let _ = writeln!(
                s,
                "100 % delivery from broadcast after heal: {}",
                self.full_delivery_from_broadcast_after_heal
                    .map(|i| format!("#{i}"))
                    .unwrap_or_else(|| "never".into())
            );
        }
        let _ = writeln!(
            s,
            "components (t s: count/largest, at each change): {}",
            component_changes(&self.components, 16)
        );
        let from = if self.cut.is_some() {
            "the heal"
        } else {
            "the last join"
        };
        let _ = writeln!(
            s,
            "one component {} after {from} ({:.1} s)",
            self.time_to_one_component_ms
                .map(|t| format!("{:.1} s", t / 1000.0))
                .unwrap_or_else(|| "never".into()),
            self.one_component_from_ms / 1000.0
        );
        let before = if self.cut.is_some() {
            "before cut"
        } else {
            "before crash"
        };
        for (name, o) in [
            (before, &self.overlay_before_crash),
            ("at end", &self.overlay_at_end),
        ] {
            let _ = writeln!(
                s,
                "overlay {name}: {} live, active {:.2}, passive {:.2}, one-way links {}, links to crashed {}, isolated {}, largest component {}",
                o.live_nodes,
                o.mean_active,
                o.mean_passive,
                o.asymmetric_links,
                o.dead_links,
                o.isolated,
                o.largest_component
            );
        }
        let _ = writeln!(
            s,
            "{} strikes, {} bans; {} events, {:.1} s virtual time",
            self.strikes,
            self.bans,
            self.events,
            self.virtual_time_ms / 1000.0
        );
        s
    }
}

#[derive(Debug)]
enum Ev {
    Deliver {
        from: u32,
        to: u32,
        msg: gossip::Message,
    },
    Timer(u32, gossip::Timer),
    Lost {
        node: u32,
        peer: u32,
    },
    Join(u32),
    Broadcast(usize),
    Crash,
    Cut,
    Heal,
}

struct Track {
    phase: Phase,
    source: usize,
    start: Duration,
    /// During a cut: the source's side; `live` and `delivered` count that side.
    side: Option<u8>,
    /// Deliveries on the other side of the cut, and those while it lasted.
    other: usize,
    crossed_during_cut: usize,
    live: usize,
    delivered: usize,
    last: Duration,
    ldh: u16,
    payload: u64,
    control: u64,
    membership: u64,
}

struct Node {
    state: gossip::State<SimRng>,
    conns: BTreeSet<u32>,
}

/// Index ↔ PeerId: a random-looking prefix (so map order is not index order)
/// and the index in the last four bytes.
fn peer_id(i: u32) -> PeerId {
    let mut b = *blake3::hash(&i.to_le_bytes()).as_bytes();
    b[28..].copy_from_slice(&i.to_be_bytes());
    PeerId::from_bytes(b)
}

fn index(p: &PeerId) -> u32 {
    let b = p.as_bytes();
    u32::from_be_bytes([b[28], b[29], b[30], b[31]])
}

fn info(i: u32) -> PeerInfo {
    PeerInfo {
        id: peer_id(i),
        data: PeerData(vec![
            10,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
            0xb9,
            0x2f,
        ]),
    }
}

/// The broadcast a payload belongs to (its first eight bytes).
fn broadcast_of(payload: &Payload) -> Option<usize> {
    let b: [u8; 8] = payload.0.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b) as usize)
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    topic: TopicId,
    sched: Scheduler<Ev>,
    net: Network,
    /// Detection delays and retransmissions.
    rng: SimRng,
    /// Contacts, broadcast sources and crash victims: the same for every
    /// strategy under one seed.
    workload: SimRng,
    nodes: Vec<Node>,
    fifo: HashMap<(u32, u32), Duration>,
    tracks: Vec<Track>,
    ids: HashMap<MessageId, usize>,
    delivered: Vec<Vec<bool>>,
    /// Per broadcast: its phase and, during a cut, the side it is sent from.
    plan: Vec<(Phase, Option<u8>)>,
    /// Per node, its side of the cut (empty until a cut).
    side: Vec<u8>,
    /// While the network is cut.
    cutting: bool,
    /// When the cut starts and heals.
    cut_times: Option<(Duration, Duration)>,
    samples: Vec<(u64, usize, usize)>,
    /// All at once with one contact: each node's tree neighbours.
    tree: Vec<Vec<u32>>,
    joined: usize,
    crashed: usize,
    events: u64,
    buf: Vec<OutEvent>,
}

/// Runs one simulation. Deterministic: the same config gives the same report.
pub fn run(cfg: &SimConfig) -> Report {
    let n = cfg.nodes.max(2);
    let topic = TopicId::from_name("sim");
    let nodes = (0..n as u32)
        .map(|i| Node {
            state: gossip::State::new(info(i), cfg.gossip.clone(), rng(cfg.seed, 1 + i as u64)),
            conns: BTreeSet::new(),
        })
        .collect();
    let mut sim = Sim {
        cfg,
        topic,
        sched: Scheduler::new(),
        net: Network::lan(cfg.seed),
        rng: rng(cfg.seed, 0),
        workload: rng(cfg.seed, u64::MAX - 1),
        nodes,
        fifo: HashMap::new(),
        tracks: Vec::new(),
        ids: HashMap::new(),
        delivered: Vec::new(),
        plan: Vec::new(),
        side: Vec::new(),
        cutting: false,
        cut_times: None,
        samples: Vec::new(),
        tree: Vec::new(),
        joined: 0,
        crashed: 0,
        events: 0,
        buf: Vec::new(),
    };
    if cfg.contacts == 1 {
        // A random recursive tree: node i dialed one random earlier node.
        let mut r = rng(cfg.seed, u64::MAX - 2);
        sim.tree = vec![Vec::new(); n];
        for i in 1..n as u32 {
            let parent = r.random_range(0..i);
            sim.tree[i as usize].push(parent);
            sim.tree[parent as usize].push(i);
        }
    }
    sim.net.min_latency = cfg.min_latency;
    sim.net.max_latency = cfg.max_latency;
    let all_at_once = cfg.workload == Workload::AllAtOnce;
    for i in 0..n as u32 {
        let at = if all_at_once {
            Duration::ZERO
        } else {
            cfg.join_interval * i
        };
        sim.sched.schedule_at(at, Ev::Join(i));
    }
    let (last_join, mut t) = if all_at_once {
        (Duration::ZERO, cfg.settle)
    } else {
        (
            cfg.join_interval * (n as u32 - 1),
            cfg.join_interval * n as u32 + cfg.settle,
        )
    };
    for b in 0..cfg.warmup + cfg.broadcasts {
        let phase = if b < cfg.warmup {
            Phase::Warmup
        } else {
            Phase::Steady
        };
        sim.plan_broadcast(t, phase, None);
        t += cfg.broadcast_interval;
    }
    let mut end = t;
    // The crash or the cut; the window in which "one component" is looked for.
    let mut disruption = None;
    let (mut one_from, mut one_until) = (last_join, Duration::MAX);
    // Bounds the loops below even if the interval is configured as zero.
    let step = cfg.broadcast_interval.max(Duration::from_millis(1));
    match cfg.workload {
        Workload::PartitionHeal { at, duration } => {
            let cut_at = t + at;
            let heal_at = cut_at + duration;
            sim.sched.schedule_at(cut_at, Ev::Cut);
            sim.sched.schedule_at(heal_at, Ev::Heal);
            let mut t = cut_at + cfg.crash_to_broadcast;
            let mut k = 0u8;
            while t < heal_at {
                sim.plan_broadcast(t, Phase::DuringCut, Some(k));
                k ^= 1;
                t += step;
            }
            end = heal_at + cfg.after_heal;
            let mut t = heal_at + cfg.crash_to_broadcast;
            while t < end {
                sim.plan_broadcast(t, Phase::AfterHeal, None);
                t += step;
            }
            disruption = Some(cut_at);
            one_from = heal_at;
            sim.cut_times = Some((cut_at, heal_at));
        }
        _ if cfg.crash > 0.0 => {
            let crash_at = t;
            sim.sched.schedule_at(crash_at, Ev::Crash);
            let mut t = crash_at + cfg.crash_to_broadcast;
            for _ in 0..cfg.broadcasts {
                sim.plan_broadcast(t, Phase::AfterCrash, None);
                t += cfg.broadcast_interval;
            }
            end = t;
            disruption = Some(crash_at);
            one_until = crash_at;
        }
        _ => {}
    }
    let every = cfg.sample_interval.max(Duration::from_millis(1));
    let mut next_sample = Duration::ZERO;
    let mut before = None;
    // Bounded: the queue only holds events up to `end`, and every node's timers
    // are finite in number per virtual second.
    while let Some((now, ev)) = sim.sched.pop_until(end) {
        // A sample at t includes every event at t: taken once time moves past.
        while next_sample < now {
            sim.sample(next_sample);
            next_sample += every;
        }
        if disruption.is_some_and(|d| before.is_none() && now >= d) {
            before = Some(sim.overlay());
        }
        sim.events += 1;
        sim.step(now, ev);
    }
    while next_sample <= end {
        sim.sample(next_sample);
        next_sample += every;
    }
    let before = before.unwrap_or_else(|| sim.overlay());
    let mut report = sim.report(before, end);
    report.one_component_from_ms = ms(one_from);
    report.time_to_one_component_ms =
        time_to_one_component(&report.components, one_from, one_until);
    report
}

/// From `from` to the first sample in `[from, until)` from which on every
/// sample of that window shows one component.
fn time_to_one_component(
    samples: &[(u64, usize, usize)],
    from: Duration,
    until: Duration,
) -> Option<f64> {
    let window: Vec<&(u64, usize, usize)> = samples
        .iter()
        .filter(|(t, _, _)| {
            let t = Duration::from_millis(*t);
            from <= t && t < until
        })
        .collect();
    let first = window
        .iter()
        .rposition(|(_, c, _)| *c != 1)
        .map_or(0, |k| k + 1);
    window
        .get(first)
        .map(|(t, _, _)| ms(Duration::from_millis(*t)) - ms(from))
}

/// The samples at which the component count changes, as `t count/largest`,
/// at most `max` of them (the last always shown).
fn component_changes(samples: &[(u64, usize, usize)], max: usize) -> String {
    let changes: Vec<&(u64, usize, usize)> = samples
        .iter()
        .enumerate()
        .filter(|(k, (_, c, l))| *k == 0 || (samples[k - 1].1, samples[k - 1].2) != (*c, *l))
        .map(|(_, s)| s)
        .collect();
    let fmt = |(t, c, l): &(u64, usize, usize)| format!("{:.0} {c}/{l}", *t as f64 / 1000.0);
    let mut parts: Vec<String> = changes
        .iter()
        .take(max.saturating_sub(1))
        .map(|s| fmt(s))
        .collect();
    if changes.len() > max {
        parts.push("…".into());
    }
    if let Some(last) = changes.last().filter(|_| changes.len() >= max) {
        parts.push(fmt(last));
    }
    if let Some(end) = samples.last().filter(|e| changes.last() != Some(e)) {
        parts.push(format!("(to {:.0} s)", end.0 as f64 / 1000.0));
    }
    parts.join(", ")
}

impl Sim<'_> {
    /// The peers node `i` joins through, in random order (the first is the
    /// contact).
    fn bootstrap(&mut self, i: u32) -> Vec<PeerInfo> {
        if self.cfg.workload != Workload::AllAtOnce {
            // 3 of the nodes that joined before it
            if i == 0 {
                return Vec::new();
            }
            let mut b: Vec<PeerInfo> = (0..self.joined as u32)
                .choose_multiple(&mut self.workload, 3)
                .into_iter()
                .map(info)
                .collect();
            b.sort_by_key(|_| self.workload.random::<u32>());
            return b;
        }
        let mut b: Vec<PeerInfo> = if self.cfg.contacts == 1 {
            // its tree neighbours (see `SimConfig::contacts`)
            self.tree[i as usize].iter().copied().map(info).collect()
        } else {
            // `contacts` distinct nodes other than i
            let others = self.nodes.len() - 1;
            let k = others.min(self.cfg.contacts.max(1));
            rand::seq::index::sample(&mut self.workload, others, k)
                .into_iter()
                .map(|j| j as u32)
                .map(|j| info(if j >= i { j + 1 } else { j }))
                .collect()
        };
        b.shuffle(&mut self.workload);
        b
    }

    fn step(&mut self, now: Duration, ev: Ev) {
        match ev {
            Ev::Join(i) => {
                let bootstrap = self.bootstrap(i);
                self.joined += 1;
                let ev = InEvent::Join {
                    topic: self.topic,
                    strategy: self.cfg.strategy,
                    bootstrap,
                };
                self.input(now, i, ev);
            }
            Ev::Deliver { from, to, msg } => {
                // A message in flight when the cut came is lost with its
                // connection (both ends are told, see `cut`).
                if self.net.is_crashed(to as usize)
                    || self.net.separated(from as usize, to as usize)
                {
                    return;
                }
                self.count(&msg);
                self.nodes[to as usize].conns.insert(from);
                self.input(
                    now,
                    to,
                    InEvent::Message {
                        from: peer_id(from),
                        message: msg,
                    },
                );
            }
            Ev::Timer(i, timer) => {
                if !self.net.is_crashed(i as usize) {
                    self.input(now, i, InEvent::Timer(timer));
                }
            }
            Ev::Lost { node, peer } => {
                if !self.net.is_crashed(node as usize) {
                    self.nodes[node as usize].conns.remove(&peer);
                    self.input(now, node, InEvent::ConnectionLost(peer_id(peer)));
                }
            }
            Ev::Broadcast(b) => self.broadcast(now, b),
            Ev::Crash => self.crash(now),
            Ev::Cut => self.cut(),
            Ev::Heal => {
                self.net.heal();
                self.cutting = false;
            }
        }
    }

    fn plan_broadcast(&mut self, at: Duration, phase: Phase, side: Option<u8>) {
        let b = self.plan.len();
        self.plan.push((phase, side));
        self.sched.schedule_at(at, Ev::Broadcast(b));
    }

    fn count(&mut self, msg: &gossip::Message) {
        let payload = match &msg.body {
            Body::Plumtree(plumtree::Message::Gossip { payload, .. })
            | Body::Rumor(rumor::Message::Rumor { payload, .. }) => Some(payload),
            _ => None,
        };
        if let Some(b) = payload.and_then(broadcast_of) {
            if let Some(t) = self.tracks.get_mut(b) {
                t.payload += 1;
            }
            return;
        }
        let Some(t) = self.tracks.last_mut() else {
            return;
        };
        match msg.body {
            Body::Membership(_) => t.membership += 1,
            _ => t.control += 1,
        }
    }

    fn input(&mut self, now: Duration, i: u32, ev: InEvent) {
        let mut buf = std::mem::take(&mut self.buf);
        self.nodes[i as usize].state.handle_into(now, ev, &mut buf);
        self.apply(now, i, &mut buf);
        self.buf = buf;
    }

    fn apply(&mut self, now: Duration, i: u32, out: &mut Vec<OutEvent>) {
        for o in out.drain(..) {
            match o {
                OutEvent::Send(peer, msg) => self.send(now, i, index(&peer), msg),
                OutEvent::Dial(peer, _) => {
                    let j = index(&peer);
                    if self.net.is_crashed(j as usize) || self.net.separated(i as usize, j as usize)
                    {
                        self.lost_later(i, j);
                    } else {
                        self.connect(i, j);
                    }
                }
                OutEvent::Disconnect(peer) => {
                    let j = index(&peer);
                    self.nodes[i as usize].conns.remove(&j);
                    if let Some(n) = self.nodes.get_mut(j as usize) {
                        n.conns.remove(&i);
                    }
                }
                OutEvent::ScheduleTimer(d, t) => self.sched.schedule(d, Ev::Timer(i, t)),
                OutEvent::Emit(Event::Received { delivery, .. }) => {
                    self.delivered_at(now, i, delivery.id, delivery.hops)
                }
                OutEvent::Emit(_) => {}
            }
        }
    }

    fn connect(&mut self, i: u32, j: u32) {
        if (j as usize) < self.nodes.len() && i != j {
            self.nodes[i as usize].conns.insert(j);
            self.nodes[j as usize].conns.insert(i);
        }
    }

    fn lost_later(&mut self, node: u32, peer: u32) {
        let f: f64 = self.rng.random_range(0.5..1.5);
        let d = self.cfg.failure_detection.mul_f64(f);
        self.sched.schedule(d, Ev::Lost { node, peer });
    }

    fn send(&mut self, now: Duration, from: u32, to: u32, msg: gossip::Message) {
        if to as usize >= self.nodes.len() || from == to {
            return;
        }
        let Some(mut delay) = self.net.delay(from as usize, to as usize) else {
            if self.net.is_crashed(to as usize) || self.net.separated(from as usize, to as usize) {
                self.lost_later(from, to);
            }
            return;
        };
        self.connect(from, to);
        if self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.clamp(0.0, 1.0)) {
            delay += self.cfg.rto;
        }
        // One TCP connection per pair: messages arrive in the order sent.
        let slot = self.fifo.entry((from, to)).or_default();
        let at = (now + delay).max(*slot);
        *slot = at;
        self.sched.schedule_at(at, Ev::Deliver { from, to, msg });
    }

    fn delivered_at(&mut self, now: Duration, i: u32, id: MessageId, hops: u16) {
        let Some(&b) = self.ids.get(&id) else { return };
        let seen = &mut self.delivered[b][i as usize];
        if *seen {
            return;
        }
        *seen = true;
        let t = &mut self.tracks[b];
        if t.side.is_some_and(|s| self.side[i as usize] != s) {
            t.other += 1;
            if self.cutting {
                t.crossed_during_cut += 1;
            }
            return;
        }
        t.delivered += 1;
        t.last = t.last.max(now);
        t.ldh = t.ldh.max(hops);
    }

    fn broadcast(&mut self, now: Duration, b: usize) {
        let n = self.nodes.len();
        let (phase, side) = self.plan[b];
        let on_side = |i: usize| side.is_none_or(|s| self.side[i] == s);
        let Some(source) = (0..n)
            .filter(|&i| !self.net.is_crashed(i) && on_side(i))
            .choose(&mut self.workload)
        else {
            return;
        };
        let live = match side {
            None => n - self.crashed,
            Some(_) => (0..n)
                .filter(|&i| !self.net.is_crashed(i) && on_side(i))
                .count(),
        };
        let mut payload = (b as u64).to_le_bytes().to_vec();
        payload.extend((0..self.cfg.payload_len.saturating_sub(8)).map(|k| (k as u8) ^ (b as u8)));
        let payload = Payload::from(payload);
        let id = MessageId::of(&payload.0);
        let mut delivered = vec![false; n];
        delivered[source] = true;
        self.delivered.push(delivered);
        self.ids.insert(id, b);
        self.tracks.push(Track {
            phase,
            source,
            start: now,
            side,
            other: 0,
            crossed_during_cut: 0,
            live,
            delivered: 1,
            last: now,
            ldh: 0,
            payload: 0,
            control: 0,
            membership: 0,
        });
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.nodes[source]
            .state
            .broadcast(now, self.topic, payload, &mut buf);
        debug_assert!(res.is_ok(), "{res:?}");
        self.apply(now, source as u32, &mut buf);
        self.buf = buf;
    }

    fn crash(&mut self, _now: Duration) {
        let n = self.nodes.len();
        let count = ((self.cfg.crash.clamp(0.0, 1.0) * n as f64).round() as usize).min(n - 1);
        let victims = (0..n).choose_multiple(&mut self.workload, count);
        for &v in &victims {
            self.net.crash(v);
        }
        self.crashed = victims.len();
        // The driver's keepalive covers every connection a node holds: the open
        // connections, and (the same ones, counted from the protocol side) the
        // active view.
        let mut notices = BTreeSet::new();
        for &v in &victims {
            for j in std::mem::take(&mut self.nodes[v].conns) {
                notices.insert((j, v as u32));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for p in node.state.neighbors(&self.topic) {
                notices.insert((i as u32, index(&p)));
            }
        }
        for (node, peer) in notices {
            if !self.net.is_crashed(node as usize) && self.net.is_crashed(peer as usize) {
                self.lost_later(node, peer);
            }
        }
    }

    /// Cuts the nodes into two random halves. Like a crash, every connection
    /// and active-view link across the cut is reported lost to its holder
    /// after the failure detection delay.
    fn cut(&mut self) {
        let n = self.nodes.len();
        let half = (0..n).choose_multiple(&mut self.workload, n / 2);
        self.side = vec![1; n];
        for &v in &half {
            self.side[v] = 0;
        }
        self.net.partition(half);
        self.cutting = true;
        let mut notices = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if self.net.is_crashed(i) {
                continue;
            }
            let view = node.state.neighbors(&self.topic);
            let links = node.conns.iter().copied().chain(view.iter().map(index));
            for j in links {
                if self.net.separated(i, j as usize) && !self.net.is_crashed(j as usize) {
                    notices.insert((i as u32, j));
                }
            }
        }
        for (node, peer) in notices {
            self.lost_later(node, peer);
        }
    }

    fn sample(&mut self, t: Duration) {
        let (count, largest) = self.components();
        self.samples.push((t.as_millis() as u64, count, largest));
    }

    /// Connected components of the active-view graph among live, joined
    /// nodes (a link counts whichever end holds it), and the largest's size.
    fn components(&self) -> (usize, usize) {
        fn root(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        let n = self.joined;
        let mut parent: Vec<usize> = (0..n).collect();
        for i in (0..n).filter(|&i| !self.net.is_crashed(i)) {
            for p in self.nodes[i].state.neighbors(&self.topic) {
                let j = index(&p) as usize;
                if j < n && !self.net.is_crashed(j) {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
        let mut size = vec![0usize; n];
        for i in (0..n).filter(|&i| !self.net.is_crashed(i)) {
            size[root(&mut parent, i)] += 1;
        }
        let count = size.iter().filter(|&&c| c > 0).count();
        (count, size.into_iter().max().unwrap_or(0))
    }

    fn overlay(&self) -> OverlayReport {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.net.is_crashed(*i))
            .collect();
        let views: Vec<Vec<u32>> = self
            .nodes
            .iter()
            .map(|n| n.state.neighbors(&self.topic).iter().map(index).collect())
            .collect();
        let (mut asymmetric, mut dead) = (0, 0);
        let mut isolated = 0;
        let (mut active, mut passive) = (0usize, 0usize);
        for &i in &live {
            active += views[i].len();
            passive += self.nodes[i].state.passive_view(&self.topic).len();
            if views[i].is_empty() {
                isolated += 1;
            }
            for &j in &views[i] {
                if self.net.is_crashed(j as usize) {
                    dead += 1;
                } else if !views[j as usize].contains(&(i as u32)) {
                    asymmetric += 1;
                }
            }
        }
        // largest component over live nodes and active links
        let mut comp = vec![usize::MAX; self.nodes.len()];
        let mut largest = 0;
        for &s in &live {
            if comp[s] != usize::MAX {
                continue;
            }
            comp[s] = s;
            let mut stack = vec![s];
            let mut size = 0;
            while let Some(x) = stack.pop() {
                size += 1;
                for &y in &views[x] {
                    let y = y as usize;
                    if !self.net.is_crashed(y) && comp[y] == usize::MAX {
                        comp[y] = s;
                        stack.push(y);
                    }
                }
            }
            largest = largest.max(size);
        }
        let l = live.len().max(1) as f64;
        OverlayReport {
            live_nodes: live.len(),
            mean_active: active as f64 / l,
            mean_passive: passive as f64 / l,
            asymmetric_links: asymmetric,
            dead_links: dead,
            isolated,
            largest_component: largest,
        }
    }

    fn report(&self, before: OverlayReport, end: Duration) -> Report {
        let broadcasts: Vec<BroadcastReport> = self.tracks.iter().map(broadcast_report).collect();
        let phases = [
            Phase::Warmup,
            Phase::Steady,
            Phase::AfterCrash,
            Phase::DuringCut,
            Phase::AfterHeal,
        ]
        .into_iter()
        .filter_map(|p| phase_report(p, &broadcasts, &self.tracks))
        .collect();
        let cut = self.cut_times.map(|(cut_at, heal_at)| {
            let live = |s| {
                (0..self.nodes.len())
                    .filter(|&i| !self.net.is_crashed(i) && self.side.get(i) == Some(&s))
                    .count()
            };
            let during: Vec<&Track> = self.tracks.iter().filter(|t| t.side.is_some()).collect();
            let crossed: usize = during.iter().map(|t| t.crossed_during_cut).sum();
            let after: usize = during.iter().map(|t| t.other - t.crossed_during_cut).sum();
            let (a, b) = (live(0), live(1));
            let others: usize = during
                .iter()
                .map(|t| if t.side == Some(0) { b } else { a })
                .sum();
            CutReport {
                cut_at_ms: ms(cut_at),
                healed_at_ms: ms(heal_at),
                sides: (a, b),
                crossed_during_cut: crossed,
                history_delivered_after_heal: after as f64 / others.max(1) as f64,
            }
        });
        Report {
            nodes: self.nodes.len(),
            strategy: self.cfg.strategy,
            workload: self.cfg.workload,
            seed: self.cfg.seed,
            crashed: self.crashed,
            phases,
            full_delivery_from_broadcast_after_crash: full_delivery_from(
                &broadcasts,
                Phase::AfterCrash,
            ),
            full_delivery_from_broadcast_after_heal: full_delivery_from(
                &broadcasts,
                Phase::AfterHeal,
            ),
            broadcasts,
            components: self.samples.clone(),
            one_component_from_ms: 0.0,
            time_to_one_component_ms: None,
            cut,
            overlay_before_crash: before,
            overlay_at_end: self.overlay(),
            strikes: self.nodes.iter().map(|n| n.state.stats().strikes).sum(),
            bans: self.nodes.iter().map(|n| n.state.stats().bans).sum(),
            events: self.events,
            virtual_time_ms: end.as_secs_f64() * 1000.0,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// 1-based index of the first broadcast of `phase` from which on every one
/// reached every live node (of its side); `None` if the phase has none or its
/// last did not.
fn full_delivery_from(all: &[BroadcastReport], phase: Phase) -> Option<usize> {
    let bs: Vec<&BroadcastReport> = all.iter().filter(|b| b.phase == phase).collect();
    if bs.is_empty() {
        return None;
    }
    bs.iter()
        .rposition(|b| b.time_to_full_ms.is_none())
        .map_or(Some(1), |k| (k + 1 < bs.len()).then_some(k + 2))
}

fn broadcast_report(t: &Track) -> BroadcastReport {
    let live = t.live.max(1) as f64;
    let rmr = if t.delivered > 1 {
        t.payload as f64 / (t.delivered - 1) as f64 - 1.0
    } else {
        0.0
    };
    BroadcastReport {
        phase: t.phase,
        source: t.source,
        start_ms: ms(t.start),
        side: t.side,
        other_side_delivered: t.side.map(|_| t.other),
        live_nodes: t.live,
        delivered: t.delivered,
        delivery_ratio: t.delivered as f64 / live,
        payload_messages: t.payload,
        rmr,
        ldh: t.ldh,
        payload_per_node: t.payload as f64 / live,
        control_per_node: t.control as f64 / live,
        membership_per_node: t.membership as f64 / live,
        time_to_full_ms: (t.delivered >= t.live).then(|| ms(t.last - t.start)),
        last_delivery_ms: ms(t.last - t.start),
    }
}

fn phase_report(phase: Phase, all: &[BroadcastReport], tracks: &[Track]) -> Option<PhaseReport> {
    let bs: Vec<(&BroadcastReport, &Track)> = all
        .iter()
        .zip(tracks)
        .filter(|(b, _)| b.phase == phase)
        .collect();
    if bs.is_empty() {
        return None;
    }
    let k = bs.len() as f64;
    let m: u64 = bs.iter().map(|(b, _)| b.payload_messages).sum();
    let n1: usize = bs.iter().map(|(b, _)| b.delivered.saturating_sub(1)).sum();
    let full: Vec<Option<f64>> = bs.iter().map(|(b, _)| b.time_to_full_ms).collect();
    Some(PhaseReport {
        phase,
        broadcasts: bs.len(),
        mean_delivery_ratio: bs.iter().map(|(b, _)| b.delivery_ratio).sum::<f64>() / k,
        min_delivery_ratio: bs
            .iter()
            .map(|(b, _)| b.delivery_ratio)
            .fold(f64::INFINITY, f64::min),
        fully_delivered: full.iter().filter(|t| t.is_some()).count(),
        rmr: if n1 > 0 {
            m as f64 / n1 as f64 - 1.0
        } else {
            0.0
        },
        max_ldh: bs.iter().map(|(b, _)| b.ldh).max().unwrap_or(0),
        messages_per_node: bs
            .iter()
            .map(|(b, _)| b.payload_per_node + b.control_per_node + b.membership_per_node)
            .sum::<f64>()
            / k,
        payload_per_node: bs.iter().map(|(b, _)| b.payload_per_node).sum::<f64>() / k,
        max_time_to_full_ms: full
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
            .map(|v| v.into_iter().fold(0.0, f64::max)),
        mean_last_delivery_ms: bs.iter().map(|(b, _)| b.last_delivery_ms).sum::<f64>() / k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sim::{SeedGuard, seed_from_env};

    fn sim(nodes: usize, strategy: Strategy, default_seed: u64) -> (Report, SeedGuard) {
        let seed = seed_from_env(default_seed);
        let guard = SeedGuard(seed);
        let report = run(&SimConfig::new(nodes, strategy, seed));
        eprintln!("{}", report.table());
        (report, guard)
    }

    #[test]
    fn plumtree_reaches_all_of_1000_nodes_with_low_redundancy_and_heals_after_half_crash() {
        let (r, _guard) = sim(1000, Strategy::Plumtree, 1);
        let steady = r.phase(Phase::Steady).unwrap();
        assert_eq!(steady.fully_delivered, steady.broadcasts, "{}", r.table());
        assert!(steady.rmr < 0.1, "steady RMR {}", steady.rmr);
        let o = &r.overlay_before_crash;
        assert_eq!((o.asymmetric_links, o.isolated), (0, 0), "{o:?}");
        assert_eq!(o.largest_component, o.live_nodes);
        assert!(r.time_to_one_component_ms.is_some(), "{}", r.table());
        assert_eq!(r.crashed, 500);
        let from = r.full_delivery_from_broadcast_after_crash;
        assert!(from.is_some_and(|i| i <= 3), "{}", r.table());
        let o = &r.overlay_at_end;
        assert_eq!(
            (o.asymmetric_links, o.dead_links, o.isolated),
            (0, 0, 0),
            "{o:?}"
        );
        assert_eq!(o.largest_component, o.live_nodes);
        assert_eq!(r.bans, 0, "honest nodes must not ban each other");
    }

    #[test]
    fn lan_variant_also_delivers_the_message_sent_while_half_the_nodes_crash() {
        let (r, _guard) = sim(1000, Strategy::Lan, 1);
        let steady = r.phase(Phase::Steady).unwrap();
        assert_eq!(steady.fully_delivered, steady.broadcasts);
        assert!(steady.rmr < 0.1, "steady RMR {}", steady.rmr);
        assert_eq!(
            r.full_delivery_from_broadcast_after_crash,
            Some(1),
            "{}",
            r.table()
        );
    }

    #[test]
    fn flood_and_rumor_spread_over_the_same_overlay() {
        let (flood, _guard) = sim(300, Strategy::Flood, 2);
        let steady = flood.phase(Phase::Steady).unwrap();
        assert_eq!(steady.fully_delivered, steady.broadcasts);
        // one copy per link direction but the one it came from: RMR ≈ degree - 2
        assert!((2.0..4.0).contains(&steady.rmr), "{}", steady.rmr);
        let (rumor, _guard) = sim(300, Strategy::Rumor, 2);
        let steady = rumor.phase(Phase::Steady).unwrap();
        assert!(steady.mean_delivery_ratio > 0.95, "{}", rumor.table());
    }

    #[test]
    fn same_seed_replays_the_same_run() {
        let mut cfg = SimConfig::new(200, Strategy::Plumtree, 9);
        cfg.loss = 0.01;
        let a = serde_json::to_string(&run(&cfg)).unwrap();
        let b = serde_json::to_string(&run(&cfg)).unwrap();
        assert_eq!(a, b);
    }

    /// Runs `workload` with 1000 nodes over three seeds (`PEERCONNECT_SIM_SEED`
    /// replaces them), without a crash, checking each report.
    fn over_seeds(workload: Workload, check: impl Fn(&Report)) {
        over_seeds_with(Strategy::Plumtree, workload, check)
    }

    fn over_seeds_with(strategy: Strategy, workload: Workload, check: impl Fn(&Report)) {
        for default in [1, 2, 3] {
            let seed = seed_from_env(default);
            let _guard = SeedGuard(seed);
            let mut cfg = SimConfig::new(1000, strategy, seed);
            cfg.workload = workload;
            cfg.crash = 0.0;
            let r = run(&cfg);
            eprintln!("{}", r.table());
            check(&r);
        }
    }

    /// Passes with today's `proto` (the islands real nodes form come from join
    /// logic still in the driver): the check that moving it into `proto`
    /// must not break.
    #[test]
    fn nodes_joining_all_at_once_become_one_overlay_within_10_s_that_delivers_every_broadcast() {
        over_seeds(Workload::AllAtOnce, |r| {
            let t = r.time_to_one_component_ms;
            assert!(
                t.is_some_and(|t| t <= 10_000.0),
                "seed {}: one component after {t:?} ms\n{}",
                r.seed,
                r.table()
            );
            for b in &r.broadcasts {
                assert_eq!(b.delivered, b.live_nodes, "seed {}: {b:?}", r.seed);
            }
        });
    }

    /// Every node joins at the same moment through the one earlier node it
    /// dialed (a random tree of connections, `contacts = 1`): the overlay
    /// becomes one component before the steady phase and every steady
    /// broadcast reaches every node. On main at b92f9e9 (before lost links
    /// were probed again) seeds 1, 2, 3 and 5 stood at 6–10 components for
    /// good; at dd87937 (honest relinks struck as ROOT floods, and banned)
    /// seeds 3 and 5 took 22 s and 30 s and seed 5 missed broadcasts (see
    /// docs/benchmarks.md, issue 15).
    #[test]
    fn nodes_joining_all_at_once_through_one_contact_each_become_one_overlay() {
        for default in [1, 2, 3, 4, 5] {
            let seed = seed_from_env(default);
            let _guard = SeedGuard(seed);
            let mut cfg = SimConfig::new(300, Strategy::Plumtree, seed);
            cfg.workload = Workload::AllAtOnce;
            cfg.contacts = 1;
            cfg.crash = 0.0;
            let r = run(&cfg);
            let t = r.time_to_one_component_ms;
            assert!(
                t.is_some(),
                "seed {seed}: never one component\n{}",
                r.table()
            );
            for b in r.broadcasts.iter().filter(|b| b.phase == Phase::Steady) {
                assert_eq!(
                    b.delivered,
                    b.live_nodes,
                    "seed {seed}: {b:?}\n{}",
                    r.table()
                );
            }
        }
    }

    /// Failed before the merge step (issue 15 item 2) with 1000 nodes: seeds 2
    /// and 3 took 17 s and 13 s to merge.
    #[test]
    fn a_healed_partition_becomes_one_overlay_within_10_s_that_delivers_every_later_broadcast() {
        over_seeds(Workload::partition_heal(), |r| {
            let t = r.time_to_one_component_ms;
            assert!(
                t.is_some_and(|t| t <= 10_000.0),
                "seed {}: one component {t:?} ms after the heal\n{}",
                r.seed,
                r.table()
            );
            let whole = r.one_component_from_ms + t.unwrap_or(0.0);
            let later: Vec<&BroadcastReport> = r
                .broadcasts
                .iter()
                .filter(|b| b.phase == Phase::AfterHeal && b.start_ms >= whole)
                .collect();
            assert!(
                later.len() >= 5,
                "seed {}: {} broadcasts",
                r.seed,
                later.len()
            );
            for b in later {
                assert_eq!(b.delivered, b.live_nodes, "seed {}: {b:?}", r.seed);
            }
        });
    }

    /// Rooms run the LAN strategy: once a 60 s cut heals, each side has every
    /// line the other side said during the cut (the link that merges the two
    /// overlays carries the digest). With a 10 s digest window only the last
    /// lines of the cut crossed.
    #[test]
    fn rooms_get_the_other_sides_lines_of_a_60_s_cut_once_it_heals() {
        over_seeds_with(Strategy::Lan, Workload::partition_heal(), |r| {
            let cut = r.cut.as_ref().unwrap();
            assert_eq!(cut.crossed_during_cut, 0, "seed {}", r.seed);
            assert_eq!(
                cut.history_delivered_after_heal,
                1.0,
                "seed {}: the other side's lines of the cut\n{}",
                r.seed,
                r.table()
            );
        });
    }

    #[test]
    fn a_partition_splits_the_overlay_and_no_broadcast_crosses_it_until_the_heal() {
        over_seeds(Workload::partition_heal(), |r| {
            let cut = r.cut.as_ref().unwrap();
            assert_eq!(cut.sides, (500, 500));
            assert_eq!(cut.crossed_during_cut, 0, "seed {}", r.seed);
            let during = r.phase(Phase::DuringCut).unwrap();
            assert_eq!(during.broadcasts, 60);
            // Each side keeps chatting: from the second broadcast after the
            // cut (the first is sent before the links across are found dead),
            // every one reaches its whole side.
            let from = full_delivery_from(&r.broadcasts, Phase::DuringCut);
            assert!(
                from.is_some_and(|i| i <= 2),
                "seed {}\n{}",
                r.seed,
                r.table()
            );
            // Once the links across are reported lost, each side is apart.
            let split = r
                .components
                .iter()
                .filter(|(t, _, _)| {
                    let t = *t as f64;
                    cut.cut_at_ms + 1000.0 <= t && t < cut.healed_at_ms
                })
                .collect::<Vec<_>>();
            assert!(!split.is_empty());
            for (t, c, largest) in split {
                assert!(
                    *c >= 2 && *largest <= 500,
                    "seed {}: at {t} ms {c} components, largest {largest}",
                    r.seed
                );
            }
            // Before the cut the staggered joins made one overlay.
            assert_eq!(r.overlay_before_crash.largest_component, 1000);
            assert_eq!(r.bans, 0);
        });
    }

    #[test]
    fn the_new_workloads_replay_the_same_run_from_the_same_seed() {
        for workload in [
            Workload::AllAtOnce,
            Workload::PartitionHeal {
                at: Duration::from_secs(1),
                duration: Duration::from_secs(10),
            },
        ] {
            let mut cfg = SimConfig::new(200, Strategy::Plumtree, 9);
            cfg.workload = workload;
            cfg.loss = 0.01;
            let a = serde_json::to_string(&run(&cfg)).unwrap();
            let b = serde_json::to_string(&run(&cfg)).unwrap();
            assert_eq!(a, b, "{workload:?}");
            cfg.seed = 10;
            assert_ne!(
                a,
                serde_json::to_string(&run(&cfg)).unwrap(),
                "{workload:?}"
            );
        }
    }

    #[test]
    fn time_to_one_component_counts_from_the_last_split_in_the_window() {
        let s = |t: u64, c: usize| (t, c, 10 / c);
        let samples = [s(0, 5), s(1000, 1), s(2000, 2), s(3000, 1), s(4000, 1)];
        let from = Duration::from_millis(500);
        assert_eq!(
            time_to_one_component(&samples, from, Duration::MAX),
            Some(2500.0)
        );
        let until = Duration::from_millis(2000);
        assert_eq!(time_to_one_component(&samples, from, until), Some(500.0));
        assert_eq!(
            time_to_one_component(&samples[..3], from, Duration::MAX),
            None
        );
    }

    /// Measurement, not a check: `PEERCONNECT_SIM_NODES`, `PEERCONNECT_SIM_STRATEGY`
    /// (plumtree, rumor, flood, all), `PEERCONNECT_SIM_SEED`; prints tables and JSON.
    /// `cargo test --release -p peerconnect --lib measure_gossip -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn measure_gossip() {
        let nodes = std::env::var("PEERCONNECT_SIM_NODES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000);
        let which = std::env::var("PEERCONNECT_SIM_STRATEGY").unwrap_or_else(|_| "all".into());
        let strategies = match which.as_str() {
            "all" => vec![
                Strategy::Plumtree,
                Strategy::Rumor,
                Strategy::Flood,
                Strategy::Lan,
            ],
            s => vec![s.parse().unwrap()],
        };
        for strategy in strategies {
            let seed = seed_from_env(1);
            let started = std::time::Instant::now();
            let report = run(&SimConfig::new(nodes, strategy, seed));
            let took = started.elapsed();
            println!("{}run time {:.2} s\n", report.table(), took.as_secs_f64());
            println!("{}\n", serde_json::to_string(&report.phases).unwrap());
        }
    }
}
