//! A receiver in a tree session: takes each stripe from the parent the
//! coordinator names, verifies every group before it is stored, forwards what
//! it stored to its own children, and reports progress.
//!
//! Invariants:
//!
//! - Nothing is stored that did not verify against the outline, and the
//!   outline is only taken if it hashes to the root the coordinator (the
//!   sender the user accepted the file from) sent in `Start`.
//! - Groups are taken from the current parent of their stripe only; anything
//!   else (a late group from a former parent) is discarded unverified.
//! - A group already verified is never stored again: every `Subscribe` says
//!   what this node holds, and a copy that still arrives is discarded and
//!   counted ([`Stats::refetched_bytes`]; the simulator asserts it stays 0).
//! - A parent whose group or outline fails verification is dropped in every
//!   stripe and reported as corrupt; the coordinator names another.
//! - Control messages are taken from the coordinator only; subscriptions only
//!   from children the coordinator assigned (see [`relay`](super::relay)).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::groups::Groups;
use super::relay::{Held, Relay};
use super::{
    Config, Event, InEvent, LostReason, MAX_STRIPES, Message, OutEvent, Stripe, Timer, stripe_len,
    stripe_of,
};
use crate::identity::PeerId;
use crate::proto::transfer::verified::{Geometry, Outline};

/// Counters of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Group bytes that arrived (verified or not).
    pub received_bytes: u64,
    /// Bytes verified and stored.
    pub verified_bytes: u64,
    /// Bytes from a parent this node had already left (never verified).
    pub discarded_bytes: u64,
    /// Bytes of groups that arrived although already verified.
    pub refetched_bytes: u64,
    /// Groups or outlines that failed verification.
    pub corrupt: u64,
    /// Messages dropped for breaking the protocol.
    pub bad_input: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `Start`.
    Waiting,
    Running,
    /// Holds the whole file; still serves its children.
    Complete,
    Released,
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct File {
    geo: Geometry,
    root: [u8; 32],
    stripes: u8,
}

/// The state of one receiver in one tree session.
#[derive(Debug)]
pub struct State {
    config: Config,
    coordinator: PeerId,
    phase: Phase,
    file: Option<File>,
    outline: Option<Outline>,
    /// The stripe whose parent was asked for the outline (always 0).
    outline_stripe: Option<Stripe>,
    outline_parts: Vec<[u8; 32]>,
    have: Groups,
    stripe_have: Vec<u32>,
    /// Verified groups being written, and who sent them.
    storing: BTreeMap<u32, PeerId>,
    parents: Vec<Option<PeerId>>,
    subscribed: Vec<bool>,
    relay: Relay,
    /// Subscriptions from children that arrived before our own `Start`
    /// (they come from other nodes than the coordinator), bounded.
    early: VecDeque<(PeerId, Message)>,
    coordinator_lost: bool,
    stats: Stats,
}

impl State {
    /// A member of the session `coordinator` runs; created once this node's
    /// user accepted the file.
    pub fn new(config: Config, coordinator: PeerId) -> Self {
        Self {
            relay: Relay::new(&config, config.max_children),
            config,
            coordinator,
            phase: Phase::Waiting,
            file: None,
            outline: None,
            outline_stripe: None,
            outline_parts: Vec::new(),
            have: Groups::new(0),
            stripe_have: Vec::new(),
            storing: BTreeMap::new(),
            parents: Vec::new(),
            subscribed: Vec::new(),
            early: VecDeque::new(),
            coordinator_lost: false,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether every group is verified and stored.
    pub fn is_complete(&self) -> bool {
        matches!(self.phase, Phase::Complete | Phase::Released)
    }

    /// Whether the session is over for this node (released or failed).
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Released | Phase::Failed)
    }

    /// Verified groups, by number.
    pub fn have(&self) -> &Groups {
        &self.have
    }

    /// The current parent of each stripe.
    pub fn parents(&self) -> &[Option<PeerId>] {
        &self.parents
    }

    /// Groups sent to children so far.
    pub fn groups_sent(&self) -> u64 {
        self.relay.groups_sent
    }

