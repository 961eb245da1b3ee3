//! The relay-tree simulator: one file from one sender to N receivers, with
//! the production [`coordinator`] and [`member`] state machines on a virtual
//! LAN with a bandwidth model per node.
//!
//! # Model
//!
//! Every node has an uplink and a downlink rate, each a work-conserving
//! server. A group (or any message of 4 KiB or more) from `a` to `b` queues
//! first-come first-served on `a`'s uplink; its work on `b`'s downlink is
//! counted from the moment it is sent (so a slow sender does not hold the
//! downlink for others); it arrives when both are through, plus a LAN
//! latency. Smaller messages only take the latency. Everything between two nodes arrives in
//! the order it was sent on its stream (two per pair: a parent's data to its
//! child, and control). A killed node neither sends nor
//! receives; whoever held a connection to it learns after
//! [`SimConfig::failure_detection`]. Writes to disk take no time.
//!
//! The file is real: its groups are generated from the seed and hashed once,
//! and the outline built from them must hash to `blake3::hash` of the file.
//! An honest group arrives with its true digest; a corrupting relay's group
//! arrives with the digest of its bytes with one bit flipped, so every
//! verification the members do is a real comparison. A receiver's file is
//! counted as verified only if every group it stored is an honest one.
//!
//! # Runs
//!
//! One [`run`] simulates, on the same links: the slowest receiver alone
//! (`single`), every receiver served by the sender (`copies`, today's N
//! separate transfers: the same machines with relaying off), the forest
//! (`tree`), and, if any fault is asked for, the forest with relays killed
//! mid-transfer, relays that corrupt what they forward and relays whose
//! uplink is far slower than measured (`faults`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::seq::IteratorRandom;
use rand::{Rng, RngCore};
use serde::Serialize;

use crate::identity::PeerId;
use crate::proto::sim::{Scheduler, SimRng, percentile, rng};
use crate::proto::transfer::tree::{
    self, Event, InEvent, Message, OutEvent, Rates, Timer, coordinator, member,
};
use crate::proto::transfer::verified::{Geometry, Outline, OutlineBuilder, group_digest};

mod hashing;
mod report;
pub use hashing::{HashCost, hashing, hashing_table};
pub use report::{Report, RunReport};

/// How the receivers' links are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Links {
    /// Every link at [`SimConfig::rate`] both ways (the benchmark).
    Uniform,
    /// Downlinks from rate/4 to 5×rate (log-uniform), uplinks 30–100 % of
    /// the downlink (Wi-Fi and wired mixed).
    Mixed,
}

impl std::str::FromStr for Links {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Self::Uniform),
            "mixed" => Ok(Self::Mixed),
            _ => Err(format!("links are uniform or mixed, not {s:?}")),
        }
    }
}

/// One simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub receivers: usize,
    pub file_bytes: u64,
    /// Group size (default: [`Geometry::for_size`]).
    pub group: Option<u64>,
    pub seed: u64,
    pub links: Links,
    /// Bytes per second of the sender's links and of every uniform link.
    pub rate: u64,
    /// Whether the coordinator is told the receivers' rates.
    pub measured: bool,
    /// Relays killed at once mid-transfer (faults run).
    pub kill: usize,
    /// When, as a fraction of the single receiver's time.
    pub kill_at: f64,
    /// Relays that flip a bit in every group they forward (faults run).
    pub corrupt: usize,
    /// Relays whose uplink is `slow_factor` times slower than measured
    /// (faults run).
    pub slow: usize,
    pub slow_factor: u64,
    pub min_latency: Duration,
    pub max_latency: Duration,
    pub failure_detection: Duration,
    pub tree: tree::Config,
}

impl SimConfig {
    pub fn new(receivers: usize, seed: u64) -> Self {
        Self {
            receivers,
            file_bytes: 256 << 20,
            group: None,
            seed,
            links: Links::Uniform,
            rate: 25_000_000,
            measured: true,
            kill: 1,
            kill_at: 0.5,
            corrupt: 1,
            slow: 0,
            slow_factor: 8,
            min_latency: Duration::from_micros(200),
            max_latency: Duration::from_millis(2),
            failure_detection: Duration::from_millis(500),
            tree: tree::Config::default(),
        }
    }

