//! `peerconnect sim …`: the discrete-event simulator over the production
//! protocol state machines (virtual time, one seed replays a run exactly).

use std::time::Instant;

use clap::{Args, Subcommand};
use peerconnect::proto::gossip::Strategy;
use peerconnect::proto::sim::dht as dht_sim;
use peerconnect::proto::sim::gossip as gossip_sim;
use peerconnect::proto::sim::tree as tree_sim;

#[derive(Subcommand, Debug)]
pub enum SimCmd {
    /// Gossip: one topic over HyParView; joins one after another or all at
    /// once, then a crash of a fraction of nodes, or a partition that heals.
    Gossip(GossipArgs),
    /// Kademlia: N nodes join, a fraction crashes, lookups are checked against
    /// the true k closest.
    Dht(DhtArgs),
    /// Relay tree: one file to N receivers through verified relays, against
    /// the slowest receiver alone and N separate copies.
    Tree(TreeArgs),
}

#[derive(Args, Debug)]
pub struct TreeArgs {
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    /// File size in MiB.
    #[arg(long, default_value_t = 1024)]
    file_mib: u64,
    /// Group size in KiB (default: chosen from the file size).
    #[arg(long)]
    group_kib: Option<u64>,
    /// uniform (every link at --rate-mbit) or mixed.
    #[arg(long, default_value = "uniform")]
    links: tree_sim::Links,
    /// The sender's link and every uniform link, Mbit/s.
    #[arg(long, default_value_t = 200)]
    rate_mbit: u64,
    /// Relays killed mid-transfer (faults run).
    #[arg(long, default_value_t = 1)]
    kill: usize,
    /// Relays that corrupt every group they forward (faults run).
    #[arg(long, default_value_t = 1)]
    corrupt: usize,
    /// Relays 8 times slower than measured (faults run).
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Do not tell the sender the receivers' link rates.
    #[arg(long)]
    unmeasured: bool,
    #[arg(long, default_value_t = 4)]
    stripes: u8,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Measure verified streaming's hashing per group size (wall time on
    /// this machine) instead of simulating.
    #[arg(long)]
    hashing: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct DhtArgs {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Fraction of nodes that crash without warning before the lookups.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// FIND_NODE lookups.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// FIND_VALUE lookups of peer records.
    #[arg(long, default_value_t = 200)]
    value_lookups: usize,
    /// Probability that any one message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct GossipArgs {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// plumtree, rumor, flood or lan
    #[arg(long, default_value = "plumtree")]
    strategy: Strategy,
    /// staggered (one join per ms through earlier nodes), all-at-once (every
    /// node at t = 0 through any 3 others) or partition-heal (staggered, then
    /// the network cut in two random halves for --cut-secs, then healed).
    #[arg(long, default_value = "staggered")]
    workload: gossip_sim::Workload,
    /// Length of the cut of partition-heal, in virtual seconds.
    #[arg(long, default_value_t = 60)]
    cut_secs: u64,
    /// All at once: each node joins through this many random others; 1 means
    /// each node dialed one random earlier node (a random tree) and joins
    /// through its tree neighbours.
    #[arg(long, default_value_t = 3)]
    contacts: usize,
    /// Fraction of nodes that crash at once after the steady phase
    /// (staggered and all-at-once).
    #[arg(long, default_value_t = 0.5)]
    crash: f64,
    /// Broadcasts measured per phase.
    #[arg(long, default_value_t = 10)]
    broadcasts: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn print_report<R: serde::Serialize>(
    report: &R,
    table: String,
    json: bool,
    secs: f64,
    seed: u64,
) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(report)?;
        v["wall_seconds"] = serde_json::json!(secs);
        println!("{v}");
    } else {
        print!("{table}");
        println!("wall time {secs:.1} s (replay: --seed {seed})");
    }
    Ok(())
}

pub fn run(cmd: SimCmd) -> anyhow::Result<()> {
    match cmd {
        SimCmd::Tree(a) if a.hashing => {
            let buf: Vec<u8> = (0..a.file_mib << 20)
                .map(|i| (i * 31 % 251) as u8)
                .collect();
            let groups: Vec<u64> = [16, 64, 256, 1024, 4096].map(|k| k << 10).to_vec();
            let started = Instant::now();
            let rows = tree_sim::hashing(&buf, &groups, || started.elapsed());
            if a.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                print!("{}", tree_sim::hashing_table(&rows));
            }
            Ok(())
        }
        SimCmd::Tree(a) => {
            anyhow::ensure!(a.receivers >= 1, "--receivers must be at least 1");
            anyhow::ensure!(a.rate_mbit >= 1, "--rate-mbit must be at least 1");
            let mut cfg = tree_sim::SimConfig::new(a.receivers, a.seed);
            cfg.file_bytes = a.file_mib << 20;
            cfg.group = a.group_kib.map(|k| k << 10);
            cfg.links = a.links;
            cfg.rate = a.rate_mbit * 1_000_000 / 8;
            cfg.kill = a.kill;
            cfg.corrupt = a.corrupt;
            cfg.slow = a.slow;
            cfg.measured = !a.unmeasured;
            cfg.tree.stripes = a.stripes;
            let started = Instant::now();
            let report = tree_sim::run(&cfg);
            print_report(
                &report,
                report.table(),
                a.json,
                started.elapsed().as_secs_f64(),
                a.seed,
            )
        }
        SimCmd::Dht(a) => {
            anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
            anyhow::ensure!((0.0..1.0).contains(&a.churn), "--churn must be in [0, 1)");
            anyhow::ensure!((0.0..=1.0).contains(&a.loss), "--loss must be in [0, 1]");
            let cfg = dht_sim::SimConfig {
                nodes: a.nodes,
                churn: a.churn,
                lookups: a.lookups,
                value_lookups: a.value_lookups,
                seed: a.seed,
                loss: a.loss,
                ..dht_sim::SimConfig::default()
            };
            let started = Instant::now();
            let report = dht_sim::run(&cfg);
            print_report(
                &report,
                report.table(),
                a.json,
                started.elapsed().as_secs_f64(),
                a.seed,
            )
        }
        SimCmd::Gossip(a) => {
            anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
            anyhow::ensure!((0.0..1.0).contains(&a.crash), "--crash must be in [0, 1)");
            let mut cfg = gossip_sim::SimConfig::new(a.nodes, a.strategy, a.seed);
            cfg.workload = match a.workload {
                gossip_sim::Workload::PartitionHeal { at, .. } => {
                    gossip_sim::Workload::PartitionHeal {
                        at,
                        duration: std::time::Duration::from_secs(a.cut_secs),
                    }
                }
                w => w,
            };
            cfg.crash = a.crash;
            cfg.contacts = a.contacts.max(1);
            cfg.broadcasts = a.broadcasts.max(1);
            let started = Instant::now();
            let report = gossip_sim::run(&cfg);
            print_report(
                &report,
                report.table(),
                a.json,
                started.elapsed().as_secs_f64(),
                a.seed,
            )
        }
    }
}
