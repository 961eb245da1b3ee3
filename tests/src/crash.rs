//! Crash-and-resume rounds with the real `peerconnect` binary on 127.0.0.1.
//!
//! A round: a receiver (`up --yes --downloads DL`) and a sender (`up`) run as
//! child processes; `peerconnect send` sends a big file and a folder of many
//! small files through the sender; once the receiver reports a chosen byte
//! point, the sender queues a direct message (`peerconnect msg`) and then
//! the sender's or the receiver's node is killed with SIGKILL. It is
//! restarted on the same data dir (and port), the same `send` is run again,
//! and the round checks what a user would: every file whole and BLAKE3-equal
//! to its source, nothing else in the download folder (no `.part` either),
//! both nodes' stores readable and holding each other as peers, and the
//! message stored once on the receiver and acknowledged to the sender.
//!
//! Used by `tests/tests/crash_resume.rs` (a few points in CI, many in the
//! ignored stress test that `scripts/crash-loop` runs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use peerconnect::PeerId;
use peerconnect::control;
use peerconnect::proto::messaging::{MessageInfo, Status};
use peerconnect::store::Store;
use rand::{Rng, SeedableRng};

use crate::{UpProcess, peerconnect_bin, up_command};

/// Which node a round kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    Sender,
    Receiver,
}

impl std::fmt::Display for Victim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sender => "sender",
            Self::Receiver => "receiver",
        })
    }
}

/// The files every round sends: one big file and a folder of small ones,
/// with the BLAKE3 hash of each (by path relative to the download folder).
#[derive(Debug)]
pub struct Source {
    pub big: PathBuf,
    pub folder: PathBuf,
    pub hashes: BTreeMap<PathBuf, blake3::Hash>,
    /// Directories the folder holds (relative, as they must appear received).
    pub dirs: Vec<PathBuf>,
    pub total_bytes: u64,
}

/// 64-bit mix of the position: every 8 bytes of the big file differ, so a
/// chunk written at the wrong offset cannot hash the same.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Writes the big file (`big_bytes`) and a folder of `files` files (0 to
/// 16 KiB each, 100 per subfolder, a few with spaces and accents) under `dir`.
pub fn make_source(dir: &Path, big_bytes: u64, files: usize, seed: u64) -> Source {
    let mut hashes = BTreeMap::new();
    let big = dir.join("big video.bin");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&big).unwrap());
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < big_bytes {
        let n = (big_bytes - off).min(block.len() as u64) as usize;
        for (i, w) in block[..n].chunks_mut(8).enumerate() {
            let v = splitmix(seed ^ (off / 8 + i as u64)).to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
        out.write_all(&block[..n]).unwrap();
        hasher.update(&block[..n]);
        off += n as u64;
    }
    out.flush().unwrap();
    hashes.insert(PathBuf::from("big video.bin"), hasher.finalize());

    let folder = dir.join("photos");
    let mut dirs = vec![PathBuf::from("photos")];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut total = big_bytes;
    for i in 0..files {
        let sub = PathBuf::from("photos").join(format!("day {:02}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(dir.join(&sub)).unwrap();
            dirs.push(sub.clone());
        }
        let name = if i % 250 == 7 {
            format!("plage é {i:04}.jpg")
        } else {
            format!("img_{i:04}.jpg")
        };
        let len = if i % 50 == 0 {
            0
        } else {
            rng.random_range(1..=16 * 1024)
        };
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        let rel = sub.join(name);
        std::fs::write(dir.join(&rel), &data).unwrap();
        hashes.insert(rel, blake3::hash(&data));
        total += len as u64;
    }
    Source {
        big,
        folder,
        hashes,
        dirs,
        total_bytes: total,
    }
}

/// What one round saw.
#[derive(Debug, Clone)]
pub struct RoundResult {
    pub victim: Victim,
    /// The byte point asked for (received bytes, of [`Source::total_bytes`]).
    pub point: u64,
    /// What the receiver had reported when the kill was sent.
    pub killed_at: u64,
    /// Whether the first send had completed before the kill landed.
    pub completed_before_kill: bool,
    /// Exit code of the interrupted `send`.
    pub first_exit: Option<i32>,
    /// File bytes that crossed the network in the resumed send.
    pub resumed_transferred: u64,
    /// How long the resumed send took (0 if it was not needed).
    pub resume_secs: f64,
    pub files_checked: usize,
    pub message: MessageFate,
    pub secs: f64,
}

/// What became of the direct message sent at the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFate {
    /// `msg` said queued; delivered once.
    Delivered,
    /// `msg` failed with the dying node, which had stored it: delivered once.
    StoredAtKillDelivered,
    /// `msg` failed with the dying node before it was stored: in no store.
    NotStored,
}

impl std::fmt::Display for MessageFate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Delivered => "queued, delivered once",
            Self::StoredAtKillDelivered => "stored as the node died, delivered once",
            Self::NotStored => "node died before storing it (msg failed)",
        })
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `peerconnect up --json` on `data`, listening on `listen`.
fn start_up(data: &Path, listen: &str, downloads: Option<&Path>) -> UpProcess {
    let mut cmd = up_command(data, listen);
    if let Some(dl) = downloads {
        cmd.args(["--yes", "--downloads", s(dl)]);
    }
    UpProcess::spawn(cmd)
}

