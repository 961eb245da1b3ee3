//! One file to many receivers down a relay tree, on 127.0.0.1 with in-process
//! nodes: every receiver that accepts gets a byte-identical file, one that
//! rejects stays out, and a relay that leaves mid-transfer does not stop the
//! others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use peerconnect::net::transfer::TransferId;
use peerconnect::proto::transfer::{Direction, TransferState};
use peerconnect::{Config, Event, Node};
use peerconnect_tests::{next_matching, pseudo_random, wait_for};

const T: Duration = Duration::from_secs(120);

async fn node(dir: &Path, name: &str, accept_all: bool) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    c.accept_all = accept_all;
    Node::start(c).await.unwrap()
}

fn downloads(n: &Node) -> PathBuf {
    n.data_dir().join("downloads")
}

/// A sender connected to `n` receivers (all accepting on their own).
async fn star(dir: &Path, n: usize) -> (Node, Vec<Node>) {
    let a = node(&dir.join("sender"), "sender", false).await;
    let mut rs = Vec::new();
    for i in 0..n {
        let r = node(&dir.join(format!("r{i}")), &format!("r{i}"), true).await;
        a.connect(r.listen_addrs()[0], None).await.unwrap();
        rs.push(r);
    }
    (a, rs)
}

/// Waits for the final event of each of `ids` on `events`.
async fn ends(
    events: &mut peerconnect::EventStream,
    ids: &[TransferId],
) -> BTreeMap<TransferId, Event> {
    let mut out = BTreeMap::new();
    while out.len() < ids.len() {
        let (id, e) = next_matching(events, T, "every tree transfer to end", |e| {
            let id = e.transfer_id()?;
            (ids.contains(&id) && e.ends_transfer()).then(|| (id, e.clone()))
        })
        .await;
        out.insert(id, e);
    }
    out
}

/// The receiver's record of its one incoming transfer, once it is complete.
async fn received(r: &Node) -> peerconnect::net::transfer::TransferInfo {
    wait_for(T, "the receiver's transfer to be complete", || async {
        r.transfers().unwrap().into_iter().find(|t| {
            t.direction == Direction::Receive && t.state == TransferState::Complete && !t.live
        })
    })
    .await
}

