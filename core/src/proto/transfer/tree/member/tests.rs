use super::*;
use crate::proto::transfer::verified::{CHUNK, OutlineBuilder, group_digest};

const GROUP: u64 = 16 * CHUNK;

fn peer(i: u8) -> PeerId {
    PeerId::from_bytes([i; 32])
}

const SENDER: u8 = 0;

fn file(groups: u64) -> (Vec<u8>, Outline) {
    let bytes: Vec<u8> = (0..groups * GROUP).map(|i| (i % 253) as u8).collect();
    let geo = Geometry::new(bytes.len() as u64, GROUP).unwrap();
    let mut b = OutlineBuilder::new(geo);
    b.update(&bytes);
    (bytes, b.finish().unwrap())
}

/// A member of a one-stripe session over `outline`, attached to `parent`.
fn started(outline: &Outline, parent: u8) -> (State, Vec<OutEvent>) {
    let mut m = State::new(Config::default(), peer(SENDER));
    let geo = outline.geometry();
    let now = Duration::ZERO;
    let start = Message::Start {
        size: geo.size(),
        group: geo.group_size(),
        root: outline.root(),
        stripes: 1,
    };
    m.handle(now, InEvent::Message(peer(SENDER), start));
    let attach = Message::Attach {
        stripe: 0,
        parent: peer(parent),
    };
    let out = m.handle(now, InEvent::Message(peer(SENDER), attach));
    (m, out)
}

fn digest(bytes: &[u8], outline: &Outline, i: u32) -> [u8; 32] {
    let r = outline.geometry().range(i);
    group_digest(
        outline.geometry(),
        i,
        &bytes[r.start as usize..r.end as usize],
    )
    .unwrap()
}

fn outline_msg(outline: &Outline) -> Message {
    Message::Outline {
        first: 0,
        digests: outline.leaves().to_vec(),
    }
}

fn has<F: Fn(&OutEvent) -> bool>(out: &[OutEvent], f: F) -> bool {
    out.iter().any(f)
}

#[test]
fn control_messages_from_anyone_but_the_sender_are_ignored() {
    let (_, outline) = file(2);
    let (mut m, _) = started(&outline, 1);
    let out = m.handle(
        Duration::ZERO,
        InEvent::Message(
            peer(9),
            Message::Attach {
                stripe: 0,
                parent: peer(9),
            },
        ),
    );
    assert!(out.is_empty());
    assert_eq!(m.parents(), [Some(peer(1))]);
    assert_eq!(m.stats().bad_input, 1);
}

#[test]
fn groups_from_anyone_but_the_current_parent_are_discarded_unverified() {
    let (bytes, outline) = file(2);
    let (mut m, out) = started(&outline, 1);
    assert!(has(&out, |o| matches!(
        o,
        OutEvent::Send(p, Message::Subscribe { outline: true, .. }) if *p == peer(1)
    )));
    m.handle(
        Duration::ZERO,
        InEvent::Message(peer(1), outline_msg(&outline)),
    );
    let d = digest(&bytes, &outline, 0);
    let out = m.handle(
        Duration::ZERO,
        InEvent::Received {
            from: peer(2),
            index: 0,
            digest: d,
        },
    );
    assert_eq!(
        out,
        [OutEvent::Discard {
            from: peer(2),
            index: 0
        }]
    );
    assert_eq!(m.stats().discarded_bytes, GROUP);
}

#[test]
fn an_outline_that_does_not_hash_to_the_root_drops_the_parent() {
    let (_, outline) = file(3);
    let (mut m, _) = started(&outline, 1);
    let mut leaves = outline.leaves().to_vec();
    leaves[1][0] ^= 1;
    let out = m.handle(
        Duration::ZERO,
        InEvent::Message(
            peer(1),
            Message::Outline {
                first: 0,
                digests: leaves,
            },
        ),
    );
    assert!(has(&out, |o| matches!(
        o,
        OutEvent::Send(
            _,
            Message::Lost {
                reason: LostReason::Corrupt,
                ..
            }
        )
    )));
    assert_eq!(m.parents(), [None]);
}

