//! Faults in the middle of a transfer or a conversation (issue 17 item 4),
//! each checked by what a user would notice: one lane of a session cut
//! mid-transfer, the receiver's disk filling up, the sender vanishing between
//! offer and answer, and the receiving node killed while it stores a burst
//! of direct messages.
//!
//! Faults on the wire come from [`Proxy`], a relay standing between the two
//! nodes on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerconnect::net::transfer::TransferId;
use peerconnect::proto::messaging::Status;
use peerconnect::proto::transfer::{Selection, TransferState};
use peerconnect::store::Store;
use peerconnect::{Config, Event, Node, PeerId};
use peerconnect_tests::crash::tree;
use peerconnect_tests::proxy::Proxy;
use peerconnect_tests::{UpProcess, next_matching, up_command, wait_for};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

async fn node(dir: &Path, name: &str, f: impl FnOnce(&mut Config)) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    f(&mut c);
    Node::start(c).await.unwrap()
}

/// A file of `len` bytes that differ everywhere; its BLAKE3.
fn source(path: &Path, len: usize, seed: u64) -> blake3::Hash {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &data).unwrap();
    blake3::hash(&data)
}

fn hash_of(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut h).unwrap();
    h.finalize()
}

/// The files in `dir` (relative names), or none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    tree(dir).0.into_keys().collect()
}

/// The final event of transfer `id`.
async fn finished(events: &mut peerconnect::EventStream, id: TransferId) -> Event {
    next_matching(events, T, "the transfer's final event", |e| {
        (e.transfer_id() == Some(id) && e.ends_transfer()).then(|| e.clone())
    })
    .await
}

#[track_caller]
fn assert_complete(e: &Event) -> u64 {
    match e {
        Event::TransferComplete {
            failed: 0,
            transferred,
            ..
        } => *transferred,
        _ => panic!("the transfer did not complete: {e:?}"),
    }
}

/// Sends `file` from `a` to `b` (which accepts everything) and checks it
/// arrives whole in `dl`; the bytes that crossed the network.
async fn send_and_check(a: &Node, b: PeerId, file: &Path, want: blake3::Hash, dl: &Path) -> u64 {
    let mut ea = a.events();
    let id = a.send_files(b, &[file.to_path_buf()]).await.unwrap();
    let transferred = assert_complete(&finished(&mut ea, id).await);
    let name = file.file_name().unwrap();
    assert_eq!(hash_of(&dl.join(name)), want, "{name:?} differs");
    transferred
}

/// (a) One lane's TCP connection is reset while a 48 MiB file streams over
/// four: the file arrives complete and BLAKE3-equal, the session (and so the
/// peer's presence) stays up, and the cut lane's frames are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_cut_mid_transfer_is_survived_and_the_file_arrives_intact() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), "alpha", |_| {}).await;
    let b = node(&dir.path().join("b"), "beta", |c| c.accept_all = true).await;
    let proxy = Proxy::start(b.listen_addrs()[0]).await;
    let b_id = a.connect(proxy.addr(), Some(b.id())).await.unwrap();
    let session = a.links().get(&b_id).unwrap().session;
    let len = 48 * MIB;
    let file = dir.path().join("src/film.bin");
    let want = source(&file, len, 7);

    // Cut the busiest lane once a third of the file went through, as long
    // as another lane is there to take over.
    let cut: Arc<Mutex<Option<(usize, u64)>>> = Arc::default();
    let c = cut.clone();
    proxy.on_bytes(move |p| {
        let mut cut = c.lock().unwrap();
        if cut.is_some() || p.total_up() < len as u64 / 3 {
            return;
        }
        let conns = p.connections();
        let live: Vec<usize> = (0..conns.len())
            .filter(|&i| !conns[i].ended.load(std::sync::atomic::Ordering::SeqCst))
            .collect();
        if live.len() < 2 {
            return;
        }
        let up = |i: usize| conns[i].up.load(std::sync::atomic::Ordering::SeqCst);
        let busiest = *live.iter().max_by_key(|&&i| up(i)).unwrap();
        *cut = Some((live.len(), up(busiest)));
        p.kill(&conns[busiest]);
    });

    let dl = dir.path().join("b/downloads");
    send_and_check(&a, b_id, &file, want, &dl).await;
    let (lanes, carried) = cut.lock().unwrap().expect("a lane was cut mid-transfer");
    eprintln!("cut a lane that had carried {carried} bytes, of {lanes} live lanes");
    assert_eq!(files_in(&dl), [PathBuf::from("film.bin")], "nothing else");
    assert_eq!(
        a.links().get(&b_id).map(|l| l.session),
        Some(session),
        "the peer stayed connected: the same session carried on"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Unmounts a tmpfs when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Why a tmpfs cannot be mounted here, or `None` if it can.
fn tmpfs_unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("mounting a tmpfs needs root");
    }
    None
}

