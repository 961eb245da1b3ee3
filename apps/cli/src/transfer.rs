//! `peerconnect send` and `peerconnect receive`: adapters over the node's
//! transfer API. Both use the node `peerconnect up` runs on the same data dir
//! (through the control socket) or start their own for the duration. Humans
//! get progress bars (overall and current file, rate, ETA) per transfer;
//! `--json` prints every event as a line.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use peerconnect::control::{self, Request};
use peerconnect::net::transfer::TransferId;
use peerconnect::proto::transfer::{Direction, Selection};
use peerconnect::{Event, Node, PeerId};

use crate::exit;
use crate::node_args::NodeArgs;

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Receiver: PeerId, unique prefix (≥ 6 characters), device name, or
    /// HOST:PORT (repeatable: the transfers run in parallel).
    #[arg(long = "to", required = true)]
    to: Vec<String>,
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

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    args.node.init_logging();
    let paths = args
        .paths
        .iter()
        .map(std::path::absolute)
        .collect::<Result<Vec<_>, _>>()?;
    let mut view = View::new(args.node.json);
    let dir = args.node.data_dir();
    let req = Request::Send {
        to: args.to.clone(),
        paths: paths.clone(),
    };
    if let Some(reply) = control::call(&dir, &req, |e| view.event(&e)).await? {
        view.finish();
        return Ok(match reply {
            Ok(_) => view.exit_code(),
            Err(e) => {
                eprintln!("error: {e}");
                code_for(&e)
            }
        });
    }
    let node = Node::start(args.node.config(true)?).await?;
    let mut events = node.events();
    let wait = Duration::from_secs_f64(args.wait.clamp(0.0, 3600.0));
    let started = async {
        let mut peers = Vec::new();
        for spec in &args.to {
            peers.push(node.find_peer(spec, wait).await?);
        }
        node.send_files_to(&peers, &paths).await
    }
    .await;
    if let Ok(peers) = node.peers().await {
        view.names.extend(peers.into_iter().map(|p| (p.id, p.name)));
    }
    let ids = match started {
        Ok(ids) => ids,
        Err(e) => {
            node.shutdown().await?;
            return Err(e.into());
        }
    };
    let mut open: BTreeSet<TransferId> = ids.into_iter().collect();
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    while !open.is_empty() {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                match e.transfer_id() {
                    Some(id) if open.contains(&id) => {
                        view.event(&e);
                        if e.ends_transfer() {
                            open.remove(&id);
                        }
                    }
                    None => view.event(&e),
                    _ => {}
                }
            }
            _ = &mut stop => {
                for id in &open {
                    let _ = node.cancel_transfer(*id);
                }
                view.failed = true;
                // Let the cancels reach the peers before the node goes.
                let _ = tokio::time::timeout(Duration::from_secs(3), async {
                    while !open.is_empty() {
                        let Some(e) = events.recv().await else { break };
                        if let Some(id) = e.transfer_id().filter(|_| e.ends_transfer()) {
                            open.remove(&id);
                        }
                    }
                })
                .await;
                break;
            }
        }
    }
    view.finish();
    node.shutdown().await?;
    Ok(view.exit_code())
}

pub async fn receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    args.node.init_logging();
    let dir = args.dir.as_ref().map(std::path::absolute).transpose()?;
    let data_dir = args.node.data_dir();
    let yes = args.node.yes;
    let mut view = View::new(args.node.json);
    // A running node: stream its offers; answer them through the socket.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = Request::Receive {
        dir: dir.clone(),
        yes,
        once: args.once,
    };
    let call = {
        let data_dir = data_dir.clone();
        tokio::spawn(async move {
            control::call(&data_dir, &req, move |e| {
                let _ = tx.send(e);
            })
            .await
        })
    };
    tokio::pin!(call);
    let running;
    loop {
        tokio::select! {
            Some(e) = rx.recv() => {
                if let Event::Offer { id, auto_accepted: false, .. } = &e
                    && !yes
                {
                    let accept = prompt(&view, &e).await;
                    let answer = Request::Answer { id: *id, accept, dir: dir.clone() };
                    if let Some(Err(err)) = control::call(&data_dir, &answer, |_| {}).await? {
                        eprintln!("error: {err}");
                    }
                }
                view.event(&e);
            }
            res = &mut call => {
                running = Some(res??);
                break;
            }
        }
    }
    while let Ok(e) = rx.try_recv() {
        view.event(&e);
    }
    match running.flatten() {
        Some(Ok(_)) => {
            view.finish();
            return Ok(view.exit_code());
        }
        Some(Err(e)) => {
            view.finish();
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::FAILED));
        }
        None => {}
    }
    // No node running: our own, listening where others can reach it.
    let mut config = args.node.config(false)?;
    if let Some(d) = &dir {
        config.downloads = d.clone();
    }
    let downloads = config.downloads.clone();
    let node = Node::start(config).await?;
    let mut events = node.events();
    if args.node.json {
        // the `listening` line comes first on the event stream
    } else {
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
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let mut mine = BTreeSet::new();
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                match &e {
                    Event::Offer { id, auto_accepted, .. } => {
                        let accepted = *auto_accepted || prompt(&view, &e).await;
                        if !auto_accepted {
                            let res = if accepted {
                                node.accept_offer(*id, Selection::All)
                            } else {
                                node.reject_offer(*id)
                            };
                            if let Err(err) = res {
                                eprintln!("error: {err}");
                            }
                        }
                        if accepted {
                            mine.insert(*id);
                        }
                        view.event(&e);
                    }
                    Event::Listening { .. } | Event::Error { .. } => view.event(&e),
                    e => {
                        let Some(id) = e.transfer_id().filter(|id| mine.contains(id)) else {
                            continue;
                        };
                        view.event(e);
                        if e.ends_transfer() && matches!(e, Event::TransferRejected { .. }) {
                            mine.remove(&id);
                        } else if e.ends_transfer() && args.once {
                            break;
                        }
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    view.finish();
    node.shutdown().await?;
    Ok(view.exit_code())
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

/// The exit code for an error message from a running node.
fn code_for(error: &str) -> ExitCode {
    if error.starts_with("peer not found") || error.contains("matches several peers") {
        ExitCode::from(exit::NOT_FOUND)
    } else if error.starts_with("invalid argument") {
        ExitCode::from(exit::USAGE)
    } else {
        ExitCode::from(exit::FAILED)
    }
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