    /// Feeds one input; returns what the driver must do, in order.
    pub fn handle(&mut self, now: Duration, event: InEvent) -> Vec<OutEvent> {
        let _ = now;
        let mut out = Vec::new();
        if self.is_over() {
            return out;
        }
        match event {
            InEvent::Message(from, msg) => self.on_message(from, msg, &mut out),
            InEvent::Received {
                from,
                index,
                digest,
            } => self.on_received(from, index, digest, &mut out),
            InEvent::Stored { index } => self.on_stored(index, &mut out),
            InEvent::PeerLost(peer) => self.on_peer_lost(peer, &mut out),
            InEvent::Timer(Timer::Report) => {
                if self.phase == Phase::Running && !self.coordinator_lost {
                    out.push(OutEvent::Send(
                        self.coordinator,
                        Message::Report {
                            have: self.stripe_have.clone(),
                        },
                    ));
                    out.push(OutEvent::ScheduleTimer(
                        self.config.report_interval,
                        Timer::Report,
                    ));
                }
            }
            InEvent::Timer(Timer::Check) => {}
        }
        out
    }

    fn stripes(&self) -> u8 {
        self.file.map_or(1, |f| f.stripes)
    }

    fn on_message(&mut self, from: PeerId, msg: Message, out: &mut Vec<OutEvent>) {
        let control = matches!(
            msg,
            Message::Start { .. }
                | Message::Attach { .. }
                | Message::Serve { .. }
                | Message::Unserve { .. }
                | Message::Release
                | Message::Abort { .. }
        );
        if control && from != self.coordinator {
            self.stats.bad_input += 1;
            return;
        }
        let running = self.file.is_some();
        match msg {
            Message::Start {
                size,
                group,
                root,
                stripes,
            } => self.on_start(size, group, root, stripes, out),
            Message::Abort { reason } => {
                self.phase = Phase::Failed;
                out.push(OutEvent::Emit(Event::Failed(reason)));
            }
            Message::Subscribe { .. } if !running => {
                if self.early.len() >= self.config.max_pending {
                    self.early.pop_front();
                    self.stats.bad_input += 1;
                }
                self.early.push_back((from, msg));
            }
            _ if !running => self.stats.bad_input += 1,
            Message::Attach { stripe, parent } if stripe < self.stripes() => {
                self.on_attach(stripe, parent, out)
            }
            Message::Serve { stripe, child } if stripe < self.stripes() => {
                let held = Held {
                    have: &self.have,
                    outline: self.outline.as_ref(),
                    stripes: self.stripes(),
                };
                match self.relay.serve(stripe, child, held, out) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => self.stats.bad_input += 1,
                }
            }
            Message::Unserve { stripe, child } => {
                self.relay.unserve(stripe, child);
                self.maybe_disconnect(child, out);
            }
            Message::Release if self.phase == Phase::Complete => {
                self.phase = Phase::Released;
                out.push(OutEvent::Emit(Event::Released));
                let children: Vec<PeerId> = self.relay.children().map(|(_, c)| c).collect();
                for c in children {
                    self.relay.remove_peer(c);
                    out.push(OutEvent::Disconnect(c));
                }
                out.push(OutEvent::Disconnect(self.coordinator));
            }
            Message::Outline { first, digests } => self.on_outline(from, first, digests, out),
            msg => {
                let held = Held {
                    have: &self.have,
                    outline: self.outline.as_ref(),
                    stripes: self.stripes(),
                };
                if !self.relay.on_message(from, msg, held, out) {
                    self.stats.bad_input += 1;
                }
            }
        }
    }

    fn on_start(
        &mut self,
        size: u64,
        group: u64,
        root: [u8; 32],
        stripes: u8,
        out: &mut Vec<OutEvent>,
    ) {
        if self.file.is_some() {
            self.stats.bad_input += 1;
            return;
        }
        let geo = match Geometry::new(size, group) {
            Ok(g) if (1..=MAX_STRIPES).contains(&stripes) => g,
            Ok(_) => return self.fail(format!("a session of {stripes} stripes"), out),
            Err(e) => return self.fail(e.to_string(), out),
        };
        self.file = Some(File { geo, root, stripes });
        self.have = Groups::new(geo.groups());
        self.stripe_have = vec![0; stripes as usize];
        self.parents = vec![None; stripes as usize];
        self.subscribed = vec![false; stripes as usize];
        self.phase = Phase::Running;
        if geo.groups() == 0 {
            match Outline::new(geo, root, Vec::new()) {
                Ok(o) => self.outline = Some(o),
                Err(e) => return self.fail(e.to_string(), out),
            }
            self.complete(out);
            return;
        }
        out.push(OutEvent::ScheduleTimer(
            self.config.report_interval,
            Timer::Report,
        ));
        for (from, msg) in std::mem::take(&mut self.early) {
            self.on_message(from, msg, out);
        }
    }

    fn fail(&mut self, reason: String, out: &mut Vec<OutEvent>) {
        self.phase = Phase::Failed;
        out.push(OutEvent::Emit(Event::Failed(reason)));
    }

    fn on_attach(&mut self, s: Stripe, parent: PeerId, out: &mut Vec<OutEvent>) {
        if self.phase != Phase::Running {
            return;
        }
        if self.parents[s as usize] == Some(parent) {
            self.try_subscribe(s, out);
            return;
        }
        self.drop_parent(s, out);
        self.parents[s as usize] = Some(parent);
        self.try_subscribe(s, out);
    }

    /// Forgets the parent of `s` (unsubscribing if it is still there).
    fn drop_parent(&mut self, s: Stripe, out: &mut Vec<OutEvent>) {
        let Some(old) = self.parents[s as usize].take() else {
            return;
        };
        if std::mem::take(&mut self.subscribed[s as usize]) {
            out.push(OutEvent::Send(old, Message::Unsubscribe { stripe: s }));
        }
        if self.outline_stripe == Some(s) && self.outline.is_none() {
            self.outline_stripe = None;
            self.outline_parts.clear();
        }
        self.maybe_disconnect(old, out);
    }

    fn try_subscribe(&mut self, s: Stripe, out: &mut Vec<OutEvent>) {
        let Some(file) = self.file else { return };
        let Some(parent) = self.parents[s as usize] else {
            return;
        };
        if self.subscribed[s as usize]
            || self.stripe_have[s as usize] == stripe_len(file.geo.groups(), s, file.stripes)
        {
            return;
        }
        // The outline comes from the parent of stripe 0 only: that tree is
        // rooted at the sender, so no two members ever wait on each other.
        let outline = if self.outline.is_some() {
            false
        } else if s == 0 {
            self.outline_stripe = Some(s);
            true
        } else {
            return;
        };
        self.subscribed[s as usize] = true;
        out.push(OutEvent::Send(
            parent,
            Message::Subscribe {
                stripe: s,
                outline,
                have: self.have.stripe_bitmap(s, file.stripes),
            },
        ));
    }

    fn subscribe_all(&mut self, out: &mut Vec<OutEvent>) {
        for s in 0..self.stripes() {
            self.try_subscribe(s, out);
        }
    }

    fn on_outline(
        &mut self,
        from: PeerId,
        first: u32,
        digests: Vec<[u8; 32]>,
        out: &mut Vec<OutEvent>,
    ) {
        let Some(file) = self.file else { return };
        let asked = self
            .outline_stripe
            .is_some_and(|s| self.parents[s as usize] == Some(from));
        if !asked || self.outline.is_some() {
            // late parts from a parent we left, or unasked for
            self.stats.bad_input += 1;
            return;
        }
        let groups = file.geo.groups() as usize;
        if first as usize != self.outline_parts.len()
            || self.outline_parts.len() + digests.len() > groups
        {
            return self.corrupt_parent(from, None, out);
        }
        self.outline_parts.extend(digests);
        if self.outline_parts.len() < groups {
            return;
        }
        let leaves = std::mem::take(&mut self.outline_parts);
        match Outline::new(file.geo, file.root, leaves) {
            Ok(o) => {
                self.outline = Some(o);
                self.subscribe_all(out);
                let held = Held {
                    have: &self.have,
                    outline: self.outline.as_ref(),
                    stripes: file.stripes,
                };
                self.relay.on_outline(held, out);
            }
            Err(_) => self.corrupt_parent(from, None, out),
        }
    }

    fn on_received(&mut self, from: PeerId, index: u32, digest: [u8; 32], out: &mut Vec<OutEvent>) {
        let discard = OutEvent::Discard { from, index };
        let Some(file) = self.file.filter(|f| index < f.geo.groups()) else {
            self.stats.bad_input += 1;
            out.push(discard);
            return;
        };
        let len = file.geo.len_of(index);
        self.stats.received_bytes += len;
        let s = stripe_of(index, file.stripes);
        if self.parents[s as usize] != Some(from) || !self.subscribed[s as usize] {
            self.stats.discarded_bytes += len;
            out.push(discard);
            return;
        }
        if self.have.contains(index) || self.storing.contains_key(&index) {
            self.stats.refetched_bytes += len;
            out.push(discard);
            return;
        }
        match &self.outline {
            Some(o) if o.check(index, &digest) => {
                self.storing.insert(index, from);
                out.push(OutEvent::Store { index });
            }
            // a group that does not verify, or one sent before the outline
            _ => {
                out.push(discard);
                self.corrupt_parent(from, Some(index), out);
            }
        }
    }

    fn corrupt_parent(&mut self, parent: PeerId, index: Option<u32>, out: &mut Vec<OutEvent>) {
        self.stats.corrupt += 1;
        out.push(OutEvent::Emit(Event::Corrupt {
            from: parent,
            index,
        }));
        self.lose_parent(parent, LostReason::Corrupt, out);
    }

    /// Drops `parent` in every stripe it serves us and tells the coordinator.
    fn lose_parent(&mut self, parent: PeerId, reason: LostReason, out: &mut Vec<OutEvent>) {
        for s in 0..self.stripes() {
            if self.parents[s as usize] != Some(parent) {
                continue;
            }
            if reason == LostReason::Gone {
                self.subscribed[s as usize] = false;
            }
            self.drop_parent(s, out);
            if self.coordinator_lost {
                return self.fail("the sender left and a parent is gone".into(), out);
            }
            out.push(OutEvent::Send(
                self.coordinator,
                Message::Lost {
                    stripe: s,
                    parent,
                    reason,
                },
            ));
        }
        self.subscribe_all(out);
    }

    fn on_stored(&mut self, index: u32, out: &mut Vec<OutEvent>) {
        let Some(from) = self.storing.remove(&index) else {
            self.stats.bad_input += 1;
            return;
        };
        let Some(file) = self.file else { return };
        let s = stripe_of(index, file.stripes);
        if self.have.insert(index) {
            self.stripe_have[s as usize] += 1;
            self.stats.verified_bytes += file.geo.len_of(index);
        }
        if self.parents[s as usize] == Some(from) {
            out.push(OutEvent::Send(from, Message::Ack { index }));
        }
        let held = Held {
            have: &self.have,
            outline: self.outline.as_ref(),
            stripes: file.stripes,
        };
        self.relay.on_stored(index, held, out);
        if self.have.is_full() && self.phase == Phase::Running {
            self.complete(out);
        }
    }

    fn complete(&mut self, out: &mut Vec<OutEvent>) {
        self.phase = Phase::Complete;
        for s in 0..self.stripes() {
            self.drop_parent(s, out);
        }
        out.push(OutEvent::Emit(Event::Complete));
        if !self.coordinator_lost {
            out.push(OutEvent::Send(self.coordinator, Message::Complete));
        }
    }

    fn on_peer_lost(&mut self, peer: PeerId, out: &mut Vec<OutEvent>) {
        self.relay.remove_peer(peer);
        if peer == self.coordinator {
            self.coordinator_lost = true;
            if self.phase == Phase::Complete {
                // nobody is left to release us; our children lose their parent
                // and fail or finish as their own sender-less rules say
                self.phase = Phase::Released;
                out.push(OutEvent::Emit(Event::Released));
            }
            return;
        }
        if self.parents.contains(&Some(peer)) {
            self.lose_parent(peer, LostReason::Gone, out);
        }
    }

    /// Closes the stream to `peer` once it is neither parent nor child.
    fn maybe_disconnect(&self, peer: PeerId, out: &mut Vec<OutEvent>) {
        if peer != self.coordinator
            && !self.parents.contains(&Some(peer))
            && !self.relay.is_child(peer)
        {
            out.push(OutEvent::Disconnect(peer));
        }
    }
}

#[cfg(test)]
mod tests;