/// Fills the file system of `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("another program's file");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5a; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

/// (b) The receiver's disk fills up mid-transfer (a 40 MiB tmpfs as its
/// download folder, filled by another writer): the user gets a clear error
/// naming the full disk, the partial file stays as `.part` and nothing is
/// renamed into place, the node keeps serving (a message goes through), and
/// once space is freed, offering the file again resumes from the part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_transfer_clearly_and_the_part_resumes_later() {
    if let Some(why) = tmpfs_unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("downloads");
    std::fs::create_dir_all(&dl).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
        .arg(&dl)
        .status()
        .unwrap();
    if !ok.success() {
        eprintln!("SKIPPED: mount -t tmpfs failed ({ok})");
        return;
    }
    let _mounted = Mounted(dl.clone());

    let len = 16 * MIB;
    let paused_at = 4 * MIB as u64;
    let a = node(&dir.path().join("a"), "alpha", |c| {
        c.transfer.pause_after = Some(paused_at)
    })
    .await;
    let (d, bdir) = (dl.clone(), dir.path().join("b"));
    let b = node(&bdir, "beta", |c| {
        c.accept_all = true;
        c.downloads = d;
    })
    .await;
    let b_id = a.connect(b.listen_addrs()[0], None).await.unwrap();
    let file = dir.path().join("src/film.bin");
    let want = source(&file, len, 11);

    let (mut ea, mut eb) = (a.events(), b.events());
    let id = a
        .send_files(b_id, std::slice::from_ref(&file))
        .await
        .unwrap();
    wait_for(T, "the receiver to hold the first bytes", || {
        let b = b.clone();
        async move {
            let t = b.transfers().unwrap();
            t.iter()
                .any(|t| t.id == id && t.done_bytes >= paused_at)
                .then_some(())
        }
    })
    .await;
    let filler = fill(&dl);
    a.resume_transfer(id).unwrap();

    // The user sees which file failed and why, then the transfer's end.
    let (path, error) = next_matching(&mut eb, T, "the file's failure", |e| match e {
        Event::TransferFailed {
            id: got,
            path: Some(path),
            error,
            ..
        } if *got == id => Some((path.clone(), error.clone())),
        _ => None,
    })
    .await;
    assert_eq!(path, "film.bin");
    assert!(error.contains("No space left on device"), "{error}");
    let end = finished(&mut eb, id).await;
    eprintln!("the receiver's end: {end:?}");
    assert!(
        !matches!(end, Event::TransferComplete { failed: 0, .. }),
        "{end:?}"
    );
    let end = finished(&mut ea, id).await;
    eprintln!("the sender's end: {end:?}");
    assert!(
        !matches!(end, Event::TransferComplete { failed: 0, .. }),
        "the sender must not think it arrived: {end:?}"
    );
    let mut left = files_in(&dl);
    left.sort();
    assert_eq!(
        left,
        [
            PathBuf::from("another program's file"),
            PathBuf::from("film.bin.part")
        ],
        "the part is kept, nothing renamed into place"
    );
    let part = std::fs::metadata(dl.join("film.bin.part")).unwrap().len();
    assert!(part >= paused_at, "the part holds what was written: {part}");

    // The node keeps serving.
    let (_, status) = a
        .send_message_and_wait(b_id, "still there?", None, T)
        .await
        .unwrap();
    assert_eq!(status, Status::Delivered);

    // Space is freed: the same file again resumes from the part (the sender
    // pauses itself again after 4 MiB: resumed once more).
    std::fs::remove_file(&filler).unwrap();
    let id = a
        .send_files(b_id, std::slice::from_ref(&file))
        .await
        .unwrap();
    wait_for(T, "the resumed send to pause", || {
        let a = a.clone();
        async move {
            let t = a.transfers().unwrap();
            t.iter()
                .any(|t| t.id == id && t.state == TransferState::Paused)
                .then_some(())
        }
    })
    .await;
    a.resume_transfer(id).unwrap();
    let transferred = assert_complete(&finished(&mut ea, id).await);
    assert_eq!(hash_of(&dl.join("film.bin")), want, "film.bin differs");
    assert!(
        transferred < len as u64,
        "the resumed send crossed {transferred} bytes of {len}: the part was not used"
    );
    assert_eq!(files_in(&dl), [PathBuf::from("film.bin")], "nothing else");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The offer of transfer `id`, once `b` shows it.
