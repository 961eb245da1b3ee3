//! A hostile peer on the LAN against the transfer service (issue 14, H1): it
//! speaks the real protocol through its own node's mux, built from the
//! project's wire types, and tries to make the receiver hold more than its
//! budget. Each test also has an honest peer that must still be served.

use std::path::Path;
use std::time::Duration;

use peerconnect::net::mux::MuxStream;
use peerconnect::net::transport::read_frame;
use peerconnect::proto::transfer::{Entry, ToReceiver, ToSender, TransferId};
use peerconnect::proto::wire::{StreamKind, encode_frame};
use peerconnect::{Config, Event, EventStream, Node, PeerId};
use peerconnect_tests::{next_matching, wait_for};
use tokio::io::{AsyncWriteExt, ReadHalf};

const T: Duration = Duration::from_secs(60);

async fn node(dir: &Path, name: &str) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    Node::start(c).await.unwrap()
}

/// The victim, an honest peer and an attacker, both connected to the victim
/// and neither trusted by it.
async fn three(dir: &Path) -> (Node, Node, Node) {
    let victim = node(&dir.join("victim"), "victim").await;
    let honest = node(&dir.join("honest"), "honest").await;
    let attacker = node(&dir.join("attacker"), "attacker").await;
    honest
        .connect(victim.listen_addrs()[0], None)
        .await
        .unwrap();
    attacker
        .connect(victim.listen_addrs()[0], None)
        .await
        .unwrap();
    for n in [&honest, &attacker] {
        wait_for(T, "the session to the victim", || async {
            n.links().is_connected(&victim.id()).then_some(())
        })
        .await;
    }
    (victim, honest, attacker)
}

/// An offer stream: the half the receiver's answer comes on, and the task
/// writing the offer (which keeps the stream open until dropped).
struct Offered {
    r: ReadHalf<MuxStream>,
    writer: tokio::task::AbortHandle,
}

impl Drop for Offered {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// Opens a transfer stream from `from` to `to` and writes, from a task of its
/// own, an offer announcing `announced` entries followed by `entries` in
/// batches of about 256 KiB (as the real sender does).
async fn offer(
    from: &Node,
    to: PeerId,
    id: u64,
    announced: u32,
    entries: impl Iterator<Item = Entry> + Send + 'static,
) -> Offered {
    let s = from
        .links()
        .get(&to)
        .expect("connected")
        .mux
        .open_bulk_stream()
        .await
        .unwrap();
    let (r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        encode_frame(&StreamKind::Transfer, &mut buf).unwrap();
        encode_frame(
            &ToReceiver::Offer {
                id: TransferId(id),
                entries: announced,
                total_bytes: announced as u64,
            },
            &mut buf,
        )
        .unwrap();
        let mut batch = Vec::new();
        let mut bytes = 0;
        for e in entries {
            bytes += e.path.len() + 16;
            batch.push(e);
            if bytes >= 256 << 10 {
                encode_frame(&ToReceiver::Entries(std::mem::take(&mut batch)), &mut buf).unwrap();
                bytes = 0;
                if w.write_all(&std::mem::take(&mut buf)).await.is_err() {
                    return; // the receiver hung up: what a budget does
                }
            }
        }
        if !batch.is_empty() {
            encode_frame(&ToReceiver::Entries(batch), &mut buf).unwrap();
        }
        let _ = w.write_all(&buf).await;
        // Keep the stream open: an offer waits for its answer.
        std::future::pending::<()>().await;
    });
    Offered {
        r,
        writer: writer.abort_handle(),
    }
}

/// One-byte files named with ~1 kB paths (four folders of 250-byte names).
fn long_names(n: u32) -> impl Iterator<Item = Entry> + Send + 'static {
    let x = "x".repeat(250);
    (0..n).map(move |i| Entry::file(format!("{i:06}/{x}/{x}/{x}/{x}"), 1))
}

/// The receiver's answer on `r`, or why there was none within `T`.
async fn answer(o: &mut Offered) -> Result<ToSender, String> {
    match tokio::time::timeout(T, read_frame::<ToSender, _>(&mut o.r)).await {
        Ok(Ok(Ok(m))) => Ok(m),
        Ok(Ok(Err(e))) => Err(format!("bad frame: {e}")),
        Ok(Err(e)) => Err(format!("stream ended: {e}")),
        Err(_) => Err("no answer".into()),
    }
}