    fn has_faults(&self) -> bool {
        self.kill + self.corrupt + self.slow > 0
    }
}

/// The file of a run: its geometry, outline and a way to make its bytes.
#[derive(Debug)]
pub struct SimFile {
    seed: u64,
    pub outline: Outline,
}

impl SimFile {
    /// Generates the file from `seed` and hashes it: the outline must hash to
    /// `blake3::hash` of the whole file, or this panics.
    pub fn new(seed: u64, geo: Geometry) -> Self {
        let mut builder = OutlineBuilder::new(geo);
        let mut whole = blake3::Hasher::new();
        let mut buf = Vec::new();
        for i in 0..geo.groups() {
            Self::fill(seed, &geo, i, &mut buf);
            builder.update(&buf);
            whole.update(&buf);
        }
        let outline = builder.finish().expect("every byte was fed");
        assert_eq!(outline.root(), *whole.finalize().as_bytes());
        Self { seed, outline }
    }

    fn fill(seed: u64, geo: &Geometry, index: u32, buf: &mut Vec<u8>) {
        buf.resize(geo.len_of(index) as usize, 0);
        rng(seed ^ 0x66696c65, index as u64).fill_bytes(buf);
    }

    fn geo(&self) -> &Geometry {
        self.outline.geometry()
    }

    /// The digest of group `index` as a corrupting relay sends it.
    fn corrupt_digest(&self, index: u32, bit: u64) -> [u8; 32] {
        let mut buf = Vec::new();
        Self::fill(self.seed, self.geo(), index, &mut buf);
        let bit = bit % (buf.len() as u64 * 8);
        buf[(bit / 8) as usize] ^= 1 << (bit % 8);
        group_digest(self.geo(), index, &buf).expect("a group of its own length")
    }
}

/// Index ↔ PeerId: the index sits in the last four bytes.
fn peer_id(i: u32) -> PeerId {
    let mut b = *blake3::hash(&i.to_le_bytes()).as_bytes();
    b[28..].copy_from_slice(&i.to_be_bytes());
    PeerId::from_bytes(b)
}

fn index(p: &PeerId) -> usize {
    let b = p.as_bytes();
    u32::from_be_bytes([b[28], b[29], b[30], b[31]]) as usize
}

/// Draws every node's true links (node 0 is the sender).
fn draw_links(cfg: &SimConfig) -> Vec<Rates> {
    let mut r = rng(cfg.seed, 1);
    let sender = Rates {
        up: cfg.rate,
        down: cfg.rate,
    };
    std::iter::once(sender)
        .chain((0..cfg.receivers).map(|_| match cfg.links {
            Links::Uniform => sender,
            Links::Mixed => {
                let down = (cfg.rate as f64 / 4.0 * 20f64.powf(r.random::<f64>())) as u64;
                let up = (down as f64 * r.random_range(0.3..1.0)) as u64;
                Rates { up, down }
            }
        }))
        .collect()
}

/// Runs every scenario of `cfg` on the same links and file. Deterministic.
pub fn run(cfg: &SimConfig) -> Report {
    let geo = match cfg.group {
        Some(g) => Geometry::new(cfg.file_bytes, g),
        None => Geometry::for_size(cfg.file_bytes),
    }
    .expect("a valid file size and group size");
    let file = SimFile::new(cfg.seed, geo);
    run_with(cfg, &file)
}

