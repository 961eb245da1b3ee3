//! LAN discovery: signed announcements, the peer table, and their schedule.
//!
//! Every node periodically announces itself (PeerId, device name and kind, TCP
//! port, protocol version, timestamp), signed with its ed25519 key, to the LAN
//! (the driver sends it by multicast and subnet broadcast on every interface). A
//! node that hears a peer it did not know answers it at once by unicast, so a
//! newcomer learns the whole LAN within one round trip instead of one announce
//! interval. Announcements are re-sent with jitter (so a room of devices that
//! powered up together does not announce in lockstep), and a peer that stays
//! silent for [`Config::expiry`] is dropped.
//!
//! Dropped and counted, never acted on: undecodable datagrams, bad signatures,
//! other protocol versions, our own echoes, and announcements older than the
//! freshest one already accepted from the same peer (replays).
//!
//! Other discovery sources (DNS-SD, [`crate::net::mdns`]) feed the same table
//! with [`InEvent::Hint`]: unsigned, so a hint only. A hint adds a peer or keeps
//! it alive and adds addresses to dial (each dial is pinned to the peer's key, so
//! a false address costs one failed handshake); it never changes the name or kind
//! of a peer whose signed announcement we have. Hinted peers expire like any
//! other, so the source must repeat its hints while it still hears the peer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PeerId, Signature};
use crate::proto::wire::{self, Datagram, DeviceKind, MAX_NAME_LEN};

/// Protocol version carried inside announcements.
pub const PROTOCOL_VERSION: u8 = wire::VERSION;

/// Most addresses remembered per peer (a laptop on Wi-Fi and Ethernet, v4 and v6).
const MAX_ADDRS_PER_PEER: usize = 8;

/// Domain separation for announcement signatures.
const SIGNING_CONTEXT: &[u8] = b"peerconnect announce v1\0";

#[derive(Debug, Clone)]
pub struct Config {
    /// Mean time between announcements.
    pub announce_interval: Duration,
    /// Each interval is drawn uniformly from `interval * (1 ± jitter)`.
    pub jitter: f64,
    /// A peer not heard from for this long is dropped.
    pub expiry: Duration,
    /// Announcements whose timestamp is older than this (by the announcer's clock
    /// against ours) are replays; generous because device clocks drift.
    pub max_age: Duration,
    /// Size cap of the peer table.
    pub max_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            announce_interval: Duration::from_secs(5),
            jitter: 0.25,
            expiry: Duration::from_secs(17),
            max_age: Duration::from_secs(3600),
            max_peers: 4096,
        }
    }
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub id: PeerId,
    /// Random per process run; tells a restarted peer from its previous life.
    pub instance: u64,
    pub name: String,
    pub kind: DeviceKind,
    pub tcp_port: u16,
    pub version: u8,
    /// Sender's wall clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// True for a unicast answer to someone else's announcement (never answered).
    pub reply: bool,
}

/// An announcement and its signature by `announce.id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnnounce {
    pub announce: Announce,
    pub signature: Signature,
}

impl SignedAnnounce {
    pub fn sign(announce: Announce, identity: &Identity) -> Self {
        let signature = Signature(identity.sign(&signing_bytes(&announce)));
        Self {
            announce,
            signature,
        }
    }

    pub fn verify(&self) -> bool {
        self.announce
            .id
            .verify(&signing_bytes(&self.announce), &self.signature.0)
    }
}

fn signing_bytes(a: &Announce) -> Vec<u8> {
    let mut out = SIGNING_CONTEXT.to_vec();
    postcard::to_io(a, &mut out).expect("encoding to a Vec cannot fail");
    out
}

/// A peer as discovery knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPeer {
    pub id: PeerId,
    pub instance: u64,
    pub name: String,
    pub kind: DeviceKind,
    /// TCP addresses to dial, most recently heard first.
    pub addrs: Vec<SocketAddr>,
}

/// A peer another discovery source heard of (see [`InEvent::Hint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub id: PeerId,
    pub name: String,
    pub kind: DeviceKind,
    /// TCP addresses to dial.
    pub addrs: Vec<SocketAddr>,
}

#[derive(Debug, Clone)]
struct Entry {
    peer: DiscoveredPeer,
    last_seen: Duration,
    last_timestamp_ms: u64,
    /// A signed announcement of this peer was accepted (else only hints were).
    signed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Announce,
    Expire,
}

