//! `peerconnect msg` and `peerconnect chat`: adapters over the core's direct
//! messages, through the node running on the data dir (control socket) or a
//! node of their own for the duration.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use peerconnect::control::{self, Request};
use peerconnect::proto::messaging::{MessageId, MessageInfo, Status, check_text};
use peerconnect::{Event, Node, PeerId};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::node_args::NodeArgs;

/// Where the commands get their node from.
enum Backend {
    /// `peerconnect up` runs on the data dir: talk to it.
    Running(PathBuf),
    /// A node of our own, stopped when the command ends.
    Own(Node),
}

/// A resolved peer.
struct Peer {
    id: PeerId,
    name: String,
}

impl Peer {
    fn label(&self) -> String {
        if self.name.is_empty() {
            self.id.short()
        } else {
            format!("{} ({})", self.name, self.id.short())
        }
    }
}

impl Backend {
    /// Uses the running node if there is one, else starts our own.
    async fn open(args: &NodeArgs) -> anyhow::Result<Self> {
        let dir = args.data_dir();
        if control::call(&dir, &Request::Id, |_| {}).await?.is_some() {
            return Ok(Self::Running(dir));
        }
        Ok(Self::Own(Node::start(args.config(true)?).await?))
    }

    async fn call(dir: &std::path::Path, req: &Request) -> anyhow::Result<Value> {
        control::call(dir, req, |_| {})
            .await?
            .context("the running node stopped")?
            .map_err(anyhow::Error::msg)
    }

    /// Resolves `spec` (id, prefix, name, HOST:PORT). Failure is "peer not found".
    async fn resolve(&self, spec: &str) -> anyhow::Result<Peer> {
        match self {
            Self::Running(dir) => {
                let req = Request::ResolvePeer {
                    peer: spec.to_string(),
                };
                let v = Self::call(dir, &req)
                    .await
                    .map_err(|e| peerconnect::Error::PeerNotFound(e.to_string()))?;
                Ok(Peer {
                    id: serde_json::from_value(v["id"].clone())?,
                    name: v["name"].as_str().unwrap_or_default().to_string(),
                })
            }
            Self::Own(node) => {
                let id = node.resolve_or_dial(spec).await?;
                let live = node.peers().await?.into_iter().find(|p| p.id == id);
                let name = match live {
                    Some(p) => p.name,
                    None => node.store().peer(&id)?.map(|p| p.name).unwrap_or_default(),
                };
                Ok(Peer { id, name })
            }
        }
    }

    async fn send(
        &self,
        peer: PeerId,
        text: String,
        wait: Option<Duration>,
    ) -> anyhow::Result<(MessageInfo, Status)> {
        match self {
            Self::Running(dir) => {
                let req = Request::SendMessage {
                    peer: peer.to_string(),
                    text,
                    reply_to: None,
                    wait_secs: wait.map(|w| w.as_secs_f64()),
                };
                let v = Self::call(dir, &req).await?;
                Ok((
                    serde_json::from_value(v["message"].clone())?,
                    serde_json::from_value(v["status"].clone())?,
                ))
            }
            Self::Own(node) => Ok(match wait {
                Some(w) => node.send_message_and_wait(peer, text, None, w).await?,
                None => {
                    let m = node.send_message(peer, text, None).await?;
                    let status = m.status;
                    (m, status)
                }
            }),
        }
    }

    async fn history(&self, peer: PeerId, limit: usize) -> anyhow::Result<Vec<MessageInfo>> {
        match self {
            Self::Running(dir) => {
                let req = Request::Conversation {
                    peer: peer.to_string(),
                    before: None,
                    limit,
                };
                Ok(serde_json::from_value(Self::call(dir, &req).await?)?)
            }
            Self::Own(node) => Ok(node.conversation(peer, None, limit)?),
        }
    }

    async fn mark_read(&self, peer: PeerId, up_to: MessageId) -> anyhow::Result<()> {
        match self {
            Self::Running(dir) => {
                let req = Request::MarkRead {
                    peer: peer.to_string(),
                    up_to,
                };
                Self::call(dir, &req).await.map(|_| ())
            }
            Self::Own(node) => node
                .mark_read(peer, up_to)
                .await
                .map(|_| ())
                .map_err(Into::into),
        }
    }

