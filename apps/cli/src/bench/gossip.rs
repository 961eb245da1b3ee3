//! `peerconnect bench gossip`: starts N full nodes in this process on 127.0.0.1 (real TCP +
//! TLS 1.3 sessions, discovery off, in-memory stores), lets each dial a few
//! random earlier nodes, joins them all into one room, broadcasts one message
//! and checks that every node delivered it. It reports the time to join, the
//! time to full delivery, the gossip traffic, and the memory per node (RSS
//! growth / N, from /proc/self/status).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use futures::future::join_all;
use peerconnect::config::Storage;
use peerconnect::proto::rooms;
use peerconnect::{Config, Event, Node};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::mpsc;

#[derive(Args, Debug)]
pub struct GossipArgs {
    #[arg(long, default_value_t = 2000)]
    nodes: usize,
    /// Earlier nodes each node dials before joining (its bootstrap peers).
    /// Every session costs two file descriptors here (both ends live in this
    /// process), so more than one does not fit 2,000 nodes in 20,000.
    #[arg(long, default_value_t = 1)]
    bootstrap: usize,
    /// Seeds the choice of bootstrap peers and of the sender.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Broadcasts timed, one second apart (the first runs over a tree whose
    /// links are all still eager; later ones show the tree after pruning).
    #[arg(long, default_value_t = 3)]
    broadcasts: usize,
    /// Every node joins the room at the same moment instead of one after
    /// another (each overlay that forms apart must merge; see
    /// `proto::hyparview`).
    #[arg(long)]
    all_at_once: bool,
    /// Wait at least this many seconds after the join before broadcasting.
    #[arg(long, default_value_t = 0.0)]
    quiet: f64,
    /// Longest wait for any phase, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Stop after the start (listen, then one dial each): report its time and
    /// what an idle session costs, then shut down.
    #[arg(long)]
    start_only: bool,
    /// Nodes run without the DHT, whose lookups on every new contact are most
    /// of the start's CPU: isolates the sessions and the gossip.
    #[arg(long)]
    no_dht: bool,
}

pub async fn run(a: GossipArgs, json: bool) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    gossip(a, json).await
}

#[derive(Debug, Default, Serialize)]
struct Report {
    nodes: usize,
    bootstrap: usize,
    seed: u64,
    all_at_once: bool,
    dht: bool,
    fd_limit: u64,
    /// Listen plus dials: `listen_s + dial_s`.
    start_s: f64,
    /// Every node started and listening, none connected.
    listen_s: f64,
    /// Each node's dials, one node after another.
    dial_s: f64,
    /// Sessions the dials made (each has both ends in this process).
    sessions: usize,
    /// RSS growth from listening to dialed (then 0.5 s idle), per session end:
    /// what an idle session costs one of its two nodes.
    idle_session_end_kib: f64,
    /// DHT messages all nodes sent from the start to the end of the dials
    /// (plus the 0.5 s after), per node: what each node's DHT join cost.
    dht_sent_per_node: f64,
    /// All nodes, one after another (or all at once).
    join_s: f64,
    /// One node's join: call to first neighbour that proved membership.
    join_ms_p50: f64,
    join_ms_max: f64,
    settle_s: f64,
    /// Connected components of the room's overlay (active views) when settled.
    components: usize,
    active_view_mean: f64,
    sessions_per_node: f64,
    frames_per_node_join: f64,
    /// One per broadcast, in order.
    rounds: Vec<Round>,
    rss_before_mib: f64,
    rss_listening_mib: f64,
    rss_started_mib: f64,
    rss_joined_mib: f64,
    rss_per_node_kib: f64,
    shutdown_s: f64,
    /// Sums over all nodes, at the end.
    driver: serde_json::Map<String, serde_json::Value>,
    membership: serde_json::Map<String, serde_json::Value>,
    plumtree: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize)]
struct Round {
    sender: usize,
    delivered: usize,
    expected: usize,
    /// Send to the last delivery; `None` if some node never delivered.
    full_delivery_ms: Option<f64>,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// Payload copies received beyond one per delivering node, per node.
    rmr: f64,
    frames_per_node: f64,
}

/// Resident set size of this process, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Raises the soft open-files limit to the hard one; returns the limit.
pub(crate) fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

