//! The relay tree's coordinator (`proto::transfer::tree::coordinator`), the
//! sender's side of a tree session, fed what the receivers can send it: any
//! message from any of a few receivers (or a stranger), reports true or out
//! of range, `Lost` naming the real parent or a stale one, `Complete`,
//! subscriptions and acks to the sender's own stripes, receivers joining
//! before and after the forest is built, connections lost, timers and time.
//! The session's settings (stripes, degree, window, slowness thresholds,
//! member bound, the sender's rates) come from the input's first bytes.
//!
//! What the coordinator promises (its module docs, `tree.rs` and
//! `forest.rs`), checked after every step:
//!
//! - only receivers in the session (joined, not lost since) are addressed,
//!   never the sender itself, and `Start` goes first, once, to each;
//! - every assignment reaches both ends: a receiver's parent in the forest
//!   is the one its last `Attach` named, and a relay's children are exactly
//!   those its `Serve`s minus its `Unserve`s named; no `Unserve` for what was
//!   never served;
//! - the forest is a forest: every receiver that is not complete has one
//!   parent per stripe, never itself, that is the sender or a receiver of the
//!   session, and walking up reaches the sender (or a complete receiver,
//!   which serves as well) without a cycle; a complete receiver has no
//!   parent; parent and child links agree;
//! - a relay is interior only in its home stripe and serves at most
//!   `max_degree` children there plus the one overload a repair may add
//!   (`forest::MAX_OVERLOAD`);
//! - groups go only to a receiver the sender is the parent of in that
//!   group's stripe (as last told, or as the `Attach` that follows in the
//!   same step says; not a complete one), with valid indices, and outline
//!   parts are the file's own digests;
//! - `Release` only to a complete receiver with no child left, once; a
//!   released receiver is given no child;
//! - `AllComplete` only when every receiver in the session is complete;
//!   after an `Abort`, nothing more;
//! - members stay within `max_members`, stripes within `MAX_STRIPES`, and one
//!   input makes a bounded number of outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use peerconnect::identity::PeerId;
use peerconnect::proto::transfer::tree::coordinator::{JoinError, State};
use peerconnect::proto::transfer::tree::{
    Config, Event, InEvent, LostReason, MAX_REASON, MAX_STRIPES, Message, OutEvent, Rates, Stripe,
    Timer, stripe_len, stripe_of,
};
use peerconnect::proto::transfer::verified::{Geometry, MIN_GROUP, Outline, OutlineBuilder};

use crate::{Input, MAX_OPS, ms};

/// Receivers `1..=RECEIVERS`; node 0 is the sender.
pub const RECEIVERS: u8 = 8;

/// How far a repair may load a relay past its capacity (`forest`'s
/// `MAX_OVERLOAD`, private there).
const MAX_OVERLOAD: usize = 1;

/// Node `i` of the session's small world: 0 the sender, `1..=RECEIVERS` the
/// receivers, anything above a stranger that never joins.
pub fn node(i: u8) -> PeerId {
    PeerId::from_bytes([i % (RECEIVERS + 2); 32])
}

/// The file being sent: 18 groups (a few per stripe, so a child can fall
/// behind its parent), the last one short.
pub fn outline() -> &'static Outline {
    static OUTLINE: OnceLock<Outline> = OnceLock::new();
    OUTLINE.get_or_init(|| {
        let size = 17 * MIN_GROUP + 1000;
        let geo = Geometry::new(size, MIN_GROUP).expect("a valid geometry");
        let mut b = OutlineBuilder::new(geo);
        let block: Vec<u8> = (0..MIN_GROUP).map(|i| (i * 31 % 251) as u8).collect();
        let mut left = size;
        while left > 0 {
            let n = left.min(MIN_GROUP);
            b.update(&block[..n as usize]);
            left -= n;
        }
        b.finish().expect("the whole file was hashed")
    })
}