    /// Every event from now on.
    async fn events(&self) -> anyhow::Result<mpsc::Receiver<Event>> {
        match self {
            Self::Running(dir) => control::subscribe(dir)
                .await?
                .context("the running node stopped"),
            Self::Own(node) => {
                let (tx, rx) = mpsc::channel(1024);
                let mut events = node.subscribe();
                tokio::spawn(async move {
                    while let Some(e) = events.recv().await {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                });
                Ok(rx)
            }
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Self::Own(node) = self {
            node.shutdown().await?;
        }
        Ok(())
    }

    /// What happens to a message that is still queued when the command ends.
    fn queued_note(&self) -> &'static str {
        match self {
            Self::Running(_) => "the running node delivers it when the peer is seen",
            Self::Own(_) => {
                "it is kept on this data dir, and the next `peerconnect up`, `msg` or `chat` here delivers it when the peer is seen"
            }
        }
    }
}

/// `peerconnect msg PEER TEXT`.
pub async fn msg(args: NodeArgs, spec: &str, text: String, wait: f64) -> anyhow::Result<ExitCode> {
    args.init_logging();
    check_text(&text).map_err(peerconnect::Error::from)?;
    let wait = Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
    let backend = Backend::open(&args).await?;
    let res = async {
        let peer = backend.resolve(spec).await?;
        let (message, status) = backend.send(peer.id, text, Some(wait)).await?;
        Ok::<_, anyhow::Error>((peer, message, status))
    }
    .await;
    let note = backend.queued_note();
    backend.close().await?;
    let (peer, message, status) = res?;
    if args.json {
        let e = Event::MessageStatus {
            id: message.id,
            peer: peer.id,
            status,
        };
        println!("{}", serde_json::to_string(&e)?);
    } else if status == Status::Read {
        println!("delivered to {} (and read)", peer.label());
    } else if status == Status::Delivered {
        println!("delivered to {}", peer.label());
    } else {
        println!(
            "{} is not reachable now; the message is queued: {note}",
            peer.label()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `peerconnect chat PEER`.
pub async fn chat(args: NodeArgs, spec: &str, history: usize) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let backend = Backend::open(&args).await?;
    let res = chat_with(&backend, &args, spec, history).await;
    backend.close().await?;
    res
}

async fn chat_with(
    backend: &Backend,
    args: &NodeArgs,
    spec: &str,
    history: usize,
) -> anyhow::Result<ExitCode> {
    let peer = backend.resolve(spec).await?;
    if let Backend::Own(node) = backend {
        // Be connected, so the peer can answer; offline is fine too.
        let (links, id) = (node.links().clone(), peer.id);
        tokio::spawn(async move { links.dial(id, Vec::new()).await });
    }
    // Subscribe before reading history so nothing falls in between.
    let mut events = backend.events().await?;
    let earlier = backend.history(peer.id, history.max(1)).await?;
    let show = ChatView {
        json: args.json,
        peer: &peer,
    };
    if !args.json {
        println!(
            "chat with {}: type a message and press Enter; Ctrl-D leaves",
            peer.label()
        );
    }
    let shown: HashSet<MessageId> = earlier.iter().map(|m| m.id).collect();
    for m in earlier.iter().rev().take(history).rev() {
        show.message(m, true);
    }
    if let Some(last_in) = earlier.iter().rev().find(|m| !m.outgoing) {
        backend.mark_read(peer.id, last_in.id).await?;
    }
    // Our messages of this chat not read yet: id, preview for status lines,
    // whether delivered.
    let mut mine: VecDeque<(MessageId, String, bool)> = VecDeque::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                let text = line.trim_end();
                if text.is_empty() {
                    continue;
                }
                match backend.send(peer.id, text.to_string(), None).await {
                    Ok((m, _)) => {
                        mine.push_back((m.id, preview(&m.text), false));
                        if mine.len() > 1000 {
                            mine.pop_front();
                        }
                    }
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
            Some(e) = events.recv() => match e {
                Event::MessageReceived { message } if message.from == peer.id => {
                    if shown.contains(&message.id) {
                        continue;
                    }
                    show.message(&message, false);
                    backend.mark_read(peer.id, message.id).await?;
                }
                Event::MessageStatus { id, peer: p, status }
                    if p == peer.id && status >= Status::Delivered =>
                {
                    if let Some(i) = mine.iter().position(|(m, ..)| *m == id) {
                        show.status(id, status, &mine[i].1);
                        mine[i].2 = true;
                        if status == Status::Read {
                            mine.remove(i);
                        }
                    }
                }
                Event::PeerConnected { peer: p, .. } if p.id == peer.id && !args.json => {
                    println!("* {} is connected", peer.label());
                }
                Event::PeerDisconnected { id, .. } if id == peer.id && !args.json => {
                    println!("* {} went away; messages wait until it is back", peer.label());
                }
                _ => {}
            },
        }
    }
    let queued = mine.iter().filter(|(.., delivered)| !delivered).count();
    if queued > 0 && !args.json {
        println!(
            "{queued} message(s) not delivered yet; they are queued: {}",
            backend.queued_note()
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct ChatView<'a> {
    json: bool,
    peer: &'a Peer,
}

impl ChatView<'_> {
    fn message(&self, m: &MessageInfo, earlier: bool) {
        if self.json {
            let kind = if earlier {
                "history"
            } else {
                "message_received"
            };
            println!("{}", serde_json::json!({ "event": kind, "message": m }));
            return;
        }
        let who = if m.outgoing {
            "me".to_string()
        } else if self.peer.name.is_empty() {
            self.peer.id.short()
        } else {
            self.peer.name.clone()
        };
        let mark = if m.outgoing {
            match m.status {
                Status::Pending | Status::Sent => "  (queued)",
                Status::Delivered => "  ✓",
                Status::Read => "  ✓✓",
            }
        } else {
            ""
        };
        println!("{who}: {}{mark}", m.text);
    }

    fn status(&self, id: MessageId, status: Status, preview: &str) {
        if self.json {
            let e = Event::MessageStatus {
                id,
                peer: self.peer.id,
                status,
            };
            println!("{}", serde_json::to_string(&e).expect("events serialize"));
        } else {
            println!(
                "  {} {status}: {preview}",
                if status == Status::Read {
                    "✓✓"
                } else {
                    "✓"
                }
            );
        }
    }
}

/// The first few words of a message, for status lines.
fn preview(text: &str) -> String {
    const MAX: usize = 30;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
