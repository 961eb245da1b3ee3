//! `peerconnect`: the command line of PeerConnect (see DESIGN.md's command-line
//! contract). Every command is a thin adapter over the core's `Node` API.

mod bench;
mod client;
mod messages;
mod node_args;
mod print;
mod room;
mod sim;
mod transfer;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use peerconnect::control::Request;
use peerconnect::proto::messaging::Error as MessagingError;
use peerconnect::{Event, Identity, Node, Trust};

use node_args::NodeArgs;
use print::Printer;

/// Exit codes of the command-line contract.
pub(crate) mod exit {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "peerconnect",
    version,
    about = "Share files and messages with devices on your LAN, directly and encrypted"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print this node's PeerId.
    Id {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run a node until Ctrl-C or SIGTERM, printing every event.
    Up {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Discover peers for a while, list them, exit.
    Peers {
        /// Seconds to discover before listing.
        #[arg(long, default_value_t = 2.0)]
        wait: f64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List transfers (live, then recent finished ones) and the bytes this
    /// node sent and received, relayed tree parts included.
    Transfers {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Trust a peer (after checking its verification code).
    Trust {
        peer: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Block a peer: its connections are refused.
    Block {
        peer: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Unblock a peer (back to unknown trust).
    Unblock {
        peer: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Send files and folders to one or more peers; exits when done.
    Send(transfer::SendArgs),
    /// Wait for offers and accept them (asks unless --yes).
    Receive(transfer::ReceiveArgs),
    /// Find a peer by name or PeerId through the DHT (beyond multicast reach).
    Find {
        /// A device name or a PeerId.
        query: String,
        /// Seconds to wait for a first contact when no node runs on this data dir.
        #[arg(long, default_value_t = 3.0)]
        wait: f64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Send a direct message; exits once the peer has it, or says it is queued.
    Msg {
        /// PeerId, unique prefix (≥ 6 characters), device name, or HOST:PORT.
        peer: String,
        /// The message (UTF-8, at most 64 KiB).
        text: String,
        /// Seconds to wait for the peer to acknowledge before leaving the
        /// message queued.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Chat with a peer: recent history, then live messages both ways. Each
    /// line read from stdin is sent; Ctrl-D leaves.
    Chat {
        /// PeerId, unique prefix (≥ 6 characters), device name, or HOST:PORT.
        peer: String,
        /// How many earlier messages to show first.
        #[arg(long, default_value_t = 20)]
        history: usize,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run the simulator (virtual time, thousands of nodes, one seed).
    #[command(subcommand)]
    Sim(sim::SimCmd),
    /// Chat rooms: everyone on the LAN who joins the same name.
    #[command(subcommand)]
    Room(room::RoomCmd),
    /// Run a benchmark: print a table, or one JSON object with --json.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// Real nodes in one process resolving each other through the DHT.
    Dht(bench::dht::DhtArgs),
    /// Multiplexer throughput beside raw TCP and TLS.
    Mux(bench::mux::MuxArgs),
    /// File transfer: a big file and many small ones, file to file on loopback.
    Transfer(bench::transfer::TransferArgs),
    /// N real nodes in one process join one room; broadcasts must reach all.
    Gossip(bench::gossip::GossipArgs),
    /// Hostile LAN scenarios against a node on 127.0.0.1: its memory and
    /// descriptors, and an honest peer's and the owner's service meanwhile.
    Abuse(bench::abuse::AbuseArgs),
    /// Everything at once for a while: transfers, direct messages, a chatting
    /// room and browser guests among nodes on 127.0.0.1; checks nothing was
    /// lost and reports each node's memory and a message's latency.
    Load(bench::load::LoadArgs),
    /// One file to N receivers in network namespaces with shaped links: one
    /// receiver alone, N separate copies and a relay tree, in one run (root).
    Tree(bench::tree::TreeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let code = match e.downcast_ref::<peerconnect::Error>() {
                Some(
                    peerconnect::Error::PeerNotFound(_)
                    | peerconnect::Error::AmbiguousPeer(..)
                    | peerconnect::Error::Messaging(MessagingError::Blocked(_)),
                ) => exit::NOT_FOUND,
                Some(peerconnect::Error::Invalid(_) | peerconnect::Error::Messaging(_)) => {
                    exit::USAGE
                }
                _ => exit::FAILED,
            };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Id { node } => {
            node.init_logging();
            let dir = node.data_dir();
            let id = Identity::load_or_create(&dir)
                .with_context(|| format!("loading identity from {}", dir.display()))?
                .peer_id();
            if node.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "id", "id": id, "short": id.short()})
                );
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Up { node } => up(node).await,
        Cmd::Peers { wait, node } => peers(node, wait).await,
        Cmd::Transfers { node } => transfer::transfers(node).await,
        Cmd::Trust { peer, node } => set_trust(node, &peer, Trust::Trusted).await,
        Cmd::Block { peer, node } => set_trust(node, &peer, Trust::Blocked).await,
        Cmd::Unblock { peer, node } => set_trust(node, &peer, Trust::Unknown).await,
        Cmd::Find { query, wait, node } => find(node, &query, wait).await,
        Cmd::Bench { what, json } => match what {
            BenchWhat::Dht(args) => bench::dht::run(args, json)
                .await
                .map(|()| ExitCode::SUCCESS),
            BenchWhat::Mux(args) => bench::mux::run(args, json)
                .await
                .map(|()| ExitCode::SUCCESS),
            BenchWhat::Transfer(args) => bench::transfer::run(args, json)
                .await
                .map(|()| ExitCode::SUCCESS),
            BenchWhat::Gossip(args) => bench::gossip::run(args, json).await,
            BenchWhat::Abuse(args) => bench::abuse::run(args, json)
                .await
                .map(|()| ExitCode::SUCCESS),
            BenchWhat::Load(args) => bench::load::run(args, json).await,
            BenchWhat::Tree(args) => bench::tree::run(args, json)
                .await
                .map(|()| ExitCode::SUCCESS),
        },
        Cmd::Send(args) => transfer::send(args).await,
        Cmd::Receive(args) => transfer::receive(args).await,
        Cmd::Msg {
            peer,
            text,
            wait,
            node,
        } => messages::msg(node, &peer, text, wait).await,
        Cmd::Chat {
            peer,
            history,
            node,
        } => messages::chat(node, &peer, history).await,
        Cmd::Sim(cmd) => {
            tokio::task::spawn_blocking(move || sim::run(cmd)).await??;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Room(cmd) => room::run(cmd).await,
    }
}

async fn up(args: NodeArgs) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let config = args.config(false)?;
    let node = Node::start(config).await?;
    let printer = Printer::new(args.json)
        .with_web(node.web().cloned())
        .with_localsend(node.localsend().cloned());
    let mut events = node.events();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(e) => printer.event(&e),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    node.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

async fn peers(args: NodeArgs, wait: f64) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let printer = Printer::new(args.json);
    let client = client::open(&args, || args.config(true)).await?;
    if let Some(node) = client.own() {
        // A node of our own: discover for a while first, reporting problems
        // (bad --connect, ...) meanwhile.
        let mut events = node.events();
        let deadline = tokio::time::sleep(secs(wait, 3600.0));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                Some(e) = events.recv() => if let Event::Error { message } = e {
                    eprintln!("warning: {message}");
                },
                _ = &mut deadline => break,
            }
        }
    }
    let res = client::call(&client, Request::Peers, |_| {}).await;
    client.close().await?;
    let peers: Vec<peerconnect::PeerInfo> = serde_json::from_value(res?)?;
    printer.peers(&peers);
    Ok(ExitCode::SUCCESS)
}

/// `secs` seconds, within 0..`max`.
pub(crate) fn secs(secs: f64, max: f64) -> Duration {
    Duration::from_secs_f64(if secs.is_finite() {
        secs.clamp(0.0, max)
    } else {
        0.0
    })
}

async fn find(args: NodeArgs, query: &str, wait: f64) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let client = client::open(&args, || args.config(true)).await?;
    if let Some(node) = client.own() {
        // A node of our own: give discovery and --connect a moment to
        // provide a first contact.
        let mut events = node.subscribe();
        let deadline = tokio::time::sleep(secs(wait, 60.0));
        tokio::pin!(deadline);
        while node.links().connected().is_empty() {
            tokio::select! {
                e = events.recv() => if e.is_none() { break },
                _ = &mut deadline => break,
            }
        }
    }
    let req = Request::Find {
        query: query.to_string(),
    };
    let res = client::call(&client, req, |_| {}).await;
    client.close().await?;
    let records: Vec<peerconnect::proto::kademlia::PeerRecord> = serde_json::from_value(res?)?;
    if records.is_empty() {
        eprintln!("no peer named {query:?} found");
        return Ok(ExitCode::from(exit::NOT_FOUND));
    }
    for r in &records {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"event": "found", "peer": {"id": r.id, "name": r.name, "addrs": r.addrs}})
            );
        } else {
            let addrs: Vec<String> = r.addrs.iter().map(|a| a.to_string()).collect();
            println!("{}  {}  {}", r.id, r.name, addrs.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_trust(args: NodeArgs, peer: &str, trust: Trust) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let client = client::open(&args, || args.config(true)).await?;
    let req = Request::SetTrust {
        peer: peer.to_string(),
        trust,
    };
    let res = client::call(&client, req, |_| {}).await;
    client.close().await?;
    let id: peerconnect::PeerId = serde_json::from_value(res?["id"].clone())?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "trust", "id": id, "trust": trust})
        );
    } else {
        println!("{} is now {}", id.short(), trust.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
