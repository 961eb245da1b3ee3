//! Serving children: which group goes to which child next.
//!
//! Used by both roles: the coordinator serves the top of every stripe from the
//! sender's file, a member serves its children from what it verified.
//!
//! Invariants:
//!
//! - A child is served only after the coordinator assigned it (`serve`);
//!   a subscription that arrives first waits in a bounded queue
//!   ([`Config::max_pending`], oldest dropped).
//! - A child gets only groups of its stripe that this node holds (verified)
//!   and that the child neither holds (its `Subscribe` bitmap, its acks) nor
//!   has in flight; at most [`Config::window`] are unacknowledged per child.
//! - The outline goes before any group to a child that asked for it.
//! - At most [`Config::max_children`] children, all stripes together.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::groups::{BitmapError, Groups};
use super::{Config, Message, OUTLINE_PART, OutEvent, Stripe, stripe_len, stripe_of};
use crate::identity::PeerId;
use crate::proto::transfer::verified::Outline;

/// What this node holds, as the relay needs it.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// Verified (and stored) groups, by group number.
    pub have: &'a Groups,
    pub outline: Option<&'a Outline>,
    pub stripes: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutlineWant {
    No,
    Wanted,
    Sent,
}

#[derive(Debug)]
struct Sub {
    /// Positions of the stripe the child holds (position `j` is group
    /// `stripe + j × stripes`).
    has: Groups,
    in_flight: BTreeSet<u32>,
    /// Every position below this one is held or in flight.
    cursor: u32,
    outline: OutlineWant,
}

#[derive(Debug)]
struct Pending {
    child: PeerId,
    stripe: Stripe,
    outline: bool,
    have: Vec<u8>,
}

/// The children this node serves.
#[derive(Debug)]
pub struct Relay {
    window: u32,
    max_children: usize,
    max_pending: usize,
    served: BTreeMap<(Stripe, PeerId), Option<Sub>>,
    pending: VecDeque<Pending>,
    /// Groups sent (for the driver's and simulator's accounting).
    pub groups_sent: u64,
}

impl Relay {
    /// A relay serving at most `max_children` (stripe, child) pairs.
    pub fn new(config: &Config, max_children: usize) -> Self {
        Self {
            window: config.window.max(1),
            max_children,
            max_pending: config.max_pending,
            served: BTreeMap::new(),
            pending: VecDeque::new(),
            groups_sent: 0,
        }
    }

