//! File transfers between nodes on 127.0.0.1: folders arrive identical, names
//! in use get " (1)", consent, traversal attempts, corruption, resume, cancel,
//! pause and several receivers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use peerconnect::net::transfer::TransferId;
use peerconnect::{Config, Event, Node};
use peerconnect_tests::{next_matching, pseudo_random, wait_for};

const T: Duration = Duration::from_secs(30);

async fn node(dir: &Path, name: &str, accept_all: bool) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    c.accept_all = accept_all;
    Node::start(c).await.unwrap()
}

/// Two connected nodes: `a` sends, `b` receives into `b_downloads`.
async fn pair(dir: &Path, accept_all: bool) -> (Node, Node) {
    let a = node(&dir.join("a"), "alpha", false).await;
    let b = node(&dir.join("b"), "beta", accept_all).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    (a, b)
}

fn downloads(n: &Node) -> PathBuf {
    n.data_dir().join("downloads")
}

/// Every file and folder below `root`, relative, with file contents.
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                walk(root, &e.path(), out);
            } else {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Waits for the final event of transfer `id`.
async fn finished(events: &mut peerconnect::EventStream, id: TransferId) -> Event {
    next_matching(events, T, "the transfer's final event", |e| {
        (e.transfer_id() == Some(id) && e.ends_transfer()).then(|| e.clone())
    })
    .await
}

#[tokio::test]
async fn a_folder_with_nested_empty_unicode_and_empty_files_arrives_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), true).await;
    let src = dir.path().join("src/My Photos");
    std::fs::create_dir_all(src.join("2024/январь")).unwrap();
    std::fs::create_dir_all(src.join("empty folder/also empty")).unwrap();
    std::fs::write(src.join("2024/январь/ümlaut é.txt"), "grüße").unwrap();
    std::fs::write(src.join("2024/zero bytes"), b"").unwrap();
    std::fs::write(src.join("big.bin"), pseudo_random(3 << 20, 7)).unwrap();
    std::fs::write(src.join("日本語 名前.md"), "# hi").unwrap();
    let mut ea = a.events();
    let mut eb = b.events();
    let id = a
        .send_files(b.id(), std::slice::from_ref(&src))
        .await
        .unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(
            end,
            Event::TransferComplete {
                failed: 0,
                files: 4,
                ..
            }
        ),
        "{end:?}"
    );
    let end_b = finished(&mut eb, id).await;
    assert!(
        matches!(end_b, Event::TransferComplete { failed: 0, .. }),
        "{end_b:?}"
    );
    let got = downloads(&b).join("My Photos");
    assert_eq!(tree(&got), tree(&src));
    assert!(
        !tree(&downloads(&b)).keys().any(|k| k.ends_with(".part")),
        "no part files are left"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_name_in_use_gets_a_suffix_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), true).await;
    let dl = downloads(&b);
    std::fs::create_dir_all(dl.join("album")).unwrap();
    std::fs::write(dl.join("notes.txt"), "old notes").unwrap();
    std::fs::write(dl.join("album/keep.txt"), "old album").unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("album")).unwrap();
    std::fs::write(src.join("notes.txt"), "new notes").unwrap();
    std::fs::write(src.join("album/keep.txt"), "new album").unwrap();
    let mut ea = a.events();
    let id = a
        .send_files(b.id(), &[src.join("notes.txt"), src.join("album")])
        .await
        .unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(end, Event::TransferComplete { failed: 0, .. }),
        "{end:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("notes.txt")).unwrap(),
        "old notes"
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("notes (1).txt")).unwrap(),
        "new notes"
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("album/keep.txt")).unwrap(),
        "old album"
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("album (1)/keep.txt")).unwrap(),
        "new album"
    );
    // the same file once more: the next free suffix
    let id = a
        .send_files(b.id(), &[src.join("notes.txt")])
        .await
        .unwrap();
    finished(&mut ea, id).await;
    assert_eq!(
        std::fs::read_to_string(dl.join("notes (2).txt")).unwrap(),
        "new notes"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_offer_waits_for_consent_and_can_be_taken_in_part_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), false).await;
    let src = dir.path().join("src/pick");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("wanted.txt"), "yes").unwrap();
    std::fs::write(src.join("unwanted.txt"), "no").unwrap();
    let (mut ea, mut eb) = (a.events(), b.events());
    let id = a
        .send_files(b.id(), std::slice::from_ref(&src))
        .await
        .unwrap();
    let (files, auto, code) = next_matching(&mut eb, T, "the offer", |e| match e {
        Event::Offer {
            id: got,
            files,
            auto_accepted,
            verification_code,
            entries,
            ..
        } if *got == id => {
            assert!(
                entries
                    .iter()
                    .any(|e| e.path == "pick/wanted.txt" && e.size == 3)
            );
            Some((*files, *auto_accepted, verification_code.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!((files, auto), (2, false));
    assert_eq!(code.len(), 6);
    let err = b
        .accept_offer(
            id,
            peerconnect::proto::transfer::Selection::Paths(vec!["nope".into()]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    b.accept_offer(
        id,
        peerconnect::proto::transfer::Selection::Paths(vec!["pick/wanted.txt".into()]),
    )
    .unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(
            end,
            Event::TransferComplete {
                files: 1,
                failed: 0,
                ..
            }
        ),
        "{end:?}"
    );
    let dl = downloads(&b);
    assert_eq!(
        std::fs::read_to_string(dl.join("pick/wanted.txt")).unwrap(),
        "yes"
    );
    assert!(!dl.join("pick/unwanted.txt").exists());
    assert!(
        b.accept_offer(id, Default::default()).is_err(),
        "answered already"
    );

    // refused
    let id = a
        .send_files(b.id(), std::slice::from_ref(&src))
        .await
        .unwrap();
    next_matching(&mut eb, T, "the second offer", |e| {
        matches!(e, Event::Offer { id: got, .. } if *got == id).then_some(())
    })
    .await;
    b.reject_offer(id).unwrap();
    let end = finished(&mut ea, id).await;
    assert!(matches!(end, Event::TransferRejected { .. }), "{end:?}");
    assert!(!dl.join("pick (1)").exists());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn offers_from_a_trusted_peer_are_accepted_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), false).await;
    b.set_trust(a.id(), peerconnect::Trust::Trusted)
        .await
        .unwrap();
    let f = dir.path().join("hello.txt");
    std::fs::write(&f, "hi").unwrap();
    let mut ea = a.events();
    let id = a.send_files(b.id(), &[f]).await.unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(end, Event::TransferComplete { failed: 0, .. }),
        "{end:?}"
    );
    assert_eq!(
        std::fs::read_to_string(downloads(&b).join("hello.txt")).unwrap(),
        "hi"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn corruption_in_flight_is_caught_and_never_renamed_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(dir.path().join("a"));
    c.transfer.corrupt_outgoing = true;
    let a = Node::start(c).await.unwrap();
    let b = node(&dir.path().join("b"), "beta", true).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    let f = dir.path().join("data.bin");
    std::fs::write(&f, pseudo_random(2 << 20, 3)).unwrap();
    let (mut ea, mut eb) = (a.events(), b.events());
    let id = a.send_files(b.id(), &[f]).await.unwrap();
    let error = next_matching(&mut eb, T, "the receiver's file failure", |e| match e {
        Event::TransferFailed {
            id: got,
            path: Some(p),
            error,
            ..
        } if *got == id => {
            assert_eq!(p, "data.bin");
            Some(error.clone())
        }
        _ => None,
    })
    .await;
    assert!(error.contains("BLAKE3 mismatch"), "{error}");
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(end, Event::TransferComplete { failed: 1, .. }),
        "{end:?}"
    );
    let dl = downloads(&b);
    assert!(
        !dl.join("data.bin").exists(),
        "a corrupt file is never renamed into place"
    );
    assert!(!dl.join("data.bin.part").exists(), "its part is deleted");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Sender config that pauses itself after `n` file bytes.
async fn pausing_sender(dir: &Path, n: u64) -> Node {
    let mut c = Config::local(dir);
    c.name = "alpha".into();
    c.transfer.pause_after = Some(n);
    Node::start(c).await.unwrap()
}

/// Waits until the receiver holds at least `n` bytes of transfer `id`.
async fn received_at_least(b: &Node, id: TransferId, n: u64) {
    wait_for(T, "the receiver to hold the first bytes", || {
        let b = b.clone();
        async move {
            b.transfers()
                .unwrap()
                .iter()
                .any(|t| t.id == id && t.done_bytes >= n)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_corrupted_chunk_of_a_part_is_caught_and_only_the_rest_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    const MIB: u64 = 1 << 20;
    let size = 24 * MIB;
    let f = dir.path().join("movie.bin");
    let data = pseudo_random(size as usize, 11);
    std::fs::write(&f, &data).unwrap();
    let a = pausing_sender(&dir.path().join("a"), 6 * MIB).await;
    let bdir = dir.path().join("b");
    let b = node(&bdir, "beta", true).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    let mut ea = a.events();
    let id = a
        .send_files(b.id(), std::slice::from_ref(&f))
        .await
        .unwrap();
    received_at_least(&b, id, 5 * MIB).await;
    b.shutdown().await.unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(&end, Event::TransferFailed { path: None, error, .. } if error.contains("interrupted")),
        "{end:?}"
    );
    a.shutdown().await.unwrap();
    // flip a byte in the second chunk of the part
    let part = bdir.join("downloads/movie.bin.part");
    let mut bytes = std::fs::read(&part).unwrap();
    assert!(bytes.len() as u64 >= 5 * MIB, "{}", bytes.len());
    bytes[(MIB + 12345) as usize] ^= 0xff;
    std::fs::write(&part, &bytes).unwrap();
    // both come back; the same files again
    let a = node(&dir.path().join("a"), "alpha", false).await;
    let b = node(&bdir, "beta", true).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    let mut ea = a.events();
    let id = a
        .send_files(b.id(), std::slice::from_ref(&f))
        .await
        .unwrap();
    let end = finished(&mut ea, id).await;
    let Event::TransferComplete {
        failed: 0,
        transferred,
        bytes,
        ..
    } = end
    else {
        panic!("{end:?}");
    };
    assert_eq!(bytes, size);
    assert_eq!(
        transferred,
        size - MIB,
        "chunk 0 was proven, chunk 1 on was sent again"
    );
    assert_eq!(a.transfer_stats().bytes_sent, size - MIB);
    assert_eq!(
        std::fs::read(bdir.join("downloads/movie.bin")).unwrap(),
        data
    );
    assert!(!part.exists());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

async fn cancel_midway(from_sender: bool) {
    let dir = tempfile::tempdir().unwrap();
    const MIB: u64 = 1 << 20;
    let f = dir.path().join("big.bin");
    std::fs::write(&f, pseudo_random(16 << 20, 5)).unwrap();
    let a = pausing_sender(&dir.path().join("a"), 4 * MIB).await;
    let b = node(&dir.path().join("b"), "beta", true).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    let (mut ea, mut eb) = (a.events(), b.events());
    let id = a.send_files(b.id(), &[f]).await.unwrap();
    received_at_least(&b, id, 2 * MIB).await;
    let part = downloads(&b).join("big.bin.part");
    assert!(part.exists());
    if from_sender {
        a.cancel_transfer(id).unwrap();
    } else {
        b.cancel_transfer(id).unwrap();
    }
    let end_a = finished(&mut ea, id).await;
    let end_b = finished(&mut eb, id).await;
    assert_eq!(
        end_a,
        Event::TransferCancelled {
            id,
            peer: b.id(),
            direction: peerconnect::proto::transfer::Direction::Send,
            by_peer: !from_sender,
        }
    );
    assert_eq!(
        end_b,
        Event::TransferCancelled {
            id,
            peer: a.id(),
            direction: peerconnect::proto::transfer::Direction::Receive,
            by_peer: from_sender,
        }
    );
    assert!(!part.exists(), "a cancelled transfer leaves no part behind");
    assert!(!downloads(&b).join("big.bin").exists());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_sender_can_cancel() {
    cancel_midway(true).await;
}

#[tokio::test]
async fn the_receiver_can_cancel() {
    cancel_midway(false).await;
}

#[tokio::test]
async fn a_paused_transfer_holds_still_and_finishes_after_resume() {
    let dir = tempfile::tempdir().unwrap();
    const MIB: u64 = 1 << 20;
    let f = dir.path().join("big.bin");
    let data = pseudo_random(12 << 20, 9);
    std::fs::write(&f, &data).unwrap();
    let a = pausing_sender(&dir.path().join("a"), 3 * MIB).await;
    let b = node(&dir.path().join("b"), "beta", true).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    let mut ea = a.events();
    let id = a
        .send_files(b.id(), std::slice::from_ref(&f))
        .await
        .unwrap();
    // the pause shows in events and in the listing
    let done = next_matching(&mut ea, T, "a paused progress report", |e| match e {
        Event::Progress {
            id: got,
            paused: true,
            done_bytes,
            total_bytes,
            ..
        } if *got == id => Some((*done_bytes, *total_bytes)),
        _ => None,
    })
    .await;
    assert!(done.0 < done.1, "{done:?}");
    let listed = a.transfers().unwrap();
    let t = listed.iter().find(|t| t.id == id).unwrap();
    assert_eq!(t.state, peerconnect::proto::transfer::TransferState::Paused);
    // the receiver can pause too; both resume
    b.pause_transfer(id).unwrap();
    b.resume_transfer(id).unwrap();
    a.resume_transfer(id).unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(end, Event::TransferComplete { failed: 0, .. }),
        "{end:?}"
    );
    assert_eq!(std::fs::read(downloads(&b).join("big.bin")).unwrap(), data);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_pause_asked_for_while_the_offer_waits_holds_once_it_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), false).await;
    let f = dir.path().join("song.bin");
    let data = pseudo_random(2 << 20, 5);
    std::fs::write(&f, &data).unwrap();
    let (mut ea, mut eb) = (a.events(), b.events());
    let id = a
        .send_files(b.id(), std::slice::from_ref(&f))
        .await
        .unwrap();
    next_matching(&mut eb, T, "the offer", |e| {
        matches!(e, Event::Offer { id: got, .. } if *got == id).then_some(())
    })
    .await;
    // The sender pauses before the receiver answers: once accepted, the
    // transfer shows as paused and no file arrives until it is resumed.
    a.pause_transfer(id).unwrap();
    b.accept_offer(id, peerconnect::proto::transfer::Selection::All)
        .unwrap();
    wait_for(T, "the sender's transfer listed as paused", || async {
        let listed = a.transfers().unwrap();
        let t = listed.iter().find(|t| t.id == id)?;
        (t.state == peerconnect::proto::transfer::TransferState::Paused).then_some(())
    })
    .await;
    next_matching(&mut ea, T, "a paused progress report", |e| {
        matches!(e, Event::Progress { id: got, paused: true, .. } if *got == id).then_some(())
    })
    .await;
    assert!(!downloads(&b).join("song.bin").exists());
    a.resume_transfer(id).unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(end, Event::TransferComplete { failed: 0, .. }),
        "{end:?}"
    );
    assert_eq!(std::fs::read(downloads(&b).join("song.bin")).unwrap(), data);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_receivers_get_the_folder_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), "alpha", false).await;
    let b = node(&dir.path().join("b"), "beta", true).await;
    let c = node(&dir.path().join("c"), "gamma", true).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    a.connect(c.listen_addrs()[0], None).await.unwrap();
    let src = dir.path().join("share");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/one.bin"), pseudo_random(5 << 20, 1)).unwrap();
    std::fs::write(src.join("two.txt"), "two").unwrap();
    let mut ea = a.events();
    let ids = a
        .send_files_to(&[b.id(), c.id()], std::slice::from_ref(&src))
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let mut ends = BTreeMap::new();
    while ends.len() < 2 {
        let (id, e) = next_matching(&mut ea, T, "both transfers to end", |e| {
            e.ends_transfer()
                .then(|| (e.transfer_id().unwrap(), e.clone()))
        })
        .await;
        ends.insert(id, e);
    }
    for e in ends.values() {
        assert!(
            matches!(
                e,
                Event::TransferComplete {
                    failed: 0,
                    files: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    assert_eq!(tree(&downloads(&b).join("share")), tree(&src));
    assert_eq!(tree(&downloads(&c).join("share")), tree(&src));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

/// A hand-made peer: a TLS session to `to` and a bulk stream, for speaking the
/// transfer protocol directly (and wrongly).
async fn raw_stream(
    to: &Node,
) -> (
    peerconnect::net::mux::MuxSession,
    peerconnect::net::mux::MuxStream,
) {
    use peerconnect::net::mux::{MuxConfig, MuxSession, Side};
    use peerconnect::net::transport::Transport;
    use peerconnect::proto::wire::{DeviceKind, Hello};
    let me = peerconnect::Identity::generate();
    let t = Transport::new(&me, 8).unwrap();
    let mut conn = t
        .connect(to.listen_addrs()[0], Some(to.id()))
        .await
        .unwrap();
    conn.exchange_hello(&Hello {
        instance: 1,
        name: "mallory".into(),
        kind: DeviceKind::Laptop,
        listen_port: 0,
    })
    .await
    .unwrap();
    let side = if me.peer_id() < to.id() {
        Side::Low
    } else {
        Side::High
    };
    let mux = MuxSession::new(MuxConfig::default(), side);
    mux.add_lane(conn).await;
    let s = mux.open_bulk_stream().await.unwrap();
    (mux, s)
}

fn frames(msgs: &[peerconnect::proto::transfer::ToReceiver]) -> Vec<u8> {
    use peerconnect::proto::wire::{StreamKind, encode_frame};
    let mut buf = Vec::new();
    encode_frame(&StreamKind::Transfer, &mut buf).unwrap();
    for m in msgs {
        encode_frame(m, &mut buf).unwrap();
    }
    buf
}

#[tokio::test]
async fn traversal_names_are_refused_and_nothing_is_written_outside_the_folder() {
    use peerconnect::proto::transfer::{Entry, ToReceiver, ToSender};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let b = node(&dir.path().join("b"), "beta", true).await;
    let dl = downloads(&b);
    std::fs::create_dir_all(&dl).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // a symlink inside the download folder that leads out of it
    std::os::unix::fs::symlink(&outside, dl.join("escape")).unwrap();
    let evil = [
        "../evil.txt".to_string(),
        "a/../../evil.txt".into(),
        format!("{}/evil.txt", outside.display()),
        "C:/evil.txt".into(),
        "CON".into(),
        "nul.txt".into(),
        "a\0b".into(),
        "x".repeat(300),
    ];
    for (n, path) in evil.iter().enumerate() {
        let (_mux, mut s) = raw_stream(&b).await;
        s.write_all(&frames(&[
            ToReceiver::Offer {
                id: TransferId(1000 + n as u64),
                entries: 2,
                total_bytes: 5,
            },
            ToReceiver::Entries(vec![Entry::dir("fine"), Entry::file(path.clone(), 5)]),
        ]))
        .await
        .unwrap();
        let answer = peerconnect::net::transport::read_frame::<ToSender, _>(&mut s)
            .await
            .unwrap()
            .unwrap();
        let ToSender::Reject { reason } = answer else {
            panic!("{path:?} was not refused: {answer:?}");
        };
        assert!(reason.contains("unsafe path"), "{path:?}: {reason}");
    }
    assert_eq!(b.transfer_stats().protocol_errors, evil.len() as u64);
    // an offer that is fine but goes through the symlink: refused on the disk
    let (_mux, mut s) = raw_stream(&b).await;
    s.write_all(&frames(&[
        ToReceiver::Offer {
            id: TransferId(2000),
            entries: 1,
            total_bytes: 0,
        },
        ToReceiver::Entries(vec![Entry::file("escape/evil.txt", 0)]),
    ]))
    .await
    .unwrap();
    let answer = peerconnect::net::transport::read_frame::<ToSender, _>(&mut s)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(answer, ToSender::Accept { .. }), "{answer:?}");
    s.write_all(&{
        let mut buf = Vec::new();
        for m in [
            ToReceiver::Start {
                index: 0,
                offset: 0,
            },
            ToReceiver::End {
                index: 0,
                blake3: *blake3::hash(b"").as_bytes(),
            },
            ToReceiver::Done,
        ] {
            peerconnect::proto::wire::encode_frame(&m, &mut buf).unwrap();
        }
        buf
    })
    .await
    .unwrap();
    // "escape" was taken, so the offer's root got a fresh name: nothing went
    // through the symlink
    let mut replies = Vec::new();
    while let Ok(Ok(m)) = peerconnect::net::transport::read_frame::<ToSender, _>(&mut s).await {
        replies.push(m);
    }
    assert!(
        replies.contains(&ToSender::Summary { ok: 1, failed: 0 }),
        "{replies:?}"
    );
    assert!(dl.join("escape (1)/evil.txt").exists());
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing outside"
    );
    assert!(!dir.path().join("evil.txt").exists());
    // the node keeps serving honest peers
    let a = node(&dir.path().join("a"), "alpha", false).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    let f = dir.path().join("honest.txt");
    std::fs::write(&f, "ok").unwrap();
    let mut ea = a.events();
    let id = a.send_files(b.id(), &[f]).await.unwrap();
    assert!(matches!(
        finished(&mut ea, id).await,
        Event::TransferComplete { failed: 0, .. }
    ));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn data_beyond_a_file_ends_the_transfer_and_leaves_no_part() {
    use peerconnect::proto::transfer::{Entry, ToReceiver, ToSender};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let b = node(&dir.path().join("b"), "beta", true).await;
    let mut eb = b.events();
    let (_mux, mut s) = raw_stream(&b).await;
    s.write_all(&frames(&[
        ToReceiver::Offer {
            id: TransferId(7),
            entries: 1,
            total_bytes: 4,
        },
        ToReceiver::Entries(vec![Entry::file("small.txt", 4)]),
    ]))
    .await
    .unwrap();
    let answer = peerconnect::net::transport::read_frame::<ToSender, _>(&mut s)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(answer, ToSender::Accept { .. }), "{answer:?}");
    let mut buf = Vec::new();
    peerconnect::proto::wire::encode_frame(
        &ToReceiver::Start {
            index: 0,
            offset: 0,
        },
        &mut buf,
    )
    .unwrap();
    peerconnect::proto::wire::encode_frame(&ToReceiver::Block { len: 1000 }, &mut buf).unwrap();
    buf.extend([7u8; 1000]);
    s.write_all(&buf).await.unwrap();
    let end = finished(&mut eb, TransferId(7)).await;
    assert!(
        matches!(&end, Event::TransferFailed { path: None, error, .. } if error.contains("protocol")),
        "{end:?}"
    );
    assert_eq!(b.transfer_stats().protocol_errors, 1);
    assert!(!downloads(&b).join("small.txt").exists());
    assert!(!downloads(&b).join("small.txt.part").exists());
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_with_a_bad_header_is_refused_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let b = node(&dir.path().join("b"), "beta", true).await;
    let (_mux, mut s) = raw_stream(&b).await;
    // a frame that is no stream header
    s.write_all(&[0, 0, 0, 2, 1, 200]).await.unwrap();
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    wait_for(T, "the bad stream to be counted", || {
        let b = b.clone();
        async move { (b.stats().await.unwrap().bad_streams == 1).then_some(()) }
    })
    .await;
    b.shutdown().await.unwrap();
}