#[test]
fn a_bad_group_is_fetched_again_from_the_next_parent_and_nothing_verified_twice() {
    let (bytes, outline) = file(4);
    let now = Duration::ZERO;
    let (mut m, _) = started(&outline, 1);
    m.handle(now, InEvent::Message(peer(1), outline_msg(&outline)));
    // group 0 verifies and is stored
    let out = m.handle(
        now,
        InEvent::Received {
            from: peer(1),
            index: 0,
            digest: digest(&bytes, &outline, 0),
        },
    );
    assert_eq!(out, [OutEvent::Store { index: 0 }]);
    let out = m.handle(now, InEvent::Stored { index: 0 });
    assert!(has(&out, |o| *o
        == OutEvent::Send(peer(1), Message::Ack { index: 0 })));
    // group 1 arrives with one bit flipped
    let r = outline.geometry().range(1);
    let mut bad = bytes[r.start as usize..r.end as usize].to_vec();
    bad[100] ^= 4;
    let bad = group_digest(outline.geometry(), 1, &bad).unwrap();
    let out = m.handle(
        now,
        InEvent::Received {
            from: peer(1),
            index: 1,
            digest: bad,
        },
    );
    assert!(!has(&out, |o| matches!(o, OutEvent::Store { .. })));
    assert!(has(&out, |o| *o
        == OutEvent::Send(
            peer(SENDER),
            Message::Lost {
                stripe: 0,
                parent: peer(1),
                reason: LostReason::Corrupt
            }
        )));
    assert!(has(&out, |o| matches!(
        o,
        OutEvent::Emit(Event::Corrupt { index: Some(1), .. })
    )));
    // the sender names another parent: it hears that group 0 is held
    let out = m.handle(
        now,
        InEvent::Message(
            peer(SENDER),
            Message::Attach {
                stripe: 0,
                parent: peer(2),
            },
        ),
    );
    assert_eq!(
        out,
        [OutEvent::Send(
            peer(2),
            Message::Subscribe {
                stripe: 0,
                outline: false,
                have: vec![0b0001],
            }
        )]
    );
    let out = m.handle(
        now,
        InEvent::Received {
            from: peer(2),
            index: 1,
            digest: digest(&bytes, &outline, 1),
        },
    );
    assert_eq!(out, [OutEvent::Store { index: 1 }]);
    // a stray copy of a verified group is never stored again
    let out = m.handle(
        now,
        InEvent::Received {
            from: peer(2),
            index: 0,
            digest: digest(&bytes, &outline, 0),
        },
    );
    assert_eq!(
        out,
        [OutEvent::Discard {
            from: peer(2),
            index: 0
        }]
    );
    assert_eq!(m.stats().refetched_bytes, GROUP);
}

#[test]
fn a_child_that_subscribes_before_our_start_is_served_after_it() {
    let (_, outline) = file(2);
    let mut m = State::new(Config::default(), peer(SENDER));
    let now = Duration::ZERO;
    let sub = Message::Subscribe {
        stripe: 0,
        outline: true,
        have: vec![0],
    };
    assert!(m.handle(now, InEvent::Message(peer(5), sub)).is_empty());
    let geo = outline.geometry();
    let start = Message::Start {
        size: geo.size(),
        group: geo.group_size(),
        root: outline.root(),
        stripes: 1,
    };
    m.handle(now, InEvent::Message(peer(SENDER), start));
    let attach = Message::Attach {
        stripe: 0,
        parent: peer(1),
    };
    m.handle(now, InEvent::Message(peer(SENDER), attach));
    m.handle(now, InEvent::Message(peer(1), outline_msg(&outline)));
    let serve = Message::Serve {
        stripe: 0,
        child: peer(5),
    };
    let out = m.handle(now, InEvent::Message(peer(SENDER), serve));
    assert!(
        has(
            &out,
            |o| matches!(o, OutEvent::Send(p, Message::Outline { .. }) if *p == peer(5))
        ),
        "{out:?}"
    );
}

#[test]
fn a_start_with_an_absurd_file_fails_without_allocating() {
    let mut m = State::new(Config::default(), peer(SENDER));
    let out = m.handle(
        Duration::ZERO,
        InEvent::Message(
            peer(SENDER),
            Message::Start {
                size: u64::MAX,
                group: GROUP,
                root: [0; 32],
                stripes: 4,
            },
        ),
    );
    assert!(has(&out, |o| matches!(o, OutEvent::Emit(Event::Failed(_)))));
    assert!(m.is_over());
}
