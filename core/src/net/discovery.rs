//! UDP sockets of LAN discovery: multicast (IPv4 and IPv6) and subnet broadcast
//! on every suitable interface.
//!
//! Two sockets per address family:
//!
//! - a *listening* socket bound to the discovery port (shared with other nodes on
//!   the same host via `SO_REUSEADDR`/`SO_REUSEPORT`) that has joined the group on
//!   each interface and receives multicast and broadcast announcements;
//! - a *sending* socket on an ephemeral port of our own, which sends
//!   announcements (choosing the interface per send with `IP_MULTICAST_IF`) and
//!   receives the unicast answers, so answers reach this node and not another one
//!   sharing the discovery port.
//!
//! Joining and sending per interface (never on "any interface") is what works in a
//! namespace without a default route, and what a multi-homed laptop needs.
//! Interfaces are rescanned periodically, so a network that comes up later is
//! joined then. The state machine in [`crate::proto::discovery`] decides what to
//! send; this module only moves bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::DiscoveryConfig;
use crate::proto::wire::MAX_DATAGRAM_LEN;

/// A network interface discovery uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub v4: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
    pub has_v6: bool,
}

/// Lists up, non-loopback, multicast-capable interfaces (optionally only those
/// named in `only`).
pub fn interfaces(only: &[String]) -> io::Result<Vec<Iface>> {
    let mut out: Vec<Iface> = Vec::new();
    for i in if_addrs::get_if_addrs()? {
        if i.is_loopback() || !i.is_oper_up() && !is_up_by_flags(&i.name) {
            continue;
        }
        if !only.is_empty() && !only.contains(&i.name) {
            continue;
        }
        if !is_multicast_capable(&i.name) {
            continue;
        }
        let Some(index) = i.index else { continue };
        let pos = match out.iter().position(|o| o.name == i.name) {
            Some(p) => p,
            None => {
                out.push(Iface {
                    name: i.name.clone(),
                    index,
                    v4: None,
                    has_v6: false,
                });
                out.len() - 1
            }
        };
        match i.addr {
            if_addrs::IfAddr::V4(a) => {
                if out[pos].v4.is_none() {
                    // Computed rather than read: an interface configured without
                    // `brd` reports its own address (or 0.0.0.0) as broadcast, yet
                    // the subnet's broadcast address works on the wire.
                    let bcast = subnet_broadcast(a.ip, a.prefixlen);
                    out[pos].v4 = Some((a.ip, bcast));
                }
            }
            if_addrs::IfAddr::V6(_) => out[pos].has_v6 = true,
        }
    }
    out.sort();
    Ok(out)
}

/// The directed broadcast address of `ip/prefix`, if the subnet has one.
fn subnet_broadcast(ip: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix >= 31 {
        return None;
    }
    let host_bits = u32::MAX >> prefix;
    Some(Ipv4Addr::from(u32::from(ip) | host_bits))
}