fn rejected(a: Result<ToSender, String>) -> String {
    match a {
        Ok(ToSender::Reject { reason }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The honest peer offers one small file; the victim accepts it and it
/// arrives whole.
async fn honest_file_arrives(victim: &Node, ev: &mut EventStream, honest: &Node, dir: &Path) {
    let src = dir.join("hello.txt");
    std::fs::write(&src, b"hello from an honest peer").unwrap();
    let id = honest.send_files(victim.id(), &[src]).await.unwrap();
    let h = honest.id();
    next_matching(ev, T, "the honest peer's offer", |e| {
        matches!(e, Event::Offer { id: i, peer, .. } if *i == id && *peer == h).then_some(())
    })
    .await;
    victim
        .accept_offer(id, peerconnect::proto::transfer::Selection::All)
        .unwrap();
    next_matching(ev, T, "the honest transfer's end", |e| match e {
        Event::TransferComplete {
            id: i, failed: 0, ..
        } if *i == id => Some(()),
        Event::TransferFailed { id: i, error, .. } if *i == id => {
            panic!("the honest transfer failed: {error}")
        }
        _ => None,
    })
    .await;
    let got = std::fs::read(victim.data_dir().join("downloads/hello.txt")).unwrap();
    assert_eq!(got, b"hello from an honest peer");
}

/// H1: an offer announcing 150,000 entries of 1 kB names, and one announcing
/// 15,000 (under the count, far over the bytes), are refused with a reason
/// before the receiver holds them, and never reach the user as an offer; an
/// honest peer's file still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_strangers_huge_offers_are_refused_before_they_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let (victim, honest, attacker) = three(dir.path()).await;
    let mut ev = victim.events();

    let mut by_count = offer(&attacker, victim.id(), 1, 150_000, long_names(150_000)).await;
    let reason = rejected(answer(&mut by_count).await);
    assert!(reason.contains("at most 20000"), "{reason}");

    let mut by_bytes = offer(&attacker, victim.id(), 2, 15_000, long_names(15_000)).await;
    let reason = rejected(answer(&mut by_bytes).await);
    assert!(reason.contains("KiB"), "{reason}");

    honest_file_arrives(&victim, &mut ev, &honest, dir.path()).await;
    let a = attacker.id();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), ev.recv()).await {
        assert!(
            !matches!(&e, Event::Offer { peer, .. } if *peer == a),
            "the attacker's offer reached the user"
        );
    }
}

/// H1: a stranger holds at most four offers open at once; the fifth and sixth
/// are refused with a reason, an honest peer is still served, and once the
/// stranger's streams close it may offer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_holds_at_most_four_offers_open() {
    let dir = tempfile::tempdir().unwrap();
    let (victim, honest, attacker) = three(dir.path()).await;
    let mut ev = victim.events();
    let a = attacker.id();

    let mut open = Vec::new();
    for id in 1..=4 {
        open.push(offer(&attacker, victim.id(), id, 1, long_names(1)).await);
        next_matching(&mut ev, T, "the stranger's offer", |e| {
            matches!(e, Event::Offer { id: i, peer, .. } if *i == TransferId(id) && *peer == a)
                .then_some(())
        })
        .await;
    }
    for id in 5..=6 {
        let mut r = offer(&attacker, victim.id(), id, 1, long_names(1)).await;
        let reason = rejected(answer(&mut r).await);
        assert!(reason.contains("already have 4"), "{reason}");
    }

    honest_file_arrives(&victim, &mut ev, &honest, dir.path()).await;

    drop(open);
    let mut again = None;
    for attempt in 0..50 {
        let mut r = offer(&attacker, victim.id(), 100 + attempt, 1, long_names(1)).await;
        match tokio::time::timeout(
            Duration::from_millis(500),
            read_frame::<ToSender, _>(&mut r.r),
        )
        .await
        {
            Ok(Ok(Ok(ToSender::Reject { reason }))) => {
                eprintln!("retry {attempt}: {reason}");
                continue;
            } // slots not given back yet
            _ => {
                again = Some(100 + attempt);
                break;
            }
        }
    }
    let id = again.expect("the stranger may offer again once its streams closed");
    next_matching(&mut ev, T, "the stranger's new offer", |e| {
        matches!(e, Event::Offer { id: i, peer, .. } if *i == TransferId(id) && *peer == a)
            .then_some(())
    })
    .await;
}

/// H1: the offer event carries the first entries, not the whole manifest
/// (it goes to every front end, the event ring and stdout); all of the offer
/// is still received when accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offer_event_carries_a_preview_and_all_files_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (victim, honest, _attacker) = three(dir.path()).await;
    let mut ev = victim.events();
    let src = dir.path().join("album");
    std::fs::create_dir(&src).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("{i:03}.txt")), format!("photo {i}")).unwrap();
    }
    let id = honest.send_files(victim.id(), &[src]).await.unwrap();
    let (files, shown) = next_matching(&mut ev, T, "the offer", |e| match e {
        Event::Offer {
            id: i,
            files,
            entries,
            ..
        } if *i == id => Some((*files, entries.len())),
        _ => None,
    })
    .await;
    assert_eq!(files, 300);
    assert_eq!(shown, 100, "the event carries a preview of 100 entries");
    victim
        .accept_offer(id, peerconnect::proto::transfer::Selection::All)
        .unwrap();
    next_matching(&mut ev, T, "the transfer's end", |e| match e {
        Event::TransferComplete {
            id: i,
            files,
            failed: 0,
            ..
        } if *i == id => {
            assert_eq!(*files, 300);
            Some(())
        }
        Event::TransferFailed { id: i, error, .. } if *i == id => panic!("failed: {error}"),
        _ => None,
    })
    .await;
    let got = std::fs::read_dir(victim.data_dir().join("downloads/album"))
        .unwrap()
        .count();
    assert_eq!(got, 300);
}
