//! LocalSend: the open protocol of the LocalSend app (v2), spoken beside
//! PeerConnect's own, so phones and computers running LocalSend see this node
//! and send it files with no new app.
//!
//! - **Discovery** ([`discovery`]): this node joins LocalSend's multicast
//!   group (224.0.0.167, UDP 53317), announces itself as LocalSend does
//!   (alias = device name, fingerprint, port, `https`) and answers others'
//!   announcements with `POST /api/localsend/v2/register` (a multicast reply
//!   when that fails). The devices it hears of are peers of kind `localsend`
//!   in [`Node::peers`](crate::Node::peers) and the event stream, in a bounded
//!   table ([`MAX_DEVICES`]) that forgets a device not heard of for
//!   [`LocalSendConfig::expiry`](crate::config::LocalSendConfig::expiry).
//! - **Receiving** ([`server`]): an HTTPS server (a self-signed certificate;
//!   the fingerprint is the SHA-256 of its DER, uppercase hex) serving
//!   `info`, `register`, `prepare-upload`, `upload` and `cancel`. An offer
//!   goes through the core's one receiver by the local-sender adapter
//!   ([`crate::net::transfer::local`]): the same `Offer` event and consent,
//!   budgets, free-space check, safe names, `.part` files and progress as any
//!   peer's.
//!
//! Everything a LocalSend device sends is untrusted input under the bounds
//! documented in SECURITY.md; no LocalSend device is ever trusted
//! automatically (its id is derived from its fingerprint and starts unknown,
//! like any peer's).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::{LocalSendDevice, PeerInfo, Trust};
use crate::identity::{PeerId, verification_code};
use crate::proto::wire::DeviceKind;

pub mod client;
#[cfg(feature = "web")]
pub(crate) mod discovery;
pub(crate) mod send;
#[cfg(feature = "web")]
pub(crate) mod server;
pub(crate) mod tls;

/// LocalSend's IPv4 multicast group (the app uses no IPv6 group).
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 167);
/// The protocol version this node speaks.
pub const PROTOCOL_VERSION: &str = "2.1";
/// Most LocalSend devices listed at once; one more is ignored until one
/// expires.
pub const MAX_DEVICES: usize = 256;
/// Longest field (alias, model, fingerprint, ...) kept from a device.
const MAX_FIELD: usize = 128;

/// A device's description as LocalSend sends it (announcement, `register`,
/// `info`, the `info` of `prepare-upload`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InfoDto {
    pub alias: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub device_model: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub download: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
    /// v1's name of `announce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<bool>,
    /// Set by PeerConnect nodes (their peer id; LocalSend apps ignore it): a
    /// PeerConnect node is listed once, by PeerConnect's own discovery, not
    /// a second time as a LocalSend device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peerconnect: Option<String>,
}

impl InfoDto {
    /// Whether it describes a PeerConnect node (listed by PeerConnect's own
    /// discovery, so not as a LocalSend device).
    pub fn is_peerconnect(&self) -> bool {
        self.peerconnect.is_some()
    }

    /// Whether it is an announcement that asks for an answer.
    pub fn announces(&self) -> bool {
        self.announce == Some(true) || self.announcement == Some(true)
    }

    /// The device it describes, cleaned and cut to bounds; `None` without a
    /// fingerprint.
    pub fn device(&self) -> Option<LocalSendDevice> {
        let fingerprint = cut(&self.fingerprint);
        if fingerprint.is_empty() {
            return None;
        }
        let alias = crate::proto::wire::truncate_name(cut(&self.alias).trim());
        let alias = if alias.is_empty() {
            "LocalSend device".to_string()
        } else {
            alias
        };
        let device_type = match self.device_type.as_deref() {
            Some(t @ ("mobile" | "desktop" | "web" | "headless" | "server")) => t.to_string(),
            _ => "desktop".to_string(),
        };
        Some(LocalSendDevice {
            alias,
            device_model: self.device_model.as_deref().map(cut),
            device_type,
            fingerprint,
            protocol: match self.protocol.as_deref() {
                Some("http") => "http".into(),
                _ => "https".into(),
            },
            version: cut(self.version.as_deref().unwrap_or("1.0")),
        })
    }
}

/// A field without control characters, cut to [`MAX_FIELD`] bytes.
fn cut(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Entry points for the fuzz targets (not an API).
#[doc(hidden)]
pub mod fuzzing {
    /// An announcement, `register` or `info` body as this node reads it: the
    /// device it describes (`None` without a fingerprint), and whether it
    /// says it is a PeerConnect node.
    pub fn info(body: &[u8]) -> Option<(Option<crate::event::LocalSendDevice>, bool)> {
        let dto: super::InfoDto = serde_json::from_slice(body).ok()?;
        Some((dto.device(), dto.is_peerconnect()))
    }

    /// The most files one offer may hold.
    #[cfg(feature = "web")]
    pub use super::server::MAX_FILES;
    #[cfg(feature = "web")]
    pub use super::server::fuzzing::prepare_upload;
    /// The longest field kept from a device.
    pub const MAX_FIELD: usize = super::MAX_FIELD;
}

/// The LocalSend device type for a PeerConnect device kind.
pub(crate) fn device_type(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Phone | DeviceKind::Tablet => "mobile",
        DeviceKind::Server => "server",
        _ => "desktop",
    }
}

