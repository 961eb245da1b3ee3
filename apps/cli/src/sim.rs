//! `peerconnect sim …`: the discrete-event simulator over the production
//! protocol state machines (virtual time, one seed replays a run exactly).

use std::time::Instant;

use clap::{Args, Subcommand};
use peerconnect::proto::gossip::Strategy;
use peerconnect::proto::sim::gossip as gossip_sim;

#[derive(Subcommand, Debug)]
pub enum SimCmd {
    /// Gossip: one topic over HyParView, a crash of a fraction of nodes.
    Gossip(GossipArgs),
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

pub fn run(cmd: SimCmd) -> anyhow::Result<()> {
    match cmd {
        SimCmd::Gossip(a) => {
            anyhow::ensure!(a.nodes >= 2, "--nodes must be at least 2");
            anyhow::ensure!((0.0..1.0).contains(&a.crash), "--crash must be in [0, 1)");
            let mut cfg = gossip_sim::SimConfig::new(a.nodes, a.strategy, a.seed);
            cfg.crash = a.crash;
            cfg.broadcasts = a.broadcasts.max(1);
            let started = Instant::now();
            let report = gossip_sim::run(&cfg);
            let secs = started.elapsed().as_secs_f64();
            if a.json {
                let mut v = serde_json::to_value(&report)?;
                v["wall_seconds"] = serde_json::json!(secs);
                println!("{v}");
            } else {
                print!("{}", report.table());
                println!("wall time {secs:.1} s (replay: --seed {})", a.seed);
            }
            Ok(())
        }
    }
}
