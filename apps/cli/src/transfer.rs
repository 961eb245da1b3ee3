//! `peerconnect send` and `peerconnect receive`: adapters over the node's
//! transfer API. Both use the node `peerconnect up` runs on the same data dir
//! (through the control socket) or start their own for the duration. Humans
//! get progress bars (overall and current file, rate, ETA) per transfer;
//! `--json` prints every event as a line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use peerconnect::control::{Client, Request};
use peerconnect::net::transfer::TransferId;
use peerconnect::proto::transfer::Direction;
use peerconnect::{Event, PeerId};

use crate::client;
use crate::exit;
use crate::node_args::NodeArgs;

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Receiver: PeerId, unique prefix (≥ 6 characters), device name, or
    /// HOST:PORT (repeatable: the transfers run in parallel).
    #[arg(long = "to", required_unless_present = "room")]
    to: Vec<String>,
    /// Send one file down a relay tree: each receiver forwards verified
    /// parts to a few others, so the sender uploads it about once.
    #[arg(long, conflicts_with = "room")]
    tree: bool,
    /// Send to the members of this room (one file to 3 or more goes down a
    /// relay tree).
    #[arg(long, conflicts_with = "to")]
    room: Option<String>,
    /// The PIN a LocalSend receiver asks for (its owner set one).
    #[arg(long)]
    pin: Option<String>,
    /// Files and folders to send.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Seconds to wait for a peer named by id or name to be discovered.
    #[arg(long, default_value_t = 5.0)]
    wait: f64,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// Folder for received files (default: the node's download folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Exit after the first accepted transfer ends.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    node: NodeArgs,
}

/// `peerconnect transfers`: the node's transfers and counters, as one JSON
/// object (`{"transfers":[…],"stats":{…}}`) with `--json`, else a table.
pub async fn transfers(args: NodeArgs) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let client = client::open(&args, || args.config(true)).await?;
    let res = client::call(&client, Request::Transfers, |_| {}).await;
    client.close().await?;
    let v = res?;
    if args.json {
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let list: Vec<peerconnect::net::transfer::TransferInfo> =
        serde_json::from_value(v["transfers"].clone())?;
    let stats: peerconnect::net::transfer::TransferStats =
        serde_json::from_value(v["stats"].clone())?;
    println!(
        "{:<18} {:<10} {:<8} {:<12} {:>6} {:>14} {:>14}",
        "ID", "PEER", "DIR", "STATE", "FILES", "DONE", "TOTAL"
    );
    for t in &list {
        println!(
            "{:<18} {:<10} {:<8} {:<12} {:>6} {:>14} {:>14}",
            t.id.to_string(),
            t.peer.short(),
            t.direction.as_str(),
            t.state.as_str(),
            t.files,
            t.done_bytes,
            t.total_bytes
        );
    }
    println!(
        "bytes sent {} (relayed tree parts included), received {}",
        stats.bytes_sent, stats.bytes_received
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    args.node.init_logging();
    let paths = args
        .paths
        .iter()
        .map(std::path::absolute)
        .collect::<Result<Vec<_>, _>>()?;
    let mut view = View::new(args.node.json);
    let client = client::open(&args.node, || args.node.config(true)).await?;
    if let Ok(v) = client::call(&client, Request::Peers, |_| {}).await
        && let Ok(peers) = serde_json::from_value::<Vec<peerconnect::PeerInfo>>(v)
    {
        view.names.extend(peers.into_iter().map(|p| (p.id, p.name)));
    }
    let req = Request::Send {
        to: args.to.clone(),
        paths,
        wait_secs: Some(args.wait),
        tree: args.tree,
        room: args.room.clone(),
        pin: args.pin.clone(),
    };
    let res = follow(&client, req, &mut view, |_| None).await;
    client.close().await?;
    view.finish();
    res?;
    Ok(view.exit_code())
}

pub async fn receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    args.node.init_logging();
    let dir = args.dir.as_ref().map(std::path::absolute).transpose()?;
    let yes = args.node.yes;
    let mut view = View::new(args.node.json);
    // No node running: our own, listening where others can reach it.
    let config = args.node.config(false).map(|mut c| {
        if let Some(d) = &dir {
            c.downloads = d.clone();
        }
        c
    });
    let downloads = config.as_ref().map(|c| c.downloads.clone()).ok();
    let client = client::open(&args.node, || config).await?;
    if let (Some(node), Some(downloads)) = (client.own(), downloads)
        && !args.node.json
    {
        // (with --json, the `listening` line comes first on the event stream)
        println!(
            "receiving into {} as {} ({})",
            downloads.display(),
            node.name(),
            node.id().short()
        );
        for a in node.listen_addrs() {
            println!("  send to --to {a}");
        }
    }
    let req = Request::Receive {
        dir: dir.clone(),
        yes,
        once: args.once,
    };
    let res = follow(&client, req, &mut view, |e| match e {
        Event::Offer {
            id,
            auto_accepted: false,
            ..
        } if !yes => Some((*id, dir.clone())),
        _ => None,
    })
    .await;
    client.close().await?;
    view.finish();
    res?;
    Ok(view.exit_code())
}