/// [`run`] with an already generated file.
pub fn run_with(cfg: &SimConfig, file: &SimFile) -> Report {
    let links = draw_links(cfg);
    let slowest = (1..links.len())
        .min_by_key(|&i| (links[i].down, i))
        .unwrap_or(1);
    let clean = Faults::default();
    let single = Sim::new(cfg, file, &links, Some(slowest), cfg.tree.clone(), &clean).run();
    let copies_cfg = tree::Config {
        relay: false,
        ..cfg.tree.clone()
    };
    let copies = Sim::new(cfg, file, &links, None, copies_cfg, &clean).run();
    let tree_run = Sim::new(cfg, file, &links, None, cfg.tree.clone(), &clean).run();
    let mut runs = vec![
        single.named("single"),
        copies.named("copies"),
        tree_run.named("tree"),
    ];
    if cfg.has_faults() {
        let faults = Faults {
            kill: cfg.kill,
            kill_at: Duration::from_secs_f64(runs[0].seconds * cfg.kill_at),
            corrupt: cfg.corrupt,
            slow: cfg.slow,
        };
        runs.push(
            Sim::new(cfg, file, &links, None, cfg.tree.clone(), &faults)
                .run()
                .named("faults"),
        );
    }
    Report {
        seed: cfg.seed,
        receivers: cfg.receivers,
        links: cfg.links,
        file_bytes: file.geo().size(),
        group_bytes: file.geo().group_size(),
        groups: file.geo().groups(),
        outline_bytes: file.geo().outline_bytes(),
        single_s: runs[0].seconds,
        copies_s: runs[1].seconds,
        tree_s: runs[2].seconds,
        sender_upload_bytes: runs[2].sender_upload_bytes,
        runs,
    }
}

#[derive(Debug, Clone, Default)]
struct Faults {
    kill: usize,
    kill_at: Duration,
    corrupt: usize,
    slow: usize,
}

#[derive(Debug)]
enum Ev {
    Msg {
        from: u32,
        to: u32,
        msg: Message,
    },
    Group {
        from: u32,
        to: u32,
        index: u32,
        corrupt: bool,
    },
    Stored {
        node: u32,
        index: u32,
    },
    Timer {
        node: u32,
        timer: Timer,
    },
    Lost {
        node: u32,
        peer: u32,
    },
    Kill,
}

/// The two streams between a pair of nodes, each in order: what a parent
/// sends its child (outline, groups), and everything else (control, acks),
/// which a driver keeps off the bulk stream so it never waits behind groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    Data,
    Control,
}

/// Messages this size and above use the bandwidth model.
const BULK: u64 = 4096;

struct Sim<'a> {
    cfg: &'a SimConfig,
    file: &'a SimFile,
    faults: &'a Faults,
    sched: Scheduler<Ev>,
    rng: SimRng,
    /// Node `k` of the simulation is receiver `receivers[k - 1]` of the links.
    nodes: Vec<usize>,
    links: Vec<Rates>,
    up_free: Vec<Duration>,
    down_free: Vec<Duration>,
    fifo: BTreeMap<(u32, u32, Lane), Duration>,
    conns: Vec<BTreeSet<u32>>,
    dead_ends: BTreeSet<(u32, u32)>,
    alive: Vec<bool>,
    corrupting: BTreeSet<u32>,
    coordinator: coordinator::State,
    members: Vec<Option<member::State>>,
    /// Per node: honest groups stored.
    honest: Vec<u32>,
    bad_stored: u64,
    /// The group being fed to a member, for `Store`.
    feeding: Option<(u32, u32, bool)>,
    complete_at: Vec<Option<Duration>>,
    sender_upload: u64,
    killed: usize,
    corrupt_bits: u64,
    events: u64,
}