/// What the driver feeds in.
#[derive(Debug, Clone)]
pub enum InEvent {
    /// Begin announcing.
    Start,
    Timer(Timer),
    /// A datagram arrived from `from`; `wall_ms` is our wall clock now.
    Datagram {
        from: SocketAddr,
        bytes: Vec<u8>,
        wall_ms: u64,
    },
    /// This host's addresses changed: announce at once, so peers learn the
    /// new address now rather than at the next periodic announcement (see
    /// [`crate::proto::roaming`]).
    NetworkChanged,
    /// Our name or port changed: announce the new values at once.
    UpdateSelf {
        name: String,
        kind: DeviceKind,
        tcp_port: u16,
    },
    /// Another source (DNS-SD) hears this peer: unsigned, so it is added or
    /// kept alive, and its addresses tried, but it never renames a peer whose
    /// signed announcement we have. Repeat it within the expiry to keep the
    /// peer.
    Hint(Hint),
}

/// What the state machine asks of the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum OutEvent {
    /// Send on every interface: multicast groups and subnet broadcast.
    Broadcast(Vec<u8>),
    /// Send to one address (an answer to a newcomer).
    Unicast(SocketAddr, Vec<u8>),
    ScheduleTimer(Duration, Timer),
    Emit(Event),
}

/// Changes to the peer table, for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer not in the table (or a new instance of one) announced itself.
    Discovered(DiscoveredPeer),
    /// A known peer changed name, kind or addresses.
    Updated(DiscoveredPeer),
    /// A peer went silent for longer than the expiry.
    Expired(PeerId),
}

/// Why datagrams were dropped; cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub received: u64,
    pub accepted: u64,
    pub malformed: u64,
    pub bad_signature: u64,
    pub wrong_version: u64,
    pub own_echo: u64,
    pub stale: u64,
    pub table_full: u64,
    /// Hints from other sources ([`InEvent::Hint`]) taken into the table.
    pub hints: u64,
}

/// The discovery state machine of one node.
#[derive(Debug)]
pub struct State<R> {
    config: Config,
    identity: Identity,
    instance: u64,
    name: String,
    kind: DeviceKind,
    tcp_port: u16,
    peers: BTreeMap<PeerId, Entry>,
    stats: Stats,
    rng: R,
    /// Our wall clock as last seen (for timestamps of replies built in timers).
    wall_ms: u64,
    /// Timestamp of our last announcement: each one is strictly newer, since
    /// receivers drop equal timestamps as replays.
    last_sent_ms: u64,
}

