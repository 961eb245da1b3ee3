//! Node configuration, with defaults that work on a LAN out of the box.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::wire::DeviceKind;
pub use crate::proto::wire::truncate_name;

/// Default TCP port for peer connections.
pub const DEFAULT_PORT: u16 = 47471;
/// Default UDP port of LAN discovery.
pub const DEFAULT_DISCOVERY_PORT: u16 = 47472;
/// Default address of the web UI.
pub const DEFAULT_WEB_PORT: u16 = 47480;
/// IPv4 multicast group of discovery (administratively scoped, RFC 2365).
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 71, 71);
/// IPv6 link-local multicast group of discovery.
pub const DEFAULT_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x7063, 0x4747);

/// Resource: sessions, i.e. distinct peer keys, connected from one IP address
/// (a LAN device can make keys for free). Limit: 16 (a host running a few
/// nodes stays well under). At the limit: a connection with a new key from that
/// address is closed after its handshake and counted in
/// `Stats::sessions_refused_per_ip`; existing sessions are kept.
pub const MAX_SESSIONS_PER_IP: usize = 16;

/// Resource: accepted connections still in their TLS or Hello handshake from
/// one IP address. Limit: 8. At the limit: a new connection from that address
/// is closed at once, before any TLS work, and counted in
/// `Stats::handshakes_refused`.
pub const MAX_PENDING_HANDSHAKES_PER_IP: usize = 8;

/// Resource: accepted connections still in their handshake, from all
/// addresses together. Limit: 64. At the limit: a new connection is closed at
/// once and counted in `Stats::handshakes_refused`.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// Everything a node needs to start. `Config::new(data_dir)` gives LAN defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the identity key, the store and transfer state.
    pub data_dir: PathBuf,
    /// Device name shown to others.
    pub name: String,
    pub kind: DeviceKind,
    /// TCP address to accept peer connections on (port 0: any).
    pub listen: SocketAddr,
    pub discovery: DiscoveryConfig,
    /// Addresses (`HOST:PORT`) to dial at start, for networks where discovery
    /// finds nobody.
    pub connect: Vec<String>,
    /// Re-dial peers remembered in the store at start.
    pub reconnect_known: bool,
    /// Cap on live TLS connections (all lanes of all sessions) we accepted, and
    /// separately on those we dialed.
    pub max_connections: usize,
    /// Sessions (distinct peer keys) one IP address may hold with us; past it a
    /// new key from that address is refused. Default [`MAX_SESSIONS_PER_IP`].
    pub max_sessions_per_ip: usize,
    /// Connections from one IP address still in their handshake; past it new
    /// ones are closed at once. Default [`MAX_PENDING_HANDSHAKES_PER_IP`].
    pub max_pending_handshakes_per_ip: usize,
    /// Connect on discovery to at most this many peers; others on demand.
    pub auto_connect: usize,
    /// Where received files go.
    pub downloads: PathBuf,
    /// Accept every incoming offer without asking (`--yes`).
    pub accept_all: bool,
    /// Accept offers from trusted peers without asking.
    pub auto_accept_trusted: bool,
    /// Run the Kademlia DHT (UDP, same port number as `listen`), so peers
    /// beyond multicast reach can be found through any peer both know.
    pub dht: bool,
    /// How many events a slow subscriber may fall behind before it misses the
    /// oldest ones. The ring holds this many events whether or not anyone reads
    /// (a message event carries its text), so it bounds memory too.
    pub event_buffer: usize,
    /// How often connected peers are pinged; a peer silent for three intervals is
    /// considered gone.
    pub keepalive: Duration,
    /// Address of the web UI (`None`: no web UI). `peerconnect up` serves it on
    /// `0.0.0.0:47480` ([`DEFAULT_WEB_PORT`]); tests use `127.0.0.1:0`.
    pub web: Option<SocketAddr>,
    /// Limits and access rules of the web UI.
    pub web_options: WebOptions,
    /// Where the identity and the store live.
    pub storage: Storage,
    /// File transfer settings.
    pub transfer: TransferConfig,
    /// Gossip (HyParView, Plumtree, rumor mongering) settings for every topic,
    /// rooms included.
    pub gossip: crate::proto::gossip::Config,
    /// Speaking LocalSend to the phones and computers that run it
    /// ([`crate::localsend`]).
    pub localsend: LocalSendConfig,
}

