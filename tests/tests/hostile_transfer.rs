//! A hostile peer on the LAN against the transfer service (issue 14, H1): it
//! speaks the real protocol through its own node's mux, built from the
//! project's wire types, and tries to make the receiver hold more than its
//! budget. Each test also has an honest peer that must still be served.

use std::path::Path;
use std::time::Duration;

use peerconnect::net::transfer::raw::{RawOffer, long_names};
use peerconnect::proto::transfer::{Entry, ToSender, TransferId};
use peerconnect::{Config, Event, EventStream, Node, PeerId};
use peerconnect_tests::{next_matching, wait_for};

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

/// The receiver's answer on `o`, or why there was none within `T`.
async fn answer(o: &mut RawOffer) -> Result<ToSender, String> {
    o.answer(T).await
}

async fn offer(
    from: &Node,
    to: PeerId,
    id: u64,
    announced: u32,
    entries: impl Iterator<Item = Entry> + Send + 'static,
) -> RawOffer {
    RawOffer::open(from.links(), to, id, announced, entries)
        .await
        .unwrap()
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
        match r.answer(Duration::from_millis(500)).await {
            // Its slots are not given back yet.
            Ok(ToSender::Reject { .. }) => continue,
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
