//! `peerconnect bench load`: everything at once on one machine, for a while.
//!
//! - `--nodes` nodes of this binary, each a child process (`peerconnect up` on
//!   127.0.0.1, discovery off, every offer accepted), all connected to each
//!   other and trusting each other: their memory and descriptors are their own.
//! - `--transfers` transfers among them at all times (each slot sends a fresh
//!   file as soon as its last one ended), every received file checked against
//!   the source's BLAKE3 and then removed.
//! - `--messages-per-sec` direct messages among them, sent through their
//!   control sockets, each to a random other node.
//! - A room of `--room-nodes` nodes chatting: the child nodes plus nodes in this
//!   process, each saying a message now and then.
//! - `--guests` browser guests, logged in with the PIN, each polling its
//!   conversation on a node's web UI once a second.
//!
//! Then it drains for up to `--drain` seconds and reports: each node's RSS and
//! descriptors (after setup, peak, after the load), direct messages sent,
//! stored exactly once by their recipient (read from the stores) and their
//! latency to the recipient's event (p50, p99, max), transfers completed and
//! verified, room messages delivered to every other member, and guest polls
//! answered. Exits 1 if anything was lost, duplicated or corrupted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use peerconnect::config::Storage;
use peerconnect::control::{self, Request};
use peerconnect::{Config, Event, Node, PeerId, Trust};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::child::ChildNode;
use super::write_random;

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Seconds the load lasts.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Nodes of this binary, each a child process.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Transfers in flight at all times.
    #[arg(long, default_value_t = 50)]
    transfers: usize,
    /// Size of each transferred file, in MiB.
    #[arg(long, default_value_t = 8)]
    file_mib: u64,
    /// Direct messages per second, all nodes together.
    #[arg(long, default_value_t = 10_000)]
    messages_per_sec: u64,
    /// Members of the chatting room (the child nodes included).
    #[arg(long, default_value_t = 100)]
    room_nodes: usize,
    /// Room messages per second, all members together.
    #[arg(long, default_value_t = 10)]
    room_per_sec: u64,
    /// Browser guests polling the nodes' web UIs.
    #[arg(long, default_value_t = 20)]
    guests: usize,
    /// Longest wait, after the load, for what is still on its way.
    #[arg(long, default_value_t = 30)]
    drain: u64,
    /// Seeds who talks to whom.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const ROOM: &str = "load";
/// Control-socket requests in flight per node for direct messages.
const SENDERS_PER_NODE: usize = 8;

#[derive(Debug, Default, Serialize)]
struct NodeRow {
    node: String,
    rss_mib_start: f64,
    rss_mib_peak: f64,
    rss_mib_end: f64,
    fds_start: u64,
    fds_peak: u64,
    fds_end: u64,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    seconds: u64,
    nodes: Vec<NodeRow>,
    /// Growth of this process's RSS per room node it runs, in KiB.
    room_node_kib: f64,
    messages_sent: u64,
    messages_per_sec: f64,
    send_errors: u64,
    /// Sent messages found exactly once in the recipient's store.
    messages_stored_once: u64,
    messages_missing: u64,
    /// Sent messages stored more than once, or delivered to the app twice.
    messages_duplicated: u64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    latency_samples: u64,
    transfers_done: u64,
    transfers_failed: u64,
    /// Received files whose BLAKE3 differs from the source, or missing.
    transfers_corrupt: u64,
    transfer_mb_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_error: Option<String>,
    room_sent: u64,
    /// Deliveries of room messages to members other than the author, as
    /// live events (a subscriber the CPU starves can fall behind and miss
    /// some: the node then says so, see `room_live_missed`).
    room_delivered: u64,
    /// Deliveries found in the members' room stores after the drain: what
    /// each member's user reads in the room's history.
    room_stored: u64,
    /// "missed N events (too slow)" notices on the child nodes' room streams.
    room_live_missed: u64,
    room_expected: u64,
    room_duplicated: u64,
    guest_polls: u64,
    guest_polls_ok: u64,
    guest_poll_ms_p99: f64,
}

