//! Direct messages between nodes on 127.0.0.1: the outbox across restarts, a
//! burst with bounded memory, the size limit, bad and duplicated frames from a
//! peer, and `peerconnect msg` between two `peerconnect up` processes.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use peerconnect::net::messaging::{INBOX_BATCH, INBOX_CAPACITY};
use peerconnect::proto::messaging::{
    self, Envelope, MAX_IDS_PER_FRAME, MAX_TEXT_LEN, MessageId, MessageInfo, Status,
};
use peerconnect::proto::wire;
use peerconnect::{Config, Event, Node, PeerId};
use peerconnect_tests::{UpProcess, next_matching, peerconnect_bin, up_command, wait_for};

const T: Duration = Duration::from_secs(30);

async fn node(dir: &std::path::Path, name: &str, connect: Option<&Node>) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    if let Some(peer) = connect {
        c.connect = vec![peer.listen_addrs()[0].to_string()];
    }
    Node::start(c).await.unwrap()
}

async fn connected(node: &Node, peer: PeerId) {
    wait_for(T, "a session", || {
        let node = node.clone();
        async move { node.links().is_connected(&peer).then_some(()) }
    })
    .await;
}

/// The whole conversation with `peer`, oldest first, paging back from the newest.
fn history(node: &Node, peer: PeerId) -> Vec<MessageInfo> {
    let mut pages = Vec::new();
    let mut before: Option<MessageId> = None;
    loop {
        let page = node.conversation(peer, before, 1000).unwrap();
        let Some(first) = page.first() else { break };
        before = Some(first.id);
        pages.push(page);
    }
    pages.into_iter().rev().flatten().collect()
}

fn texts(messages: &[MessageInfo]) -> Vec<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