impl<'a> Sim<'a> {
    fn new(
        cfg: &'a SimConfig,
        file: &'a SimFile,
        all_links: &[Rates],
        only: Option<usize>,
        tree_cfg: tree::Config,
        faults: &'a Faults,
    ) -> Self {
        let nodes: Vec<usize> = match only {
            Some(i) => vec![0, i],
            None => (0..all_links.len()).collect(),
        };
        let n = nodes.len();
        let mut links: Vec<Rates> = nodes.iter().map(|&i| all_links[i]).collect();
        let mut rng = rng(cfg.seed, 2);
        let told: Vec<Rates> = links.clone();
        // slow relays: measured fast, really slow
        for k in (1..n).choose_multiple(&mut rng, faults.slow) {
            links[k].up = (links[k].up / cfg.slow_factor.max(1)).max(1);
        }
        let me = peer_id(0);
        let coordinator =
            coordinator::State::new(tree_cfg.clone(), me, file.outline.clone(), Some(told[0]));
        let members = (0..n)
            .map(|k| (k > 0).then(|| member::State::new(tree_cfg.clone(), me)))
            .collect();
        let mut sim = Self {
            cfg,
            file,
            faults,
            sched: Scheduler::new(),
            rng,
            nodes,
            links,
            up_free: vec![Duration::ZERO; n],
            down_free: vec![Duration::ZERO; n],
            fifo: BTreeMap::new(),
            conns: vec![BTreeSet::new(); n],
            dead_ends: BTreeSet::new(),
            alive: vec![true; n],
            corrupting: BTreeSet::new(),
            coordinator,
            members,
            honest: vec![0; n],
            bad_stored: 0,
            feeding: None,
            complete_at: vec![None; n],
            sender_upload: 0,
            killed: 0,
            corrupt_bits: 0,
            events: 0,
        };
        for (k, &rates) in told.iter().enumerate().skip(1) {
            let rates = cfg.measured.then_some(rates);
            let out = sim
                .coordinator
                .join(Duration::ZERO, peer_id(k as u32), rates)
                .expect("within the session's bounds");
            sim.apply(0, out);
        }
        let out = sim.coordinator.begin(Duration::ZERO);
        sim.apply(0, out);
        // corrupting relays: receivers that relay
        if let Some(f) = sim.coordinator.forest() {
            let relays: Vec<u32> = (1..n as u32).filter(|&k| f.cap(peer_id(k)) > 0).collect();
            sim.corrupting = relays
                .into_iter()
                .choose_multiple(&mut sim.rng, faults.corrupt)
                .into_iter()
                .collect();
        }
        if faults.kill > 0 {
            sim.sched.schedule_at(faults.kill_at, Ev::Kill);
        }
        sim
    }

    fn run(mut self) -> Outcome {
        // bounded: past this the run is reported incomplete
        let ideal = self.file.geo().size() as f64 / self.cfg.rate.max(1) as f64;
        let limit = Duration::from_secs_f64(ideal * (2.0 * self.nodes.len() as f64 + 60.0) + 60.0);
        while let Some((now, ev)) = self.sched.pop_until(limit) {
            self.events += 1;
            self.step(now, ev);
            if self.coordinator.is_all_complete() && self.done() {
                break;
            }
        }
        self.outcome()
    }

    fn done(&self) -> bool {
        (1..self.nodes.len()).all(|k| !self.alive[k] || self.complete_at[k].is_some())
    }

    fn step(&mut self, now: Duration, ev: Ev) {
        match ev {
            Ev::Msg { from, to, msg } => {
                if self.alive[to as usize] && self.alive[from as usize] {
                    self.conns[to as usize].insert(from);
                    self.input(now, to, InEvent::Message(peer_id(from), msg));
                }
            }
            Ev::Group {
                from,
                to,
                index,
                corrupt,
            } => {
                if !self.alive[to as usize] || !self.alive[from as usize] {
                    return;
                }
                let digest = if corrupt {
                    self.corrupt_bits += 1;
                    self.file.corrupt_digest(index, self.corrupt_bits * 7919)
                } else {
                    self.file.outline.leaves()[index as usize]
                };
                self.feeding = Some((to, index, corrupt));
                self.input(
                    now,
                    to,
                    InEvent::Received {
                        from: peer_id(from),
                        index,
                        digest,
                    },
                );
                self.feeding = None;
            }
            Ev::Stored { node, index } => {
                if self.alive[node as usize] {
                    self.input(now, node, InEvent::Stored { index });
                }
            }
            Ev::Timer { node, timer } => {
                if self.alive[node as usize] {
                    self.input(now, node, InEvent::Timer(timer));
                }
            }
            Ev::Lost { node, peer } => {
                if self.alive[node as usize] {
                    self.conns[node as usize].remove(&peer);
                    self.input(now, node, InEvent::PeerLost(peer_id(peer)));
                }
            }
            Ev::Kill => self.kill(now),
        }
    }