async fn offer_shown(eb: &mut peerconnect::EventStream, id: TransferId) {
    next_matching(eb, T, "the offer", |e| {
        matches!(e, Event::Offer { id: got, .. } if *got == id).then_some(())
    })
    .await;
}

/// (c) The sender vanishes while its offer waits for an answer. Reset (the
/// connection drops): the offer ends with an event, answering it is a clear
/// error, nothing is written. Silent (the peer stops answering, as a laptop
/// leaving the Wi-Fi does): the answer goes out into nothing, the transfer
/// ends with an error once the peer is found gone, and nothing is written.
/// Either way the node keeps taking offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_whose_sender_vanishes_fails_clearly_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let quick = |c: &mut Config| c.keepalive = Duration::from_millis(300);
    let a = node(&dir.path().join("a"), "alpha", quick).await;
    let b = node(&dir.path().join("b"), "beta", quick).await;
    let dl = dir.path().join("b/downloads");
    let file = dir.path().join("src/notes.bin");
    source(&file, 3 * MIB, 5);
    let mut eb = b.events();

    for silent in [false, true] {
        let proxy = Proxy::start(b.listen_addrs()[0]).await;
        let b_id = a.connect(proxy.addr(), Some(b.id())).await.unwrap();
        let id = a
            .send_files(b_id, std::slice::from_ref(&file))
            .await
            .unwrap();
        offer_shown(&mut eb, id).await;
        if silent {
            proxy.freeze();
            // Answered before the node can know: accepted, then it fails.
            match b.accept_offer(id, Selection::All) {
                Ok(()) => {
                    let end = finished(&mut eb, id).await;
                    assert!(
                        matches!(end, Event::TransferFailed { .. }),
                        "silent: {end:?}"
                    );
                }
                Err(e) => eprintln!("silent: the node knew already: {e}"),
            }
        } else {
            proxy.kill_all();
            let end = finished(&mut eb, id).await;
            assert!(
                matches!(
                    end,
                    Event::TransferFailed { .. } | Event::TransferCancelled { by_peer: true, .. }
                ),
                "reset: {end:?}"
            );
            let err = b.accept_offer(id, Selection::All).unwrap_err();
            assert!(err.to_string().contains("no offer"), "{err}");
        }
        let left = files_in(&dl);
        assert!(left.is_empty(), "silent={silent}: left behind: {left:?}");
        proxy.kill_all();
        let a_id = a.id();
        wait_for(T, "both to see the other gone", || {
            let (a, b) = (a.clone(), b.clone());
            async move {
                (!a.links().is_connected(&b_id) && !b.links().is_connected(&a_id)).then_some(())
            }
        })
        .await;
    }

    // The node keeps taking offers: the same sender, connected directly,
    // offers another file. (The same file again would resume the accepted
    // attempt without asking.)
    let b_id = a.connect(b.listen_addrs()[0], Some(b.id())).await.unwrap();
    let mut ea = a.events();
    let other = dir.path().join("src/other.bin");
    let want = source(&other, MIB, 6);
    let id = a.send_files(b_id, &[other]).await.unwrap();
    offer_shown(&mut eb, id).await;
    b.accept_offer(id, Selection::All).unwrap();
    assert_complete(&finished(&mut ea, id).await);
    assert_eq!(hash_of(&dl.join("other.bin")), want);
    assert_eq!(files_in(&dl), [PathBuf::from("other.bin")], "nothing else");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

