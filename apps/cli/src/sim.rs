//! `peerconnect sim …`: the discrete-event simulator over the production
//! protocol state machines (virtual time, one seed replays a run exactly).

use std::time::Instant;

use clap::{Args, Subcommand};
use peerconnect::proto::gossip::Strategy;
use peerconnect::proto::sim::dht as dht_sim;
use peerconnect::proto::sim::gossip as gossip_sim;

#[derive(Subcommand, Debug)]
pub enum SimCmd {
    /// Gossip: one topic over HyParView, a crash of a fraction of nodes.
    Gossip(GossipArgs),
    /// Kademlia: N nodes join, a fraction crashes, lookups are checked against
    /// the true k closest.
    Dht(DhtArgs),
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
    /// Fraction of nodes that crash at once after the steady phase.
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
            cfg.crash = a.crash;
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