impl<R: Rng> State<R> {
    pub fn new(
        config: Config,
        identity: Identity,
        instance: u64,
        name: String,
        kind: DeviceKind,
        tcp_port: u16,
        rng: R,
    ) -> Self {
        Self {
            config,
            identity,
            instance,
            name,
            kind,
            tcp_port,
            peers: BTreeMap::new(),
            stats: Stats::default(),
            rng,
            wall_ms: 0,
            last_sent_ms: 0,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn peers(&self) -> impl Iterator<Item = &DiscoveredPeer> {
        self.peers.values().map(|e| &e.peer)
    }

    pub fn get(&self, id: &PeerId) -> Option<&DiscoveredPeer> {
        self.peers.get(id).map(|e| &e.peer)
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, now: Duration, wall_ms: u64, event: InEvent) -> Vec<OutEvent> {
        self.wall_ms = self.wall_ms.max(wall_ms);
        let mut out = Vec::new();
        match event {
            InEvent::Start => {
                out.push(OutEvent::Broadcast(self.announcement(false)));
                out.push(self.next_announce_timer());
                out.push(OutEvent::ScheduleTimer(
                    self.config.expiry / 4,
                    Timer::Expire,
                ));
            }
            InEvent::Timer(Timer::Announce) => {
                out.push(OutEvent::Broadcast(self.announcement(false)));
                out.push(self.next_announce_timer());
            }
            InEvent::Timer(Timer::Expire) => {
                self.expire(now, &mut out);
                out.push(OutEvent::ScheduleTimer(
                    self.config.expiry / 4,
                    Timer::Expire,
                ));
            }
            InEvent::Datagram { from, bytes, .. } => self.on_datagram(now, from, &bytes, &mut out),
            InEvent::NetworkChanged => out.push(OutEvent::Broadcast(self.announcement(false))),
            InEvent::UpdateSelf {
                name,
                kind,
                tcp_port,
            } => {
                self.name = name;
                self.kind = kind;
                self.tcp_port = tcp_port;
                out.push(OutEvent::Broadcast(self.announcement(false)));
            }
            InEvent::Hint(h) => self.on_hint(now, h, &mut out),
        }
        out
    }

    fn next_announce_timer(&mut self) -> OutEvent {
        let base = self.config.announce_interval.as_secs_f64();
        let j = self.config.jitter.clamp(0.0, 0.99);
        let factor = if j > 0.0 {
            self.rng.random_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        OutEvent::ScheduleTimer(Duration::from_secs_f64(base * factor), Timer::Announce)
    }

    /// Our signed announcement, encoded as a datagram.
    fn announcement(&mut self, reply: bool) -> Vec<u8> {
        self.last_sent_ms = self.wall_ms.max(self.last_sent_ms + 1);
        let a = Announce {
            id: self.identity.peer_id(),
            instance: self.instance,
            name: self.name.clone(),
            kind: self.kind,
            tcp_port: self.tcp_port,
            version: PROTOCOL_VERSION,
            timestamp_ms: self.last_sent_ms,
            reply,
        };
        wire::encode_datagram(&Datagram::Announce(SignedAnnounce::sign(a, &self.identity)))
            .expect("an announcement with a bounded name fits a datagram")
    }

    fn on_datagram(
        &mut self,
        now: Duration,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<OutEvent>,
    ) {
        self.stats.received += 1;
        let signed = match wire::decode_datagram::<Datagram>(bytes) {
            Ok(Datagram::Announce(s)) => s,
            Ok(_) => {
                self.stats.malformed += 1;
                return;
            }
            Err(wire::DecodeError::UnknownVersion(_)) => {
                self.stats.wrong_version += 1;
                return;
            }
            Err(e) => {
                tracing::debug!(%from, error = %e, "dropping undecodable discovery datagram");
                self.stats.malformed += 1;
                return;
            }
        };
        let a = &signed.announce;
        if a.version != PROTOCOL_VERSION {
            self.stats.wrong_version += 1;
            return;
        }
        if a.name.len() > MAX_NAME_LEN {
            self.stats.malformed += 1;
            return;
        }
        // The signature is checked before anything is said about the datagram:
        // whatever a sender without the key makes us log or do, it makes us do
        // for free and from a spoofed address.
        if !signed.verify() {
            tracing::debug!(%from, "dropping announcement with a bad signature");
            self.stats.bad_signature += 1;
            return;
        }
        let max_age_ms = self.config.max_age.as_millis() as u64;
        let too_old = a.timestamp_ms.saturating_add(max_age_ms) < self.wall_ms;
        if a.id == self.identity.peer_id() {
            if a.instance != self.instance && !too_old {
                tracing::warn!(
                    "another node at {from} announces our own identity: two nodes share one data dir"
                );
            }
            self.stats.own_echo += 1;
            return;
        }
        if too_old {
            self.stats.stale += 1;
            return;
        }
        let addr = SocketAddr::new(from.ip(), a.tcp_port);
        let is_new = match self.peers.get(&a.id) {
            None => true,
            Some(e) => e.peer.instance != a.instance,
        };
        // Only strictly newer announcements of an instance count: an equal
        // timestamp is a copy, replayed from another host to plant its address.
        // A new instance may share the last timestamp (a restart within one
        // millisecond) but not predate it (a replay from an earlier run).
        if let Some(e) = self.peers.get(&a.id)
            && (a.timestamp_ms < e.last_timestamp_ms
                || (!is_new && a.timestamp_ms == e.last_timestamp_ms))
        {
            self.stats.stale += 1;
            return;
        }
        if is_new && !self.peers.contains_key(&a.id) && self.peers.len() >= self.config.max_peers {
            self.stats.table_full += 1;
            return;
        }
        self.stats.accepted += 1;
        if is_new {
            let peer = DiscoveredPeer {
                id: a.id,
                instance: a.instance,
                name: a.name.clone(),
                kind: a.kind,
                addrs: vec![addr],
            };
            self.peers.insert(
                a.id,
                Entry {
                    peer: peer.clone(),
                    last_seen: now,
                    last_timestamp_ms: a.timestamp_ms,
                    signed: true,
                },
            );
            out.push(OutEvent::Emit(Event::Discovered(peer)));
        } else {
            let e = self.peers.get_mut(&a.id).expect("checked above");
            e.last_seen = now;
            e.last_timestamp_ms = a.timestamp_ms;
            e.signed = true;
            let mut changed = false;
            if e.peer.name != a.name || e.peer.kind != a.kind {
                e.peer.name = a.name.clone();
                e.peer.kind = a.kind;
                changed = true;
            }
            if e.peer.addrs.first() != Some(&addr) {
                e.peer.addrs.retain(|x| *x != addr);
                e.peer.addrs.insert(0, addr);
                e.peer.addrs.truncate(MAX_ADDRS_PER_PEER);
                changed = true;
            }
            if changed {
                out.push(OutEvent::Emit(Event::Updated(e.peer.clone())));
            }
        }
        // Answer newcomers by unicast so they learn the LAN at once; never answer
        // an answer (no loops). A lost answer is repaired by the next announcement.
        if is_new && !a.reply {
            out.push(OutEvent::Unicast(from, self.announcement(true)));
        }
    }

    fn on_hint(&mut self, now: Duration, h: Hint, out: &mut Vec<OutEvent>) {
        if h.id == self.identity.peer_id() {
            self.stats.own_echo += 1;
            return;
        }
        if h.name.len() > MAX_NAME_LEN || h.addrs.is_empty() {
            self.stats.malformed += 1;
            return;
        }
        match self.peers.get_mut(&h.id) {
            Some(e) => {
                self.stats.hints += 1;
                e.last_seen = now;
                let mut changed = false;
                if !e.signed && (e.peer.name != h.name || e.peer.kind != h.kind) {
                    e.peer.name = h.name;
                    e.peer.kind = h.kind;
                    changed = true;
                }
                // After the addresses heard by announcement: those came from
                // the peer's own datagrams.
                for a in h.addrs {
                    if e.peer.addrs.len() < MAX_ADDRS_PER_PEER && !e.peer.addrs.contains(&a) {
                        e.peer.addrs.push(a);
                        changed = true;
                    }
                }
                if changed {
                    out.push(OutEvent::Emit(Event::Updated(e.peer.clone())));
                }
            }
            None => {
                if self.peers.len() >= self.config.max_peers {
                    self.stats.table_full += 1;
                    return;
                }
                self.stats.hints += 1;
                let mut addrs = h.addrs;
                addrs.dedup();
                addrs.truncate(MAX_ADDRS_PER_PEER);
                let peer = DiscoveredPeer {
                    id: h.id,
                    // Unknown: a signed announcement of any instance replaces
                    // the entry as a new one.
                    instance: 0,
                    name: h.name,
                    kind: h.kind,
                    addrs,
                };
                self.peers.insert(
                    h.id,
                    Entry {
                        peer: peer.clone(),
                        last_seen: now,
                        last_timestamp_ms: 0,
                        signed: false,
                    },
                );
                out.push(OutEvent::Emit(Event::Discovered(peer)));
            }
        }
    }

    fn expire(&mut self, now: Duration, out: &mut Vec<OutEvent>) {
        let expiry = self.config.expiry;
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.last_seen) > expiry)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.peers.remove(&id);
            out.push(OutEvent::Emit(Event::Expired(id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sim;

    const WALL: u64 = 1_700_000_000_000;

    fn node(seed: u64) -> State<sim::SimRng> {
        State::new(
            Config::default(),
            Identity::from_secret([seed as u8; 32]),
            seed,
            format!("node{seed}"),
            DeviceKind::Laptop,
            4000 + seed as u16,
            sim::rng(seed, 0),
        )
    }

    fn broadcast_of(out: &[OutEvent]) -> Vec<u8> {
        out.iter()
            .find_map(|o| match o {
                OutEvent::Broadcast(b) => Some(b.clone()),
                _ => None,
            })
            .expect("a broadcast")
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 47472))
    }

    fn deliver(
        n: &mut State<sim::SimRng>,
        now: Duration,
        from: SocketAddr,
        bytes: Vec<u8>,
    ) -> Vec<OutEvent> {
        n.handle(
            now,
            WALL,
            InEvent::Datagram {
                from,
                bytes,
                wall_ms: WALL,
            },
        )
    }

    fn discovered(out: &[OutEvent]) -> Vec<DiscoveredPeer> {
        out.iter()
            .filter_map(|o| match o {
                OutEvent::Emit(Event::Discovered(p)) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// A node whose address changed announces at once; a peer that knew it at
    /// the old address hears the new one first (an `Updated`), without
    /// waiting for the next periodic announcement.
    #[test]
    fn a_network_change_announces_at_once_and_peers_learn_the_new_address() {
        let mut a = node(1);
        let mut b = node(2);
        let first = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), first);
        let t = Duration::from_millis(10);
        let out = a.handle(t, WALL + 10, InEvent::NetworkChanged);
        assert!(
            !out.iter().any(|o| matches!(o, OutEvent::ScheduleTimer(..))),
            "the periodic timer is left as it is"
        );
        let moved = SocketAddr::from(([10, 0, 0, 101], 5000));
        let out = deliver(&mut b, t, moved, broadcast_of(&out));
        let updated = out
            .iter()
            .find_map(|o| match o {
                OutEvent::Emit(Event::Updated(p)) => Some(p.clone()),
                _ => None,
            })
            .expect("b hears a at its new address");
        assert_eq!(updated.addrs[0], SocketAddr::from(([10, 0, 0, 101], 4001)));
    }

    #[test]
    fn newcomer_is_discovered_and_answered_by_unicast() {
        let mut a = node(1);
        let mut b = node(2);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        let out = deliver(&mut b, Duration::ZERO, addr(1), ann);
        let found = discovered(&out);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "node1");
        assert_eq!(
            found[0].addrs,
            vec![SocketAddr::from(([10, 0, 0, 1], 4001))]
        );
        let reply = out
            .iter()
            .find_map(|o| match o {
                OutEvent::Unicast(to, b) => Some((*to, b.clone())),
                _ => None,
            })
            .expect("b answers a by unicast");
        assert_eq!(reply.0, addr(1));
        // a learns b from the answer, and does not answer the answer
        let out = deliver(&mut a, Duration::ZERO, addr(2), reply.1);
        assert_eq!(discovered(&out)[0].name, "node2");
        assert!(!out.iter().any(|o| matches!(o, OutEvent::Unicast(..))));
    }

    #[test]
    fn repeated_announcements_are_not_rediscovered() {
        let mut a = node(1);
        let mut b = node(2);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), ann.clone());
        let out = deliver(&mut b, Duration::from_secs(1), addr(1), ann);
        assert!(discovered(&out).is_empty());
        assert_eq!(b.peers().count(), 1);
    }

    #[test]
    fn forged_announcement_is_dropped_and_counted() {
        let mut a = node(1);
        let mut b = node(2);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        let Ok(Datagram::Announce(mut signed)) = wire::decode_datagram(&ann) else {
            panic!("an announcement");
        };
        signed.announce.tcp_port = 6666; // redirect attempt
        let forged = wire::encode_datagram(&Datagram::Announce(signed)).unwrap();
        let out = deliver(&mut b, Duration::ZERO, addr(1), forged);
        assert!(out.is_empty());
        assert_eq!(b.stats().bad_signature, 1);
        assert_eq!(b.peers().count(), 0);
    }

    #[test]
    fn own_echo_is_dropped_and_counted() {
        let mut a = node(1);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        assert!(deliver(&mut a, Duration::ZERO, addr(1), ann).is_empty());
        assert_eq!(a.stats().own_echo, 1);
    }

    #[test]
    fn garbage_and_wrong_versions_are_counted() {
        let mut b = node(2);
        deliver(
            &mut b,
            Duration::ZERO,
            addr(9),
            vec![wire::VERSION, 0xde, 0xad, 0xbe, 0xef],
        );
        deliver(&mut b, Duration::ZERO, addr(9), vec![]);
        let mut a = node(1);
        let mut ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        ann[0] = wire::VERSION + 1;
        deliver(&mut b, Duration::ZERO, addr(1), ann);
        let s = b.stats();
        assert_eq!((s.malformed, s.wrong_version, s.accepted), (2, 1, 0));
    }

    #[test]
    fn silent_peer_expires() {
        let mut a = node(1);
        let mut b = node(2);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), ann);
        let out = b.handle(Duration::from_secs(10), WALL, InEvent::Timer(Timer::Expire));
        assert!(!out.contains(&OutEvent::Emit(Event::Expired(a.identity.peer_id()))));
        let out = b.handle(Duration::from_secs(30), WALL, InEvent::Timer(Timer::Expire));
        assert!(out.contains(&OutEvent::Emit(Event::Expired(a.identity.peer_id()))));
        assert_eq!(b.peers().count(), 0);
    }

    fn hint(of: &State<sim::SimRng>, name: &str, port: u16) -> InEvent {
        InEvent::Hint(Hint {
            id: of.identity.peer_id(),
            name: name.into(),
            kind: DeviceKind::Phone,
            addrs: vec![SocketAddr::from(([10, 0, 0, 9], port))],
        })
    }

    /// A peer only DNS-SD hears is listed, kept while the hints repeat, and
    /// dropped like any silent peer once they stop.
    #[test]
    fn a_hinted_peer_is_discovered_kept_by_repeats_and_expires_without_them() {
        let a = node(1);
        let mut b = node(2);
        let out = b.handle(Duration::ZERO, WALL, hint(&a, "phone", 4001));
        let found = discovered(&out);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "phone");
        assert!(
            !out.iter().any(|o| matches!(o, OutEvent::Unicast(..))),
            "a hint came from no datagram: nothing to answer"
        );
        let out = b.handle(Duration::from_secs(12), WALL, hint(&a, "phone", 4001));
        assert!(out.is_empty(), "a repeat changes nothing: {out:?}");
        let out = b.handle(Duration::from_secs(20), WALL, InEvent::Timer(Timer::Expire));
        assert!(
            !out.contains(&OutEvent::Emit(Event::Expired(a.identity.peer_id()))),
            "the repeat kept it"
        );
        let out = b.handle(Duration::from_secs(40), WALL, InEvent::Timer(Timer::Expire));
        assert!(out.contains(&OutEvent::Emit(Event::Expired(a.identity.peer_id()))));
        assert_eq!(b.stats().hints, 2);
    }

    /// A hint is unsigned: it adds an address to try, but the name and kind
    /// of a signed announcement stay; and a signed announcement that follows
    /// hints takes over the entry (and is answered, as from a newcomer).
    #[test]
    fn a_hint_never_renames_a_peer_that_announced_itself() {
        let mut a = node(1);
        let mut b = node(2);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), ann);
        let out = b.handle(Duration::from_secs(1), WALL, hint(&a, "impostor", 4001));
        let peer = b.get(&a.identity.peer_id()).unwrap();
        assert_eq!(
            (peer.name.as_str(), peer.kind),
            ("node1", DeviceKind::Laptop)
        );
        assert_eq!(
            peer.addrs,
            vec![
                SocketAddr::from(([10, 0, 0, 1], 4001)),
                SocketAddr::from(([10, 0, 0, 9], 4001))
            ]
        );
        assert!(matches!(&out[..], [OutEvent::Emit(Event::Updated(_))]));

        let mut c = node(3);
        c.handle(Duration::ZERO, WALL, hint(&a, "hinted", 4001));
        let ann = broadcast_of(&a.handle(
            Duration::from_secs(5),
            WALL + 5000,
            InEvent::Timer(Timer::Announce),
        ));
        let out = deliver(&mut c, Duration::from_secs(1), addr(1), ann);
        assert_eq!(discovered(&out)[0].name, "node1");
        assert!(out.iter().any(|o| matches!(o, OutEvent::Unicast(..))));
    }

    #[test]
    fn a_hint_of_ourselves_is_dropped_and_counted() {
        let mut a = node(1);
        let me = hint(&node(1), "me", 4001);
        assert!(a.handle(Duration::ZERO, WALL, me).is_empty());
        assert_eq!((a.stats().own_echo, a.stats().hints), (1, 0));
        assert_eq!(a.peers().count(), 0);
    }

    #[test]
    fn replayed_older_announcement_is_stale() {
        let mut a = node(1);
        let mut b = node(2);
        let old = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        let new = broadcast_of(&a.handle(
            Duration::from_secs(5),
            WALL + 5000,
            InEvent::Timer(Timer::Announce),
        ));
        deliver(&mut b, Duration::ZERO, addr(1), new);
        deliver(&mut b, Duration::from_secs(6), addr(7), old);
        assert_eq!(b.stats().stale, 1);
        assert_eq!(
            b.get(&a.identity.peer_id()).unwrap().addrs[0].ip(),
            addr(1).ip()
        );
    }

    #[test]
    fn replayed_equal_timestamp_announcement_from_another_host_is_stale() {
        let mut a = node(1);
        let mut b = node(2);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), ann.clone());
        // the same bytes again, from a host that is not a
        let out = deliver(&mut b, Duration::from_secs(1), addr(7), ann);
        assert!(out.is_empty(), "a replay must not update the peer: {out:?}");
        assert_eq!(b.stats().stale, 1);
        assert_eq!(
            b.get(&a.identity.peer_id()).unwrap().addrs,
            vec![SocketAddr::from(([10, 0, 0, 1], 4001))]
        );
    }

    #[test]
    fn replay_of_an_earlier_instance_is_stale_not_a_restart() {
        let mut b = node(2);
        let mut old = State::new(
            Config::default(),
            Identity::from_secret([1; 32]),
            7,
            "node1".into(),
            DeviceKind::Laptop,
            4001,
            sim::rng(9, 0),
        );
        let replay = broadcast_of(&old.handle(Duration::ZERO, WALL, InEvent::Start));
        let mut a = node(1);
        let ann = broadcast_of(&a.handle(Duration::ZERO, WALL + 1000, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), ann);
        let out = deliver(&mut b, Duration::from_secs(1), addr(7), replay);
        assert!(discovered(&out).is_empty());
        assert_eq!(b.get(&a.identity.peer_id()).unwrap().instance, 1);
        assert_eq!(b.stats().stale, 1);
    }

    #[test]
    fn successive_announcements_have_strictly_newer_timestamps() {
        let mut a = node(1);
        let mut b = node(2);
        // the wall clock does not move between the two: the second still counts
        let first = broadcast_of(&a.handle(Duration::ZERO, WALL, InEvent::Start));
        let second = broadcast_of(&a.handle(
            Duration::from_secs(5),
            WALL,
            InEvent::Timer(Timer::Announce),
        ));
        deliver(&mut b, Duration::ZERO, addr(1), first);
        deliver(&mut b, Duration::from_secs(5), addr(3), second);
        assert_eq!((b.stats().accepted, b.stats().stale), (2, 0));
    }

    #[test]
    fn forgery_claiming_our_id_counts_as_bad_signature_not_echo() {
        let mut a = node(1);
        let forger = Identity::generate();
        let forged = Announce {
            id: a.identity.peer_id(),
            instance: 12345,
            name: "impostor".into(),
            kind: DeviceKind::Phone,
            tcp_port: 1,
            version: PROTOCOL_VERSION,
            timestamp_ms: WALL,
            reply: false,
        };
        let bytes =
            wire::encode_datagram(&Datagram::Announce(SignedAnnounce::sign(forged, &forger)))
                .unwrap();
        assert!(deliver(&mut a, Duration::ZERO, addr(9), bytes).is_empty());
        assert_eq!((a.stats().bad_signature, a.stats().own_echo), (1, 0));
    }

    #[test]
    fn announce_intervals_are_jittered_within_bounds() {
        let mut a = node(1);
        let mut delays = Vec::new();
        for _ in 0..50 {
            for o in a.handle(Duration::ZERO, WALL, InEvent::Timer(Timer::Announce)) {
                if let OutEvent::ScheduleTimer(d, Timer::Announce) = o {
                    delays.push(d);
                }
            }
        }
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(3750) && *d <= Duration::from_millis(6250))
        );
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "intervals must vary"
        );
    }

    #[test]
    fn restarted_peer_is_rediscovered_as_new_instance() {
        let mut b = node(2);
        let mut a1 = node(1);
        let ann = broadcast_of(&a1.handle(Duration::ZERO, WALL, InEvent::Start));
        deliver(&mut b, Duration::ZERO, addr(1), ann);
        let mut a2 = State::new(
            Config::default(),
            Identity::from_secret([1; 32]),
            99,
            "node1".into(),
            DeviceKind::Laptop,
            4001,
            sim::rng(9, 0),
        );
        let ann = broadcast_of(&a2.handle(Duration::ZERO, WALL, InEvent::Start));
        let out = deliver(&mut b, Duration::from_secs(1), addr(1), ann);
        assert_eq!(discovered(&out).len(), 1);
        assert_eq!(b.get(&a1.identity.peer_id()).unwrap().instance, 99);
    }
}