/// The peer id of the LocalSend device with `fingerprint`: the same device
/// is the same peer (its trust and conversation stay), and no PeerConnect
/// node's key can collide with it.
pub fn device_id(fingerprint: &str) -> PeerId {
    PeerId::from_bytes(blake3::derive_key(
        "peerconnect 2026 localsend device id",
        fingerprint.as_bytes(),
    ))
}

#[derive(Debug)]
struct Device {
    info: LocalSendDevice,
    addr: SocketAddr,
    last_seen: Instant,
    /// The PIN to give it when sending ([`Devices::set_pin`]).
    pin: Option<String>,
}

/// What hearing of a device changed.
#[derive(Debug)]
pub(crate) enum Seen {
    New(PeerInfo),
    Changed(PeerInfo),
    Same,
}

/// The LocalSend devices this node heard of (peers of kind `localsend`).
#[derive(Debug)]
pub(crate) struct Devices {
    me: PeerId,
    max: usize,
    inner: Mutex<BTreeMap<PeerId, Device>>,
    /// How this node sends to devices, once its LocalSend service runs.
    outbound: std::sync::OnceLock<Arc<send::Outbound>>,
}

impl Devices {
    pub fn new(me: PeerId) -> Self {
        Self {
            me,
            max: MAX_DEVICES,
            inner: Mutex::default(),
            outbound: std::sync::OnceLock::new(),
        }
    }

    /// Whether `id` is a LocalSend device listed now.
    pub fn is_device(&self, id: &PeerId) -> bool {
        self.lock().contains_key(id)
    }

    /// Where the device `id` is reached, if it is listed.
    pub fn target(&self, id: &PeerId) -> Option<send::Target> {
        let g = self.lock();
        let d = g.get(id)?;
        Some(send::Target {
            addr: d.addr,
            https: d.info.protocol != "http",
            pin: d.pin.clone(),
        })
    }

    /// The PIN to give the device `id` when sending to it (`None`: none);
    /// false if it is not listed.
    pub fn set_pin(&self, id: &PeerId, pin: Option<String>) -> bool {
        match self.lock().get_mut(id) {
            Some(d) => {
                d.pin = pin.filter(|p| !p.is_empty());
                true
            }
            None => false,
        }
    }

    /// How this node sends to devices (`None`: its LocalSend service does
    /// not run).
    pub fn outbound(&self) -> Option<Arc<send::Outbound>> {
        self.outbound.get().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PeerId, Device>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peer_info(&self, id: &PeerId, d: &Device) -> PeerInfo {
        PeerInfo {
            id: *id,
            name: d.info.alias.clone(),
            kind: DeviceKind::LocalSend,
            addrs: vec![d.addr],
            trust: Trust::Unknown,
            connected: false,
            verification_code: verification_code(&self.me, id),
            localsend: Some(d.info.clone()),
        }
    }

    /// Notes that the device `info` was heard of at `addr` (its server's
    /// address). `None` when the table is full.
    pub fn seen(&self, info: LocalSendDevice, addr: SocketAddr, now: Instant) -> Option<Seen> {
        let id = device_id(&info.fingerprint);
        let mut g = self.lock();
        if let Some(d) = g.get_mut(&id) {
            d.last_seen = now;
            if d.info == info && d.addr == addr {
                return Some(Seen::Same);
            }
            d.info = info;
            d.addr = addr;
            let d = &g[&id];
            return Some(Seen::Changed(self.peer_info(&id, d)));
        }
        if g.len() >= self.max {
            return None;
        }
        let d = Device {
            info,
            addr,
            last_seen: now,
            pin: None,
        };
        let p = self.peer_info(&id, &d);
        g.insert(id, d);
        Some(Seen::New(p))
    }

    pub fn list(&self) -> Vec<PeerInfo> {
        let g = self.lock();
        g.iter().map(|(id, d)| self.peer_info(id, d)).collect()
    }

    /// Forgets devices not heard of for `expiry`; their ids.
    pub fn expire(&self, now: Instant, expiry: Duration) -> Vec<PeerId> {
        let mut g = self.lock();
        let old: Vec<PeerId> = g
            .iter()
            .filter(|(_, d)| now.saturating_duration_since(d.last_seen) > expiry)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            g.remove(id);
        }
        old
    }
}

/// Where this node's LocalSend service runs ([`Node::localsend`]).
///
/// [`Node::localsend`]: crate::Node::localsend
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalSendInfo {
    /// The HTTPS server's address.
    pub addr: SocketAddr,
    /// SHA-256 of its certificate, uppercase hex (what LocalSend shows and
    /// pins).
    pub fingerprint: String,
    /// Whether it announces itself on the LocalSend multicast group.
    pub discovery: bool,
}