const MIB: f64 = 1024.0 * 1024.0;
const ROOM: &str = "bench";

fn note(json: bool, msg: &str) {
    if !json {
        eprintln!("  {msg}");
    }
}

async fn gossip_frames(nodes: &[Node]) -> u64 {
    let stats = join_all(nodes.iter().map(|n| n.gossip().stats(None))).await;
    stats
        .into_iter()
        .filter_map(Result::ok)
        .map(|s| s.driver.frames_sent)
        .sum()
}

async fn dht_sent(nodes: &[Node]) -> u64 {
    let dhts = nodes.iter().filter_map(|n| n.dht());
    let stats = join_all(dhts.map(|d| d.stats())).await;
    stats
        .into_iter()
        .filter_map(Result::ok)
        .map(|s| s.sent)
        .sum()
}

async fn gossip(a: GossipArgs, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
    let mut r = Report {
        nodes: a.nodes,
        bootstrap: a.bootstrap.max(1),
        seed: a.seed,
        all_at_once: a.all_at_once,
        dht: !a.no_dht,
        ..Report::default()
    };
    let limit = Duration::from_secs(a.timeout);
    r.fd_limit = raise_fd_limit();
    // Per node: a listener, and two descriptors per session (both ends live
    // in this process), ~4 sessions each once the overlay settles.
    let need = a.nodes as u64 * 10;
    if r.fd_limit < need {
        eprintln!(
            "warning: the open-files limit is {} and {} nodes may need ~{need}; dials may fail",
            r.fd_limit, a.nodes
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    r.rss_before_mib = rss_bytes() as f64 / MIB;

    // 1. Start the nodes (listening), then each dials a few random earlier
    // ones, one node after another.
    note(json, &format!("starting {} nodes", a.nodes));
    let t = Instant::now();
    let mut nodes: Vec<Node> = Vec::with_capacity(a.nodes);
    for i in 0..a.nodes {
        let mut c = Config::local("/nonexistent/peerconnect-bench");
        c.storage = Storage::Memory;
        c.name = format!("n{i}");
        c.event_buffer = 16;
        c.reconnect_known = false;
        c.dht = !a.no_dht;
        nodes.push(Node::start(c).await?);
        if t.elapsed() > limit {
            anyhow::bail!("starting nodes took over {} s", a.timeout);
        }
    }
    r.listen_s = t.elapsed().as_secs_f64();
    r.rss_listening_mib = rss_bytes() as f64 / MIB;
    let t = Instant::now();
    for i in 1..nodes.len() {
        let picks: Vec<(std::net::SocketAddr, peerconnect::PeerId)> = nodes[..i]
            .choose_multiple(&mut rng, r.bootstrap)
            .map(|n| (n.listen_addrs()[0], n.id()))
            .collect();
        let node = &nodes[i];
        let dials = picks
            .iter()
            .map(|(addr, id)| node.connect(*addr, Some(*id)));
        for res in join_all(dials).await {
            res?;
            r.sessions += 1;
        }
        if t.elapsed() > limit {
            anyhow::bail!("dialing took over {} s", a.timeout);
        }
    }
    r.dial_s = t.elapsed().as_secs_f64();
    r.start_s = r.listen_s + r.dial_s;
    // Let the accepting ends finish setting up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rss_started_mib = rss_bytes() as f64 / MIB;
    r.idle_session_end_kib =
        (r.rss_started_mib - r.rss_listening_mib) * 1024.0 / (2 * r.sessions.max(1)) as f64;
    r.dht_sent_per_node = dht_sent(&nodes).await as f64 / nodes.len() as f64;
    if a.start_only {
        r.shutdown_s = shut_down(&nodes, json).await?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_start(&r);
        }
        return Ok(ExitCode::SUCCESS);
    }

    // 2. The nodes join the room one after another, each once the one before
    // has a neighbour in it (members arriving, as in the simulation; see
    // `net::gossip` on simultaneous joins).
    note(json, "joining the room");
    let frames0 = gossip_frames(&nodes).await;
    let t = Instant::now();
    let mut waits = Vec::with_capacity(nodes.len());
    if a.all_at_once {
        // Every node asks to join at the same moment; none waits for another.
        let joins = nodes.iter().map(|n| async move {
            let started = Instant::now();
            n.join_room(ROOM).await?;
            anyhow::Ok(started.elapsed().as_secs_f64() * 1000.0)
        });
        match tokio::time::timeout(limit, join_all(joins)).await {
            Ok(res) => {
                for w in res {
                    waits.push(w?);
                }
            }
            Err(_) => anyhow::bail!("the joins took over {} s", a.timeout),
        }
    } else {
        for (i, n) in nodes.iter().enumerate() {
            let started = Instant::now();
            n.join_room(ROOM).await?;
            if i > 0 {
                while n.room_neighbors(ROOM).await?.is_empty() {
                    if t.elapsed() > limit {
                        // What it knows, to tell a lost join from a lost link.
                        let topic = rooms::topic(ROOM);
                        let v = n.gossip().views(topic).await?;
                        let stats = n.gossip().stats(Some(topic)).await?;
                        let mut other = format!(
                            "; it waited {:.1} s; its sessions: {:?}",
                            started.elapsed().as_secs_f64(),
                            n.links()
                                .connected()
                                .iter()
                                .filter_map(|p| nodes.iter().position(|m| m.id() == *p))
                                .collect::<Vec<_>>()
                        );
                        // each peer once: an active one usually has a session too
                        let peers: std::collections::BTreeSet<_> = v
                            .active
                            .iter()
                            .chain(&n.links().connected())
                            .copied()
                            .collect();
                        for p in &peers {
                            let Some(k) = nodes.iter().position(|m| m.id() == *p) else {
                                continue;
                            };
                            let w = nodes[k].gossip().views(topic).await?;
                            let ks = nodes[k].gossip().stats(Some(topic)).await?;
                            other += &format!(
                                "; its peer (active or session) node {k}: active {} (us: {}), confirmed {}, passive {} \
                                 (us: {}), sessions {}, connected to us {}; driver {}; \
                                 protocol {}; membership {}",
                                w.active.len(),
                                w.active.contains(&n.id()),
                                w.confirmed.len(),
                                w.passive.len(),
                                w.passive.contains(&n.id()),
                                nodes[k].links().connected().len(),
                                nodes[k].links().is_connected(&n.id()),
                                serde_json::to_string(&ks.driver)?,
                                serde_json::to_string(&ks.protocol)?,
                                serde_json::to_string(&ks.topic.map(|t| t.membership))?
                            );
                        }
                        anyhow::bail!(
                            format!(
                                "node {i} found no neighbour in the room (active {}, confirmed {}, \
                             passive {}, sessions {}; membership {})",
                                v.active.len(),
                                v.confirmed.len(),
                                v.passive.len(),
                                n.links().connected().len(),
                                serde_json::to_string(&stats.topic.map(|t| t.membership))?
                            ) + &other
                                + &format!(
                                    "; our driver {}; our protocol {}",
                                    serde_json::to_string(&stats.driver)?,
                                    serde_json::to_string(&stats.protocol)?
                                )
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            waits.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    r.join_s = t.elapsed().as_secs_f64();
    waits.sort_by(f64::total_cmp);
    r.join_ms_p50 = waits[waits.len() / 2];
    r.join_ms_max = waits.last().copied().unwrap_or(0.0);

    // 3. Let the joins' random walks and evictions finish: until the room's
    // overlay is one component and its links held still for half a second.
    note(json, "waiting for the overlay to settle");
    let t = Instant::now();
    let topic = rooms::topic(ROOM);
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let views: Vec<Vec<peerconnect::PeerId>> =
            join_all(nodes.iter().map(|n| n.gossip().views(topic)))
                .await
                .into_iter()
                .map(|v| v.map(|v| v.active).unwrap_or_default())
                .collect();
        let ids: Vec<peerconnect::PeerId> = nodes.iter().map(|n| n.id()).collect();
        r.components = components(&ids, &views);
        let total: usize = views.iter().map(Vec::len).sum();
        r.active_view_mean = total as f64 / nodes.len() as f64;
        let quiet = t.elapsed().as_secs_f64() >= a.quiet;
        if (quiet && r.components == 1 && last == Some(total)) || t.elapsed() > limit {
            break;
        }
        last = Some(total);
    }
    r.settle_s = t.elapsed().as_secs_f64();
    let frames1 = gossip_frames(&nodes).await;
    r.frames_per_node_join = (frames1 - frames0) as f64 / nodes.len() as f64;
    r.sessions_per_node = nodes
        .iter()
        .map(|n| n.links().connected().len())
        .sum::<usize>() as f64
        / nodes.len() as f64;
    r.rss_joined_mib = rss_bytes() as f64 / MIB;
    r.rss_per_node_kib = (r.rss_joined_mib - r.rss_before_mib) * 1024.0 / nodes.len() as f64;

    // 4. Broadcasts from random nodes; every other node must deliver each.
    for round in 0..a.broadcasts.max(1) {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        note(json, &format!("broadcast {}", round + 1));
        let sender = rng.random_range(0..nodes.len());
        let marker = format!("bench broadcast {round} {}", rng.random::<u64>());
        r.rounds
            .push(broadcast(&nodes, sender, &marker, limit).await?);
    }
    let stats: Vec<_> = join_all(nodes.iter().map(|n| n.gossip().stats(Some(topic))))
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    sum_stats(&mut r, &stats);

    // 5. Shut everything down.
    r.shutdown_s = shut_down(&nodes, json).await?;

    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print_table(&r);
    }
    Ok(if r.rounds.iter().all(|x| x.full_delivery_ms.is_some()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}

/// Sums of the plumtree payload counters over all nodes: (delivered, duplicates).
async fn payloads(nodes: &[Node]) -> (u64, u64) {
    let topic = rooms::topic(ROOM);
    join_all(nodes.iter().map(|n| n.gossip().stats(Some(topic))))
        .await
        .into_iter()
        .filter_map(|s| s.ok()?.topic?.plumtree)
        .fold((0, 0), |(d, u), p| (d + p.delivered, u + p.duplicates))
}

/// One broadcast by `nodes[sender]`, timed until every other node delivered it.
async fn broadcast(
    nodes: &[Node],
    sender: usize,
    marker: &str,
    limit: Duration,
) -> anyhow::Result<Round> {
    let mut round = Round {
        sender,
        expected: nodes.len() - 1,
        ..Round::default()
    };
    let (tx, mut rx) = mpsc::channel::<Instant>(nodes.len());
    let mut watchers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if i == sender {
            continue;
        }
        let mut events = n.events();
        let tx = tx.clone();
        let marker = marker.to_string();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Event::RoomMessage { message, .. } = e
                    && message.text == marker
                {
                    let _ = tx.send(Instant::now()).await;
                    return;
                }
            }
        }));
    }
    drop(tx);
    let frames0 = gossip_frames(nodes).await;
    let (d0, u0) = payloads(nodes).await;
    let t0 = Instant::now();
    nodes[sender].room_say(ROOM, marker).await?;
    let mut times = Vec::with_capacity(nodes.len());
    let deadline = tokio::time::Instant::now() + limit;
    while times.len() < round.expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(at)) => times.push(at.duration_since(t0).as_secs_f64() * 1000.0),
            _ => break,
        }
    }
    for w in watchers {
        w.abort();
    }
    round.delivered = times.len();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    round.p50_ms = pct(0.5);
    round.p90_ms = pct(0.9);
    round.p99_ms = pct(0.99);
    round.full_delivery_ms = (round.delivered == round.expected).then(|| pct(1.0));
    // Late payload copies (duplicates) may still be in flight: count them
    // once the deliveries are in, which is what a user would wait for too.
    let (d1, u1) = payloads(nodes).await;
    let copies = (d1 - d0) + (u1 - u0);
    round.rmr = copies as f64 / round.delivered.max(1) as f64 - 1.0;
    round.frames_per_node = (gossip_frames(nodes).await - frames0) as f64 / nodes.len() as f64;
    Ok(round)
}