    fn input(&mut self, now: Duration, node: u32, ev: InEvent) {
        let out = if node == 0 {
            self.coordinator.handle(now, ev)
        } else {
            match self.members[node as usize].as_mut() {
                Some(m) => m.handle(now, ev),
                None => return,
            }
        };
        self.apply(node, out);
    }

    /// Turns a node's outputs into scheduled events.
    fn apply(&mut self, node: u32, out: Vec<OutEvent>) {
        let now = self.sched.now();
        for o in out {
            match o {
                OutEvent::Send(to, msg) => {
                    let to = index(&to) as u32;
                    let bytes = postcard::to_allocvec(&msg).map_or(64, |v| v.len() as u64 + 5);
                    let lane = if matches!(msg, Message::Outline { .. }) {
                        Lane::Data
                    } else {
                        Lane::Control
                    };
                    if let Some(at) = self.transmit(node, to, lane, bytes) {
                        self.sched.schedule_at(
                            at,
                            Ev::Msg {
                                from: node,
                                to,
                                msg,
                            },
                        );
                    }
                }
                OutEvent::SendGroup { to, index: g } => {
                    let to = index(&to) as u32;
                    let len = self.file.geo().len_of(g);
                    let corrupt = self.corrupting.contains(&node);
                    if let Some(at) = self.transmit(node, to, Lane::Data, len + 9) {
                        self.sched.schedule_at(
                            at,
                            Ev::Group {
                                from: node,
                                to,
                                index: g,
                                corrupt,
                            },
                        );
                    }
                }
                OutEvent::Store { index: g } => {
                    match self.feeding {
                        Some((n, i, corrupt)) if n == node && i == g => {
                            if corrupt {
                                self.bad_stored += 1;
                            } else {
                                self.honest[node as usize] += 1;
                            }
                        }
                        _ => self.bad_stored += 1,
                    }
                    self.sched.schedule_at(now, Ev::Stored { node, index: g });
                }
                OutEvent::Discard { .. } => {}
                OutEvent::Disconnect(p) => {
                    self.conns[node as usize].remove(&(index(&p) as u32));
                }
                OutEvent::ScheduleTimer(after, timer) => {
                    self.sched.schedule(after, Ev::Timer { node, timer });
                }
                OutEvent::Emit(Event::Complete) => {
                    self.complete_at[node as usize] = Some(now);
                }
                OutEvent::Emit(_) => {}
            }
        }
    }