/// Reads an interface flag word from sysfs (Linux); `None` elsewhere.
fn iface_flags(name: &str) -> Option<u32> {
    if name.contains('/') || name.contains("..") {
        return None;
    }
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn is_multicast_capable(name: &str) -> bool {
    const IFF_MULTICAST: u32 = 0x1000;
    iface_flags(name).is_none_or(|f| f & IFF_MULTICAST != 0)
}

/// Some virtual interfaces report an unknown operational state while up.
fn is_up_by_flags(name: &str) -> bool {
    const IFF_UP: u32 = 0x1;
    const IFF_RUNNING: u32 = 0x40;
    iface_flags(name).is_some_and(|f| f & IFF_UP != 0 && f & IFF_RUNNING != 0)
}

/// The discovery sockets of one node.
#[derive(Debug)]
pub struct Sockets {
    config: DiscoveryConfig,
    listen4: Option<Arc<UdpSocket>>,
    listen6: Option<Arc<UdpSocket>>,
    send4: Option<Arc<UdpSocket>>,
    send6: Option<Arc<UdpSocket>>,
    ifaces: Vec<Iface>,
    /// Groups joined: per interface, the IPv4 address the v4 group was joined
    /// with, and whether the v6 group was joined.
    joined4: BTreeMap<String, Ipv4Addr>,
    joined6: BTreeSet<String>,
}

fn listening_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_multicast_loop_v6(true)?;
    } else {
        s.set_multicast_loop_v4(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn sending_socket(v6: bool) -> io::Result<UdpSocket> {
    let (domain, addr) = if v6 {
        (Domain::IPV6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
    } else {
        (Domain::IPV4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        s.set_only_v6(true)?;
        s.set_multicast_loop_v6(true)?;
        s.set_multicast_hops_v6(1)?;
    } else {
        s.set_broadcast(true)?;
        s.set_multicast_loop_v4(true)?;
        s.set_multicast_ttl_v4(1)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

impl Sockets {
    /// Binds the sockets. Fails only if no address family works at all.
    pub fn bind(config: &DiscoveryConfig) -> io::Result<Self> {
        let port = config.port;
        let listen4 = listening_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
        let send4 = sending_socket(false);
        let listen6 = listening_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
        let send6 = sending_socket(true);
        let ok = |r: io::Result<UdpSocket>, what: &str| match r {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::debug!(error = %e, "discovery: no {what} socket");
                None
            }
        };
        let (listen4, send4) = match (listen4, send4) {
            (Ok(l), Ok(s)) => (ok(Ok(l), "ipv4"), ok(Ok(s), "ipv4")),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "discovery: no ipv4 sockets");
                (None, None)
            }
        };
        let (listen6, send6) = match (listen6, send6) {
            (Ok(l), Ok(s)) => (ok(Ok(l), "ipv6"), ok(Ok(s), "ipv6")),
            _ => (None, None),
        };
        if listen4.is_none() && listen6.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("cannot bind discovery port {port} for ipv4 or ipv6"),
            ));
        }
        let mut s = Self {
            config: config.clone(),
            listen4,
            listen6,
            send4,
            send6,
            ifaces: Vec::new(),
            joined4: BTreeMap::new(),
            joined6: BTreeSet::new(),
        };
        s.refresh_interfaces();
        Ok(s)
    }

    /// Rescans interfaces and joins the multicast groups on new ones.
    pub fn refresh_interfaces(&mut self) {
        let ifaces = match interfaces(&self.config.interfaces) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "discovery: cannot list interfaces");
                return;
            }
        };
        if self.config.multicast {
            for i in &ifaces {
                // Joined again when the interface's address changed: the
                // membership was made with the old one.
                if let (Some((ip, _)), Some(s)) = (i.v4, &self.listen4)
                    && self.joined4.get(&i.name) != Some(&ip)
                {
                    if let Some(old) = self.joined4.remove(&i.name) {
                        let _ = s.leave_multicast_v4(self.config.group_v4, old);
                    }
                    match s.join_multicast_v4(self.config.group_v4, ip) {
                        Ok(()) => {
                            self.joined4.insert(i.name.clone(), ip);
                        }
                        Err(e) => {
                            tracing::debug!(iface = %i.name, error = %e, "discovery: cannot join ipv4 group");
                        }
                    }
                }
                if let (true, Some(s)) = (i.has_v6, &self.listen6)
                    && self.joined6.insert(i.name.clone())
                    && let Err(e) = s.join_multicast_v6(&self.config.group_v6, i.index)
                {
                    tracing::debug!(iface = %i.name, error = %e, "discovery: cannot join ipv6 group");
                    self.joined6.remove(&i.name);
                }
            }
        }
        if ifaces != self.ifaces {
            tracing::debug!(ifaces = ?ifaces.iter().map(|i| &i.name).collect::<Vec<_>>(), "discovery interfaces");
        }
        self.ifaces = ifaces;
    }

    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    /// Sends `bytes` to the LAN on every interface: IPv4 and IPv6 multicast and
    /// IPv4 subnet broadcast, as configured. Errors are logged, not fatal: one
    /// unplugged interface must not stop announcements on the others.
    pub async fn send_to_lan(&self, bytes: &[u8]) -> usize {
        let port = self.config.port;
        let mut sent = 0;
        for i in &self.ifaces {
            if let (Some((ip, bcast)), Some(s)) = (i.v4, &self.send4) {
                if self.config.multicast {
                    let sock = socket2::SockRef::from(s.as_ref());
                    let res = match sock.set_multicast_if_v4(&ip) {
                        Ok(()) => s
                            .send_to(bytes, SocketAddrV4::new(self.config.group_v4, port))
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    };
                    log_send(&i.name, "ipv4 multicast", res, &mut sent);
                }
                if self.config.broadcast
                    && let Some(b) = bcast
                {
                    let res = s
                        .send_to(bytes, SocketAddrV4::new(b, port))
                        .await
                        .map(|_| ());
                    log_send(&i.name, "ipv4 broadcast", res, &mut sent);
                }
            }
            if let (true, true, Some(s)) = (i.has_v6, self.config.multicast, &self.send6) {
                let sock = socket2::SockRef::from(s.as_ref());
                let res = match sock.set_multicast_if_v6(i.index) {
                    Ok(()) => s
                        .send_to(
                            bytes,
                            SocketAddrV6::new(self.config.group_v6, port, 0, i.index),
                        )
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                log_send(&i.name, "ipv6 multicast", res, &mut sent);
            }
        }
        sent
    }

    /// Sends `bytes` to one address (an answer to a newcomer).
    pub async fn send_to(&self, to: SocketAddr, bytes: &[u8]) {
        let sock = match to.ip() {
            IpAddr::V4(_) => &self.send4,
            IpAddr::V6(_) => &self.send6,
        };
        if let Some(s) = sock
            && let Err(e) = s.send_to(bytes, to).await
        {
            tracing::debug!(%to, error = %e, "discovery: unicast answer failed");
        }
    }

    /// Starts one task per socket that forwards received datagrams into `tx`.
    /// When `tx` is full, datagrams are dropped: a flood must not grow memory.
    pub fn spawn_readers(&self, tx: mpsc::Sender<(SocketAddr, Vec<u8>)>) -> Vec<JoinHandle<()>> {
        [&self.listen4, &self.listen6, &self.send4, &self.send6]
            .into_iter()
            .flatten()
            .map(|s| {
                let s = s.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM_LEN + 1];
                    loop {
                        match s.recv_from(&mut buf).await {
                            Ok((n, from)) => {
                                tracing::trace!(%from, n, "discovery: datagram");
                                if tx.try_send((from, buf[..n].to_vec())).is_err() && tx.is_closed()
                                {
                                    return;
                                }
                            }
                            Err(e) => {
                                // ICMP errors from earlier sends surface here; keep going.
                                tracing::trace!(error = %e, "discovery: recv error");
                                if tx.is_closed() {
                                    return;
                                }
                            }
                        }
                    }
                })
            })
            .collect()
    }
}

fn log_send(iface: &str, what: &str, res: io::Result<()>, sent: &mut usize) {
    match res {
        Ok(()) => {
            tracing::trace!(%iface, "discovery: {what} sent");
            *sent += 1
        }
        Err(e) => tracing::debug!(%iface, error = %e, "discovery: {what} send failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_broadcast_sets_host_bits() {
        let ip = Ipv4Addr::new(10, 123, 0, 7);
        assert_eq!(
            subnet_broadcast(ip, 24),
            Some(Ipv4Addr::new(10, 123, 0, 255))
        );
        assert_eq!(
            subnet_broadcast(ip, 16),
            Some(Ipv4Addr::new(10, 123, 255, 255))
        );
        assert_eq!(subnet_broadcast(ip, 31), None);
        assert_eq!(subnet_broadcast(ip, 32), None);
    }
}
