//! `peerconnect msg` and `peerconnect chat`: adapters over the core's direct
//! messages, through the node running on the data dir (control socket) or a
//! node of their own for the duration.

use std::collections::{HashSet, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

use peerconnect::control::{Client, Request};
use peerconnect::proto::messaging::{MessageId, MessageInfo, Status, check_text};
use peerconnect::{Event, PeerId};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::client;
use crate::node_args::NodeArgs;

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

/// Resolves `spec` (id, prefix, name, HOST:PORT; see `Node::resolve_peer`).
async fn resolve(client: &Client, spec: &str) -> anyhow::Result<Peer> {
    let req = Request::ResolvePeer {
        peer: spec.to_string(),
    };
    let v = client::call(client, req, |_| {}).await?;
    Ok(Peer {
        id: serde_json::from_value(v["id"].clone())?,
        name: v["name"].as_str().unwrap_or_default().to_string(),
    })
}

async fn send(
    client: &Client,
    peer: PeerId,
    text: String,
    wait: Option<Duration>,
) -> anyhow::Result<(MessageInfo, Status)> {
    let req = Request::SendMessage {
        peer: peer.to_string(),
        text,
        reply_to: None,
        wait_secs: wait.map(|w| w.as_secs_f64()),
    };
    let v = client::call(client, req, |_| {}).await?;
    Ok((
        serde_json::from_value(v["message"].clone())?,
        serde_json::from_value(v["status"].clone())?,
    ))
}

async fn mark_read(client: &Client, peer: PeerId, up_to: MessageId) -> anyhow::Result<()> {
    let req = Request::MarkRead {
        peer: peer.to_string(),
        up_to,
    };
    client::call(client, req, |_| {}).await.map(|_| ())
}

/// Every event from now on (subscribed when this returns).
async fn events(client: &Client) -> anyhow::Result<mpsc::Receiver<Event>> {
    let mut call = client.start(Request::Events).await?;
    // The first line (`listening`) says the stream is on.
    if client::next_event(&mut call).await?.is_none() {
        anyhow::bail!("the node stopped");
    }
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok(Some(e)) = client::next_event(&mut call).await {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// What happens to a message that is still queued when the command ends.
fn queued_note(client: &Client) -> &'static str {
    if client.own().is_some() {
        "it is kept on this data dir, and the next `peerconnect up`, `msg` or `chat` here delivers it when the peer is seen"
    } else {
        "the running node delivers it when the peer is seen"
    }
}

/// `peerconnect msg PEER TEXT`.
pub async fn msg(args: NodeArgs, spec: &str, text: String, wait: f64) -> anyhow::Result<ExitCode> {
    args.init_logging();
    check_text(&text).map_err(peerconnect::Error::from)?;
    let wait = Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
    let client = client::open(&args, || args.config(true)).await?;
    let res = async {
        let peer = resolve(&client, spec).await?;
        let (message, status) = send(&client, peer.id, text, Some(wait)).await?;
        Ok::<_, anyhow::Error>((peer, message, status))
    }
    .await;
    let note = queued_note(&client);
    client.close().await?;
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
    let client = client::open(&args, || args.config(true)).await?;
    let res = chat_with(&client, &args, spec, history).await;
    client.close().await?;
    res
}

async fn chat_with(
    client: &Client,
    args: &NodeArgs,
    spec: &str,
    history: usize,
) -> anyhow::Result<ExitCode> {
    let peer = resolve(client, spec).await?;
    // Subscribe before reading history so nothing falls in between.
    let mut events = events(client).await?;
    let req = Request::Conversation {
        peer: peer.id.to_string(),
        before: None,
        limit: history.max(1),
    };
    let earlier: Vec<MessageInfo> =
        serde_json::from_value(client::call(client, req, |_| {}).await?)?;
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
        mark_read(client, peer.id, last_in.id).await?;
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
                match send(client, peer.id, text.to_string(), None).await {
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
                    mark_read(client, peer.id, message.id).await?;
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
            queued_note(client)
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