    /// The coordinator assigned `child` to us in `stripe`. Returns false (and
    /// serves nothing) past [`Config::max_children`].
    pub fn serve(
        &mut self,
        stripe: Stripe,
        child: PeerId,
        held: Held<'_>,
        out: &mut Vec<OutEvent>,
    ) -> Result<bool, BitmapError> {
        if !self.served.contains_key(&(stripe, child)) {
            if self.served.len() >= self.max_children {
                return Ok(false);
            }
            self.served.insert((stripe, child), None);
        }
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.child == child && p.stripe == stripe)
        {
            let p = self.pending.remove(i).expect("index from position");
            self.subscribe(child, stripe, p.outline, &p.have, held, out)?;
        }
        Ok(true)
    }

    pub fn unserve(&mut self, stripe: Stripe, child: PeerId) {
        self.served.remove(&(stripe, child));
    }

    /// A child's message (`Subscribe`, `Unsubscribe`, `Ack`), served alike by
    /// the coordinator and a member. `false` for any other message and for a
    /// malformed one (the caller counts it as bad input).
    pub fn on_message(
        &mut self,
        from: PeerId,
        msg: Message,
        held: Held<'_>,
        out: &mut Vec<OutEvent>,
    ) -> bool {
        match msg {
            Message::Subscribe {
                stripe,
                outline,
                have,
            } if stripe < held.stripes => self
                .subscribe(from, stripe, outline, &have, held, out)
                .is_ok(),
            Message::Unsubscribe { stripe } => {
                self.unsubscribe(from, stripe);
                true
            }
            Message::Ack { index } => {
                self.ack(from, index, held, out);
                true
            }
            _ => false,
        }
    }

    /// `child` subscribes to `stripe`, holding the positions in `have`.
    fn subscribe(
        &mut self,
        child: PeerId,
        stripe: Stripe,
        outline: bool,
        have: &[u8],
        held: Held<'_>,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), BitmapError> {
        let groups = held.have.len();
        let positions = stripe_len(groups, stripe, held.stripes);
        let has = Groups::from_bitmap(positions, have)?;
        let Some(slot) = self.served.get_mut(&(stripe, child)) else {
            if self.pending.len() >= self.max_pending {
                self.pending.pop_front();
            }
            self.pending
                .retain(|p| !(p.child == child && p.stripe == stripe));
            self.pending.push_back(Pending {
                child,
                stripe,
                outline,
                have: have.to_vec(),
            });
            return Ok(());
        };
        *slot = Some(Sub {
            has,
            in_flight: BTreeSet::new(),
            cursor: 0,
            outline: if outline {
                OutlineWant::Wanted
            } else {
                OutlineWant::No
            },
        });
        self.pump(stripe, child, held, out);
        Ok(())
    }

    fn unsubscribe(&mut self, child: PeerId, stripe: Stripe) {
        if let Some(slot) = self.served.get_mut(&(stripe, child)) {
            *slot = None;
        }
        self.pending
            .retain(|p| !(p.child == child && p.stripe == stripe));
    }

    /// `child` verified and stored group `index`.
    fn ack(&mut self, child: PeerId, index: u32, held: Held<'_>, out: &mut Vec<OutEvent>) {
        let stripe = stripe_of(index, held.stripes);
        let Some(Some(sub)) = self.served.get_mut(&(stripe, child)) else {
            return;
        };
        let j = index / held.stripes as u32;
        if j >= sub.has.len() {
            return;
        }
        sub.in_flight.remove(&j);
        sub.has.insert(j);
        self.pump(stripe, child, held, out);
    }

    /// We now hold group `index`: serve it to whoever waits for it.
    pub fn on_stored(&mut self, index: u32, held: Held<'_>, out: &mut Vec<OutEvent>) {
        let stripe = stripe_of(index, held.stripes);
        for child in self.subscribed(Some(stripe)) {
            self.pump(stripe, child, held, out);
        }
    }

    /// We now hold the outline: serve it (and what follows) to whoever asked.
    pub fn on_outline(&mut self, held: Held<'_>, out: &mut Vec<OutEvent>) {
        let waiting: Vec<(Stripe, PeerId)> = self
            .served
            .iter()
            .filter(|(_, s)| matches!(s, Some(s) if s.outline == OutlineWant::Wanted))
            .map(|(k, _)| *k)
            .collect();
        for (stripe, child) in waiting {
            self.pump(stripe, child, held, out);
        }
    }

    /// Forgets `peer` as a child in every stripe.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.served.retain(|(_, c), _| *c != peer);
        self.pending.retain(|p| p.child != peer);
    }

    /// Whether `peer` is a child of ours in any stripe.
    pub fn is_child(&self, peer: PeerId) -> bool {
        self.served.keys().any(|(_, c)| *c == peer)
    }

    /// Children, by stripe.
    pub fn children(&self) -> impl Iterator<Item = (Stripe, PeerId)> + '_ {
        self.served.keys().copied()
    }

    fn subscribed(&self, stripe: Option<Stripe>) -> Vec<PeerId> {
        self.served
            .iter()
            .filter(|((s, _), sub)| sub.is_some() && stripe.is_none_or(|x| x == *s))
            .map(|((_, c), _)| *c)
            .collect()
    }

    fn pump(&mut self, stripe: Stripe, child: PeerId, held: Held<'_>, out: &mut Vec<OutEvent>) {
        let Some(Some(sub)) = self.served.get_mut(&(stripe, child)) else {
            return;
        };
        if sub.outline == OutlineWant::Wanted {
            let Some(outline) = held.outline else {
                return;
            };
            for (n, part) in outline.leaves().chunks(OUTLINE_PART).enumerate() {
                out.push(OutEvent::Send(
                    child,
                    Message::Outline {
                        first: (n * OUTLINE_PART) as u32,
                        digests: part.to_vec(),
                    },
                ));
            }
            sub.outline = OutlineWant::Sent;
        }
        let k = held.stripes as u32;
        let positions = sub.has.len();
        while sub.cursor < positions
            && (sub.has.contains(sub.cursor) || sub.in_flight.contains(&sub.cursor))
        {
            sub.cursor += 1;
        }
        // In order, from the cursor; a group we do not hold yet stops the scan
        // (we receive in order too, and pump again when it arrives).
        let mut j = sub.cursor;
        while (sub.in_flight.len() as u32) < self.window && j < positions {
            let index = stripe as u32 + j * k;
            if sub.has.contains(j) || sub.in_flight.contains(&j) {
                j += 1;
                continue;
            }
            if !held.have.contains(index) {
                break;
            }
            sub.in_flight.insert(j);
            self.groups_sent += 1;
            out.push(OutEvent::SendGroup { to: child, index });
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> PeerId {
        PeerId::from_bytes([i; 32])
    }

    fn sent(out: &[OutEvent]) -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::SendGroup { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_child_gets_only_its_stripe_in_order_within_the_window() {
        let config = Config {
            window: 2,
            ..Config::default()
        };
        let mut r = Relay::new(&config, config.max_children);
        let have = Groups::full(12);
        let held = Held {
            have: &have,
            outline: None,
            stripes: 3,
        };
        let mut out = Vec::new();
        r.serve(1, peer(1), held, &mut out).unwrap();
        // holds position 0 (group 1) already
        r.subscribe(peer(1), 1, false, &[0b0001], held, &mut out)
            .unwrap();
        assert_eq!(sent(&out), [4, 7]);
        out.clear();
        r.ack(peer(1), 4, held, &mut out);
        assert_eq!(sent(&out), [10]);
        out.clear();
        r.ack(peer(1), 7, held, &mut out);
        r.ack(peer(1), 10, held, &mut out);
        assert!(sent(&out).is_empty(), "nothing held is sent twice");
    }

    #[test]
    fn a_subscription_before_the_assignment_waits_for_it() {
        let mut r = Relay::new(&Config::default(), 32);
        let have = Groups::full(4);
        let held = Held {
            have: &have,
            outline: None,
            stripes: 1,
        };
        let mut out = Vec::new();
        r.subscribe(peer(2), 0, false, &[0], held, &mut out)
            .unwrap();
        assert!(out.is_empty());
        r.serve(0, peer(2), held, &mut out).unwrap();
        assert_eq!(sent(&out), [0, 1, 2, 3]);
    }

    #[test]
    fn children_wait_for_groups_the_relay_lacks() {
        let mut r = Relay::new(&Config::default(), 32);
        let mut have = Groups::new(8);
        let mut out = Vec::new();
        let held = Held {
            have: &have,
            outline: None,
            stripes: 2,
        };
        r.serve(0, peer(3), held, &mut out).unwrap();
        r.subscribe(peer(3), 0, false, &[0], held, &mut out)
            .unwrap();
        assert!(out.is_empty());
        have.insert(2);
        have.insert(0);
        let held = Held {
            have: &have,
            outline: None,
            stripes: 2,
        };
        r.on_stored(2, held, &mut out);
        assert_eq!(sent(&out), [0, 2]);
    }

    #[test]
    fn children_beyond_the_bound_are_refused() {
        let config = Config {
            max_children: 2,
            ..Config::default()
        };
        let mut r = Relay::new(&config, config.max_children);
        let have = Groups::new(1);
        let held = Held {
            have: &have,
            outline: None,
            stripes: 1,
        };
        let mut out = Vec::new();
        assert!(r.serve(0, peer(1), held, &mut out).unwrap());
        assert!(r.serve(0, peer(2), held, &mut out).unwrap());
        assert!(!r.serve(0, peer(3), held, &mut out).unwrap());
    }
}
