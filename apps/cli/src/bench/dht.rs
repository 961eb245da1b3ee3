//! `peerconnect bench dht`: real nodes (real UDP, real TLS sessions) in one
//! process on 127.0.0.1, all bootstrapped from the first one; every node then
//! resolves every other node's peer record through the DHT.

use std::time::{Duration, Instant};

use clap::Args;
use peerconnect::{Config, Node};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct DhtArgs {
    /// Real nodes to start.
    #[arg(long, default_value_t = 30)]
    nodes: usize,
    /// Lookups per node (random other nodes; 0 = every other node).
    #[arg(long, default_value_t = 0)]
    lookups: usize,
}

#[derive(Serialize, Debug)]
struct Report {
    nodes: usize,
    lookups: usize,
    found: usize,
    success: f64,
    start_seconds: f64,
    join_seconds: f64,
    lookup_seconds: f64,
    lookup_ms_median: f64,
    lookup_ms_p99: f64,
}

pub async fn run(args: DhtArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!((2..=500).contains(&args.nodes), "--nodes must be 2..=500");
    let dir = tempfile::tempdir()?;
    let t0 = Instant::now();
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let mut c = Config::local(dir.path().join(format!("n{i}")));
        c.name = format!("bench-{i}");
        if let Some(first) = nodes.first() {
            let first: &Node = first;
            c.connect = vec![first.listen_addrs()[0].to_string()];
        }
        nodes.push(Node::start(c).await?);
    }
    let start_seconds = t0.elapsed().as_secs_f64();
    // Joined: every node's own record is findable from node 0's view.
    let t1 = Instant::now();
    let deadline = t1 + Duration::from_secs(60);
    for n in &nodes[1..] {
        loop {
            let dht = nodes[0].dht().expect("dht on");
            if dht.find_peer(n.id()).await.ok().flatten().is_some() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "nodes did not join within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let join_seconds = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let mut lat = Vec::new();
    let mut found = 0;
    let ids: Vec<_> = nodes.iter().map(|n| n.id()).collect();
    for (i, n) in nodes.iter().enumerate() {
        let dht = n.dht().expect("dht on");
        let targets: Vec<_> = if args.lookups == 0 {
            ids.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, id)| *id)
                .collect()
        } else {
            (0..args.lookups)
                .map(|k| ids[(i + 1 + k * 7) % ids.len()])
                .filter(|id| *id != n.id())
                .collect()
        };
        for t in targets {
            let s = Instant::now();
            if let Ok(Some(r)) = dht.find_peer(t).await
                && r.id == t
            {
                found += 1;
            }
            lat.push(s.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let lookup_seconds = t2.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((p / 100.0) * (lat.len() as f64 - 1.0)).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let report = Report {
        nodes: args.nodes,
        lookups: lat.len(),
        found,
        success: found as f64 / lat.len().max(1) as f64,
        start_seconds,
        join_seconds,
        lookup_seconds,
        lookup_ms_median: pct(50.0),
        lookup_ms_p99: pct(99.0),
    };
    for n in nodes {
        n.shutdown().await?;
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "DHT with {} real nodes on 127.0.0.1 (UDP, one process)",
            report.nodes
        );
        println!("{:<28} {:.2} s", "nodes started in", report.start_seconds);
        println!(
            "{:<28} {:.2} s",
            "all records findable after", report.join_seconds
        );
        println!(
            "{:<28} {}/{} ({:.2} %)",
            "lookups that found the peer",
            report.found,
            report.lookups,
            report.success * 100.0
        );
        println!(
            "{:<28} median {:.2} ms, p99 {:.2} ms ({:.2} s in all, one at a time)",
            "lookup latency", report.lookup_ms_median, report.lookup_ms_p99, report.lookup_seconds
        );
    }
    Ok(())
}