async fn all_delivered(node: &Node, peer: PeerId, n: usize) {
    wait_for(Duration::from_secs(120), "every message delivered", || {
        let node = node.clone();
        async move {
            let h = history(&node, peer);
            (h.len() == n && h.iter().all(|m| m.status >= Status::Delivered)).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_message_to_a_peer_that_is_down_survives_a_restart_and_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let (adir, bdir) = (dir.path().join("a"), dir.path().join("b"));
    let a = node(&adir, "alpha", None).await;
    let b = node(&bdir, "beta", Some(&a)).await;
    let (a_id, b_id) = (a.id(), b.id());
    connected(&a, b_id).await;
    b.shutdown().await.unwrap();
    wait_for(T, "a notices b left", || {
        let a = a.clone();
        async move { (!a.links().is_connected(&b_id)).then_some(()) }
    })
    .await;

    // A writes to B while B is down: stored as pending.
    let mut sent = Vec::new();
    for i in 0..3 {
        let m = a.send_message(b_id, format!("m{i}"), None).await.unwrap();
        assert_eq!((m.status, m.from, m.to), (Status::Pending, a_id, b_id));
        sent.push(m.id);
    }
    assert!(
        history(&a, b_id)
            .iter()
            .all(|m| m.status == Status::Pending)
    );

    // A restarts; the outbox is still there.
    a.shutdown().await.unwrap();
    let a = node(&adir, "alpha", None).await;
    assert_eq!(a.id(), a_id);
    assert_eq!(texts(&history(&a, b_id)), ["m0", "m1", "m2"]);
    let mut a_events = a.events();

    // B comes up later and finds A (by --connect).
    let b = node(&bdir, "beta", Some(&a)).await;
    for id in &sent {
        next_matching(&mut a_events, T, "a delivered status", |e| match e {
            Event::MessageStatus {
                id: got,
                peer,
                status: Status::Delivered,
            } if got == id && *peer == b_id => Some(()),
            _ => None,
        })
        .await;
    }
    let counts = b.message_counts(a_id).unwrap();
    assert_eq!((counts.incoming, counts.outgoing), (3, 0), "exactly once");
    let got = history(&b, a_id);
    assert_eq!(texts(&got), ["m0", "m1", "m2"], "in order");
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), sent);
    assert!(
        got.iter()
            .all(|m| !m.outgoing && m.from == a_id && m.to == b_id)
    );
    assert!(
        history(&a, b_id)
            .iter()
            .all(|m| m.status == Status::Delivered)
    );
    // exactly once, also after a reconnect that replays nothing
    b.shutdown().await.unwrap();
    let b = node(&bdir, "beta", Some(&a)).await;
    connected(&b, a_id).await;
    let m = a.send_message(b_id, "after", None).await.unwrap();
    wait_for(T, "the next message", || {
        let b = b.clone();
        async move { (b.message_counts(a_id).unwrap().incoming == 4).then_some(()) }
    })
    .await;
    assert_eq!(texts(&history(&b, a_id)), ["m0", "m1", "m2", "after"]);
    assert_eq!(b.messaging_stats().await.unwrap().received, 1);
    let conv = b.conversations().unwrap();
    assert_eq!(conv.len(), 1);
    assert_eq!((conv[0].peer, conv[0].unread), (a_id, 4));
    assert_eq!(conv[0].name, "alpha");

    // B reads them: A learns it, and B's unread count drops.
    assert_eq!(b.mark_read(a_id, m.id).await.unwrap(), 4);
    next_matching(&mut a_events, T, "read receipt", |e| match e {
        Event::MessageStatus {
            id,
            status: Status::Read,
            ..
        } if *id == m.id => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(b.conversations().unwrap()[0].unread, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_10000_messages_arrives_complete_in_order_with_memory_bounded() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), "alpha", None).await;
    let (a_id, bdir) = (a.id(), dir.path().join("b"));
    // B knows A, then goes away: the first half queues up in A's outbox.
    let b = node(&bdir, "beta", Some(&a)).await;
    let b_id = b.id();
    connected(&a, b_id).await;
    b.shutdown().await.unwrap();
    let started = Instant::now();
    for i in 0..N / 2 {
        a.send_message(b_id, format!("m{i}"), None).await.unwrap();
    }
    let queued_in = started.elapsed();
    // B comes back: the outbox drains while the second half is being sent.
    let b = node(&bdir, "beta", Some(&a)).await;
    let drain = Instant::now();
    for i in N / 2..N {
        a.send_message(b_id, format!("m{i}"), None).await.unwrap();
    }
    wait_for(Duration::from_secs(180), "all 10,000 messages at b", || {
        let b = b.clone();
        async move { (b.message_counts(a_id).unwrap().incoming == N as u64).then_some(()) }
    })
    .await;
    let drained_in = drain.elapsed();
    all_delivered(&a, b_id, N).await;

    let got = history(&b, a_id);
    assert_eq!(got.len(), N);
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert!(texts(&got) == expected, "messages arrived out of order");
    let ids: BTreeSet<MessageId> = got.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), N);

    // Memory bounds: nothing held the burst at once.
    let sa = a.messaging_stats().await.unwrap();
    let sb = b.messaging_stats().await.unwrap();
    eprintln!(
        "burst of {N}: {} queued while b was away in {queued_in:?}; drained + rest sent in {drained_in:?}\n\
         sender: {sa:?}\nreceiver: {sb:?}",
        N / 2
    );
    assert!(sa.window > 0 && sa.window <= 256, "{sa:?}");
    assert!(sa.protocol.max_in_flight <= sa.window, "{sa:?}");
    assert!(sa.protocol.max_page <= sa.window, "{sa:?}");
    assert!(sa.max_outbox_rows <= sa.window, "{sa:?}");
    assert!(
        sa.max_outbox_rows > 1,
        "the outbox was paged, not sent one by one"
    );
    assert_eq!(sb.inbox_capacity, INBOX_CAPACITY);
    assert!(sb.max_inbox_batch <= INBOX_BATCH, "{sb:?}");
    assert_eq!(sb.received, N as u64);
    assert_eq!(sb.protocol.invalid, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_over_64_kib_is_refused_and_nothing_else_is_affected() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), "alpha", None).await;
    let b = node(&dir.path().join("b"), "beta", Some(&a)).await;
    let (a_id, b_id) = (a.id(), b.id());
    connected(&b, a_id).await;
    let session = b.links().get(&a_id).unwrap().session;

    b.send_message(a_id, "before", None).await.unwrap();
    let err = b
        .send_message(a_id, "x".repeat(MAX_TEXT_LEN + 1), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            peerconnect::Error::Messaging(messaging::Error::TooLong {
                len: 65537,
                max: 65536
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "message text is 65537 bytes; the limit is 65536 bytes (64 KiB)"
    );
    // nothing stored, and the limit itself is fine
    assert_eq!(b.message_counts(a_id).unwrap().outgoing, 1);
    let full = b
        .send_message(a_id, "é".repeat(MAX_TEXT_LEN / 2), None)
        .await
        .unwrap();
    let last = b.send_message(a_id, "after", None).await.unwrap();
    all_delivered(&b, a_id, 3).await;
    let got = history(&a, b_id);
    assert_eq!(got.len(), 3);
    assert_eq!((got[1].id, got[1].text.len()), (full.id, MAX_TEXT_LEN));
    assert_eq!(got[2].id, last.id);
    assert_eq!(
        b.links().get(&a_id).unwrap().session,
        session,
        "same session"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_and_duplicated_dm_frames_do_not_break_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), "alpha", None).await;
    let b = node(&dir.path().join("b"), "beta", Some(&a)).await;
    let (a_id, b_id) = (a.id(), b.id());
    connected(&a, b_id).await;
    connected(&b, a_id).await;
    let session = a.links().get(&b_id).unwrap().session;

    // B misbehaves by hand, on its real session to A.
    let env = |n: u128, text: String| Envelope {
        id: MessageId::from_parts(1_000, n),
        sent_ms: 1_000,
        text,
        reply_to: None,
    };
    let many: Vec<MessageId> = (0..=MAX_IDS_PER_FRAME as u128)
        .map(|n| MessageId::from_parts(5, n))
        .collect();
    let frames = [
        messaging::Message::Deliver(env(1, "one".into())),
        messaging::Message::Deliver(env(1, "one".into())),
        messaging::Message::Deliver(env(2, "y".repeat(MAX_TEXT_LEN + 1))),
        messaging::Message::Ack { ids: many.clone() },
        messaging::Message::Read { ids: many },
        messaging::Message::Ack {
            ids: vec![MessageId::from_parts(9, 9)],
        },
        messaging::Message::Read {
            ids: vec![MessageId::from_parts(9, 9)],
        },
        messaging::Message::Deliver(env(1, "one again".into())),
        messaging::Message::Deliver(env(3, "three".into())),
    ];
    for f in frames {
        b.links().send(&a_id, wire::Message::Dm(f)).await.unwrap();
    }
    wait_for(T, "a stored the good ones", || {
        let a = a.clone();
        async move {
            let s = a.messaging_stats().await.unwrap();
            (s.received + s.duplicates == 4).then_some(())
        }
    })
    .await;
    let got = history(&a, b_id);
    assert_eq!(texts(&got), ["one", "three"], "each message once");
    let s = a.messaging_stats().await.unwrap();
    assert_eq!((s.received, s.duplicates, s.protocol.invalid), (2, 2, 3));

    // The session is the same one, and still carries messages both ways.
    assert_eq!(a.links().get(&b_id).unwrap().session, session);
    let (m, status) = a
        .send_message_and_wait(b_id, "still here", None, T)
        .await
        .unwrap();
    assert_eq!(status, Status::Delivered);
    assert_eq!(history(&b, a_id).last().unwrap().id, m.id);
    let (_, status) = b
        .send_message_and_wait(a_id, "me too", None, T)
        .await
        .unwrap();
    assert_eq!(status, Status::Delivered);
    assert_eq!(a.links().get(&b_id).unwrap().session, session);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

fn up(dir: &std::path::Path, name: &str, connect: Option<&str>) -> UpProcess {
    let mut cmd = up_command(dir, "127.0.0.1:0");
    cmd.args(["--name", name]);
    if let Some(addr) = connect {
        cmd.args(["--connect", addr]);
    }
    UpProcess::spawn(cmd)
}

/// Runs `peerconnect msg`. `wait`: seconds to wait for delivery before the
/// message counts as queued (generous where delivery is expected, so a loaded
/// machine cannot turn "delivered" into "queued").
fn msg(dir: &std::path::Path, peer: &str, text: &str, wait: &str) -> (bool, String) {
    let out = Command::new(peerconnect_bin())
        .args(["msg", peer, text, "--wait", wait, "--data-dir"])
        .arg(dir)
        .output()
        .expect("run peerconnect msg");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("msg: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

fn received(seen: &[serde_json::Value], text: &str) -> usize {
    seen.iter()
        .filter(|v| v["event"] == "message_received" && v["message"]["text"] == text)
        .count()
}

#[test]
fn msg_between_two_up_processes_prints_delivered_or_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (adir, bdir) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = up(&adir, "alpha", None);
    let la = a.listening(T);
    let (a_id, a_addr) = (
        la["id"].as_str().unwrap().to_string(),
        la["addrs"][0].as_str().unwrap().to_string(),
    );
    let mut b = up(&bdir, "beta", Some(&a_addr));
    let b_addr = b.listening(T)["addrs"][0].as_str().unwrap().to_string();
    b.until(T, "b connected to a", |s| {
        s.iter().any(|v| v["event"] == "peer_connected")
    });

    // through b's running node, by id and by name
    let (ok, out) = msg(&bdir, &a_id, "hello from b", "30");
    assert!(ok && out.contains("delivered to alpha"), "{out}");
    let (ok, out) = msg(&bdir, "alpha", "second", "30");
    assert!(ok && out.contains("delivered"), "{out}");
    a.until(T, "a got both", |s| {
        received(s, "hello from b") == 1 && received(s, "second") == 1
    });

    // chat through b's running node: history, then live both ways, Ctrl-D leaves
    let mut cmd = Command::new(peerconnect_bin());
    cmd.args(["chat", "alpha", "--json", "--data-dir"])
        .arg(&bdir)
        .stdin(std::process::Stdio::piped());
    let mut chat = UpProcess::spawn(cmd);
    let mut stdin = chat.take_stdin().unwrap();
    chat.until(T, "chat shows the history", |s| {
        s.iter().filter(|v| v["event"] == "history").count() == 2
    });
    writeln!(stdin, "hi via chat").unwrap();
    a.until(T, "a got the chat line", |s| {
        received(s, "hi via chat") == 1
    });
    let (ok, out) = msg(&adir, "beta", "hi back", "30");
    assert!(ok && out.contains("delivered to beta"), "{out}");
    chat.until(T, "chat shows the answer", |s| received(s, "hi back") == 1);
    drop(stdin);
    assert!(chat.wait_exit(T).success());

    // a is down: queued by b's node, delivered when a is back
    a.stop();
    let (ok, out) = msg(&bdir, "alpha", "while you were away", "2");
    assert!(ok && out.contains("queued"), "{out}");
    let mut a = up(&adir, "alpha", Some(&b_addr));
    a.until(T, "a got the queued message", |s| {
        received(s, "while you were away") == 1
    });

    // no node on a data dir: `msg` runs its own, dialing HOST:PORT
    let cdir = dir.path().join("c");
    let a_addr = a.listening(T)["addrs"][0].as_str().unwrap().to_string();
    let (ok, out) = msg(&cdir, &a_addr, "from a passing node", "30");
    assert!(ok && out.contains("delivered to alpha"), "{out}");
    a.until(T, "a got it", |s| received(s, "from a passing node") == 1);
    // an unknown peer is exit code 3, an oversize message 2
    let code = |args: &[&str]| {
        Command::new(peerconnect_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&cdir)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code(&["msg", "nobody-by-that-name", "hi"]), Some(3));
    assert_eq!(
        code(&["msg", &a_id, &"x".repeat(MAX_TEXT_LEN + 1)]),
        Some(2)
    );
    a.stop();
    b.stop();
}