/// Records a device heard of (announcement, `register`, `prepare-upload`):
/// in the table, in the store (so an offer and its conversation show its
/// alias; with no address, nothing dials it), and as an event.
#[cfg(feature = "web")]
pub(crate) fn note_device(node: &crate::Node, info: LocalSendDevice, addr: SocketAddr) {
    let Some(seen) = node.localsend_devices().seen(info, addr, Instant::now()) else {
        tracing::debug!(%addr, "LocalSend device table full: device ignored");
        return;
    };
    let remember = |p: &PeerInfo| {
        if let Err(e) = node.store().upsert_peer(
            &p.id,
            &p.name,
            DeviceKind::LocalSend,
            &[],
            crate::store::now_ms(),
        ) {
            tracing::warn!(error = %e, "cannot remember a LocalSend device");
        }
    };
    match seen {
        Seen::New(peer) => {
            remember(&peer);
            node.emit(crate::Event::PeerFound { peer });
        }
        Seen::Changed(peer) => {
            remember(&peer);
            node.emit(crate::Event::PeerUpdated { peer });
        }
        Seen::Same => {}
    }
}

/// Starts the LocalSend server (and its discovery when `config.discovery` is
/// on): the tasks to tie to the node and where it runs.
#[cfg(feature = "web")]
pub(crate) async fn start(
    node: &crate::Node,
    config: &crate::Config,
) -> Result<(Vec<tokio::task::JoinHandle<()>>, LocalSendInfo), String> {
    let ls = &config.localsend;
    let dir = (config.storage == crate::config::Storage::DataDir).then_some(&config.data_dir);
    let cert = tls::Cert::load_or_create(dir.map(|d| d.as_path()))
        .map_err(|e| format!("LocalSend: no certificate: {e}"))?;
    let listener = tokio::net::TcpListener::bind(ls.listen)
        .await
        .map_err(|e| format!("LocalSend not started: cannot listen on {}: {e}", ls.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("LocalSend: {e}"))?;
    let me = InfoDto {
        alias: node.name().to_string(),
        version: Some(PROTOCOL_VERSION.into()),
        device_model: Some("PeerConnect".into()),
        device_type: Some(device_type(config.kind).into()),
        fingerprint: cert.fingerprint.clone(),
        port: Some(addr.port()),
        protocol: Some("https".into()),
        download: false,
        announce: None,
        announcement: None,
        peerconnect: Some(node.id().to_string()),
    };
    let tls = tls::client_config(&cert).map_err(|e| format!("LocalSend: {e}"))?;
    let _ = node
        .localsend_devices()
        .outbound
        .set(Arc::new(send::Outbound {
            tls,
            me: me.clone(),
        }));
    let mut tasks = vec![server::spawn(node, listener, &cert, me.clone(), ls)?];
    let discovery = config.discovery.enabled;
    if discovery {
        tasks.push(discovery::spawn(node, &cert, me, config)?);
    }
    Ok((
        tasks,
        LocalSendInfo {
            addr,
            fingerprint: cert.fingerprint,
            discovery,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(fp: &str, alias: &str) -> LocalSendDevice {
        InfoDto {
            alias: alias.into(),
            fingerprint: fp.into(),
            ..InfoDto::default()
        }
        .device()
        .unwrap()
    }

    #[test]
    fn devices_are_bounded_updated_and_expire() {
        let d = Devices {
            me: PeerId::from_bytes([1; 32]),
            max: 2,
            inner: Mutex::default(),
            outbound: Default::default(),
        };
        let a: SocketAddr = "10.0.0.2:53317".parse().unwrap();
        let t0 = Instant::now();
        assert!(matches!(
            d.seen(dev("A", "phone"), a, t0),
            Some(Seen::New(_))
        ));
        assert!(matches!(d.seen(dev("A", "phone"), a, t0), Some(Seen::Same)));
        let Some(Seen::Changed(p)) = d.seen(dev("A", "renamed"), a, t0) else {
            panic!("a new alias is a change")
        };
        assert_eq!(p.name, "renamed");
        assert_eq!(p.kind, DeviceKind::LocalSend);
        assert_eq!(p.id, device_id("A"));
        assert!(d.seen(dev("B", "b"), a, t0).is_some());
        assert!(d.seen(dev("C", "c"), a, t0).is_none(), "past the cap");
        let later = t0 + Duration::from_secs(100);
        d.seen(dev("B", "b"), a, later);
        assert_eq!(
            d.expire(later, Duration::from_secs(50)),
            vec![device_id("A")]
        );
        assert_eq!(d.list().len(), 1);
    }

    #[test]
    fn a_description_is_cleaned_and_needs_a_fingerprint() {
        assert!(InfoDto::default().device().is_none());
        let long = "x".repeat(1000);
        let i = InfoDto {
            alias: "  \u{7}".into(),
            fingerprint: long,
            device_type: Some("toaster".into()),
            protocol: Some("gopher".into()),
            ..InfoDto::default()
        }
        .device()
        .unwrap();
        assert_eq!(i.alias, "LocalSend device");
        assert_eq!(i.fingerprint.len(), MAX_FIELD);
        assert_eq!(i.device_type, "desktop");
        assert_eq!(i.protocol, "https");
    }
}