/// Operations of the `tree_coordinator` target (first byte of each, modulo
/// 16; after a 4-byte header of settings, see [`config`]).
pub mod op {
    /// A receiver accepted (then: who, rated? byte, up u16, down u16).
    pub const JOIN: u8 = 0;
    /// Every answer is in: build the forest.
    pub const BEGIN: u8 = 1;
    /// Any message from anyone (then: from, postcard `Message`).
    pub const MESSAGE: u8 = 2;
    /// `Report` (then: from, one byte per stripe: groups held, may be past
    /// the stripe's end).
    pub const REPORT: u8 = 3;
    /// `Lost` (then: from, stripe, parent byte (bit 7: the forest's real
    /// parent, else node(byte)), corrupt? byte).
    pub const LOST: u8 = 4;
    /// `Complete` (then: from).
    pub const COMPLETE: u8 = 5;
    /// `Subscribe` to the sender (then: from, stripe, outline? byte, bitmap
    /// byte repeated to the stripe's length).
    pub const SUBSCRIBE: u8 = 6;
    /// `Ack` (then: from, index byte).
    pub const ACK: u8 = 7;
    /// `Unsubscribe` (then: from, stripe).
    pub const UNSUBSCRIBE: u8 = 8;
    /// A receiver's connection was lost (then: who).
    pub const PEER_LOST: u8 = 9;
    /// A timer fired (then: check? byte).
    pub const TIMER: u8 = 10;
    /// Group bytes or a `Stored`, which never concern the sender (then:
    /// from, index u32, stored? byte).
    pub const DATA: u8 = 11;
    /// Time passes (then: u16 ms); also every op number above.
    pub const WAIT: u8 = 12;
}

/// The session's settings from the input's first 4 bytes.
pub fn config(inp: &mut Input<'_>) -> (Config, Option<Rates>) {
    let [a, b, c, d] = [inp.u8(), inp.u8(), inp.u8(), inp.u8()];
    let config = Config {
        stripes: 1 + a % MAX_STRIPES,
        max_degree: 1 + u32::from(a >> 4) % 4,
        relay: b & 1 == 0,
        window: 1 + u32::from(b >> 1) % 4,
        slow_checks: 1 + u32::from(b >> 3) % 3,
        slow_lag: 1 + u32::from(b >> 5) % 4,
        max_members: 2 + c as usize % 7,
        ..Config::default()
    };
    let rates = (d & 1 == 1).then(|| Rates {
        up: u64::from(d >> 1) << 20,
        down: 1 << 30,
    });
    (config, rates)
}

/// What the receivers were told, as the model of the session.
#[derive(Debug, Default)]
struct Told {
    started: bool,
    complete: bool,
    released: bool,
    /// The parent each stripe's last `Attach` named.
    parents: BTreeMap<Stripe, PeerId>,
    /// (stripe, child) it was told to serve and not told to stop serving.
    serves: BTreeSet<(Stripe, PeerId)>,
}

pub fn tree_coordinator(data: &[u8]) {
    run(data);
}