/// LocalSend settings (part of [`Config`]); the service is
/// [`crate::localsend`]. It runs when `enabled` and discovery is on (its
/// multicast is discovery), or on a loopback `listen` address (tests), which
/// reaches no other device.
#[derive(Debug, Clone)]
pub struct LocalSendConfig {
    /// `--no-localsend` / `enabled: false` turn it off.
    pub enabled: bool,
    /// The HTTPS server's address; the port is also the one announced.
    pub listen: SocketAddr,
    /// A PIN senders must give with their offer (`None`: none).
    pub pin: Option<String>,
    /// How often this node announces itself on the LocalSend group.
    pub announce_interval: Duration,
    /// A LocalSend device not heard of for this long leaves the peer list.
    pub expiry: Duration,
    /// Largest offer (all files together) a LocalSend sender may make.
    pub max_offer_bytes: u64,
}

/// LocalSend's port (its HTTPS server and its multicast group).
pub const DEFAULT_LOCALSEND_PORT: u16 = 53317;

impl Default for LocalSendConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_LOCALSEND_PORT)),
            pin: None,
            announce_interval: Duration::from_secs(30),
            expiry: Duration::from_secs(150),
            max_offer_bytes: 16 << 30,
        }
    }
}

/// File transfer settings (part of [`Config`]); the service is
/// [`crate::net::transfer`].
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// An offer nobody answers is refused after this long.
    pub offer_timeout: Duration,
    /// `fdatasync` every received file before renaming it into place (durable
    /// across an OS crash, at the cost of waiting for the disk).
    pub sync: bool,
    /// Test hook: flip one byte of the first block of every file sent, after
    /// hashing it, so that the receiver must catch the corruption.
    #[doc(hidden)]
    pub corrupt_outgoing: bool,
    /// Test hook: a sending transfer pauses itself (as
    /// [`Node::pause_transfer`](crate::Node::pause_transfer) would) once it has
    /// written this many file bytes, so tests can stop a transfer midway
    /// without racing it.
    #[doc(hidden)]
    pub pause_after: Option<u64>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            offer_timeout: Duration::from_secs(600),
            sync: false,
            corrupt_outgoing: false,
            pause_after: None,
        }
    }
}

/// Limits and access rules of the web UI (part of [`Config`]); the server
/// is [`crate::web`].
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// If the web address cannot be bound, run without the web UI (and say so
    /// in an [`Event::Error`](crate::Event::Error)) instead of failing to
    /// start. `peerconnect up` sets this for its default address, not for an
    /// explicit `--web`.
    pub optional: bool,
    /// Largest upload (one request) in bytes.
    pub max_upload: u64,
    /// Most browser guests logged in at once.
    pub max_guests: usize,
    /// A guest session unused for this long ends.
    pub session_idle: Duration,
    /// Most web connections open at once (all clients); one more is closed
    /// as soon as it is accepted.
    pub max_connections: usize,
    /// Most web connections open at once from one client address; one more
    /// is closed as soon as it is accepted.
    pub max_connections_per_ip: usize,
    /// A request's head (line and headers) must arrive within this long of
    /// the connection waiting for it, else the connection is closed; this is
    /// also how long a kept-alive connection may sit idle. Bodies and
    /// WebSockets are not timed.
    pub header_timeout: Duration,
}

/// Default of [`WebOptions::max_connections`]: a few dozen browsers, far
/// below the descriptor limit.
pub const WEB_MAX_CONNECTIONS: usize = 256;
/// Default of [`WebOptions::max_connections_per_ip`]: a browser opens about
/// six connections per site plus its WebSockets, a few tabs fit.
pub const WEB_MAX_CONNECTIONS_PER_IP: usize = 32;
/// Default of [`WebOptions::header_timeout`].
pub const WEB_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for WebOptions {
    fn default() -> Self {
        Self {
            optional: false,
            max_upload: 16 << 30,
            max_guests: 32,
            session_idle: Duration::from_secs(24 * 3600),
            max_connections: WEB_MAX_CONNECTIONS,
            max_connections_per_ip: WEB_MAX_CONNECTIONS_PER_IP,
            header_timeout: WEB_HEADER_TIMEOUT,
        }
    }
}

