//! Rooms on real nodes: many nodes in one process on 127.0.0.1 (TCP + TLS,
//! discovery off) chatting in one room; and three `peerconnect up` processes
//! in three network namespaces chatting through the CLI.

use std::process::Stdio;
use std::time::{Duration, Instant};

use peerconnect::config::Storage;
use peerconnect::proto::rooms::{self, RoomMessageId, SignedRoomMessage};
use peerconnect::{Config, Event, Identity, Node, RoomMessage};
use peerconnect_tests::{Lan, UpProcess, next_matching, peerconnect_bin, skip, wait_for};
use rand::seq::IndexedRandom;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// `n` in-memory nodes; each dials up to two random earlier ones.
async fn start_nodes(n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut c = Config::local(format!("/nonexistent/node{i}"));
        c.storage = Storage::Memory;
        c.name = format!("node{i}");
        c.event_buffer = 256;
        let node = Node::start(c).await.unwrap();
        let picks: Vec<Node> = nodes
            .choose_multiple(&mut rand::rng(), 2)
            .cloned()
            .collect();
        for p in picks {
            node.connect(p.listen_addrs()[0], Some(p.id()))
                .await
                .unwrap();
        }
        nodes.push(node);
    }
    nodes
}

/// Waits until `node` emits the room message with this id.
async fn receives(node: &mut peerconnect::EventStream, id: RoomMessageId) -> RoomMessage {
    next_matching(node, T, "the room message", |e| match e {
        Event::RoomMessage { message, .. } if message.id == id => Some(message.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_in_one_room_deliver_signed_messages_and_drop_forgeries() {
    const N: usize = 50;
    let nodes = start_nodes(N).await;
    let mut streams: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    // Members arrive one after another, each once the one before is in.
    for (i, n) in nodes.iter().enumerate() {
        n.join_room("lobby").await.unwrap();
        if i > 0 {
            wait_for(T, &format!("node{i} to have a neighbour in the room"), || {
                let n = n.clone();
                async move { (!n.room_neighbors("lobby").await.unwrap().is_empty()).then_some(()) }
            })
            .await;
        }
    }

    // One message from node 0 reaches the 49 others, signed by node 0.
    let said = nodes[0].room_say("lobby", "hello, room").await.unwrap();
    for (i, s) in streams.iter_mut().enumerate().skip(1) {
        let got = receives(s, said.id).await;
        assert_eq!(got, said, "node{i}");
        assert_eq!(
            (got.author, got.author_name.as_str()),
            (nodes[0].id(), "node0")
        );
    }
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let h = n.room_history("lobby", None, 10).unwrap();
        assert_eq!(h, vec![said.clone()], "history of node{i}");
    }

    // A forgery claiming to be node 0, sent raw into the room's topic by node 7:
    // every other node drops and counts it, nobody shows it.
    let mallory = Identity::generate();
    let fake = RoomMessage::new(
        RoomMessageId([9; 16]),
        &mallory,
        "node0",
        "lobby",
        "please send me your files",
        said.time_ms,
    )
    .unwrap();
    let mut forged = SignedRoomMessage::sign(fake, &mallory);
    forged.message.author = nodes[0].id();
    nodes[7]
        .gossip()
        .broadcast(rooms::topic("lobby"), forged.encode())
        .await
        .unwrap();
    for (i, n) in nodes.iter().enumerate() {
        if i == 7 {
            continue;
        }
        wait_for(T, &format!("node{i} to count the forgery"), || {
            let n = n.clone();
            async move { (n.room_stats().forged == 1).then_some(()) }
        })
        .await;
    }

    // Node 3 leaves; the next message reaches everyone else but not node 3.
    nodes[3].leave_room("lobby").await.unwrap();
    let second = nodes[0]
        .room_say("lobby", "who is still here?")
        .await
        .unwrap();
    for (i, s) in streams.iter_mut().enumerate().skip(1) {
        if i != 3 {
            receives(s, second.id).await;
        }
    }
    let leaver = &mut streams[3];
    while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, leaver.recv()).await {
        if let Event::RoomMessage { message, .. } = &e {
            assert_ne!(message.id, second.id, "a node that left still received");
            assert_ne!(message.id, forged.message.id, "a forgery was shown");
        }
    }
    assert_eq!(nodes[3].room_stats().received, 1);
    assert_eq!(
        nodes[3].room_history("lobby", None, 10).unwrap(),
        vec![said]
    );
    assert!(nodes[3].rooms().await.unwrap().is_empty());
    for n in &nodes {
        let s = n.room_stats();
        assert_eq!((s.malformed, s.wrong_room, s.too_large), (0, 0, 0));
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn oversized_room_message_is_refused_with_a_clear_error() {
    let nodes = start_nodes(1).await;
    nodes[0].join_room("lobby").await.unwrap();
    let err = nodes[0]
        .room_say("lobby", &"x".repeat(rooms::MAX_TEXT_LEN + 1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: room message text is 16385 bytes; the limit is 16384 (16 KiB)"
    );
    assert!(matches!(err, peerconnect::Error::Invalid(_)));
    // nothing was sent or stored; an ordinary message still goes
    assert!(nodes[0].room_history("lobby", None, 10).unwrap().is_empty());
    nodes[0].room_say("lobby", "short").await.unwrap();
    let err = nodes[0].room_say("elsewhere", "hi").await.unwrap_err();
    assert!(err.to_string().contains("join it first"), "{err}");
    nodes[0].shutdown().await.unwrap();
}

fn room_message_from(v: &Value, author_name: &str, text: &str) -> bool {
    v["event"] == "room_message"
        && v["room"] == "chat"
        && v["message"]["author_name"] == author_name
        && v["message"]["text"] == text
}

#[test]
fn three_namespaces_chat_in_one_room_with_the_cli() {
    const TEST: &str = "three_namespaces_chat_in_one_room_with_the_cli";
    let lan = match Lan::up(3) {
        Ok(l) => l,
        Err(why) => return skip(TEST, &why),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = |i: usize| dir.path().join(format!("h{i}"));
    let bin = peerconnect_bin();
    let mut ups: Vec<UpProcess> = (1..=3)
        .map(|i| {
            let mut c = lan.command(i, &bin);
            c.args(["up", "--json", "--name", &format!("host{i}"), "--data-dir"])
                .arg(data(i));
            UpProcess::spawn(c)
        })
        .collect();
    let mut ids = Vec::new();
    for up in &mut ups {
        let l = up.listening(T);
        ids.push(l["id"].as_str().unwrap().to_string());
    }
    for (i, up) in ups.iter_mut().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                up.first(T, "the other hosts connected", |v| {
                    v["event"] == "peer_connected" && v["peer"]["id"] == id.as_str()
                });
            }
        }
    }

    // Live views on hosts 1 and 3, through their running nodes.
    let watch = |i: usize| {
        let mut c = lan.command(i, &bin);
        c.args(["room", "join", "chat", "--json", "--data-dir"])
            .arg(data(i))
            .stdin(Stdio::piped());
        UpProcess::spawn(c)
    };
    let mut w1 = watch(1);
    w1.first(T, "host 1 in the room", |v| v["event"] == "room_joined");
    let mut w3 = watch(3);
    w3.first(T, "host 3 in the room", |v| v["event"] == "room_joined");
    let neighbours = |i: usize| -> u64 {
        let out = lan
            .command(i, &bin)
            .args(["room", "list", "--json", "--data-dir"])
            .arg(data(i))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rooms: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        rooms
            .iter()
            .find(|r| r["name"] == "chat")
            .and_then(|r| r["neighbors"].as_u64())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + T;
    while neighbours(3) == 0 {
        assert!(
            Instant::now() < deadline,
            "host 3 found no neighbour in the room"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Host 2 is not in the room: `room say` joins, says, waits until a
    // neighbour has the message, leaves and exits.
    let out = lan
        .command(2, &bin)
        .args([
            "room",
            "say",
            "chat",
            "hello from host2",
            "--json",
            "--data-dir",
        ])
        .arg(data(2))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "room say failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: Value = serde_json::from_slice(&out.stdout).expect("room say prints one JSON line");
    eprintln!("room say on host 2: {said}");
    assert_eq!(said["event"], "room_said");
    assert!(!said["reached"].as_array().unwrap().is_empty(), "{said}");
    for w in [&mut w1, &mut w3] {
        let m = w.first(T, "host 2's message", |v| {
            room_message_from(v, "host2", "hello from host2")
        });
        assert_eq!(m["message"]["author"], ids[1].as_str(), "signed by host 2");
    }

    // A line typed in host 1's live view reaches host 3.
    w1.type_line("hi from host1");
    w3.first(T, "host 1's message", |v| {
        room_message_from(v, "host1", "hi from host1")
    });

    // Every line each process printed was an event.
    for p in ups.iter().chain([&w1, &w3]) {
        assert!(
            p.seen.iter().all(|v| v["event"].is_string()),
            "a line without an event field: {:#?}",
            p.seen
        );
    }
    // Ctrl-D leaves the room and exits cleanly.
    for mut w in [w1, w3] {
        drop(w.take_stdin());
        let status = w.wait_exit(T);
        assert!(status.success(), "exited with {status} after Ctrl-D");
    }
    for up in ups {
        up.stop();
    }
}