/// Runs one input; the coordinator as the input left it.
pub fn run(data: &[u8]) -> State {
    let mut inp = Input::new(data);
    let (config, my_rates) = config(&mut inp);
    let me = node(0);
    let file = outline();
    let groups = file.geometry().groups();
    let mut c = State::new(config.clone(), me, file.clone(), my_rates);
    let mut now = Duration::ZERO;
    let mut members: BTreeMap<PeerId, Told> = BTreeMap::new();
    let mut began = false;
    let mut failed = false;
    let mut all_complete = false;
    let stripes = |c: &State| c.forest().map_or(1, |f| f.stripes());
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let s = stripes(&c);
        let step = match inp.u8() % 16 {
            op::JOIN => {
                let who = node(inp.u8());
                let rated = inp.bool();
                let (up, down) = (u64::from(inp.u16()) << 14, u64::from(inp.u16()) << 14);
                let rates = rated.then_some(Rates { up, down });
                // The driver ends the session when it fails and takes no
                // more receivers into it (`join` itself does not refuse).
                if failed {
                    continue;
                }
                match c.join(now, who, rates) {
                    Ok(out) => {
                        assert!(
                            members.len() < config.max_members,
                            "{} receivers past the bound {}",
                            members.len() + 1,
                            config.max_members
                        );
                        assert!(who != me && !members.contains_key(&who), "joined twice");
                        assert!(began || out.is_empty(), "work before the forest is built");
                        members.insert(who, Told::default());
                        if began {
                            all_complete = false;
                        }
                        Some((None, out))
                    }
                    Err(JoinError::Full(n)) => {
                        assert_eq!(n, members.len());
                        assert!(n >= config.max_members, "refused below the bound");
                        None
                    }
                    Err(JoinError::Duplicate) => {
                        assert!(who == me || members.contains_key(&who));
                        None
                    }
                }
            }
            op::BEGIN => {
                let out = c.begin(now);
                let first = !began;
                began = true;
                assert!(first || out.is_empty(), "a second begin did something");
                Some((None, out))
            }
            op::MESSAGE => {
                let from = node(inp.u8());
                let Some(msg) = inp.take::<Message>() else {
                    continue;
                };
                Some((Some(InEvent::Message(from, msg)), Vec::new()))
            }
            op::REPORT => {
                let from = node(inp.u8());
                let have = (0..s)
                    .map(|st| u32::from(inp.u8()) % (stripe_len(groups, st, s) + 2))
                    .collect();
                Some((
                    Some(InEvent::Message(from, Message::Report { have })),
                    Vec::new(),
                ))
            }
            op::LOST => {
                let from = node(inp.u8());
                let stripe = inp.u8() % (s + 1);
                let who = inp.u8();
                let parent = if who & 0x80 != 0 {
                    c.forest()
                        .and_then(|f| f.parent(from, stripe))
                        .unwrap_or(me)
                } else {
                    node(who)
                };
                let reason = if inp.bool() {
                    LostReason::Corrupt
                } else {
                    LostReason::Gone
                };
                let msg = Message::Lost {
                    stripe,
                    parent,
                    reason,
                };
                Some((Some(InEvent::Message(from, msg)), Vec::new()))
            }
            op::COMPLETE => {
                let from = node(inp.u8());
                Some((Some(InEvent::Message(from, Message::Complete)), Vec::new()))
            }
            op::SUBSCRIBE => {
                let from = node(inp.u8());
                let stripe = inp.u8() % s;
                let outline = inp.bool();
                let positions = stripe_len(groups, stripe, s);
                let byte = inp.u8();
                let mut have = vec![byte; positions.div_ceil(8) as usize];
                if let Some(last) = have.last_mut()
                    && !positions.is_multiple_of(8)
                {
                    *last &= (1 << (positions % 8)) - 1;
                }
                let msg = Message::Subscribe {
                    stripe,
                    outline,
                    have,
                };
                Some((Some(InEvent::Message(from, msg)), Vec::new()))
            }
            op::ACK => {
                let from = node(inp.u8());
                let index = u32::from(inp.u8()) % (groups + 2);
                Some((
                    Some(InEvent::Message(from, Message::Ack { index })),
                    Vec::new(),
                ))
            }
            op::UNSUBSCRIBE => {
                let from = node(inp.u8());
                let stripe = inp.u8() % s;
                Some((
                    Some(InEvent::Message(from, Message::Unsubscribe { stripe })),
                    Vec::new(),
                ))
            }
            op::PEER_LOST => Some((Some(InEvent::PeerLost(node(inp.u8()))), Vec::new())),
            op::TIMER => {
                let timer = if inp.bool() {
                    Timer::Check
                } else {
                    Timer::Report
                };
                Some((Some(InEvent::Timer(timer)), Vec::new()))
            }
            op::DATA => {
                let from = node(inp.u8());
                let index = inp.u32();
                let event = if inp.bool() {
                    InEvent::Stored { index }
                } else {
                    InEvent::Received {
                        from,
                        index,
                        digest: [0; 32],
                    }
                };
                Some((Some(event), Vec::new()))
            }
            _ => {
                now += ms(u64::from(inp.u16()));
                None
            }
        };
        let Some((event, mut out)) = step else {
            continue;
        };
        if let Some(event) = &event {
            out = c.handle(now, event.clone());
        }
        if failed {
            assert!(out.is_empty(), "a failed session still acts: {out:?}");
            continue;
        }
        assert!(out.len() <= 4096, "one input made {} outputs", out.len());
        let lost = match &event {
            Some(InEvent::PeerLost(p)) => members.remove(p).map(|t| (*p, t)),
            _ => None,
        };
        check_outputs(
            &c,
            &config,
            event.as_ref(),
            lost,
            &out,
            &mut members,
            &mut failed,
            &mut all_complete,
        );
        if !failed {
            check_forest(&c, &config, began, &members);
        }
    }
    c
}