/// Runs a `send` or `receive` request until it ends (or Ctrl-C, which
/// cancels what is being sent), showing its events. `ask` picks the offers to
/// put to the user (and the folder to accept them into); each answer goes
/// back as an `answer` request.
async fn follow(
    client: &Client,
    req: Request,
    view: &mut View,
    ask: impl Fn(&Event) -> Option<(TransferId, Option<PathBuf>)>,
) -> anyhow::Result<()> {
    let sending = matches!(req, Request::Send { .. });
    let mut call = client.start(req).await?;
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            e = client::next_event(&mut call) => {
                let Some(e) = e.inspect_err(|_| view.finish())? else {
                    return Ok(());
                };
                if let Some((id, dir)) = ask(&e) {
                    let accept = prompt(view, &e).await;
                    let answer = Request::Answer { id, accept, dir };
                    if let Err(err) = client.call(answer, |_| {}).await? {
                        eprintln!("error: {err}");
                    }
                }
                view.event(&e);
            }
            _ = &mut stop => {
                // Ends the request: outgoing transfers are cancelled.
                view.failed |= sending;
                let _ = call.finish().await;
                return Ok(());
            }
        }
    }
}

/// Asks on the terminal whether to take an offer.
async fn prompt(view: &View, offer: &Event) -> bool {
    let Event::Offer {
        name,
        verification_code,
        files,
        total_bytes,
        entries,
        ..
    } = offer
    else {
        return false;
    };
    let mut text = String::new();
    for e in entries.iter().filter(|e| !e.path.contains('/')).take(10) {
        text.push_str(&format!("  {}{}\n", e.path, if e.dir { "/" } else { "" }));
    }
    text.push_str(&format!(
        "accept {files} files ({}) from {name} (code {verification_code})? [y/N] ",
        human_bytes(*total_bytes)
    ));
    view.multi.suspend(|| eprint!("{text}"));
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await;
    matches!(line, Ok(Ok(s)) if matches!(s.trim().to_lowercase().as_str(), "y" | "yes"))
}

struct Bars {
    overall: ProgressBar,
    file: ProgressBar,
}

/// Turns transfer events into progress bars and summary lines (or JSON lines).
struct View {
    json: bool,
    multi: MultiProgress,
    bars: HashMap<TransferId, Bars>,
    names: HashMap<PeerId, String>,
    /// When each transfer was first heard of.
    seen: HashMap<TransferId, Instant>,
    failed: bool,
    rejected: bool,
}

impl View {
    fn new(json: bool) -> Self {
        Self {
            json,
            multi: MultiProgress::new(),
            bars: HashMap::new(),
            names: HashMap::new(),
            seen: HashMap::new(),
            failed: false,
            rejected: false,
        }
    }

    fn peer(&self, id: &PeerId) -> String {
        self.names.get(id).cloned().unwrap_or_else(|| id.short())
    }