    /// When `bytes` sent now from `from` on `lane` arrive at `to`; `None` if
    /// `to` is dead (then `from` learns of it).
    fn transmit(&mut self, from: u32, to: u32, lane: Lane, bytes: u64) -> Option<Duration> {
        let now = self.sched.now();
        let (f, t) = (from as usize, to as usize);
        if !self.alive[f] {
            return None;
        }
        if !self.alive[t] {
            // a stream to a dead node fails once
            if self.dead_ends.insert((from, to)) {
                let after = self.cfg.failure_detection;
                self.sched.schedule(
                    after,
                    Ev::Lost {
                        node: from,
                        peer: to,
                    },
                );
            }
            return None;
        }
        self.conns[f].insert(to);
        if f == 0 {
            self.sender_upload += bytes;
        }
        let mut done = now;
        if bytes >= BULK {
            let up = Duration::from_secs_f64(bytes as f64 / self.links[f].up as f64);
            let down = Duration::from_secs_f64(bytes as f64 / self.links[t].down as f64);
            // Each link is a work-conserving server: the uplink sends its
            // queue in order; the downlink's work is counted from now, so a
            // slow sender's transfer (spread over its queue) does not block
            // what other senders deliver meanwhile.
            let up_start = now.max(self.up_free[f]);
            self.up_free[f] = up_start + up;
            let down_start = now.max(self.down_free[t]);
            self.down_free[t] = down_start + down;
            done = self.up_free[f].max(self.down_free[t]);
        }
        let span = self
            .cfg
            .max_latency
            .saturating_sub(self.cfg.min_latency)
            .as_nanos() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.rng.random_range(0..=span)
        };
        let mut at = done + self.cfg.min_latency + Duration::from_nanos(jitter);
        let last = self.fifo.entry((from, to, lane)).or_default();
        at = at.max(*last + Duration::from_nanos(1));
        *last = at;
        Some(at)
    }

    /// Kills `faults.kill` relays that serve someone, at once.
    fn kill(&mut self, _now: Duration) {
        let Some(f) = self.coordinator.forest() else {
            return;
        };
        let relays: Vec<u32> = (1..self.nodes.len() as u32)
            .filter(|&k| {
                self.alive[k as usize]
                    && self.complete_at[k as usize].is_none()
                    && !f.all_children(peer_id(k)).is_empty()
            })
            .collect();
        let victims = relays
            .into_iter()
            .choose_multiple(&mut self.rng, self.faults.kill);
        for v in victims {
            self.alive[v as usize] = false;
            self.killed += 1;
            let mut peers: BTreeSet<u32> = std::mem::take(&mut self.conns[v as usize]);
            peers.insert(0);
            for (k, c) in self.conns.iter().enumerate() {
                if c.contains(&v) {
                    peers.insert(k as u32);
                }
            }
            for p in peers {
                let jitter = self.rng.random_range(0.5..1.5);
                let after = self.cfg.failure_detection.mul_f64(jitter);
                self.sched.schedule(after, Ev::Lost { node: p, peer: v });
            }
        }
    }

    fn outcome(self) -> Outcome {
        let groups = self.file.geo().groups();
        let n = self.nodes.len();
        let survivors = (1..n).filter(|&k| self.alive[k]).count();
        let mut times: Vec<u64> = Vec::new();
        let mut verified = 0;
        let mut member_stats = member::Stats::default();
        for k in 1..n {
            if let Some(m) = &self.members[k] {
                let s = m.stats();
                member_stats.refetched_bytes += s.refetched_bytes;
                member_stats.discarded_bytes += s.discarded_bytes;
                member_stats.corrupt += s.corrupt;
            }
            if !self.alive[k] {
                continue;
            }
            if let Some(t) = self.complete_at[k] {
                times.push(t.as_nanos() as u64);
                if self.honest[k] == groups {
                    verified += 1;
                }
            }
        }
        times.sort_unstable();
        let secs = |ns: Option<u64>| ns.map_or(f64::INFINITY, |t| t as f64 / 1e9);
        let last = if times.len() == survivors {
            secs(times.last().copied().or(Some(0)))
        } else {
            f64::INFINITY
        };
        let c = self.coordinator.stats();
        Outcome(RunReport {
            name: "",
            receivers: n - 1,
            survivors,
            verified,
            seconds: last,
            median_s: secs(percentile(&times, 50.0)),
            sender_upload_bytes: self.sender_upload,
            sender_upload_ratio: self.sender_upload as f64 / self.file.geo().size().max(1) as f64,
            stripes: self.coordinator.forest().map_or(0, |f| f.stripes()),
            repairs: c.repairs,
            slow_moves: c.slow_moves,
            demotions: c.demotions,
            corrupt_caught: member_stats.corrupt,
            refetched_bytes: member_stats.refetched_bytes,
            discarded_bytes: member_stats.discarded_bytes,
            bad_stored: self.bad_stored,
            killed: self.killed,
            events: self.events,
        })
    }
}

struct Outcome(RunReport);

impl Outcome {
    fn named(self, name: &'static str) -> RunReport {
        RunReport { name, ..self.0 }
    }
}

#[cfg(test)]
mod tests;