/// Every output, in order, against what the session's receivers were told.
#[allow(clippy::too_many_arguments)]
fn check_outputs(
    c: &State,
    config: &Config,
    event: Option<&InEvent>,
    lost: Option<(PeerId, Told)>,
    out: &[OutEvent],
    members: &mut BTreeMap<PeerId, Told>,
    failed: &mut bool,
    all_complete: &mut bool,
) {
    let me = node(0);
    let file = outline();
    let groups = file.geometry().groups();
    let stripes = c.forest().map_or(1, |f| f.stripes());
    let told_before: BTreeMap<(PeerId, Stripe), PeerId> = members
        .iter()
        .flat_map(|(p, t)| t.parents.iter().map(|(s, q)| ((*p, *s), *q)))
        .collect();
    for o in out {
        assert!(!*failed, "output after the session failed: {o:?}");
        match o {
            OutEvent::Send(to, msg) => {
                assert!(*to != me, "the sender sent itself {msg:?}");
                let t = members
                    .get_mut(to)
                    .unwrap_or_else(|| panic!("{msg:?} to {to}, not in the session"));
                if let Message::Start {
                    size,
                    group,
                    root,
                    stripes: k,
                } = msg
                {
                    assert!(!t.started, "Start sent twice to {to}");
                    t.started = true;
                    let geo = file.geometry();
                    assert_eq!((*size, *group), (geo.size(), geo.group_size()));
                    assert_eq!(*root, file.root());
                    assert_eq!(*k, stripes, "Start with another stripe count");
                    continue;
                }
                assert!(t.started, "{msg:?} to {to} before its Start");
                match msg {
                    Message::Attach { stripe, parent } => {
                        assert!(*stripe < stripes && parent != to, "bad {msg:?} to {to}");
                        assert!(!t.complete, "{msg:?} to {to}, which is complete");
                        t.parents.insert(*stripe, *parent);
                        assert!(
                            *parent == me || members.contains_key(parent),
                            "{to} attached to {parent}, not in the session"
                        );
                    }
                    Message::Serve { stripe, child } => {
                        assert!(*stripe < stripes && child != to, "bad {msg:?} to {to}");
                        assert!(!t.released, "{msg:?} to {to}, released");
                        assert!(t.serves.insert((*stripe, *child)), "{msg:?} twice to {to}");
                        assert!(
                            members.get(child).is_some_and(|m| !m.complete),
                            "{to} told to serve {child}, not an incomplete receiver"
                        );
                    }
                    Message::Unserve { stripe, child } => {
                        assert!(!t.released, "{msg:?} to {to}, released");
                        assert!(
                            t.serves.remove(&(*stripe, *child)),
                            "{msg:?} to {to}, which was not serving it"
                        );
                    }
                    Message::Release => {
                        assert!(t.complete, "{to} released before it is complete");
                        assert!(!t.released, "{to} released twice");
                        t.released = true;
                    }
                    Message::Abort { reason } => {
                        assert!(reason.len() <= MAX_REASON);
                    }
                    Message::Outline { first, digests } => {
                        let range = *first as usize..*first as usize + digests.len();
                        assert!(
                            file.leaves().get(range) == Some(&digests[..]),
                            "outline part {first}+{} is not the file's",
                            digests.len()
                        );
                    }
                    m => panic!("the coordinator sent a member's message {m:?} to {to}"),
                }
            }
            OutEvent::SendGroup { to, index } => {
                assert!(*index < groups, "group {index} of {groups} sent");
                let t = members
                    .get(to)
                    .unwrap_or_else(|| panic!("group {index} to {to}, not in the session"));
                assert!(t.started && !t.complete, "group {index} to {to}: {t:?}");
            }
            OutEvent::Discard { from, index } => assert!(
                matches!(event, Some(InEvent::Received { from: f, index: i, .. }) if f == from && i == index),
                "Discard of something never received"
            ),
            OutEvent::ScheduleTimer(after, timer) => {
                assert_eq!((*after, *timer), (config.report_interval, Timer::Check));
            }
            OutEvent::Emit(e) => match e {
                Event::ReceiverComplete(p) => {
                    assert_eq!(event, Some(&InEvent::Message(*p, Message::Complete)));
                    let t = members.get_mut(p).expect("a receiver of the session");
                    assert!(!t.complete, "{p} complete twice");
                    t.complete = true;
                }
                Event::ReceiverLost(p) => {
                    let (q, t) = lost.as_ref().expect("lost without PeerLost");
                    assert!(p == q && !t.complete, "ReceiverLost({p}) for {q}: {t:?}");
                }
                Event::Moved {
                    stripe, child, to, ..
                } => {
                    assert!(*stripe < stripes && child != to);
                    assert!(members.contains_key(child));
                    assert!(*to == me || members.contains_key(to));
                }
                Event::AllComplete => {
                    assert!(!*all_complete, "AllComplete twice");
                    assert!(
                        members.values().all(|t| t.complete),
                        "AllComplete with a receiver incomplete"
                    );
                    *all_complete = true;
                }
                Event::Failed(reason) => {
                    assert!(reason.len() <= MAX_REASON);
                    *failed = true;
                }
                e => panic!("the coordinator emitted a member's event {e:?}"),
            },
            o => panic!("the coordinator asked for {o:?}"),
        }
    }
    // The sender serves the groups of a stripe only to its own children
    // there: the receiver's parent is the sender as last told, or as the
    // next `Attach` of this step tells it (the sender starts serving a
    // waiting subscription before the `Attach` goes out). A repair may move
    // the child on within the same step; the groups already sent are then
    // extra, verified copies, not a breach.
    for (i, o) in out.iter().enumerate() {
        let OutEvent::SendGroup { to, index } = o else {
            continue;
        };
        let s = stripe_of(*index, stripes);
        let next = out[i..].iter().find_map(|o| match o {
            OutEvent::Send(p, Message::Attach { stripe, parent }) if p == to && *stripe == s => {
                Some(*parent)
            }
            _ => None,
        });
        let before = told_before.get(&(*to, s)).copied();
        assert!(
            next.or(before) == Some(me),
            "group {index} to {to}, not the sender's child in stripe {s}"
        );
    }
}

