//! The relay tree's member (`proto::transfer::tree::member`), fed what other
//! receivers and the sender can send it: any message from any peer, group
//! digests true or false, outline parts whole or with a byte changed, peers
//! lost, timers and time.
//!
//! The file is real (five groups of [`MIN_GROUP`] bytes, made once), so the
//! fuzzer can take the member all the way through a session. What must hold
//! whatever arrives:
//!
//! - a group is written (`Store`) only when its digest is the file's true
//!   one for that index: a relay can never make a receiver keep bytes that
//!   do not verify against the root the sender gave;
//! - no group is written twice;
//! - a group is forwarded (`SendGroup`) only once it is held, verified and
//!   written;
//! - the member's set of groups stays within the file, and "complete" means
//!   every group is held.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use peerconnect::proto::transfer::tree::{Config, InEvent, Message, OutEvent, Timer, member};
use peerconnect::proto::transfer::verified::{Geometry, MIN_GROUP, OutlineBuilder, group_digest};

use crate::{Input, MAX_OPS, ms, peer};

/// The session's file: its geometry, root and each group's true digest.
pub struct File {
    pub geo: Geometry,
    pub root: [u8; 32],
    pub leaves: Vec<[u8; 32]>,
}

/// Five groups, the last one short.
pub fn file() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| {
        let size = 4 * MIN_GROUP + 1000;
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let geo = Geometry::new(size, MIN_GROUP).expect("a valid geometry");
        let mut b = OutlineBuilder::new(geo);
        b.update(&bytes);
        let outline = b.finish().expect("the whole file was hashed");
        let leaves: Vec<[u8; 32]> = (0..geo.groups())
            .map(|i| {
                let r = geo.range(i);
                group_digest(&geo, i, &bytes[r.start as usize..r.end as usize]).expect("digest")
            })
            .collect();
        assert_eq!(leaves, outline.leaves(), "group digests and outline agree");
        File {
            geo,
            root: outline.root(),
            leaves,
        }
    })
}

/// Operations of the `tree` target (first byte of each, modulo 8).
pub mod op {
    /// The sender's true `Start` (then: stripes byte).
    pub const START: u8 = 0;
    /// Any message from any peer (then: peer byte, postcard `Message`).
    pub const MESSAGE: u8 = 1;
    /// Outline digests from a peer (then: peer, first, count, flip u16).
    pub const OUTLINE: u8 = 2;
    /// A group's bytes arrived (then: peer, index u32, true? byte, [32 bytes]).
    pub const RECEIVED: u8 = 3;
    /// The driver finished writing a group it was asked to (then: which).
    pub const STORED: u8 = 4;
    /// A peer's connection was lost (then: peer).
    pub const LOST: u8 = 5;
    /// A timer fired (then: which).
    pub const TIMER: u8 = 6;
    /// Time passes (then: u16 ms).
    pub const WAIT: u8 = 7;
}

pub fn tree(data: &[u8]) {
    run(data);
}

/// Runs one input; the member as the input left it.
pub fn run(data: &[u8]) -> member::State {
    let f = file();
    let groups = f.geo.groups();
    let config = Config {
        max_children: 4,
        max_pending: 4,
        ..Config::default()
    };
    // Peer 1 is the sender (the session's coordinator); 0 is this node.
    let mut m = member::State::new(config, peer(1));
    let mut now = Duration::ZERO;
    // Groups asked to be written: waiting for `Stored`, and done.
    let mut pending: Vec<u32> = Vec::new();
    let mut written: BTreeSet<u32> = BTreeSet::new();
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let mut received = None;
        let event = match inp.u8() % 8 {
            op::START => InEvent::Message(
                peer(1),
                Message::Start {
                    size: f.geo.size(),
                    group: f.geo.group_size(),
                    root: f.root,
                    stripes: 1 + inp.u8() % 4,
                },
            ),
            op::MESSAGE => {
                let from = peer(inp.u8());
                let Some(msg) = inp.take::<Message>() else {
                    continue;
                };
                InEvent::Message(from, msg)
            }
            op::OUTLINE => {
                let from = peer(inp.u8());
                let first = u32::from(inp.u8()) % (groups + 1);
                let count = inp.u8() as usize;
                let flip = inp.u16();
                let end = (first as usize + count).min(f.leaves.len());
                let mut digests = f.leaves[first as usize..end].to_vec();
                if flip & 1 == 1 && !digests.is_empty() {
                    let d = (flip as usize >> 1) % digests.len();
                    digests[d][(flip >> 8) as usize % 32] ^= 1;
                }
                InEvent::Message(from, Message::Outline { first, digests })
            }
            op::RECEIVED => {
                let from = peer(inp.u8());
                let index = inp.u32() % (groups + 2);
                let truthful = inp.bool();
                let digest = match f.leaves.get(index as usize) {
                    Some(d) if truthful => *d,
                    _ => {
                        let mut d = [0u8; 32];
                        let b = inp.bytes(32);
                        d[..b.len()].copy_from_slice(b);
                        d
                    }
                };
                received = Some((index, digest));
                InEvent::Received {
                    from,
                    index,
                    digest,
                }
            }
            op::STORED => {
                if pending.is_empty() {
                    continue;
                }
                let index = pending.remove(inp.u8() as usize % pending.len());
                written.insert(index);
                InEvent::Stored { index }
            }
            op::LOST => InEvent::PeerLost(peer(inp.u8())),
            op::TIMER => InEvent::Timer(if inp.bool() {
                Timer::Report
            } else {
                Timer::Check
            }),
            _ => {
                now += ms(u64::from(inp.u16()));
                continue;
            }
        };
        let out = m.handle(now, event);
        assert!(out.len() <= 4096, "one input made {} outputs", out.len());
        for o in &out {
            match o {
                OutEvent::Store { index } => {
                    let (got, digest) =
                        received.unwrap_or_else(|| panic!("Store {index} without a group"));
                    assert_eq!(got, *index, "stored another group than received");
                    assert_eq!(
                        f.leaves.get(*index as usize),
                        Some(&digest),
                        "group {index} stored with a digest that is not the file's"
                    );
                    assert!(
                        !pending.contains(index) && !written.contains(index),
                        "group {index} written twice"
                    );
                    pending.push(*index);
                }
                OutEvent::SendGroup { to, index } => {
                    assert!(
                        written.contains(index) && m.have().contains(*index),
                        "group {index} forwarded to {to} before it was verified and written"
                    );
                }
                _ => {}
            }
        }
        let have = m.have();
        assert!(have.count() <= have.len(), "more groups held than exist");
        assert!(
            have.iter().all(|i| written.contains(&i)),
            "a group is held that was never written"
        );
        if m.is_complete() {
            assert!(have.is_full(), "complete without every group");
        }
    }
    m
}
