//! The sender's side of a tree session: builds the forest over the receivers
//! who accepted, serves the top of every stripe, and repairs.
//!
//! Invariants:
//!
//! - Only receivers the driver reports as having accepted ([`State::join`])
//!   are ever told about the file or given a parent or a child.
//! - Every assignment is sent to both ends: `Attach` to the child, `Serve` to
//!   the parent (`Start` always goes first on the same stream); every removal
//!   sends `Unserve` to a parent that is still there.
//! - A receiver is released (may close its session) only once it is complete
//!   and has no incomplete child left.
//! - Members, and what each may report, are bounded
//!   ([`Config::max_members`], one counter per stripe).

use std::collections::BTreeMap;
use std::time::Duration;

use super::forest::{Fit, Forest};
use super::groups::Groups;
use super::relay::{Held, Relay};
use super::{
    Config, Event, InEvent, LostReason, MAX_STRIPES, Message, MoveReason, OutEvent, Rates, Stripe,
    Timer, stripe_len,
};
use crate::identity::PeerId;
use crate::proto::transfer::verified::Outline;

/// Counters of the coordinator.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Receivers given another parent (relay left, corrupt or slow).
    pub repairs: u64,
    /// Of which because the parent was slow.
    pub slow_moves: u64,
    /// Receivers made leaves because their own downlink could not keep up.
    pub demotions: u64,
    /// Reports of a group or outline that failed verification.
    pub corrupt_reports: u64,
    /// Messages dropped for breaking the protocol.
    pub bad_input: u64,
}

/// Why a receiver cannot join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the session already has {0} receivers")]
    Full(usize),
    #[error("already in the session")]
    Duplicate,
}

#[derive(Debug, Clone)]
struct Member {
    rates: Option<Rates>,
    /// Groups verified per stripe, as last reported, and as reported the
    /// time before.
    have: Vec<u32>,
    prev_have: Vec<u32>,
    complete: bool,
    released: bool,
    /// Consecutive reports starved, per stripe.
    strikes: Vec<u32>,
    last_move: Option<Duration>,
}

/// The coordinator of one tree session (runs on the sender).
#[derive(Debug)]
pub struct State {
    config: Config,
    me: PeerId,
    outline: Outline,
    rates: Option<Rates>,
    have: Groups,
    forest: Option<Forest>,
    members: BTreeMap<PeerId, Member>,
    /// Healthy groups per report interval in a stripe (see `check_slow`).
    pace: u32,
    relay: Relay,
    all_complete: bool,
    failed: bool,
    stats: Stats,
}