    fn bars(&mut self, id: TransferId, peer: PeerId, direction: Direction) -> &Bars {
        let label = match direction {
            Direction::Send => format!("→ {}", self.peer(&peer)),
            Direction::Receive => format!("← {}", self.peer(&peer)),
        };
        let multi = &self.multi;
        self.bars.entry(id).or_insert_with(|| {
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            overall.set_prefix(label);
            let file = multi.add(ProgressBar::new(0));
            file.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {wide_msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            file.set_prefix("file");
            Bars { overall, file }
        })
    }

    fn println(&self, line: String) {
        if self.multi.is_hidden() || self.multi.println(&line).is_err() {
            println!("{line}");
        }
    }

    fn event(&mut self, e: &Event) {
        if let Some(id) = e.transfer_id() {
            self.seen.entry(id).or_insert_with(Instant::now);
        }
        match e {
            Event::TransferFailed { .. } | Event::TransferCancelled { .. } => self.failed = true,
            Event::TransferComplete { failed, .. } if *failed > 0 => self.failed = true,
            Event::TransferRejected { .. } => self.rejected = true,
            Event::Offer { peer, name, .. } => {
                self.names.insert(*peer, name.clone());
            }
            _ => {}
        }
        if self.json {
            println!("{}", serde_json::to_string(e).expect("events serialize"));
            return;
        }
        match e {
            Event::Progress {
                id,
                peer,
                direction,
                done_bytes,
                total_bytes,
                file,
                file_done,
                file_bytes,
                paused,
                ..
            } => {
                let b = self.bars(*id, *peer, *direction);
                b.overall.set_length(*total_bytes);
                b.overall.set_position(*done_bytes);
                b.overall
                    .set_message(if *paused { "paused" } else { "" }.to_string());
                b.file.set_length(*file_bytes);
                b.file.set_position(*file_done);
                b.file.set_message(file.clone().unwrap_or_default());
            }
            Event::TransferFailed {
                path: Some(p),
                error,
                ..
            } => self.println(format!("failed: {p}: {error}")),
            Event::TransferComplete {
                id,
                peer,
                direction,
                files,
                failed,
                bytes,
                transferred,
            } => {
                if let Some(b) = self.bars.remove(id) {
                    b.overall.finish_and_clear();
                    b.file.finish_and_clear();
                }
                let took = self.seen.get(id).map(|t| t.elapsed()).unwrap_or_default();
                let (verb, dir) = match direction {
                    Direction::Send => ("sent", "to"),
                    Direction::Receive => ("received", "from"),
                };
                let secs = took.as_secs_f64().max(1e-3);
                let resumed = if transferred < bytes {
                    format!(", {} crossed the network", human_bytes(*transferred))
                } else {
                    String::new()
                };
                let failures = if *failed > 0 {
                    format!(", {failed} failed")
                } else {
                    String::new()
                };
                self.println(format!(
                    "{verb} {} files ({}) {dir} {} in {:.1} s ({}/s){resumed}{failures}",
                    files - failed,
                    human_bytes(*bytes),
                    self.peer(peer),
                    secs,
                    human_bytes((*transferred as f64 / secs) as u64),
                ));
            }
            Event::TransferFailed {
                id,
                path: None,
                error,
                ..
            } => {
                self.drop_bars(id);
                self.println(format!("error: transfer {id} failed: {error}"));
            }
            Event::TransferCancelled { id, by_peer, .. } => {
                self.drop_bars(id);
                self.println(format!(
                    "transfer {id} cancelled{}",
                    if *by_peer { " by the peer" } else { "" }
                ));
            }
            Event::TransferRejected { id, reason, .. } => {
                self.drop_bars(id);
                self.println(format!("transfer {id} refused: {reason}"));
            }
            Event::Offer {
                id,
                auto_accepted: true,
                files,
                total_bytes,
                name,
                ..
            } => self.println(format!(
                "accepting {files} files ({}) from {name} ({id})",
                human_bytes(*total_bytes)
            )),
            Event::Error { message } => {
                self.multi.suspend(|| eprintln!("warning: {message}"));
            }
            _ => {}
        }
    }

    fn drop_bars(&mut self, id: &TransferId) {
        if let Some(b) = self.bars.remove(id) {
            b.overall.abandon();
            b.file.finish_and_clear();
        }
    }

    fn finish(&mut self) {
        for (_, b) in self.bars.drain() {
            b.overall.finish_and_clear();
            b.file.finish_and_clear();
        }
    }

    fn exit_code(&self) -> ExitCode {
        if self.rejected {
            ExitCode::from(exit::NOT_FOUND)
        } else if self.failed {
            ExitCode::from(exit::FAILED)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// `1.5 GB`, `12.0 MB`, `512 B` (powers of 1000).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