#[tokio::test]
async fn a_tree_send_reaches_every_receiver_that_accepts_and_none_that_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut rs) = star(dir.path(), 4).await;
    let refuser = node(&dir.path().join("refuser"), "refuser", false).await;
    a.connect(refuser.listen_addrs()[0], None).await.unwrap();
    let data = pseudo_random(16 << 20, 19);
    let src = dir.path().join("dataset.bin");
    std::fs::write(&src, &data).unwrap();
    let mut ea = a.events();
    let mut er = refuser.events();
    let mut peers: Vec<_> = rs.iter().map(|r| r.id()).collect();
    peers.push(refuser.id());
    let ids = a.send_tree(&peers, &src).await.unwrap();
    assert_eq!(ids.len(), 5);
    let offer = next_matching(&mut er, T, "the offer", |e| match e {
        Event::Offer { id, .. } => Some(*id),
        _ => None,
    })
    .await;
    refuser.reject_offer(offer).unwrap();
    let ended = ends(&mut ea, &ids).await;
    for (i, id) in ids.iter().enumerate() {
        let e = &ended[id];
        if i < 4 {
            assert!(
                matches!(
                    e,
                    Event::TransferComplete {
                        failed: 0,
                        files: 1,
                        ..
                    }
                ),
                "{e:?}"
            );
        } else {
            assert!(matches!(e, Event::TransferRejected { .. }), "{e:?}");
        }
    }
    for r in &rs {
        assert_eq!(
            std::fs::read(downloads(r).join("dataset.bin")).unwrap(),
            data
        );
        let t = received(r).await;
        assert_eq!(
            (t.done_bytes, t.total_bytes),
            (data.len() as u64, data.len() as u64)
        );
    }
    // The sender uploaded less than one copy per receiver: they relayed.
    let relayed: u64 = rs.iter().map(|r| r.transfer_stats().bytes_sent).sum();
    assert!(relayed > 0, "no receiver relayed anything");
    assert!(!downloads(&refuser).join("dataset.bin").exists());
    let sent = a.transfers().unwrap();
    for id in &ids[..4] {
        let t = sent.iter().find(|t| t.id == *id).unwrap();
        assert_eq!(t.state, TransferState::Complete);
    }
    for n in rs.drain(..).chain([refuser, a]) {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_relay_that_leaves_mid_transfer_leaves_every_other_receiver_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut rs) = star(dir.path(), 8).await;
    let data = pseudo_random(32 << 20, 23);
    let src = dir.path().join("slides.bin");
    std::fs::write(&src, &data).unwrap();
    let mut ea = a.events();
    let peers: Vec<_> = rs.iter().map(|r| r.id()).collect();
    let ids = a.send_tree(&peers, &src).await.unwrap();
    // The first receiver seen forwarding to another is a relay: it leaves.
    let gone = wait_for(T, "a receiver to relay", || async {
        rs.iter().position(|r| r.transfer_stats().bytes_sent > 0)
    })
    .await;
    let relay = rs.remove(gone);
    let relay_id = relay.id();
    relay.shutdown().await.unwrap();
    let ended = ends(&mut ea, &ids).await;
    for (i, id) in ids.iter().enumerate() {
        if peers[i] == relay_id {
            continue;
        }
        let e = &ended[id];
        assert!(
            matches!(
                e,
                Event::TransferComplete {
                    failed: 0,
                    files: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    for r in &rs {
        assert_eq!(
            std::fs::read(downloads(r).join("slides.bin")).unwrap(),
            data
        );
        received(r).await;
    }
    for n in rs.drain(..).chain([a]) {
        n.shutdown().await.unwrap();
    }
}

/// `peerconnect ARGS…` as a process whose JSON lines the harness reads (its
/// stdin held open: a `room join` stays in the room until it closes).
fn spawn(args: &[&str]) -> peerconnect_tests::UpProcess {
    let mut cmd = std::process::Command::new(peerconnect_tests::peerconnect_bin());
    cmd.args(args).stdin(std::process::Stdio::piped());
    peerconnect_tests::UpProcess::spawn(cmd)
}

#[test]
fn send_room_from_the_cli_reaches_every_member() {
    const ROOM: &str = "class";
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let net = [
        "--no-discovery",
        "--no-web",
        "--listen",
        "127.0.0.1:0",
        "--json",
    ];
    let mut sender = spawn(&[&["up", "--data-dir", &p("s")][..], &net[..]].concat());
    let addr = sender.listening(T)["addrs"][0]
        .as_str()
        .unwrap()
        .to_string();
    let mut procs = Vec::new();
    for i in 0..3 {
        let (data, dl) = (p(&format!("r{i}")), p(&format!("dl{i}")));
        let args = [
            "up",
            "--yes",
            "--downloads",
            &dl,
            "--data-dir",
            &data,
            "--connect",
            &addr,
        ];
        let mut up = spawn(&[&args[..], &net[..]].concat());
        up.listening(T);
        procs.push(up);
        procs.push(spawn(&[
            "room",
            "join",
            ROOM,
            "--data-dir",
            &data,
            "--json",
        ]));
    }
    let _in_room = spawn(&["room", "join", ROOM, "--data-dir", &p("s"), "--json"]);
    let bin = peerconnect_tests::peerconnect_bin();
    let deadline = std::time::Instant::now() + T;
    loop {
        let out = std::process::Command::new(&bin)
            .args(["room", "list", "--data-dir", &p("s"), "--json"])
            .output()
            .unwrap();
        let rooms: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if rooms[0]["neighbors"].as_u64() == Some(3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the room never had 3 members: {rooms}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let data = pseudo_random(8 << 20, 31);
    let src = dir.path().join("slides.pdf");
    std::fs::write(&src, &data).unwrap();
    let out = std::process::Command::new(&bin)
        .args([
            "send",
            "--room",
            ROOM,
            src.to_str().unwrap(),
            "--data-dir",
            &p("s"),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = lines
        .iter()
        .filter(|v| v["event"] == "transfer_complete")
        .count();
    assert_eq!(done, 3, "{lines:#?}");
    for i in 0..3 {
        let got = std::fs::read(dir.path().join(format!("dl{i}/slides.pdf"))).unwrap();
        assert!(got == data, "member {i} got a different file");
    }
}

/// The done-when on real processes: a sender and 8 receivers, each a
/// `peerconnect up` in its own network namespace on one LAN (every link
/// shaped to 100 Mbit/s, so the file takes seconds, not a blink), one 32 MiB
/// file down a relay tree (`peerconnect send --tree`); the first receiver
/// whose `peerconnect transfers --json` shows it uploading (a relay) is
/// SIGKILLed; every other receiver completes with a byte-identical file.
/// SKIPPED where namespaces cannot be made.
#[test]
fn a_relay_killed_mid_transfer_in_namespaces_leaves_the_seven_others_complete() {
    const TEST: &str = "a_relay_killed_mid_transfer_in_namespaces_leaves_the_seven_others_complete";
    const N: usize = 8;
    const PORT: u16 = 7411;
    let lan = match peerconnect_tests::Lan::up(N + 1) {
        Ok(l) => l,
        Err(why) => return peerconnect_tests::skip(TEST, &why),
    };
    if let Err(why) = lan.shape("100mbit") {
        return peerconnect_tests::skip(TEST, &why);
    }
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = |i: usize| dir.path().join(format!("h{i}"));
    let dl = |i: usize| dir.path().join(format!("dl{i}"));
    let listen = |i: usize| format!("{}:{PORT}", lan.ip(i));
    let sender_addr = listen(1);
    let mut sender = peerconnect_tests::UpProcess::start(
        &lan,
        1,
        &data_dir(1),
        &["--no-web", "--no-discovery", "--listen", &sender_addr],
    );
    sender.listening(T);
    let mut receivers: Vec<Option<peerconnect_tests::UpProcess>> = Vec::new();
    let mut ids = Vec::new();
    for i in 2..=N + 1 {
        let dl = dl(i).to_str().unwrap().to_string();
        let mut r = peerconnect_tests::UpProcess::start(
            &lan,
            i,
            &data_dir(i),
            &[
                "--no-web",
                "--no-discovery",
                "--listen",
                &listen(i),
                "--connect",
                &sender_addr,
                "--yes",
                "--downloads",
                &dl,
            ],
        );
        r.listening(T);
        ids.push(r.id());
        receivers.push(Some(r));
    }
    sender.until(T, "every receiver connected to the sender", |s| {
        let connected: std::collections::BTreeSet<_> = s
            .iter()
            .filter(|v| v["event"] == "peer_connected")
            .filter_map(|v| v["peer"]["id"].as_str())
            .collect();
        ids.iter().all(|id| connected.contains(id.as_str()))
    });
    let data = pseudo_random(32 << 20, 41);
    let src = dir.path().join("dataset.bin");
    std::fs::write(&src, &data).unwrap();
    let bin = peerconnect_tests::peerconnect_bin();
    let mut send = lan.command(1, &bin);
    send.args(["send", "--tree", "--json", "--data-dir"])
        .arg(data_dir(1));
    for id in &ids {
        send.args(["--to", id]);
    }
    send.arg(&src).stdin(std::process::Stdio::null());
    let send = peerconnect_tests::UpProcess::spawn(send);
    // The first receiver seen uploading is a relay: SIGKILL it.
    let uploaded = |i: usize| -> u64 {
        let out = lan
            .command(i, &bin)
            .args(["transfers", "--json", "--data-dir"])
            .arg(data_dir(i))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "transfers failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["stats"]["bytes_sent"].as_u64().expect("stats.bytes_sent")
    };
    let deadline = std::time::Instant::now() + T;
    let killed = 'found: loop {
        for (k, r) in receivers.iter().enumerate() {
            if r.is_some() && uploaded(k + 2) > 0 {
                break 'found k;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no receiver ever relayed"
        );
    };
    receivers[killed].take().unwrap().kill();
    eprintln!(
        "{TEST}: killed receiver {} (a relay) after {:?}",
        killed + 1,
        started.elapsed()
    );
    let (status, lines) = send.finish(T);
    eprintln!("{TEST}: send exited with {status}");
    let complete: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|v| v["event"] == "transfer_complete" && v["failed"] == 0)
        .filter_map(|v| v["peer"].as_str())
        .collect();
    for (k, id) in ids.iter().enumerate() {
        if k == killed {
            assert!(
                !complete.contains(id.as_str()),
                "the relay was killed after it had the whole file: the test proved nothing"
            );
            continue;
        }
        assert!(
            complete.contains(id.as_str()),
            "receiver {} did not complete: {lines:#?}",
            k + 1
        );
        let got = std::fs::read(dl(k + 2).join("dataset.bin")).unwrap();
        assert!(got == data, "receiver {} holds a different file", k + 1);
    }
    eprintln!(
        "{TEST}: every other receiver complete after {:?}",
        started.elapsed()
    );
    for r in receivers.into_iter().flatten() {
        r.stop();
    }
    sender.stop();
}