fn start_send(sdir: &Path, to: &str, src: &Source) -> UpProcess {
    let mut cmd = Command::new(peerconnect_bin());
    cmd.args(["send", "--json", "--to", to, "--data-dir", s(sdir)])
        .arg(&src.big)
        .arg(&src.folder)
        .stdin(std::process::Stdio::null());
    UpProcess::spawn(cmd)
}

fn addr_of(up: &mut UpProcess, timeout: Duration) -> String {
    up.listening(timeout)["addrs"][0]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every file and folder under `root`, relative to it.
pub fn tree(root: &Path) -> (BTreeMap<PathBuf, PathBuf>, Vec<PathBuf>) {
    let mut files = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                dirs.push(rel);
            } else {
                files.insert(rel, e.path());
            }
        }
    }
    dirs.sort();
    (files, dirs)
}

/// Checks the download folder holds exactly `src`, every file BLAKE3-equal.
pub fn check_received(dl: &Path, src: &Source) -> usize {
    let (files, dirs) = tree(dl);
    let parts: Vec<_> = files
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), ".part files left: {parts:?}");
    let extra: Vec<_> = files
        .keys()
        .filter(|p| !src.hashes.contains_key(*p))
        .collect();
    assert!(extra.is_empty(), "files nobody sent: {extra:?}");
    let missing: Vec<_> = src
        .hashes
        .keys()
        .filter(|p| !files.contains_key(*p))
        .collect();
    assert!(missing.is_empty(), "files missing: {missing:?}");
    let mut want_dirs = src.dirs.clone();
    want_dirs.sort();
    assert_eq!(dirs, want_dirs, "folders in the download folder");
    for (rel, path) in &files {
        let mut h = blake3::Hasher::new();
        std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut h).unwrap();
        assert_eq!(h.finalize(), src.hashes[rel], "{} differs", rel.display());
    }
    files.len()
}