/// Connected components of the graph whose edges are the active views.
fn components(ids: &[peerconnect::PeerId], views: &[Vec<peerconnect::PeerId>]) -> usize {
    let index: std::collections::HashMap<peerconnect::PeerId, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut parent: Vec<usize> = (0..ids.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for (i, view) in views.iter().enumerate() {
        for peer in view {
            if let Some(&j) = index.get(peer) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    (0..ids.len())
        .filter(|&i| find(&mut parent, i) == i)
        .count()
}

fn print_start(r: &Report) {
    println!(
        "gossip bench: {} real nodes in one process on 127.0.0.1 (TCP + TLS 1.3), seed {}{}",
        r.nodes,
        r.seed,
        if r.dht { "" } else { ", no DHT" }
    );
    println!(
        "  start (listen, dial {} earlier)   {:>8.2} s (listen {:.2} s, {} dials {:.2} s)",
        r.bootstrap, r.start_s, r.listen_s, r.sessions, r.dial_s
    );
    println!(
        "  idle session, per end            {:>8.1} KiB (RSS {:.1} MiB listening, {:.1} dialed)",
        r.idle_session_end_kib, r.rss_listening_mib, r.rss_started_mib
    );
    if r.dht {
        println!(
            "  DHT messages sent, per node      {:>8.0}",
            r.dht_sent_per_node
        );
    }
}

fn print_table(r: &Report) {
    print_start(r);
    println!(
        "  join, {}          {:>8.2} s (each: p50 {:.1} ms, max {:.1} ms)",
        if r.all_at_once {
            "all at once     "
        } else {
            "one after another"
        },
        r.join_s,
        r.join_ms_p50,
        r.join_ms_max
    );
    println!(
        "  settle (one component, still)    {:>8.2} s ({} component(s))",
        r.settle_s, r.components
    );
    println!(
        "  active view / sessions per node  {:>8.2} / {:.2}",
        r.active_view_mean, r.sessions_per_node
    );
    println!(
        "  gossip frames per node, join     {:>8.1}",
        r.frames_per_node_join
    );
    for (i, x) in r.rounds.iter().enumerate() {
        let full = x
            .full_delivery_ms
            .map(|ms| format!("{ms:.1} ms"))
            .unwrap_or_else(|| "- (not all delivered)".into());
        println!(
            "  broadcast {}: delivered {}/{}, full {full} (p50 {:.1}, p90 {:.1}, p99 {:.1}), RMR {:.3}, {:.1} frames/node",
            i + 1,
            x.delivered,
            x.expected,
            x.p50_ms,
            x.p90_ms,
            x.p99_ms,
            x.rmr,
            x.frames_per_node
        );
    }
    println!(
        "  RSS                              {:>8.1} MiB before, {:.1} started, {:.1} joined",
        r.rss_before_mib, r.rss_started_mib, r.rss_joined_mib
    );
    println!(
        "  memory per node                  {:>8.0} KiB (RSS growth to joined / nodes)",
        r.rss_per_node_kib
    );
    println!("  shutdown                         {:>8.2} s", r.shutdown_s);
    println!(
        "  driver (sum)     {}",
        serde_json::to_string(&r.driver).unwrap_or_default()
    );
    println!(
        "  membership (sum) {}",
        serde_json::to_string(&r.membership).unwrap_or_default()
    );
    println!(
        "  plumtree (sum)   {}",
        serde_json::to_string(&r.plumtree).unwrap_or_default()
    );
}

fn sum_stats(r: &mut Report, stats: &[peerconnect::net::gossip::GossipStats]) {
    // The counters are structs of u64s; add them up field by field.
    fn add(acc: &mut serde_json::Map<String, serde_json::Value>, x: &impl Serialize) {
        if let Ok(serde_json::Value::Object(b)) = serde_json::to_value(x) {
            for (k, v) in b {
                let sum =
                    acc.get(&k).and_then(|x| x.as_u64()).unwrap_or(0) + v.as_u64().unwrap_or(0);
                acc.insert(k, sum.into());
            }
        }
    }
    for s in stats {
        add(&mut r.driver, &s.driver);
        if let Some(t) = &s.topic {
            add(&mut r.membership, &t.membership);
            if let Some(p) = &t.plumtree {
                add(&mut r.plumtree, p);
            }
        }
    }
}

/// Shuts every node down at once; the seconds it took.
async fn shut_down(nodes: &[Node], json: bool) -> anyhow::Result<f64> {
    note(json, "shutting down");
    let t = Instant::now();
    for res in join_all(nodes.iter().map(|n| n.shutdown())).await {
        res?;
    }
    Ok(t.elapsed().as_secs_f64())
}