pub async fn run(a: LoadArgs, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
    anyhow::ensure!(
        (1..=3600).contains(&a.seconds),
        "--seconds must be 1..=3600"
    );
    super::gossip::raise_fd_limit();
    let dir = tempfile::tempdir()?;
    let note = |m: &str| {
        if !json {
            eprintln!("  {m}");
        }
    };

    // 1. The child nodes, all connected to each other, trusting each other.
    note(&format!("starting {} nodes", a.nodes));
    let mut nodes: Vec<ChildNode> = Vec::new();
    for i in 0..a.nodes {
        let d = dir.path().join(format!("node{i}"));
        // Every node here connects from 127.0.0.1: the per-address cap of
        // a LAN node (16 new keys) would refuse the room's members.
        let mut extra = vec![
            "--yes".to_string(),
            "--downloads".into(),
            d.join("in").display().to_string(),
            "--max-sessions-per-ip".into(),
            (a.room_nodes + a.nodes + 16).to_string(),
        ];
        for n in &nodes {
            extra.extend(["--connect".into(), n.addr.to_string()]);
        }
        nodes.push(ChildNode::start(&d, &format!("load{i}"), &extra)?);
    }
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.id).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        loop {
            let peers = call(&n.data_dir, &Request::Peers).await?;
            let connected = peers
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["connected"] == true).count())
                .unwrap_or(0);
            if connected >= a.nodes - 1 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the nodes did not all connect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for id in ids.iter().filter(|id| **id != n.id) {
            let req = Request::SetTrust {
                peer: id.to_string(),
                trust: Trust::Trusted,
            };
            call(&n.data_dir, &req).await?;
        }
    }

    // 2. The room: the child nodes watch it, nodes in this process make up the
    // rest, each joining once the one before has a neighbour in it.
    note(&format!("joining a room of {} nodes", a.room_nodes));
    let room = Arc::new(RoomCount::default());
    let mut watches = Vec::new();
    for n in &nodes {
        watches.push(watch_room(&n.data_dir, n.id, room.clone()).await?);
    }
    let rss0 = rss_bytes();
    let mut members: Vec<Node> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    for i in 0..a.room_nodes.saturating_sub(a.nodes) {
        let mut c = Config::local("/nonexistent/peerconnect-bench");
        c.storage = Storage::Memory;
        c.name = format!("member{i}");
        c.web = None;
        c.dht = false;
        c.reconnect_known = false;
        let m = Node::start(c).await?;
        let via = &nodes[rng.random_range(0..nodes.len())];
        m.connect(via.addr, Some(via.id)).await?;
        m.join_room(ROOM).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while m.room_neighbors(ROOM).await?.is_empty() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "member {i} found no room neighbour"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (me, events, count) = (m.id(), m.events(), room.clone());
        tokio::spawn(count_room(me, events, count));
        members.push(m);
    }
    let room_node_kib = if members.is_empty() {
        0.0
    } else {
        rss_bytes().saturating_sub(rss0) as f64 / 1024.0 / members.len() as f64
    };

    // 3. The guests log in.
    note(&format!("logging {} guests in", a.guests));
    let mut guests = Vec::new();
    for g in 0..a.guests {
        let n = &nodes[g % nodes.len()];
        // One loopback address per guest: a guest's cookie is bound to it.
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, (g % 250) as u8 + 2));
        guests.push(Guest::login(ip, n.web, &n.pin, &format!("guest{g}")).await?);
    }

    // 4. The load.
    let mut report = Report {
        seconds: a.seconds,
        room_node_kib,
        ..Report::default()
    };
    let start: Vec<(f64, u64)> = nodes.iter().map(ChildNode::sample).collect();
    let mut peak = start.clone();
    let sent = Arc::new(Sent::default());
    let mut latency_watch = Vec::new();
    for n in &nodes {
        let rx = control::subscribe(&n.data_dir)
            .await?
            .ok_or_else(|| anyhow::anyhow!("node stopped"))?;
        latency_watch.push(tokio::spawn(watch_messages(rx, sent.clone())));
    }
    let stop = Arc::new(AtomicBool::new(false));
    note(&format!("load for {} s", a.seconds));
    let t0 = Instant::now();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files)?;
    let mut tasks = Vec::new();
    // Transfers: slot k sends from node k % N to a node 1 + k / N further on.
    let transfer = Arc::new(TransferCount::default());
    for k in 0..a.transfers {
        let from = k % nodes.len();
        let to = (from + 1 + (k / nodes.len()) % (nodes.len() - 1)) % nodes.len();
        let src = files.join(format!("slot{k}.bin"));
        let hash = write_random(&src, a.file_mib << 20, a.seed ^ k as u64)?;
        let slot = Slot {
            k,
            from: nodes[from].data_dir.clone(),
            to: ids[to],
            inbox: nodes[to].data_dir.join("in"),
            src,
            hash,
        };
        tasks.push(tokio::spawn(slot.run(stop.clone(), transfer.clone())));
    }
    // Direct messages.
    let per_node = a.messages_per_sec as f64 / nodes.len() as f64;
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<PeerId> = ids.iter().copied().filter(|id| *id != n.id).collect();
        for w in 0..SENDERS_PER_NODE {
            let ctx = MessageSender {
                dir: n.data_dir.clone(),
                others: others.clone(),
                rate: per_node / SENDERS_PER_NODE as f64,
                tag: (i * SENDERS_PER_NODE + w) as u64,
                seed: a.seed,
            };
            tasks.push(tokio::spawn(ctx.run(stop.clone(), sent.clone())));
        }
    }
    // Room chat: members of this process say, in turn, at the asked rate.
    if !members.is_empty() && a.room_per_sec > 0 {
        let (members, room, stop) = (members.clone(), room.clone(), stop.clone());
        let every = Duration::from_secs_f64(1.0 / a.room_per_sec as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut i = 0;
            while !stop.load(Relaxed) {
                tick.tick().await;
                let m = &members[i % members.len()];
                i += 1;
                if m.room_say(ROOM, &format!("room {i}")).await.is_ok() {
                    room.sent.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    // Guests poll.
    let polls = Arc::new(Mutex::new((0u64, Vec::<f64>::new())));
    for g in guests {
        tasks.push(tokio::spawn(g.poll(stop.clone(), polls.clone())));
    }
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (p, n) in peak.iter_mut().zip(&nodes) {
            let (rss, fds) = n.sample();
            p.0 = p.0.max(rss);
            p.1 = p.1.max(fds);
        }
    }
    stop.store(true, Relaxed);
    let load_s = t0.elapsed().as_secs_f64();
    note("draining");
    let drain = Instant::now() + Duration::from_secs(a.drain);
    for t in tasks {
        let left = drain.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, t).await;
    }
    // Messages still on their way: until every sent one was seen, or the drain ends.
    while Instant::now() < drain && sent.seen.load(Relaxed) < sent.ok.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let room_expected_per = (a.room_nodes.max(members.len() + nodes.len()) - 1) as u64;
    while Instant::now() < drain
        && room.delivered.load(Relaxed) < room.sent.load(Relaxed) * room_expected_per
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end: Vec<(f64, u64)> = nodes.iter().map(ChildNode::sample).collect();
    for (i, ((s, p), e)) in start.iter().zip(&peak).zip(&end).enumerate() {
        report.nodes.push(NodeRow {
            node: format!("load{i}"),
            rss_mib_start: s.0,
            rss_mib_peak: p.0.max(e.0),
            rss_mib_end: e.0,
            fds_start: s.1,
            fds_peak: p.1.max(e.1),
            fds_end: e.1,
        });
    }

    // 5. Count.
    report.messages_sent = sent.ok.load(Relaxed);
    report.messages_per_sec = report.messages_sent as f64 / load_s;
    report.send_errors = sent.errors.load(Relaxed);
    report.messages_duplicated = sent.events_duplicated.load(Relaxed);
    {
        let mut lat = sent.latencies.lock().expect("not poisoned").clone();
        lat.sort_by(f64::total_cmp);
        report.latency_samples = lat.len() as u64;
        report.latency_ms_p50 = quantile(&lat, 0.50);
        report.latency_ms_p99 = quantile(&lat, 0.99);
        report.latency_ms_max = lat.last().copied().unwrap_or(0.0);
    }
    report.transfers_done = transfer.done.load(Relaxed);
    report.transfers_failed = transfer.failed.load(Relaxed);
    report.transfers_corrupt = transfer.corrupt.load(Relaxed);
    report.transfer_error = transfer.first_error.lock().expect("not poisoned").clone();
    report.transfer_mb_per_sec = transfer.bytes.load(Relaxed) as f64 / 1e6 / load_s;
    report.room_sent = room.sent.load(Relaxed);
    report.room_expected = report.room_sent * room_expected_per;
    report.room_delivered = room.delivered.load(Relaxed);
    report.room_duplicated = room.duplicated.load(Relaxed);
    report.room_live_missed = room.missed.load(Relaxed);
    for m in &members {
        let me = m.id();
        report.room_stored +=
            stored_from_others(me, |before| Ok(m.room_history(ROOM, before, 1000)?))?;
    }
    {
        let p = polls.lock().expect("not poisoned");
        let mut ok = p.1.clone();
        ok.sort_by(f64::total_cmp);
        report.guest_polls = p.0;
        report.guest_polls_ok = ok.len() as u64;
        report.guest_poll_ms_p99 = quantile(&ok, 0.99);
    }
    for m in &members {
        let _ = m.shutdown().await;
    }
    drop(watches);
    // The stores, read with the nodes stopped: every sent message stored once.
    let sent_map = std::mem::take(&mut *sent.at.lock().expect("not poisoned"));
    drop(nodes);
    let mut stored: HashMap<u64, u32> = HashMap::new();
    for (i, me) in ids.iter().enumerate() {
        let store = peerconnect::store::Store::open(&dir.path().join(format!("node{i}")))?;
        for peer in ids.iter().filter(|p| *p != me) {
            for m in store
                .conversation(me, peer, None, usize::MAX)?
                .unwrap_or_default()
            {
                if let Some(seq) = (!m.outgoing).then(|| parse_seq(&m.text)).flatten() {
                    *stored.entry(seq).or_default() += 1;
                }
            }
        }
    }
    for (i, me) in ids.iter().enumerate() {
        let store = peerconnect::store::Store::open(&dir.path().join(format!("node{i}")))?;
        report.room_stored += stored_from_others(*me, |before| {
            Ok(store.room_history(ROOM, before, 1000)?.unwrap_or_default())
        })?;
    }
    for seq in sent_map.keys() {
        match stored.get(seq) {
            Some(1) => report.messages_stored_once += 1,
            Some(_) => report.messages_duplicated += 1,
            None => report.messages_missing += 1,
        }
    }

    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, &a);
    }
    let whole = report.messages_missing == 0
        && report.messages_duplicated == 0
        && report.transfers_failed == 0
        && report.transfers_corrupt == 0
        && report.room_stored == report.room_expected
        && report.room_duplicated == 0
        && report.guest_polls_ok == report.guest_polls;
    Ok(if whole {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}

/// One control request; its answer, or an error.
async fn call(dir: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    match control::call(dir, req, |_| {}).await? {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => anyhow::bail!("{e}"),
        None => anyhow::bail!("no node runs on {}", dir.display()),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn rss_bytes() -> u64 {
    super::gossip::rss_bytes()
}

/// Direct messages: what was sent, when, and what arrived.
#[derive(Default)]
struct Sent {
    ok: AtomicU64,
    errors: AtomicU64,
    /// Sent messages first seen in a recipient's events.
    seen: AtomicU64,
    events_duplicated: AtomicU64,
    /// Sequence number → when it was sent.
    at: Mutex<HashMap<u64, Instant>>,
    latencies: Mutex<Vec<f64>>,
    arrived: Mutex<HashMap<u64, u8>>,
}

fn parse_seq(text: &str) -> Option<u64> {
    text.strip_prefix("m ")?.parse().ok()
}

struct MessageSender {
    dir: PathBuf,
    others: Vec<PeerId>,
    rate: f64,
    tag: u64,
    seed: u64,
}

impl MessageSender {
    async fn run(self, stop: Arc<AtomicBool>, sent: Arc<Sent>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ (self.tag << 32));
        let t0 = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Relaxed) {
            // Paced by the clock: behind schedule, it sends back to back.
            let due = t0 + Duration::from_secs_f64(n as f64 / self.rate);
            tokio::time::sleep_until(due.into()).await;
            let seq = (self.tag << 40) | n;
            n += 1;
            let to = self.others[rng.random_range(0..self.others.len())];
            let req = Request::SendMessage {
                peer: to.to_string(),
                text: format!("m {seq}"),
                reply_to: None,
                wait_secs: None,
            };
            sent.at
                .lock()
                .expect("not poisoned")
                .insert(seq, Instant::now());
            match call(&self.dir, &req).await {
                Ok(_) => sent.ok.fetch_add(1, Relaxed),
                Err(_) => {
                    sent.at.lock().expect("not poisoned").remove(&seq);
                    sent.errors.fetch_add(1, Relaxed)
                }
            };
        }
    }
}

/// Reads a node's events: the latency of each message it receives, and
/// messages delivered twice.
async fn watch_messages(mut rx: tokio::sync::mpsc::Receiver<Event>, sent: Arc<Sent>) {
    while let Some(e) = rx.recv().await {
        let Event::MessageReceived { message } = e else {
            continue;
        };
        let Some(seq) = parse_seq(&message.text) else {
            continue;
        };
        let now = Instant::now();
        let first = {
            let mut arrived = sent.arrived.lock().expect("not poisoned");
            let c = arrived.entry(seq).or_default();
            *c = c.saturating_add(1);
            *c == 1
        };
        if !first {
            sent.events_duplicated.fetch_add(1, Relaxed);
            continue;
        }
        sent.seen.fetch_add(1, Relaxed);
        if let Some(t) = sent.at.lock().expect("not poisoned").get(&seq) {
            let ms = now.duration_since(*t).as_secs_f64() * 1e3;
            sent.latencies.lock().expect("not poisoned").push(ms);
        }
    }
}

#[derive(Default)]
struct TransferCount {
    done: AtomicU64,
    failed: AtomicU64,
    corrupt: AtomicU64,
    bytes: AtomicU64,
    /// Why the first failed transfer failed.
    first_error: Mutex<Option<String>>,
}

impl TransferCount {
    fn failed(&self, why: String) {
        self.failed.fetch_add(1, Relaxed);
        self.first_error
            .lock()
            .expect("not poisoned")
            .get_or_insert(why);
    }
}

/// One transfer slot: sends a file, checks what arrived, removes it, again.
struct Slot {
    k: usize,
    from: PathBuf,
    to: PeerId,
    inbox: PathBuf,
    src: PathBuf,
    hash: blake3::Hash,
}

impl Slot {
    async fn run(self, stop: Arc<AtomicBool>, count: Arc<TransferCount>) {
        let mut round = 0;
        while !stop.load(Relaxed) {
            // A fresh name each round (a hard link: no copy).
            let name = format!("s{}-r{round}.bin", self.k);
            round += 1;
            let path = self.src.with_file_name(&name);
            if let Err(e) = std::fs::hard_link(&self.src, &path) {
                count.failed(format!("cannot link {}: {e}", path.display()));
                continue;
            }
            let req = Request::Send {
                to: vec![self.to.to_string()],
                paths: vec![path.clone()],
                wait_secs: None,
                tree: false,
                room: None,
                pin: None,
            };
            let res = call(&self.from, &req).await;
            let _ = std::fs::remove_file(&path);
            let done = match res {
                Ok(v) => v["transfers"]
                    .as_object()
                    .filter(|t| {
                        t.values()
                            .all(|e| e["event"] == "transfer_complete" && e["failed"] == 0)
                    })
                    .map(|_| ())
                    .ok_or_else(|| v.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(why) = done {
                count.failed(why);
                // Not a tight loop when the node refuses at once.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let got = self.inbox.join(&name);
            let src = (self.src.clone(), self.hash);
            let ok = tokio::task::spawn_blocking(move || {
                let ok = hash_file(&got).is_ok_and(|h| h == src.1);
                let _ = std::fs::remove_file(&got);
                ok
            })
            .await
            .unwrap_or(false);
            if ok {
                count.done.fetch_add(1, Relaxed);
                let len = std::fs::metadata(&self.src).map(|m| m.len()).unwrap_or(0);
                count.bytes.fetch_add(len, Relaxed);
            } else {
                count.corrupt.fetch_add(1, Relaxed);
            }
        }
    }
}

fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize())
}

/// Room messages: said, and delivered per (message, member).
#[derive(Default)]
struct RoomCount {
    sent: AtomicU64,
    delivered: AtomicU64,
    duplicated: AtomicU64,
    missed: AtomicU64,
    seen: Mutex<std::collections::HashSet<(PeerId, String)>>,
}

impl RoomCount {
    fn delivered(&self, member: PeerId, author: PeerId, id: String) {
        if author == member {
            return;
        }
        if self.seen.lock().expect("not poisoned").insert((member, id)) {
            self.delivered.fetch_add(1, Relaxed);
        } else {
            self.duplicated.fetch_add(1, Relaxed);
        }
    }
}

async fn count_room(me: PeerId, mut events: peerconnect::EventStream, count: Arc<RoomCount>) {
    while let Some(e) = events.recv().await {
        if let Event::RoomMessage { message, .. } = e {
            count.delivered(me, message.author, message.id.to_string());
        }
    }
}

/// Messages of the room in one member's store that others said, read a
/// page at a time (newest first) through `page(before)`.
fn stored_from_others(
    me: PeerId,
    mut page: impl FnMut(
        Option<peerconnect::proto::rooms::RoomMessageId>,
    ) -> anyhow::Result<Vec<peerconnect::proto::rooms::RoomMessage>>,
) -> anyhow::Result<u64> {
    let (mut count, mut before) = (0, None);
    loop {
        let got = page(before)?;
        let Some(oldest) = got.first() else {
            return Ok(count);
        };
        before = Some(oldest.id);
        count += got.iter().filter(|m| m.author != me).count() as u64;
    }
}

/// A child node's room, streamed through its control socket (joined for as
/// long as the stream is open).
async fn watch_room(
    dir: &Path,
    me: PeerId,
    count: Arc<RoomCount>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let req = Request::RoomWatch {
        room: ROOM.into(),
        history: 0,
    };
    let mut stream = control::Stream::open(dir, &req)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no node runs on {}", dir.display()))?;
    Ok(tokio::spawn(async move {
        while let Ok(Some(reply)) = stream.next().await {
            match reply {
                control::Reply::Event(Event::RoomMessage { message, .. }) => {
                    count.delivered(me, message.author, message.id.to_string());
                }
                control::Reply::Event(Event::Error { .. }) => {
                    count.missed.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
    }))
}

/// A browser guest of one node's web UI.
struct Guest {
    ip: IpAddr,
    web: SocketAddr,
    cookie: String,
}

impl Guest {
    async fn login(ip: IpAddr, web: SocketAddr, pin: &str, name: &str) -> anyhow::Result<Self> {
        let body = serde_json::json!({ "pin": pin, "name": name }).to_string();
        let (status, head, _) = http(ip, web, "POST", "/api/login", None, Some(&body)).await?;
        anyhow::ensure!(status == 200, "guest login answered {status}");
        let cookie = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("set-cookie")
                    .then(|| v.trim().split(';').next().unwrap_or("").to_string())
            })
            .ok_or_else(|| anyhow::anyhow!("no cookie from the guest login"))?;
        Ok(Self { ip, web, cookie })
    }

    async fn poll(self, stop: Arc<AtomicBool>, polls: Arc<Mutex<(u64, Vec<f64>)>>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !stop.load(Relaxed) {
            tick.tick().await;
            let t = Instant::now();
            let res = tokio::time::timeout(
                Duration::from_secs(5),
                http(
                    self.ip,
                    self.web,
                    "GET",
                    "/api/guest/messages",
                    Some(&self.cookie),
                    None,
                ),
            )
            .await;
            let mut p = polls.lock().expect("not poisoned");
            p.0 += 1;
            if let Ok(Ok((200, _, _))) = res {
                p.1.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
}

/// One HTTP/1.1 request from `ip`: (status, head, body).
async fn http(
    ip: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(ip, 0))?;
    let mut s = sock.connect(to).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await?;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP head"))?;
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP status"))?;
    Ok((status, head, all[split + 4..].to_vec()))
}

fn print_table(r: &Report, a: &LoadArgs) {
    println!(
        "load for {} s: {} nodes, {} transfers of {} MiB in flight, {} messages/s asked, \
         a room of {} at {}/s, {} guests",
        r.seconds,
        a.nodes,
        a.transfers,
        a.file_mib,
        a.messages_per_sec,
        a.room_nodes,
        a.room_per_sec,
        a.guests
    );
    println!();
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "node", "RSS start", "RSS peak", "RSS end", "fds start", "fds peak", "fds end"
    );
    for n in &r.nodes {
        println!(
            "{:<8} {:>7.1} MB {:>7.1} MB {:>7.1} MB {:>9} {:>9} {:>9}",
            n.node,
            n.rss_mib_start,
            n.rss_mib_peak,
            n.rss_mib_end,
            n.fds_start,
            n.fds_peak,
            n.fds_end
        );
    }
    println!(
        "room nodes in this process: {:.0} KiB each",
        r.room_node_kib
    );
    println!();
    println!(
        "direct messages  {} sent ({:.0}/s), {} send errors; stored once {}, missing {}, duplicated {}",
        r.messages_sent,
        r.messages_per_sec,
        r.send_errors,
        r.messages_stored_once,
        r.messages_missing,
        r.messages_duplicated
    );
    println!(
        "  latency to the recipient: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max, r.latency_samples
    );
    println!(
        "transfers        {} done and verified, {} failed, {} corrupt; {:.0} MB/s in total",
        r.transfers_done, r.transfers_failed, r.transfers_corrupt, r.transfer_mb_per_sec
    );
    if let Some(e) = &r.transfer_error {
        println!("  first failure: {e}");
    }
    println!(
        "room             {} said; stored {} of {}; shown live {}, {} twice, {} missed-events notices",
        r.room_sent,
        r.room_stored,
        r.room_expected,
        r.room_delivered,
        r.room_duplicated,
        r.room_live_missed
    );
    println!(
        "guests           {} of {} polls answered, p99 {:.1} ms",
        r.guest_polls_ok, r.guest_polls, r.guest_poll_ms_p99
    );
}
