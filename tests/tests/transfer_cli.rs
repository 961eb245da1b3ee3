//! `peerconnect send`, `receive` and `up --yes --downloads` as processes on
//! 127.0.0.1, and a receiver killed with SIGKILL that resumes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use peerconnect::{Config, Event, Node};
use peerconnect_tests::crash::tree;
use peerconnect_tests::{UpProcess, next_matching, peerconnect_bin, wait_for};

const T: Duration = Duration::from_secs(60);

/// `peerconnect ARGS… --json` with its events read by the harness; `stdin`
/// (if any) is written to the process first.
fn spawn(args: &[&str], stdin: Option<&str>) -> UpProcess {
    let mut cmd = Command::new(peerconnect_bin());
    cmd.args(args).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut p = UpProcess::spawn(cmd);
    if let Some(text) = stdin {
        p.take_stdin().unwrap().write_all(text.as_bytes()).unwrap();
    }
    p
}

/// The first address the process's node listens on.
fn listening(p: &mut UpProcess) -> String {
    p.listening(T)["addrs"][0].as_str().unwrap().to_string()
}

/// The first event named `name`.
fn event(p: &mut UpProcess, name: &str) -> serde_json::Value {
    p.first(T, name, |v| v["event"] == name)
}

fn run(args: &[&str]) -> Output {
    Command::new(peerconnect_bin()).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sample_folder(root: &Path) -> PathBuf {
    let src = root.join("Holiday 2024");
    std::fs::create_dir_all(src.join("day one/empty")).unwrap();
    std::fs::write(src.join("day one/plage é.txt"), "sun").unwrap();
    std::fs::write(src.join("zero"), b"").unwrap();
    std::fs::write(src.join("big.bin"), vec![42u8; 3 << 20]).unwrap();
    src
}

/// `a` and `b` hold the same folders and the same files, byte for byte.
fn same_tree(a: &Path, b: &Path) {
    let (files_a, dirs_a) = tree(a);
    let (files_b, dirs_b) = tree(b);
    assert_eq!(dirs_a, dirs_b);
    assert_eq!(
        files_a.keys().collect::<Vec<_>>(),
        files_b.keys().collect::<Vec<_>>()
    );
    for (rel, path) in &files_a {
        let other = std::fs::read(&files_b[rel]).unwrap();
        assert!(std::fs::read(path).unwrap() == other, "{rel:?} differs");
    }
}

#[test]
fn send_to_a_running_up_delivers_a_folder_and_reports_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_folder(dir.path());
    let dl = dir.path().join("dl");
    let mut up = spawn(
        &[
            "up",
            "--yes",
            "--downloads",
            s(&dl),
            "--data-dir",
            s(&dir.path().join("r")),
            "--no-discovery",
            "--no-web",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ],
        None,
    );
    let addr = listening(&mut up);
    // the sender runs its own `up`; `send` goes through its control socket
    let sender_dir = dir.path().join("s");
    let mut sender_up = spawn(
        &[
            "up",
            "--data-dir",
            s(&sender_dir),
            "--no-discovery",
            "--no-web",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ],
        None,
    );
    listening(&mut sender_up);
    let out = run(&[
        "send",
        "--to",
        &addr,
        s(&src),
        "--data-dir",
        s(&sender_dir),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done: Vec<_> = lines
        .iter()
        .filter(|v| v["event"] == "transfer_done")
        .collect();
    assert_eq!(done.len(), 3, "{lines:?}");
    for d in done {
        let path = PathBuf::from(d["path"].as_str().unwrap());
        let data = std::fs::read(&path).unwrap();
        assert_eq!(d["bytes"].as_u64().unwrap(), data.len() as u64);
        assert_eq!(d["blake3"], blake3::hash(&data).to_hex().as_str());
    }
    assert!(lines.iter().any(|v| v["event"] == "progress"));
    assert_eq!(lines.last().unwrap()["event"], "transfer_complete");
    same_tree(&src, &dl.join("Holiday 2024"));
    // the receiving up reported each file too
    let got = event(&mut up, "transfer_done");
    assert!(got["path"].as_str().unwrap().starts_with(s(&dl)));
}

#[test]
fn receive_once_takes_one_transfer_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_folder(dir.path());
    let dl = dir.path().join("incoming");
    let mut recv = spawn(
        &[
            "receive",
            "--once",
            "--yes",
            "--dir",
            s(&dl),
            "--data-dir",
            s(&dir.path().join("r")),
            "--no-discovery",
            "--no-web",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ],
        None,
    );
    let addr = listening(&mut recv);
    let out = run(&[
        "send",
        "--to",
        &addr,
        s(&src),
        "--data-dir",
        s(&dir.path().join("s")),
        "--no-discovery",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("sent 3 files"), "{human}");
    let (status, events) = recv.finish(T);
    assert_eq!(status.code(), Some(0));
    assert!(
        events.iter().any(|v| v["event"] == "transfer_complete"),
        "{events:?}"
    );
    same_tree(&src, &dl.join("Holiday 2024"));
}

#[test]
fn a_refusal_or_an_unknown_peer_exits_with_3() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("note.txt");
    std::fs::write(&f, "hi").unwrap();
    // nobody listens there
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let out = run(&[
        "send",
        "--to",
        &dead_addr,
        s(&f),
        "--data-dir",
        s(&dir.path().join("s")),
        "--no-discovery",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "send",
        "--to",
        "nosuchpeer",
        s(&f),
        "--wait",
        "0",
        "--data-dir",
        s(&dir.path().join("s")),
        "--no-discovery",
    ]);
    assert_eq!(out.status.code(), Some(3));
    // a receiver whose user says no
    let mut recv = spawn(
        &[
            "receive",
            "--dir",
            s(&dir.path().join("dl")),
            "--data-dir",
            s(&dir.path().join("r")),
            "--no-discovery",
            "--no-web",
            "--listen",
            "127.0.0.1:0",
            "--json",
        ],
        Some("n\n"),
    );
    let addr = listening(&mut recv);
    let out = run(&[
        "send",
        "--to",
        &addr,
        s(&f),
        "--data-dir",
        s(&dir.path().join("s")),
        "--no-discovery",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!dir.path().join("dl/note.txt").exists());
}

#[tokio::test]
async fn a_receiver_killed_with_sigkill_resumes_and_less_crosses_the_network() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let size = 32 * MIB;
    let f = dir.path().join("video.mp4");
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(&f, &data).unwrap();
    let dl = dir.path().join("dl");
    let rdir = dir.path().join("r");
    let up_args = |dl: &Path, rdir: &Path| {
        vec![
            "up".to_string(),
            "--yes".into(),
            "--downloads".into(),
            s(dl).into(),
            "--data-dir".into(),
            s(rdir).into(),
            "--no-discovery".into(),
            "--no-web".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--json".into(),
        ]
    };
    let args = up_args(&dl, &rdir);
    let mut up = spawn(&args.iter().map(|a| a.as_str()).collect::<Vec<_>>(), None);
    let addr = listening(&mut up).parse().unwrap();

    // A sender that stops itself after 12 MiB, so the receiver dies midway.
    let sdir = dir.path().join("s");
    let mut c = Config::local(&sdir);
    c.transfer.pause_after = Some(12 * MIB);
    let a = Node::start(c).await.unwrap();
    let peer = a.connect(addr, None).await.unwrap();
    let mut ea = a.events();
    let id = a.send_files(peer, std::slice::from_ref(&f)).await.unwrap();
    let part = dl.join("video.mp4.part");
    wait_for(T, "the part to hold 8 MiB", || {
        let part = part.clone();
        async move {
            (std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) >= 8 * MIB).then_some(())
        }
    })
    .await;
    drop(up); // SIGKILL
    next_matching(&mut ea, T, "the sender to see the receiver go", |e| {
        matches!(e, Event::TransferFailed { id: got, path: None, .. } if *got == id).then_some(())
    })
    .await;
    a.shutdown().await.unwrap();
    let held = std::fs::metadata(&part).unwrap().len();
    assert!(held >= 8 * MIB && held < size, "{held}");

    // The receiver restarts on its data dir; the same file is sent again.
    let mut up = spawn(&args.iter().map(|a| a.as_str()).collect::<Vec<_>>(), None);
    let addr = listening(&mut up).parse().unwrap();
    let a = Node::start(Config::local(&sdir)).await.unwrap();
    let peer = a.connect(addr, None).await.unwrap();
    let mut ea = a.events();
    let id = a.send_files(peer, std::slice::from_ref(&f)).await.unwrap();
    let end = next_matching(&mut ea, T, "the resumed transfer to end", |e| {
        (e.transfer_id() == Some(id) && e.ends_transfer()).then(|| e.clone())
    })
    .await;
    let Event::TransferComplete {
        failed: 0,
        transferred,
        ..
    } = end
    else {
        panic!("{end:?}");
    };
    // whole 1 MiB chunks of the part were proven; only the rest crossed
    let proven = held / MIB * MIB;
    assert_eq!(transferred, size - proven);
    assert_eq!(a.transfer_stats().bytes_sent, size - proven);
    assert!(transferred < size);
    assert_eq!(std::fs::read(dl.join("video.mp4")).unwrap(), data);
    assert!(!part.exists());
    let done = event(&mut up, "transfer_done");
    assert_eq!(done["blake3"], blake3::hash(&data).to_hex().as_str());
    a.shutdown().await.unwrap();
}