fn up(dir: &Path, listen: &str, connect: Option<&str>) -> UpProcess {
    let mut cmd = up_command(dir, listen);
    if let Some(addr) = connect {
        cmd.args(["--connect", addr]);
    }
    UpProcess::spawn(cmd)
}

/// (d) The receiving node is killed with SIGKILL while it stores a burst of
/// direct messages (some stored, some in flight, some not yet sent); after a
/// restart every message is in its history exactly once and in order, none
/// was shown twice, and the sender sees every one delivered.
///
/// The crash loop (`crash_resume.rs`) covers the other side: the sending
/// node killed while `peerconnect msg` has it store a message.
#[test]
fn a_receiver_killed_while_storing_messages_has_each_exactly_once() {
    const N: usize = 600;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rdir = dir.path().join("r");
    let mut r = up(&rdir, "127.0.0.1:0", None);
    let l = r.listening(T);
    let raddr = l["addrs"][0].as_str().unwrap().to_string();
    let r_id: PeerId = l["id"].as_str().unwrap().parse().unwrap();
    let a = rt.block_on(node(&dir.path().join("a"), "alpha", |_| {}));
    let a_addr = a.listen_addrs()[0].to_string();
    rt.block_on(a.connect(raddr.parse().unwrap(), Some(r_id)))
        .unwrap();

    let texts: Vec<String> = (0..N).map(|i| format!("burst {i:04}")).collect();
    let sender = {
        let (a, texts) = (a.clone(), texts.clone());
        rt.spawn(async move {
            for t in texts {
                a.send_message(r_id, t, None).await.unwrap();
            }
        })
    };
    let shown = |seen: &[serde_json::Value]| {
        seen.iter()
            .filter(|v| v["event"] == "message_received")
            .count()
    };
    r.until(T, "the first messages stored", |s| shown(s) >= N / 10);
    let mut seen = r.kill();
    let before = shown(&seen);
    eprintln!("killed the receiver after it showed {before} of {N}");
    rt.block_on(sender).unwrap();

    let r = up(&rdir, &raddr, Some(&a_addr));
    let delivered = |a: &Node| {
        a.conversation(r_id, None, 1000)
            .unwrap()
            .iter()
            .filter(|m| matches!(m.status, Status::Delivered | Status::Read))
            .count()
    };
    rt.block_on(wait_for(T, "every message delivered", || {
        let n = delivered(&a);
        async move { (n == N).then_some(()) }
    }));
    seen.extend(r.stop());
    assert!(before < N, "the kill landed after the whole burst");

    let mut times_shown: BTreeMap<&str, usize> = BTreeMap::new();
    for v in seen.iter().filter(|v| v["event"] == "message_received") {
        *times_shown
            .entry(v["message"]["text"].as_str().unwrap())
            .or_default() += 1;
    }
    let twice: Vec<_> = times_shown.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "shown more than once: {twice:?}");
    let store = Store::open(&rdir).unwrap();
    let history = store
        .conversation(&r_id, &a.id(), None, 1000)
        .unwrap()
        .unwrap_or_default();
    let got: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(got, texts, "each message exactly once, in order");
    rt.block_on(a.shutdown()).unwrap();
}