/// Where a node keeps its identity key, store and control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// In `data_dir`: the key persists, the store is a SQLite file, the control
    /// socket lets the CLI use the running node, and a lock keeps a second node
    /// off the same dir.
    #[default]
    DataDir,
    /// Nothing on disk and `data_dir` unused: a fresh identity each start, an
    /// in-memory store (peers, trust and room history are lost at shutdown), no
    /// control socket, no lock. For tests and benchmarks that run many nodes in
    /// one process.
    Memory,
}

/// LAN discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    pub port: u16,
    pub group_v4: Ipv4Addr,
    pub group_v6: Ipv6Addr,
    /// Only these interfaces (by name); empty means every suitable one.
    pub interfaces: Vec<String>,
    pub multicast: bool,
    pub broadcast: bool,
    pub announce_interval: Duration,
    pub expiry: Duration,
    /// Also advertise `_peerconnect._tcp` over mDNS and browse for it
    /// ([`crate::net::mdns`]); runs only while discovery is `enabled`.
    /// `--no-mdns` turns it off.
    pub mdns: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: DEFAULT_DISCOVERY_PORT,
            group_v4: DEFAULT_GROUP_V4,
            group_v6: DEFAULT_GROUP_V6,
            interfaces: Vec::new(),
            multicast: true,
            broadcast: true,
            announce_interval: Duration::from_secs(5),
            expiry: Duration::from_secs(17),
            mdns: true,
        }
    }
}

impl Config {
    /// LAN defaults for a node keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            downloads: default_downloads(&data_dir),
            data_dir,
            name: default_name(),
            kind: DeviceKind::Desktop,
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            discovery: DiscoveryConfig::default(),
            connect: Vec::new(),
            reconnect_known: true,
            max_connections: 512,
            max_sessions_per_ip: MAX_SESSIONS_PER_IP,
            max_pending_handshakes_per_ip: MAX_PENDING_HANDSHAKES_PER_IP,
            auto_connect: 64,
            accept_all: false,
            auto_accept_trusted: true,
            dht: true,
            event_buffer: 1024,
            keepalive: Duration::from_secs(10),
            web: None,
            web_options: WebOptions::default(),
            storage: Storage::DataDir,
            transfer: Default::default(),
            gossip: crate::proto::gossip::Config::default(),
            localsend: LocalSendConfig::default(),
        }
    }

    /// A node for tests and benchmarks on one machine: listens on 127.0.0.1 with
    /// a port chosen by the OS and never touches the LAN.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Self::new(data_dir);
        c.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        c.discovery.enabled = false;
        c.localsend.enabled = false;
        c.downloads = c.data_dir.join("downloads");
        // Every node of a one-machine test or benchmark connects from
        // 127.0.0.1: the per-address caps would count them all as one host.
        c.max_sessions_per_ip = c.max_connections;
        c.max_pending_handshakes_per_ip = MAX_PENDING_HANDSHAKES;
        c
    }
}

/// The data dir used when none is given: `PEERCONNECT_DATA_DIR`, else the
/// platform's data dir for PeerConnect.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PEERCONNECT_DATA_DIR") {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("org", "PeerConnect", "peerconnect")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".peerconnect"))
}

fn default_downloads(data_dir: &Path) -> PathBuf {
    directories::UserDirs::new()
        .and_then(|u| u.download_dir().map(|d| d.join("PeerConnect")))
        .unwrap_or_else(|| data_dir.join("downloads"))
}

/// The machine's host name, or "peerconnect" when it has none.
pub fn default_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length and gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let name = truncate_name(name.trim());
    if name.is_empty() {
        "peerconnect".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_config_never_touches_the_lan() {
        let c = Config::local("/tmp/x");
        assert!(!c.discovery.enabled);
        assert!(!c.localsend.enabled);
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.listen.port(), 0);
    }
}
