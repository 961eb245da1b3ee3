//! DNS-SD over mDNS (RFC 6763 over RFC 6762): this node advertises
//! `_peerconnect._tcp.local.` on every interface discovery uses, and browses
//! for it as one more discovery source.
//!
//! So avahi and Bonjour browsers list PeerConnect nodes, and two nodes on a
//! network that passes mDNS but drops PeerConnect's own multicast group still
//! find each other. The mDNS protocol itself (probing, answering, caching,
//! goodbyes) is the `mdns-sd` crate's, on its own thread; this module only
//! says what to advertise and turns what is heard into
//! [`Hint`]s, which the node takes like a heard announcement (same
//! peer table, same expiry, same rate-limited dials pinned to the peer's key).
//!
//! The advertisement (port = the node's TCP port) exposes, to anyone on the
//! LAN, what a discovery announcement already does: the TXT record carries
//! `id` (the PeerId as the CLI prints it), `name` (the device name), `kind`
//! (desktop, laptop, …) and `v` (the protocol version); the instance name is
//! the device name and the short id.
//!
//! What a service record says is untrusted: anyone on the LAN can answer with
//! any id, name and address. So:
//!
//! - the TXT `id` is only a hint: the node dials the addresses pinned to that
//!   key, and the TLS handshake proves it (a false record costs one failed
//!   handshake within the discovery dial budget);
//! - a hint never renames a peer whose signed announcement the node has
//!   (see [`crate::proto::discovery::InEvent::Hint`]), and the name shown is replaced by the
//!   one the peer's handshake carries once connected;
//! - records of our own id (our advertisement, heard back) are ignored, as
//!   are other protocol versions and records without a valid id or port;
//! - what is held is bounded: [`MAX_SERVICES`] services in total,
//!   [`MAX_ADDRS_PER_SERVICE`] addresses each, names cut to
//!   [`MAX_NAME_LEN`] bytes, an unknown `kind` read as `other`.
//!
//! A held service is handed to the node again every announce interval, so it
//! stays listed while mDNS still has it (the crate drops a service on its
//! goodbye or when its SRV record's two-minute TTL runs out unanswered) and
//! expires like a silent peer after that.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV6};

use mdns_sd::{IfKind, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::identity::PeerId;
use crate::proto::discovery::{Hint, PROTOCOL_VERSION};
use crate::proto::wire::{DeviceKind, MAX_NAME_LEN, truncate_name};

/// The DNS-SD service type of PeerConnect nodes.
pub const SERVICE_TYPE: &str = "_peerconnect._tcp.local.";

/// Resource: DNS-SD services held (resolved, with a valid id, not ours).
/// Limit: 256. At the limit: a new service is ignored (logged) until a held
/// one is removed; held ones stay.
pub const MAX_SERVICES: usize = 256;

/// Resource: addresses taken from one service. Limit: 4, IPv4 first. At the
/// limit: the rest are not used.
pub const MAX_ADDRS_PER_SERVICE: usize = 4;

/// A DNS label's limit, which the instance name must fit.
const MAX_LABEL_LEN: usize = 63;

/// Owns the daemon and shuts it down (sending goodbyes for our
/// advertisement) when dropped, i.e. when the task is aborted at shutdown.
struct Daemon(ServiceDaemon);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// Starts advertising and browsing; every service heard (and every
/// announce interval, each one still held) is passed to `hand`, which
/// returns `false` once the node is gone. The task lives until aborted.
pub(crate) fn spawn(
    config: &Config,
    id: PeerId,
    tcp_port: u16,
    mut hand: impl FnMut(Hint) -> bool + Send + 'static,
) -> Result<JoinHandle<()>, String> {
    let daemon = Daemon(ServiceDaemon::new().map_err(|e| format!("mdns: cannot start: {e}"))?);
    let only = &config.discovery.interfaces;
    let chosen = if only.is_empty() {
        // Like discovery: every interface but loopback, which reaches no
        // other device.
        daemon
            .0
            .disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
    } else {
        daemon.0.disable_interface(IfKind::All).and_then(|()| {
            daemon.0.enable_interface(
                only.iter()
                    .map(|n| IfKind::Name(n.clone()))
                    .collect::<Vec<_>>(),
            )
        })
    };
    chosen.map_err(|e| format!("mdns: cannot choose interfaces: {e}"))?;
    let info = advertisement(id, &config.name, config.kind, tcp_port)?;
    daemon
        .0
        .register(info)
        .map_err(|e| format!("mdns: cannot advertise {SERVICE_TYPE}: {e}"))?;
    let mut events = daemon
        .0
        .browse(SERVICE_TYPE)
        .map_err(|e| format!("mdns: cannot browse {SERVICE_TYPE}: {e}"))?;
    let refresh = config.discovery.announce_interval;
    Ok(tokio::spawn(async move {
        let daemon = daemon;
        let mut held = Services::new(id);
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                ev = events.recv_async() => match ev {
                    Ok(ev) => {
                        if let Some(h) = held.on_event(ev)
                            && !hand(h)
                        {
                            return;
                        }
                    }
                    Err(_) => {
                        // The crate ends a subscription that fell 1000 events
                        // behind: browse again, at most once per interval.
                        tokio::time::sleep(refresh).await;
                        match daemon.0.browse(SERVICE_TYPE) {
                            Ok(rx) => events = rx,
                            Err(e) => {
                                tracing::warn!(error = %e, "mdns: browsing ended");
                                return;
                            }
                        }
                    }
                },
                _ = tick.tick() => {
                    for h in held.all() {
                        if !hand(h) {
                            return;
                        }
                    }
                }
            }
        }
    }))
}

