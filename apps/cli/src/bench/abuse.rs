//! `peerconnect bench abuse`: hostile scenarios from one LAN device against a
//! node of this binary on 127.0.0.1 (a child process, so its memory and
//! descriptors are its own), while an honest peer keeps messaging it and an
//! owner keeps loading its web page. Prints, per scenario, the node's RSS and
//! descriptors before, at the peak and after the attacker left, and what the
//! honest peer and the owner saw during the attack.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use peerconnect::net::transfer::raw::{RawOffer, long_names};
use peerconnect::proto::transfer::{Entry, ToSender};
use peerconnect::{Config, Node};
use serde::Serialize;

use super::child::ChildNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct AbuseArgs {
    /// Seconds each attack lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Run only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

const SCENARIOS: &[(&str, &str)] = &[
    (
        "huge-offers",
        "one fresh key, 3 offers of 150,000 entries and 3 of 15,000 with ~1 kB names, again as refused",
    ),
    (
        "offer-flood",
        "20 fresh keys, each holding 10 small offers open",
    ),
    (
        "idle-web",
        "500 TCP connections from 16 addresses to the web port that never send a byte",
    ),
    (
        "half-open-peers",
        "300 TCP connections from 16 addresses to the peer port that never start TLS",
    ),
];

#[derive(Serialize, Debug, Default)]
struct Row {
    scenario: String,
    rss_mb_before: f64,
    rss_mb_peak: f64,
    rss_mb_after: f64,
    fds_before: u64,
    fds_peak: u64,
    fds_after: u64,
    /// Honest peer's messages delivered during the attack / sent.
    messages_ok: u32,
    messages: u32,
    message_ms_max: f64,
    /// What the node turned away: offers refused, keys without a session,
    /// connections it closed (by the end of the attack).
    refused: u32,
    /// Owner's page loads answered during the attack / tried.
    web_ok: u32,
    web: u32,
    web_ms_max: f64,
}

/// One GET of the web UI's page: its time, if it answered within 2 s.
async fn load_page(web: SocketAddr) -> Option<Duration> {
    let t = Instant::now();
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(web).await.ok()?;
        let req = format!("GET / HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        head.starts_with(b"HTTP/1.1 ").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
        .map(|()| t.elapsed())
}

/// Starts a node of our own, connected to the victim.
async fn peer(dir: &std::path::Path, name: &str, victim: &ChildNode) -> anyhow::Result<Node> {
    let mut c = Config::local(dir.join(name));
    c.name = name.into();
    c.web = None;
    c.dht = false;
    let n = Node::start(c).await?;
    n.connect(victim.addr, Some(victim.id)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !n.links().is_connected(&victim.id) {
        anyhow::ensure!(Instant::now() < deadline, "no session to the victim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(n)
}

/// What an attack holds open until it is dropped.
enum Attack {
    /// Its nodes, the task driving them and what the node refused so far.
    Nodes(
        Vec<Node>,
        tokio::task::JoinHandle<()>,
        std::sync::Arc<std::sync::atomic::AtomicU32>,
    ),
    Sockets(Vec<tokio::net::TcpStream>),
}

/// Whether the node closed `s` (it reads as ended, or fails).
fn closed(s: &tokio::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    !matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn attack(name: &str, dir: &std::path::Path, victim: &ChildNode) -> anyhow::Result<Attack> {
    use std::sync::atomic::Ordering::Relaxed;
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    Ok(match name {
        "huge-offers" => {
            let a = peer(dir, "attacker", victim).await?;
            let (node, to, count) = (a.clone(), victim.id, refused.clone());
            let task = tokio::spawn(async move {
                let mut id = 1u64;
                loop {
                    let mut open = Vec::new();
                    for n in [150_000, 150_000, 150_000, 15_000, 15_000, 15_000] {
                        id += 1;
                        if let Ok(o) = RawOffer::open(node.links(), to, id, n, long_names(n)).await
                        {
                            open.push(o);
                        }
                    }
                    for o in &mut open {
                        if let Ok(ToSender::Reject { .. }) = o.answer(Duration::from_secs(30)).await
                        {
                            count.fetch_add(1, Relaxed);
                        }
                    }
                }
            });
            Attack::Nodes(vec![a], task, refused)
        }
        "offer-flood" => {
            let mut nodes = Vec::new();
            let mut offers = Vec::new();
            for k in 0..20 {
                // Past the node's sessions per address, a key gets none.
                let Ok(a) = peer(dir, &format!("flood-{k}"), victim).await else {
                    refused.fetch_add(1, Relaxed);
                    continue;
                };
                for i in 0..10u64 {
                    let files = (0..3).map(move |f| Entry::file(format!("f{i}-{f}.bin"), 1));
                    if let Ok(o) = RawOffer::open(a.links(), victim.id, 1_000 + i, 3, files).await {
                        offers.push(o);
                    }
                }
                nodes.push(a);
            }
            let count = refused.clone();
            let task = tokio::spawn(async move {
                for o in &mut offers {
                    if let Ok(ToSender::Reject { .. }) = o.answer(Duration::from_secs(1)).await {
                        count.fetch_add(1, Relaxed);
                    }
                }
                std::future::pending::<()>().await;
            });
            Attack::Nodes(nodes, task, refused)
        }
        "idle-web" | "half-open-peers" => {
            let (to, n) = if name == "idle-web" {
                (victim.web, 500)
            } else {
                (victim.addr, 300)
            };
            // From 16 addresses (127.0.0.2-17), as devices on the LAN; the
            // owner's page loads come from 127.0.0.1.
            let mut socks = Vec::new();
            for i in 0..n {
                let from = SocketAddr::from(([127, 0, 0, 2 + (i % 16) as u8], 0));
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(from)?;
                match s.connect(to).await {
                    Ok(s) => socks.push(s),
                    Err(_) => continue, // refused or our own descriptor limit
                }
            }
            Attack::Sockets(socks)
        }
        other => anyhow::bail!("no scenario {other}"),
    })
}

async fn run_one(
    name: &str,
    seconds: u64,
    dir: &std::path::Path,
    honest: &Node,
    victim: &ChildNode,
) -> anyhow::Result<Row> {
    let (rss_mb_before, fds_before) = victim.sample();
    let mut row = Row {
        scenario: name.into(),
        rss_mb_before,
        fds_before,
        ..Row::default()
    };
    let held = attack(name, &dir.join(name), victim).await?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut rss_peak = rss_mb_before;
    let mut fds_peak = fds_before;
    while Instant::now() < end {
        let t = Instant::now();
        row.messages += 1;
        let sent = honest
            .send_message_and_wait(victim.id, "are you there?", None, Duration::from_secs(5))
            .await;
        if let Ok((_, s)) = sent
            && s >= peerconnect::proto::messaging::Status::Delivered
        {
            row.messages_ok += 1;
            row.message_ms_max = row.message_ms_max.max(t.elapsed().as_secs_f64() * 1e3);
        }
        row.web += 1;
        if let Some(d) = load_page(victim.web).await {
            row.web_ok += 1;
            row.web_ms_max = row.web_ms_max.max(d.as_secs_f64() * 1e3);
        }
        let (rss, fds) = victim.sample();
        rss_peak = rss_peak.max(rss);
        fds_peak = fds_peak.max(fds);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match held {
        Attack::Nodes(nodes, task, refused) => {
            row.refused = refused.load(std::sync::atomic::Ordering::Relaxed);
            task.abort();
            for n in nodes {
                let _ = n.shutdown().await;
            }
        }
        Attack::Sockets(s) => {
            row.refused = s.iter().filter(|s| closed(s)).count() as u32;
            drop(s);
        }
    }
    // What the node gives back once the attacker left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, fds) = victim.sample();
    row.rss_mb_peak = rss_peak.max(rss);
    row.fds_peak = fds_peak.max(fds);
    row.rss_mb_after = rss;
    row.fds_after = fds;
    Ok(row)
}

pub async fn run(args: AbuseArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=600).contains(&args.seconds),
        "--seconds must be 1..=600"
    );
    let dir = tempfile::tempdir()?;
    let victim = ChildNode::start(&dir.path().join("victim"), "victim", &[])?;
    let honest = peer(dir.path(), "honest", &victim).await?;
    let mut rows = Vec::new();
    for (name, what) in SCENARIOS {
        if args.only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        if !json {
            eprintln!("{name}: {what} ({} s)", args.seconds);
        }
        rows.push(run_one(name, args.seconds, dir.path(), &honest, &victim).await?);
    }
    honest.shutdown().await?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:>22} {:>16} {:>8} {:>18} {:>16}",
        "scenario",
        "RSS MB before/peak/after",
        "fds b/peak/a",
        "refused",
        "honest msgs (max)",
        "owner page (max)"
    );
    for r in &rows {
        println!(
            "{:<16} {:>8.0} {:>6.0} {:>6.0} {:>6} {:>4} {:>4} {:>8} {:>6}/{:<3} {:>6.0}ms {:>5}/{:<3} {:>5.0}ms",
            r.scenario,
            r.rss_mb_before,
            r.rss_mb_peak,
            r.rss_mb_after,
            r.fds_before,
            r.fds_peak,
            r.fds_after,
            r.refused,
            r.messages_ok,
            r.messages,
            r.message_ms_max,
            r.web_ok,
            r.web,
            r.web_ms_max
        );
    }
    Ok(())
}