/// The forest's shape against the promises and what was told.
fn check_forest(c: &State, config: &Config, began: bool, members: &BTreeMap<PeerId, Told>) {
    let me = node(0);
    assert!(members.len() <= config.max_members);
    let Some(f) = c.forest() else {
        assert!(!began, "no forest after begin");
        return;
    };
    assert!(began, "a forest before begin");
    let stripes = f.stripes();
    assert!((1..=MAX_STRIPES).contains(&stripes));
    let in_forest: Vec<PeerId> = f.members().collect();
    let told: Vec<PeerId> = members.keys().copied().collect();
    assert_eq!(
        in_forest, told,
        "the forest and the session's receivers differ"
    );
    for s in 0..stripes {
        for child in f.children(me, s) {
            assert_eq!(f.parent(child, s), Some(me), "links disagree at the sender");
        }
    }
    for (&m, t) in members {
        assert!(t.started, "{m} in the forest never got Start");
        let complete = f.is_complete(m);
        assert_eq!(
            complete, t.complete,
            "{m}: complete in the forest and not said"
        );
        let mut serves = BTreeSet::new();
        for s in 0..stripes {
            match f.parent(m, s) {
                Some(p) => {
                    assert!(!complete, "complete {m} still has a parent in {s}");
                    assert!(p != m, "{m} is its own parent in {s}");
                    assert!(p == me || f.contains(p), "{m}'s parent {p} is gone");
                    assert!(f.children(p, s).contains(&m), "links disagree at {p}");
                    assert_eq!(
                        t.parents.get(&s),
                        Some(&p),
                        "{m} not told its parent in {s}"
                    );
                    if p != me {
                        assert!(!members[&p].released, "released {p} serves {m}");
                    }
                }
                None => assert!(complete, "incomplete {m} has no parent in {s}"),
            }
            // no cycle: up to the sender or a complete receiver
            let mut at = m;
            for _ in 0..=members.len() {
                if at == me || f.is_complete(at) {
                    break;
                }
                at = f.parent(at, s).expect("checked above: a parent");
            }
            assert!(at == me || f.is_complete(at), "{m} is in a cycle in {s}");
            let children = f.children(m, s);
            if !children.is_empty() {
                assert_eq!(f.home(m), Some(s), "{m} interior outside its home");
                assert!(
                    children.len() <= config.max_degree as usize + MAX_OVERLOAD,
                    "{m} serves {} in {s}, degree {}",
                    children.len(),
                    config.max_degree
                );
            }
            serves.extend(children.into_iter().map(|ch| (s, ch)));
        }
        assert_eq!(serves, t.serves, "{m} was not told what it serves");
    }
}