/// Runs one round in `work` (an empty folder). Panics with what failed.
pub fn round(src: &Source, victim: Victim, point: u64, work: &Path, t: Duration) -> RoundResult {
    let started = Instant::now();
    let (rdir, sdir, dl) = (work.join("r"), work.join("s"), work.join("dl"));
    let mut recv = start_up(&rdir, "127.0.0.1:0", Some(&dl));
    let raddr = addr_of(&mut recv, t);
    let rid = recv.id();
    let mut sender = start_up(&sdir, "127.0.0.1:0", None);
    addr_of(&mut sender, t);
    let sid = sender.id();

    let send = start_send(&sdir, &raddr, src);
    recv.until(t, "the byte point or the end", |seen| {
        seen.iter().any(|v| {
            (v["event"] == "progress" && v["done_bytes"].as_u64().unwrap_or(0) >= point)
                || v["event"] == "transfer_complete"
        })
    });
    let killed_at = recv
        .seen
        .iter()
        .filter(|v| v["event"] == "progress")
        .filter_map(|v| v["done_bytes"].as_u64())
        .max()
        .unwrap_or(0);

    // A direct message sent at the kill: `msg` runs while the node dies.
    let text = format!("round at byte {point}: {}", rand::random::<u64>());
    let msg = Command::new(peerconnect_bin())
        .args(["msg", &rid, &text, "--wait", "0", "--json", "--data-dir"])
        .arg(&sdir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // SIGKILL, then a restart on the same data dir (and port), once `msg`
    // has ended (when the node it talked to dies, `msg` starts a node of its
    // own on the data dir to send, and holds the dir while it runs).
    let mut recv_seen = Vec::new();
    let msg_ended = |msg: std::process::Child| msg.wait_with_output().unwrap();
    let msg = match victim {
        Victim::Receiver => {
            recv_seen = recv.kill();
            let msg = msg_ended(msg);
            recv = start_up(&rdir, &raddr, Some(&dl));
            addr_of(&mut recv, t);
            msg
        }
        Victim::Sender => {
            sender.kill();
            let msg = msg_ended(msg);
            // The receiver sees its transfer end (or complete: the kill can
            // land after the last byte arrived).
            recv.until(t, "the receiver's transfer to end", |seen| {
                seen.iter().any(|v| {
                    v["event"] == "transfer_complete"
                        || v["event"] == "transfer_cancelled"
                        || (v["event"] == "transfer_failed" && v["path"].is_null())
                })
            });
            sender = start_up(&sdir, "127.0.0.1:0", None);
            addr_of(&mut sender, t);
            msg
        }
    };
    let (first, _) = send.finish(t);
    // `msg` either said the message is queued, or failed because the node
    // died under it (then the message may or may not have been stored).
    let queued = msg.status.success();
    assert!(
        queued || victim == Victim::Sender,
        "msg failed with the sender alive: {}",
        String::from_utf8_lossy(&msg.stderr)
    );

    // Whether the first send finished before the kill landed (the byte
    // point is seen through progress events, 100 ms apart): then sending
    // again would rightly make second copies, so it is not sent again.
    let completed_before_kill = match victim {
        Victim::Receiver => first.success(),
        Victim::Sender => recv_seen
            .iter()
            .chain(&recv.seen)
            .any(|v| v["event"] == "transfer_complete"),
    };
    let mut resumed_transferred = 0;
    let mut resume_secs = 0.0;
    if !completed_before_kill {
        let resumed = Instant::now();
        let send = start_send(&sdir, &raddr, src);
        let (status2, events) = send.finish(t);
        assert_eq!(
            status2.code(),
            Some(0),
            "the resumed send failed: {events:#?}"
        );
        let complete = events
            .iter()
            .find(|v| v["event"] == "transfer_complete")
            .unwrap_or_else(|| panic!("no transfer_complete: {events:#?}"));
        assert_eq!(complete["failed"], 0, "{complete}");
        resumed_transferred = complete["transferred"].as_u64().unwrap();
        resume_secs = resumed.elapsed().as_secs_f64();
    }

    // The message reaches the receiver: the sender's node (asked through its
    // control socket) has it acknowledged, if it was stored at all.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + t;
    let message = loop {
        let req = control::Request::Conversation {
            peer: rid.clone(),
            before: None,
            limit: 1000,
        };
        let reply = rt.block_on(control::call(&sdir, &req, |_| {})).unwrap();
        let list = reply.expect("the sender runs").expect("conversation");
        let list: Vec<MessageInfo> = serde_json::from_value(list).unwrap();
        let copies: Vec<_> = list.iter().filter(|m| m.text == text).collect();
        assert!(
            copies.len() <= 1,
            "the sender holds {} copies",
            copies.len()
        );
        let Some(m) = copies.first() else {
            assert!(!queued, "msg said queued, but the sender's store lost it");
            break MessageFate::NotStored;
        };
        if matches!(m.status, Status::Delivered | Status::Read) {
            break if queued {
                MessageFate::Delivered
            } else {
                MessageFate::StoredAtKillDelivered
            };
        }
        if Instant::now() >= deadline {
            let on_receiver = Store::open(&rdir).and_then(|r| {
                r.conversation(&rid.parse().unwrap(), &sid.parse().unwrap(), None, 1000)
            });
            panic!(
                "the message is still {:?} after {t:?}; the receiver's history: {on_receiver:?}",
                m.status
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    recv_seen.extend(recv.stop());
    sender.stop();
    // Shown to the user at most once (a kill between storing and printing
    // can lose the event, never the message: the store is checked below).
    let shown = recv_seen
        .iter()
        .filter(|v| v["event"] == "message_received" && v["message"]["text"] == text.as_str())
        .count();
    assert!(shown <= 1, "the message was shown {shown} times");

    if std::env::var_os("CRASH_DEBUG").is_some() {
        for t in Store::open(&rdir).unwrap().transfers(10).unwrap() {
            eprintln!("receiver's transfer: {t:?}");
        }
    }
    let files_checked = check_received(&dl, src);

    // Both stores open, know each other, and hold the message once.
    let (rid, sid): (PeerId, PeerId) = (rid.parse().unwrap(), sid.parse().unwrap());
    let rstore = Store::open(&rdir).expect("the receiver's store opens");
    assert!(
        rstore.peers().unwrap().iter().any(|p| p.id == sid),
        "the receiver's store lost the sender"
    );
    let history = rstore
        .conversation(&rid, &sid, None, 1000)
        .unwrap()
        .unwrap_or_default();
    let copies = history.iter().filter(|m| m.text == text).count();
    let want = usize::from(message != MessageFate::NotStored);
    assert_eq!(
        copies, want,
        "the receiver stored the message {copies} times"
    );
    assert!(rstore.transfers(100).is_ok());
    let sstore = Store::open(&sdir).expect("the sender's store opens");
    assert!(sstore.peers().unwrap().iter().any(|p| p.id == rid));
    let out: Vec<_> = sstore
        .conversation(&sid, &rid, None, 1000)
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.text == text)
        .collect();
    assert_eq!(
        out.len(),
        want,
        "the sender's history holds {} copies",
        out.len()
    );

    RoundResult {
        victim,
        point,
        killed_at,
        completed_before_kill,
        first_exit: first.code(),
        resumed_transferred,
        resume_secs,
        files_checked,
        message,
        secs: started.elapsed().as_secs_f64(),
    }
}

/// The byte points of a run: `n` per direction, uniform in 2–80 % of
/// `total`, from `seed`.
pub fn points(seed: u64, n: usize, total: u64) -> Vec<(Victim, u64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = Vec::new();
    for i in 0..2 * n {
        let victim = if i % 2 == 0 {
            Victim::Receiver
        } else {
            Victim::Sender
        };
        v.push((victim, rng.random_range(total / 50..total * 80 / 100)));
    }
    v
}