/// Our service: instance "NAME (SHORTID)", host "pc-SHORTID.local.", the
/// addresses of every chosen interface (kept up to date by the crate).
fn advertisement(
    id: PeerId,
    name: &str,
    kind: DeviceKind,
    tcp_port: u16,
) -> Result<ServiceInfo, String> {
    let short = id.short();
    let props = [
        ("id", id.to_string()),
        ("name", truncate_name(name)),
        ("kind", kind.as_str().to_string()),
        ("v", PROTOCOL_VERSION.to_string()),
    ];
    ServiceInfo::new(
        SERVICE_TYPE,
        &instance_name(name, &short),
        &format!("pc-{short}.local."),
        (),
        tcp_port,
        &props[..],
    )
    .map(ServiceInfo::enable_addr_auto)
    .map_err(|e| format!("mdns: bad advertisement: {e}"))
}

/// "NAME (SHORTID)" within one DNS label: the name is cut on a character
/// boundary. The short id keeps two nodes of one name apart.
fn instance_name(name: &str, short: &str) -> String {
    let suffix = format!(" ({short})");
    let mut end = MAX_LABEL_LEN.saturating_sub(suffix.len()).min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

/// The services heard and held, by full name.
#[derive(Debug)]
struct Services {
    own: PeerId,
    held: BTreeMap<String, Hint>,
}

impl Services {
    fn new(own: PeerId) -> Self {
        Self {
            own,
            held: BTreeMap::new(),
        }
    }

    /// Takes one event of the browse; the hint to hand on, if any.
    fn on_event(&mut self, ev: ServiceEvent) -> Option<Hint> {
        match ev {
            ServiceEvent::ServiceResolved(s) => {
                let Some(h) = hint_of(&s) else {
                    // Changed into something we do not take: forget it.
                    self.held.remove(&s.fullname);
                    return None;
                };
                if h.id == self.own {
                    return None;
                }
                if !self.held.contains_key(&s.fullname) && self.held.len() >= MAX_SERVICES {
                    tracing::debug!(service = %s.fullname, "mdns: {MAX_SERVICES} services held, ignoring another");
                    return None;
                }
                tracing::debug!(service = %s.fullname, peer = %h.id, addrs = ?h.addrs, "mdns: resolved");
                self.held.insert(s.fullname.clone(), h.clone());
                Some(h)
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                self.held.remove(&fullname);
                None
            }
            _ => None,
        }
    }

    fn all(&self) -> Vec<Hint> {
        self.held.values().cloned().collect()
    }
}

/// What a resolved service says, if it is a PeerConnect node of our
/// protocol version with a valid id and port (see the module docs).
fn hint_of(s: &ResolvedService) -> Option<Hint> {
    if s.ty_domain != SERVICE_TYPE || s.port == 0 {
        return None;
    }
    if let Some(v) = s.get_property_val_str("v")
        && v != PROTOCOL_VERSION.to_string()
    {
        return None;
    }
    let id: PeerId = s.get_property_val_str("id")?.parse().ok()?;
    let name = match s.get_property_val_str("name").map(str::trim) {
        Some(n) if !n.is_empty() => truncate_name(n),
        _ => id.short(),
    };
    let kind = match s.get_property_val_str("kind").map(str::parse::<DeviceKind>) {
        // What a PeerConnect node can be; never a browser guest or a
        // LocalSend device, which are other kinds of peer.
        Some(Ok(
            k @ (DeviceKind::Desktop
            | DeviceKind::Laptop
            | DeviceKind::Phone
            | DeviceKind::Tablet
            | DeviceKind::Server),
        )) => k,
        _ => DeviceKind::Other,
    };
    let addrs = addrs_of(s.get_addresses().iter(), s.port);
    if addrs.is_empty() {
        return None;
    }
    debug_assert!(name.len() <= MAX_NAME_LEN);
    Some(Hint {
        id,
        name,
        kind,
        addrs,
    })
}

/// Dialable addresses, IPv4 first then IPv6 (link-local ones with their
/// interface), sorted so the same record gives the same list, at most
/// [`MAX_ADDRS_PER_SERVICE`].
fn addrs_of<'a>(ips: impl Iterator<Item = &'a ScopedIp>, port: u16) -> Vec<SocketAddr> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for ip in ips {
        match ip {
            ScopedIp::V4(a) => {
                let a = *a.addr();
                if !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
                {
                    v4.push(SocketAddr::from((a, port)));
                }
            }
            ScopedIp::V6(a) => {
                let ip = *a.addr();
                if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
                    continue;
                }
                let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                let scope = if link_local { a.scope_id().index } else { 0 };
                if link_local && scope == 0 {
                    continue; // undialable without its interface
                }
                v6.push(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)));
            }
            _ => {}
        }
    }
    v4.sort();
    v6.sort();
    v4.extend(v6);
    v4.dedup();
    v4.truncate(MAX_ADDRS_PER_SERVICE);
    v4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn scoped(ip: &str) -> ScopedIp {
        ScopedIp::from(ip.parse::<std::net::IpAddr>().unwrap())
    }

    fn resolved(props: &[(&str, String)], ips: &[&str]) -> ResolvedService {
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            "x (abcdefgh)",
            "pc-abcdefgh.local.",
            ips.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .as_slice(),
            47471,
            props,
        )
        .unwrap();
        info.set_requires_probe(false);
        info.as_resolved_service()
    }

    fn props(id: PeerId) -> Vec<(&'static str, String)> {
        vec![
            ("id", id.to_string()),
            ("name", "Ada's laptop".into()),
            ("kind", "laptop".into()),
            ("v", PROTOCOL_VERSION.to_string()),
        ]
    }

    #[test]
    fn a_peer_record_becomes_a_hint_with_ipv4_first() {
        let id = Identity::generate().peer_id();
        let s = resolved(&props(id), &["2001:db8::7", "10.0.0.7", "127.0.0.1"]);
        let h = hint_of(&s).unwrap();
        assert_eq!(h.id, id);
        assert_eq!(h.name, "Ada's laptop");
        assert_eq!(h.kind, DeviceKind::Laptop);
        assert_eq!(
            h.addrs,
            vec![
                "10.0.0.7:47471".parse().unwrap(),
                "[2001:db8::7]:47471".parse().unwrap()
            ]
        );
    }

    #[test]
    fn records_without_a_valid_id_or_of_another_version_are_not_taken() {
        let id = Identity::generate().peer_id();
        let mut p = props(id);
        p[0].1 = "not-a-peer-id".into();
        assert!(hint_of(&resolved(&p, &["10.0.0.7"])).is_none());
        let mut p = props(id);
        p.remove(0);
        assert!(hint_of(&resolved(&p, &["10.0.0.7"])).is_none());
        let mut p = props(id);
        p[3].1 = "999".into();
        assert!(hint_of(&resolved(&p, &["10.0.0.7"])).is_none());
        assert!(hint_of(&resolved(&props(id), &[])).is_none());
    }

    #[test]
    fn names_are_cut_kinds_bounded_and_addresses_capped() {
        let id = Identity::generate().peer_id();
        let mut p = props(id);
        p[1].1 = "é".repeat(100);
        p[2].1 = "localsend".into();
        let ips: Vec<String> = (1..=20).map(|i| format!("10.0.0.{i}")).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        let h = hint_of(&resolved(&p, &ips)).unwrap();
        assert!(h.name.len() <= MAX_NAME_LEN && h.name.starts_with('é'));
        assert_eq!(h.kind, DeviceKind::Other);
        assert_eq!(h.addrs.len(), MAX_ADDRS_PER_SERVICE);
    }

    #[test]
    fn our_own_record_is_ignored_and_services_held_are_capped() {
        let own = Identity::generate().peer_id();
        let mut held = Services::new(own);
        let ours = resolved(&props(own), &["10.0.0.1"]);
        assert!(
            held.on_event(ServiceEvent::ServiceResolved(Box::new(ours)))
                .is_none()
        );
        for i in 0..MAX_SERVICES + 5 {
            let mut s = resolved(&props(Identity::generate().peer_id()), &["10.0.0.2"]);
            s.fullname = format!("n{i}.{SERVICE_TYPE}");
            let taken = held
                .on_event(ServiceEvent::ServiceResolved(Box::new(s)))
                .is_some();
            assert_eq!(taken, i < MAX_SERVICES, "service {i}");
        }
        assert_eq!(held.all().len(), MAX_SERVICES);
        held.on_event(ServiceEvent::ServiceRemoved(
            SERVICE_TYPE.into(),
            format!("n0.{SERVICE_TYPE}"),
        ));
        assert_eq!(held.all().len(), MAX_SERVICES - 1);
    }

    #[test]
    fn instance_names_fit_a_label_and_keep_the_short_id() {
        let n = instance_name(&"ü".repeat(60), "abcdefgh");
        assert!(n.len() <= MAX_LABEL_LEN, "{}", n.len());
        assert!(n.ends_with(" (abcdefgh)"));
        assert_eq!(instance_name("laptop", "abcdefgh"), "laptop (abcdefgh)");
    }

    #[test]
    fn link_local_ipv6_keeps_its_interface_or_is_skipped() {
        let a = addrs_of([scoped("fe80::1"), scoped("10.1.2.3")].iter(), 9);
        assert_eq!(a, vec!["10.1.2.3:9".parse().unwrap()]);
    }
}
