//! `peerconnect room …`: chat rooms. Each command uses the node `up` runs on
//! the same data dir (through the control socket) or, if none runs, a node of
//! its own for the duration.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use peerconnect::control::{Client, Request};
use peerconnect::rooms::{RoomInfo, RoomSaid};
use peerconnect::{Event, RoomMessage};
use tokio::sync::mpsc;

use crate::client;
use crate::node_args::NodeArgs;
use crate::print::Printer;

#[derive(Subcommand, Debug)]
pub enum RoomCmd {
    /// Join a room: print its recent messages, then new ones as they arrive.
    /// Each line typed is said in the room; Ctrl-D leaves.
    Join {
        #[arg(value_name = "NAME")]
        room: String,
        /// How many stored messages to print first.
        #[arg(long, default_value_t = 20)]
        history: usize,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Say one message in a room; exits once a neighbour in the room has it.
    Say {
        #[arg(value_name = "NAME")]
        room: String,
        text: String,
        /// Seconds to wait for a neighbour in the room.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print a room's stored messages, oldest first.
    History {
        #[arg(value_name = "NAME")]
        room: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages that arrived before this message id.
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the rooms the running node is in.
    List {
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub async fn run(cmd: RoomCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RoomCmd::Join {
            room,
            history,
            node,
        } => join(node, &room, history).await,
        RoomCmd::Say {
            room,
            text,
            wait,
            node,
        } => say(node, &room, &text, wait).await,
        RoomCmd::History {
            room: name,
            limit,
            before,
            node,
        } => {
            node.init_logging();
            let before = before
                .map(|b| b.parse())
                .transpose()
                .map_err(|e: String| peerconnect::Error::Invalid(e))?;
            let req = Request::RoomHistory {
                room: name.clone(),
                before,
                limit,
            };
            let client = client::open(&node, || offline(&node)).await?;
            let res = client::call(&client, req, |_| {}).await;
            client.close().await?;
            let messages: Vec<RoomMessage> = serde_json::from_value(res?)?;
            let printer = Printer::new(node.json);
            for message in messages {
                printer.event(&Event::RoomMessage {
                    room: name.clone(),
                    message,
                });
            }
            Ok(ExitCode::SUCCESS)
        }
        RoomCmd::List { node } => {
            node.init_logging();
            // A node of our own is in no room.
            let client = client::open(&node, || offline(&node)).await?;
            let res = client::call(&client, Request::Rooms, |_| {}).await;
            client.close().await?;
            let rooms: Vec<RoomInfo> = serde_json::from_value(res?)?;
            if node.json {
                println!("{}", serde_json::to_string(&rooms)?);
            } else if rooms.is_empty() {
                println!("in no room (rooms are joined by a running `peerconnect up`)");
            } else {
                for r in rooms {
                    println!("{}  ({} neighbours)", r.name, r.neighbors);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A node that only reads the store: no network beyond loopback, no discovery.
fn offline(args: &NodeArgs) -> anyhow::Result<peerconnect::Config> {
    let mut c = args.config(true)?;
    c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    c.discovery.enabled = false;
    c.reconnect_known = false;
    c.connect.clear();
    Ok(c)
}

/// Lines typed on stdin; closed at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn join(args: NodeArgs, room: &str, history: usize) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let printer = Printer::new(args.json);
    let req = Request::RoomWatch {
        room: room.to_string(),
        history,
    };
    let mut input = stdin_lines();
    let client = client::open(&args, || args.config(true)).await?;
    let res = watch(&client, room, req, &mut input, &printer).await;
    client.close().await?;
    res.map(|()| ExitCode::SUCCESS)
}

/// The live view of a room: its messages as they come, each line typed said
/// in it.
async fn watch(
    client: &Client,
    room: &str,
    req: Request,
    input: &mut mpsc::Receiver<String>,
    printer: &Printer,
) -> anyhow::Result<()> {
    let mut call = client.start(req).await?;
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            e = client::next_event(&mut call) => match e? {
                Some(e) => printer.event(&e),
                None => return Ok(()),
            },
            line = input.recv() => match line {
                Some(text) if text.trim().is_empty() => {}
                Some(text) => {
                    let req = Request::RoomSay { room: room.to_string(), text, wait_ms: 0 };
                    if let Err(e) = client.call(req, |_| {}).await? {
                        eprintln!("error: {e}");
                    }
                }
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    // Ctrl-D: the request ends; the node leaves the room (if it joined it for us).
    call.finish().await?.map_err(client::failure)?;
    printer.event(&Event::RoomLeft {
        room: room.to_string(),
    });
    Ok(())
}

async fn say(args: NodeArgs, room: &str, text: &str, wait: f64) -> anyhow::Result<ExitCode> {
    args.init_logging();
    let printer = Printer::new(args.json);
    let wait = Duration::from_secs_f64(wait.clamp(0.0, 3600.0));
    // Refuse an oversized text before touching any node.
    peerconnect::proto::rooms::check_text(text)
        .map_err(|e| peerconnect::Error::Invalid(e.to_string()))?;
    let req = Request::RoomSay {
        room: room.to_string(),
        text: text.to_string(),
        wait_ms: (wait.as_millis() as u64).max(1),
    };
    let client = client::open(&args, || args.config(true)).await?;
    let res = client::call(&client, req, |_| {}).await;
    client.close().await?;
    let said: RoomSaid = serde_json::from_value(res?)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "event": "room_said",
                "room": room,
                "message": said.message,
                "reached": said.reached,
            })
        );
    } else {
        printer.event(&Event::RoomMessage {
            room: room.to_string(),
            message: said.message.clone(),
        });
    }
    if said.reached.is_empty() {
        eprintln!(
            "error: no one in room {room:?} had the message after {:.1} s",
            wait.as_secs_f64()
        );
        return Ok(ExitCode::from(crate::exit::FAILED));
    }
    if !args.json {
        println!("reached {} neighbour(s) in {room}", said.reached.len());
    }
    Ok(ExitCode::SUCCESS)
}