impl State {
    /// A session sending the file `outline` describes from `me`, whose
    /// uplink was measured as `rates` (if at all).
    pub fn new(config: Config, me: PeerId, outline: Outline, rates: Option<Rates>) -> Self {
        let groups = outline.geometry().groups();
        Self {
            // the sender serves its own receivers: bounded by max_members
            relay: Relay::new(&config, usize::MAX),
            config,
            me,
            outline,
            rates,
            have: Groups::full(groups),
            forest: None,
            members: BTreeMap::new(),
            pace: 0,
            all_complete: false,
            failed: false,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn forest(&self) -> Option<&Forest> {
        self.forest.as_ref()
    }

    /// Groups the sender itself sent.
    pub fn groups_sent(&self) -> u64 {
        self.relay.groups_sent
    }

    /// Whether every receiver still in the session is complete.
    pub fn is_all_complete(&self) -> bool {
        self.all_complete
    }

    fn stripes(&self) -> u8 {
        self.forest.as_ref().map_or(1, |f| f.stripes())
    }

    /// Receiver `peer` accepted the file (its link `rates`, if measured).
    /// Before [`State::begin`] it waits for the forest; after, it joins the
    /// running session at once.
    pub fn join(
        &mut self,
        now: Duration,
        peer: PeerId,
        rates: Option<Rates>,
    ) -> Result<Vec<OutEvent>, JoinError> {
        let _ = now;
        if self.members.len() >= self.config.max_members {
            return Err(JoinError::Full(self.members.len()));
        }
        if peer == self.me || self.members.contains_key(&peer) {
            return Err(JoinError::Duplicate);
        }
        let mut out = Vec::new();
        let Some(forest) = self.forest.as_mut() else {
            self.members.insert(peer, Self::member(rates, 1));
            return Ok(out);
        };
        forest.add(peer, rates);
        let stripes = forest.stripes();
        self.members.insert(peer, Self::member(rates, stripes));
        self.all_complete = false;
        self.send_start(peer, &mut out);
        for s in 0..stripes {
            self.reattach(peer, s, None, None, Fit::Any, &mut out);
        }
        Ok(out)
    }

    fn member(rates: Option<Rates>, stripes: u8) -> Member {
        Member {
            rates,
            have: vec![0; stripes as usize],
            prev_have: vec![0; stripes as usize],
            complete: false,
            released: false,
            strikes: vec![0; stripes as usize],
            last_move: None,
        }
    }

    /// Every answer is in: builds the forest and starts sending.
    pub fn begin(&mut self, now: Duration) -> Vec<OutEvent> {
        let _ = now;
        let mut out = Vec::new();
        if self.forest.is_some() {
            return out;
        }
        let n = self.members.len().max(1);
        let stripes = (self.config.stripes.clamp(1, MAX_STRIPES) as usize).min(n) as u8;
        let list: Vec<(PeerId, Option<Rates>)> =
            self.members.iter().map(|(p, m)| (*p, m.rates)).collect();
        let forest = Forest::build(&self.config, stripes, self.me, self.rates, &list);
        for m in self.members.values_mut() {
            *m = Self::member(m.rates, stripes);
        }
        self.forest = Some(forest);
        for &(peer, _) in &list {
            self.send_start(peer, &mut out);
        }
        for &(peer, _) in &list {
            for s in 0..stripes {
                let parent = self.forest().and_then(|f| f.parent(peer, s));
                if let Some(p) = parent {
                    self.send_attach(peer, s, p, &mut out);
                }
            }
        }
        out.push(OutEvent::ScheduleTimer(
            self.config.report_interval,
            Timer::Check,
        ));
        self.check_all_complete(&mut out);
        out
    }

    fn send_start(&self, peer: PeerId, out: &mut Vec<OutEvent>) {
        let geo = self.outline.geometry();
        out.push(OutEvent::Send(
            peer,
            Message::Start {
                size: geo.size(),
                group: geo.group_size(),
                root: self.outline.root(),
                stripes: self.stripes(),
            },
        ));
    }

    fn send_attach(&mut self, child: PeerId, s: Stripe, parent: PeerId, out: &mut Vec<OutEvent>) {
        if parent == self.me {
            let held = Held {
                have: &self.have,
                outline: Some(&self.outline),
                stripes: self.stripes(),
            };
            if !matches!(self.relay.serve(s, child, held, out), Ok(true)) {
                self.stats.bad_input += 1;
            }
        } else {
            out.push(OutEvent::Send(parent, Message::Serve { stripe: s, child }));
        }
        out.push(OutEvent::Send(child, Message::Attach { stripe: s, parent }));
    }

    fn send_detach(&mut self, child: PeerId, s: Stripe, parent: PeerId, out: &mut Vec<OutEvent>) {
        if parent == self.me {
            self.relay.unserve(s, child);
        } else if self.members.get(&parent).is_some_and(|m| !m.released) {
            out.push(OutEvent::Send(
                parent,
                Message::Unserve { stripe: s, child },
            ));
        }
    }

    /// Gives `child` a new parent in `s` (not `avoid`, as loaded as `fit`
    /// allows); with `reason` set, counts and reports it as a repair.
    /// Returns whether it moved.
    fn reattach(
        &mut self,
        child: PeerId,
        s: Stripe,
        avoid: Option<PeerId>,
        reason: Option<MoveReason>,
        fit: Fit,
        out: &mut Vec<OutEvent>,
    ) -> bool {
        let Some(forest) = self.forest.as_ref() else {
            return false;
        };
        if self.members.get(&child).is_none_or(|m| m.complete) {
            return false;
        }
        let len = stripe_len(self.have.len(), s, forest.stripes());
        let members = &self.members;
        let progress = |p: PeerId| {
            members
                .get(&p)
                .map_or(0, |m| if m.complete { len } else { m.have[s as usize] })
        };
        let usable = |p: PeerId| members.get(&p).is_some_and(|m| !m.released);
        let Some(parent) = forest.choose_parent(child, s, avoid, fit, progress, usable) else {
            return false;
        };
        let forest = self.forest.as_mut().expect("checked above");
        let old = forest.detach(child, s);
        forest.attach(child, s, parent);
        if let Some(old) = old {
            self.send_detach(child, s, old, out);
        }
        self.send_attach(child, s, parent, out);
        if let Some(reason) = reason {
            self.stats.repairs += 1;
            out.push(OutEvent::Emit(Event::Moved {
                stripe: s,
                child,
                to: parent,
                reason,
            }));
        }
        true
    }

    /// Feeds one input; returns what the driver must do, in order.
    pub fn handle(&mut self, now: Duration, event: InEvent) -> Vec<OutEvent> {
        let mut out = Vec::new();
        if self.failed {
            return out;
        }
        match event {
            InEvent::Message(from, msg) => self.on_message(now, from, msg, &mut out),
            InEvent::PeerLost(peer) => self.on_peer_lost(peer, &mut out),
            InEvent::Timer(Timer::Check) => {
                if !self.all_complete {
                    self.check_slow(now, &mut out);
                    out.push(OutEvent::ScheduleTimer(
                        self.config.report_interval,
                        Timer::Check,
                    ));
                }
            }
            InEvent::Timer(Timer::Report) => {}
            // the sender holds every group; nothing arrives as data
            InEvent::Received { from, index, .. } => {
                self.stats.bad_input += 1;
                out.push(OutEvent::Discard { from, index });
            }
            InEvent::Stored { .. } => self.stats.bad_input += 1,
        }
        out
    }

    fn on_message(&mut self, now: Duration, from: PeerId, msg: Message, out: &mut Vec<OutEvent>) {
        let stripes = self.stripes();
        let Some(m) = self.members.get_mut(&from) else {
            self.stats.bad_input += 1;
            return;
        };
        if self.forest.is_none() {
            self.stats.bad_input += 1;
            return;
        }
        match msg {
            Message::Report { have } if have.len() == stripes as usize => {
                let groups = self.have.len();
                if have
                    .iter()
                    .enumerate()
                    .all(|(s, &h)| h <= stripe_len(groups, s as Stripe, stripes))
                {
                    m.prev_have = std::mem::replace(&mut m.have, have);
                } else {
                    self.stats.bad_input += 1;
                }
            }
            Message::Lost {
                stripe,
                parent,
                reason,
            } if stripe < stripes => self.on_lost(from, stripe, parent, reason, out),
            Message::Complete => self.on_complete(now, from, out),
            msg => {
                let held = Held {
                    have: &self.have,
                    outline: Some(&self.outline),
                    stripes,
                };
                if !self.relay.on_message(from, msg, held, out) {
                    self.stats.bad_input += 1;
                }
            }
        }
    }

    fn on_lost(
        &mut self,
        from: PeerId,
        s: Stripe,
        parent: PeerId,
        reason: LostReason,
        out: &mut Vec<OutEvent>,
    ) {
        // stale: the forest already moved it
        if self.forest().and_then(|f| f.parent(from, s)) != Some(parent) {
            return;
        }
        match reason {
            LostReason::Corrupt if parent == self.me => {
                self.stats.corrupt_reports += 1;
                self.abort("the file changed while it was being sent".into(), out);
            }
            LostReason::Corrupt => {
                self.stats.corrupt_reports += 1;
                self.demote(parent, MoveReason::ParentCorrupt, out);
            }
            LostReason::Gone => {
                self.reattach(
                    from,
                    s,
                    Some(parent),
                    Some(MoveReason::ParentLeft),
                    Fit::Any,
                    out,
                );
            }
        }
    }

    fn on_complete(&mut self, now: Duration, peer: PeerId, out: &mut Vec<OutEvent>) {
        let _ = now;
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        if m.complete {
            return;
        }
        m.complete = true;
        out.push(OutEvent::Emit(Event::ReceiverComplete(peer)));
        let parents = self.forest.as_mut().expect("running").set_complete(peer);
        for &(s, p) in &parents {
            self.send_detach(peer, s, p, out);
        }
        self.check_release(peer, out);
        for (_, p) in parents {
            self.check_release(p, out);
        }
        self.check_all_complete(out);
    }

    fn on_peer_lost(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) {
        self.relay.remove_peer(peer);
        let Some(m) = self.members.remove(&peer) else {
            return;
        };
        if !m.complete {
            out.push(OutEvent::Emit(Event::ReceiverLost(peer)));
        }
        let Some(forest) = self.forest.as_mut() else {
            return;
        };
        let (parents, orphans) = forest.remove(peer);
        for &(s, p) in &parents {
            self.send_detach(peer, s, p, out);
        }
        for (s, o) in orphans {
            self.reattach(o, s, None, Some(MoveReason::ParentLeft), Fit::Any, out);
        }
        for (_, p) in parents {
            self.check_release(p, out);
        }
        self.check_all_complete(out);
    }

    /// Releases `peer` once it is complete and serves nobody incomplete.
    fn check_release(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) {
        let idle = self
            .forest
            .as_ref()
            .is_some_and(|f| f.all_children(peer).is_empty());
        if let Some(m) = self.members.get_mut(&peer)
            && m.complete
            && !m.released
            && idle
        {
            m.released = true;
            out.push(OutEvent::Send(peer, Message::Release));
        }
    }

    fn check_all_complete(&mut self, out: &mut Vec<OutEvent>) {
        if !self.all_complete && self.members.values().all(|m| m.complete) {
            self.all_complete = true;
            out.push(OutEvent::Emit(Event::AllComplete));
        }
    }

    fn abort(&mut self, reason: String, out: &mut Vec<OutEvent>) {
        self.failed = true;
        for &peer in self.members.keys() {
            out.push(OutEvent::Send(
                peer,
                Message::Abort {
                    reason: reason.clone(),
                },
            ));
        }
        out.push(OutEvent::Emit(Event::Failed(reason)));
    }

    /// Makes `relay` a leaf for good (it forwarded corrupt data, or could not
    /// keep up): its children are attached elsewhere, and it leaves its own
    /// place in its home stripe to them, taking a leaf's place instead.
    fn demote(&mut self, relay: PeerId, reason: MoveReason, out: &mut Vec<OutEvent>) {
        let forest = self.forest.as_mut().expect("running");
        let home = forest.home(relay);
        let mut orphans = forest.demote(relay);
        let place = home.and_then(|s| forest.detach(relay, s).map(|p| (s, p)));
        // relays first, so they take the free places and carry the rest
        orphans.sort_by_key(|&(s, o)| (std::cmp::Reverse(forest.cap(o)), s, o));
        for &(s, o) in &orphans {
            self.send_detach(o, s, relay, out);
        }
        if let Some((s, p)) = place {
            self.send_detach(relay, s, p, out);
        }
        for (s, o) in orphans {
            self.reattach(o, s, Some(relay), Some(reason), Fit::Any, out);
        }
        if let Some((s, _)) = place {
            self.reattach(relay, s, None, None, Fit::Any, out);
        }
    }

    /// Finds starved children (see the module docs of `tree`) and moves them
    /// or demotes their own subtree's slow root.
    fn check_slow(&mut self, now: Duration, out: &mut Vec<OutEvent>) {
        let Some(forest) = self.forest.as_ref() else {
            return;
        };
        let stripes = forest.stripes();
        let groups = self.have.len();
        let mut starved: Vec<(PeerId, Vec<Stripe>)> = Vec::new();
        // A child is compared with where its parent was one report earlier:
        // in a flowing pipeline it has passed that point, whatever the
        // phases of their reports.
        let progress = |members: &BTreeMap<PeerId, Member>, p: PeerId, s: Stripe, prev: bool| {
            members.get(&p).map_or(0, |m| {
                if m.complete {
                    stripe_len(groups, s, stripes)
                } else if prev {
                    m.prev_have[s as usize]
                } else {
                    m.have[s as usize]
                }
            })
        };
        let ids: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, m)| !m.complete)
            .map(|(p, _)| *p)
            .collect();
        // The healthy pace (groups per report, the same in every stripe):
        // the best median gain of any stripe seen so far among receivers
        // that moved at all. A stripe whose top relay is slow is slow for
        // everyone in it, so its own median says nothing.
        for s in 0..stripes {
            let mut gains: Vec<u32> = ids
                .iter()
                .map(|&c| {
                    progress(&self.members, c, s, false).saturating_sub(progress(
                        &self.members,
                        c,
                        s,
                        true,
                    ))
                })
                .filter(|&g| g > 0)
                .collect();
            gains.sort_unstable();
            if let Some(&median) = gains.get(gains.len() / 2) {
                self.pace = self.pace.max(median);
            }
        }
        for c in ids {
            let mut lagging = Vec::new();
            for s in 0..stripes {
                let parent = forest.parent(c, s).filter(|p| *p != self.me);
                let gained = |p: PeerId| {
                    progress(&self.members, p, s, false).saturating_sub(progress(
                        &self.members,
                        p,
                        s,
                        true,
                    ))
                };
                // behind where its parent was, and gaining less than half of
                // what the parent gains (from a parent holding the whole
                // stripe: of the stripe's pace): starved, not just a report
                // out of phase
                let starved = parent.is_some_and(|p| {
                    let lag = progress(&self.members, p, s, true).saturating_sub(progress(
                        &self.members,
                        c,
                        s,
                        false,
                    ));
                    let pace =
                        if progress(&self.members, p, s, false) == stripe_len(groups, s, stripes) {
                            self.pace
                        } else {
                            gained(p)
                        };
                    lag >= self.config.slow_lag && gained(c) * 2 < pace
                });
                let m = self.members.get_mut(&c).expect("listed");
                let strikes = &mut m.strikes[s as usize];
                *strikes = if starved { *strikes + 1 } else { 0 };
                if *strikes >= self.config.slow_checks {
                    lagging.push(s);
                }
            }
            let cooled = self.members[&c]
                .last_move
                .is_none_or(|t| now.saturating_sub(t) >= self.config.move_cooldown);
            if !lagging.is_empty() && cooled {
                starved.push((c, lagging));
            }
        }
        // A receiver behind in most stripes is slow itself (its downlink);
        // otherwise each starving parent carries only the children it kept
        // fed, and is never loaded past that again.
        let mut moves = Vec::new();
        let mut starving: BTreeMap<(PeerId, Stripe), u32> = BTreeMap::new();
        for (c, lagging) in starved {
            let m = self.members.get_mut(&c).expect("listed");
            m.last_move = Some(now);
            m.strikes.iter_mut().for_each(|x| *x = 0);
            let forest = self.forest.as_mut().expect("running");
            if lagging.len() * 2 > stripes as usize {
                if forest.cap(c) > 0 {
                    self.stats.demotions += 1;
                    self.demote(c, MoveReason::ParentSlow, out);
                }
                continue;
            }
            for s in lagging {
                if let Some(p) = forest.parent(c, s) {
                    *starving.entry((p, s)).or_default() += 1;
                    moves.push((c, s, p));
                }
            }
        }
        // a relay starving most of its children is slow: it becomes a leaf
        // and gives its place up; one starving a few carries fewer
        let mut demoted = Vec::new();
        for (&(p, s), &n) in &starving {
            let forest = self.forest.as_mut().expect("running");
            let carried = forest.children(p, s).len() as u32;
            if n * 2 > carried && forest.cap(p) > 0 {
                self.stats.demotions += 1;
                demoted.push(p);
                self.demote(p, MoveReason::ParentSlow, out);
            } else {
                forest.strain(p, carried.saturating_sub(n));
            }
        }
        for (c, s, p) in moves {
            if demoted.contains(&p) {
                continue;
            }
            if self.reattach(
                c,
                s,
                Some(p),
                Some(MoveReason::ParentSlow),
                Fit::Overload,
                out,
            ) {
                self.stats.slow_moves += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::transfer::verified::{CHUNK, Geometry, OutlineBuilder};

    fn peer(i: u8) -> PeerId {
        PeerId::from_bytes([i; 32])
    }

    fn outline() -> Outline {
        let bytes = vec![7u8; 64 * CHUNK as usize];
        let mut b = OutlineBuilder::new(Geometry::new(bytes.len() as u64, 16 * CHUNK).unwrap());
        b.update(&bytes);
        b.finish().unwrap()
    }

    fn session(members: u8) -> (State, Vec<OutEvent>) {
        let mut c = State::new(Config::default(), peer(0), outline(), None);
        for i in 1..=members {
            assert!(c.join(Duration::ZERO, peer(i), None).unwrap().is_empty());
        }
        let out = c.begin(Duration::ZERO);
        (c, out)
    }

    fn recipients(out: &[OutEvent]) -> Vec<PeerId> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Send(p, _) => Some(*p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_receivers_who_joined_hear_of_the_file() {
        let (mut c, out) = session(5);
        let joined: Vec<PeerId> = (1..=5).map(peer).collect();
        assert!(recipients(&out).iter().all(|p| joined.contains(p)));
        for p in &joined {
            let starts = out
                .iter()
                .filter(|o| matches!(o, OutEvent::Send(q, Message::Start { .. }) if q == p))
                .count();
            assert_eq!(starts, 1);
        }
        // a stranger can neither subscribe nor report
        let out = c.handle(
            Duration::ZERO,
            InEvent::Message(
                peer(99),
                Message::Subscribe {
                    stripe: 0,
                    outline: true,
                    have: vec![0],
                },
            ),
        );
        assert!(out.is_empty());
        assert_eq!(c.stats().bad_input, 1);
        assert_eq!(
            c.join(Duration::ZERO, peer(1), None),
            Err(JoinError::Duplicate)
        );
    }

    #[test]
    fn a_complete_receiver_is_released_only_once_its_children_are() {
        let (mut c, _) = session(2);
        let f = c.forest().unwrap();
        let (a, b) = (peer(1), peer(2));
        let s = f.home(a).unwrap();
        assert_eq!(f.parent(b, s), Some(a));
        let released =
            |out: &[OutEvent], p: PeerId| out.contains(&OutEvent::Send(p, Message::Release));
        let out = c.handle(Duration::ZERO, InEvent::Message(a, Message::Complete));
        assert!(out.contains(&OutEvent::Emit(Event::ReceiverComplete(a))));
        assert!(!released(&out, a), "b still needs a");
        let out = c.handle(Duration::ZERO, InEvent::Message(b, Message::Complete));
        assert!(released(&out, a) && released(&out, b));
        assert!(out.contains(&OutEvent::Emit(Event::AllComplete)));
    }

    #[test]
    fn a_relay_that_leaves_has_its_children_attached_elsewhere() {
        let (mut c, _) = session(12);
        let f = c.forest().unwrap();
        let relay = (1..=12)
            .map(peer)
            .find(|p| f.home(*p).is_some_and(|s| !f.children(*p, s).is_empty()))
            .unwrap();
        let orphans = f.all_children(relay);
        let out = c.handle(Duration::ZERO, InEvent::PeerLost(relay));
        assert!(out.contains(&OutEvent::Emit(Event::ReceiverLost(relay))));
        let f = c.forest().unwrap();
        for (s, o) in orphans {
            let p = f.parent(o, s).unwrap();
            assert_ne!(p, relay);
            assert!(out.contains(&OutEvent::Send(
                o,
                Message::Attach {
                    stripe: s,
                    parent: p
                }
            )));
            if p != peer(0) {
                assert!(out.contains(&OutEvent::Send(
                    p,
                    Message::Serve {
                        stripe: s,
                        child: o
                    }
                )));
            }
        }
        assert!(!recipients(&out).contains(&relay));
    }
}
