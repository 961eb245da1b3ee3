//! LocalSend discovery: UDP multicast on 224.0.0.167:53317 (the LocalSend
//! app's group and port; it uses no IPv6 group). This node announces itself
//! (`announce: true`) at start and every
//! [`LocalSendConfig::announce_interval`](crate::config::LocalSendConfig),
//! and answers each announcement it hears by `POST
//! /api/localsend/v2/register` to the announcer, or, when that fails, by a
//! multicast reply (`announce: false`), as the protocol says. Every device
//! heard of (announcement or reply) is noted as a peer of kind `localsend`.
//!
//! Datagrams are untrusted: at most [`MAX_DATAGRAM`] bytes are read, bad
//! JSON is dropped, fields are cut to bounds, the device table is capped,
//! and at most [`MAX_ANSWERS`] `register` answers run at once.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::client::{Framing, request};
use super::tls::Cert;
use super::{GROUP_V4, InfoDto, note_device};
use crate::config::DEFAULT_LOCALSEND_PORT;
use crate::node::WeakNode;

/// Longest datagram read.
pub const MAX_DATAGRAM: usize = 8 << 10;
/// `register` answers running at once; past it an announcement gets the
/// multicast reply only.
pub const MAX_ANSWERS: usize = 8;
/// How long a `register` answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);

fn socket(port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    UdpSocket::from_std(s.into())
}

/// The IPv4 addresses of the interfaces to use (joined and announced on).
fn iface_addrs(only: &[String]) -> Vec<Ipv4Addr> {
    crate::net::discovery::interfaces(only)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.v4.map(|(a, _)| a))
        .collect()
}

pub(crate) fn spawn(
    node: &crate::Node,
    cert: &Cert,
    me: InfoDto,
    config: &crate::Config,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let sock = socket(DEFAULT_LOCALSEND_PORT).map_err(|e| {
        format!("LocalSend discovery not started: UDP {DEFAULT_LOCALSEND_PORT}: {e}")
    })?;
    let tls = super::tls::client_config(cert).map_err(|e| format!("LocalSend TLS: {e}"))?;
    let only = config.discovery.interfaces.clone();
    let interval = config.localsend.announce_interval;
    let expiry = config.localsend.expiry;
    let weak = node.downgrade();
    Ok(tokio::spawn(run(
        weak,
        Arc::new(sock),
        tls,
        me,
        only,
        interval,
        expiry,
    )))
}

fn encode(me: &InfoDto, announce: bool) -> Vec<u8> {
    let mut m = me.clone();
    m.announce = Some(announce);
    // v1 receivers read `announcement`.
    m.announcement = Some(announce);
    serde_json::to_vec(&m).expect("info serializes")
}

/// Sends `msg` to the group on every interface.
async fn multicast(sock: &UdpSocket, joined: &[Ipv4Addr], msg: &[u8]) {
    let to = SocketAddrV4::new(GROUP_V4, DEFAULT_LOCALSEND_PORT);
    for a in joined {
        let s = socket2::SockRef::from(sock);
        if s.set_multicast_if_v4(a).is_ok()
            && let Err(e) = sock.send_to(msg, to).await
        {
            tracing::debug!(iface = %a, error = %e, "LocalSend announce failed");
        }
    }
}

/// Joins the group on interfaces not joined yet; the joined list.
fn join(sock: &UdpSocket, only: &[String], joined: &mut Vec<Ipv4Addr>) {
    for a in iface_addrs(only) {
        if joined.contains(&a) {
            continue;
        }
        match socket2::SockRef::from(sock).join_multicast_v4(&GROUP_V4, &a) {
            Ok(()) => joined.push(a),
            Err(e) => tracing::debug!(iface = %a, error = %e, "LocalSend: cannot join the group"),
        }
    }
}

async fn run(
    node: WeakNode,
    sock: Arc<UdpSocket>,
    tls: Arc<rustls::ClientConfig>,
    me: InfoDto,
    only: Vec<String>,
    interval: Duration,
    expiry: Duration,
) {
    let mut joined = Vec::new();
    join(&sock, &only, &mut joined);
    let announce = encode(&me, true);
    let reply = Arc::new(encode(&me, false));
    let register = Arc::new(serde_json::to_vec(&me).expect("info serializes"));
    let answering = Arc::new(AtomicUsize::new(0));
    // LocalSend announces a few times at start (datagrams get lost).
    let mut bursts = [
        Duration::from_millis(100),
        Duration::from_millis(500),
        Duration::from_secs(2),
    ]
    .into_iter();
    let mut next = tokio::time::Instant::now();
    let mut expire = tokio::time::interval(Duration::from_secs(5));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                join(&sock, &only, &mut joined);
                multicast(&sock, &joined, &announce).await;
                next = tokio::time::Instant::now() + bursts.next().unwrap_or(interval);
            }
            _ = expire.tick() => {
                let Some(n) = node.upgrade() else { return };
                for id in n.localsend_devices().expire(Instant::now(), expiry) {
                    n.emit(crate::Event::PeerLost { id });
                }
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                let Ok(dto) = serde_json::from_slice::<InfoDto>(&buf[..len]) else { continue };
                if dto.fingerprint == me.fingerprint || dto.is_peerconnect() {
                    continue;
                }
                let Some(dev) = dto.device() else { continue };
                let Some(n) = node.upgrade() else { return };
                let port = dto.port.unwrap_or(DEFAULT_LOCALSEND_PORT);
                let addr = SocketAddr::new(from.ip(), port);
                let https = dev.protocol == "https";
                note_device(&n, dev, addr);
                drop(n);
                if dto.announces() {
                    answer(
                        &sock,
                        &joined,
                        &answering,
                        addr,
                        https.then(|| tls.clone()),
                        register.clone(),
                        reply.clone(),
                    );
                }
            }
        }
    }
}

/// Answers an announcement from `addr`: `register` there, else a multicast
/// reply.
fn answer(
    sock: &Arc<UdpSocket>,
    joined: &[Ipv4Addr],
    answering: &Arc<AtomicUsize>,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    register: Arc<Vec<u8>>,
    reply: Arc<Vec<u8>>,
) {
    let (sock, joined, answering) = (sock.clone(), joined.to_vec(), answering.clone());
    if answering.fetch_add(1, Ordering::SeqCst) >= MAX_ANSWERS {
        answering.fetch_sub(1, Ordering::SeqCst);
        tokio::spawn(async move { multicast(&sock, &joined, &reply).await });
        return;
    }
    tokio::spawn(async move {
        let r = request(
            addr,
            tls,
            "POST",
            "/api/localsend/v2/register",
            &register,
            Framing::Length,
            ANSWER_TIMEOUT,
        )
        .await;
        answering.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(r) if r.status / 100 == 2 => {}
            other => {
                tracing::debug!(%addr, result = ?other.map(|r| r.status), "LocalSend register failed: multicast reply");
                multicast(&sock, &joined, &reply).await;
            }
        }
    });
}
