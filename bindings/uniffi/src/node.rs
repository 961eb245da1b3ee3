//! [`PeerConnect`]: the object foreign code holds, one per running node.

use std::sync::Arc;

use peerconnect::{EventStream, Node, PeerId};

use crate::config::NodeConfig;
use crate::error::ApiError;
use crate::event::{Event, FoundPeer, Peer, Trust, strings};

/// Where the node's web UI is and how browser guests get in.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct WebUi {
    /// The URL to give other devices.
    pub url: String,
    /// Every URL the UI is reachable at.
    pub urls: Vec<String>,
    /// The 6-digit PIN guests enter (new at every start).
    pub pin: String,
}

#[cfg(feature = "web")]
fn web_ui_of(node: &Node) -> Option<WebUi> {
    node.web().map(|w| WebUi {
        url: w.url.clone(),
        urls: w.urls.clone(),
        pin: w.pin.clone(),
    })
}

#[cfg(not(feature = "web"))]
fn web_ui_of(_: &Node) -> Option<WebUi> {
    None
}

/// A running PeerConnect node. Start one per data dir with [`PeerConnect::start`],
/// read [`PeerConnect::next_event`] in a loop, and [`PeerConnect::shutdown`] when
/// done.
#[derive(uniffi::Object)]
pub struct PeerConnect {
    pub(crate) node: Node,
    events: tokio::sync::Mutex<EventStream>,
}

impl PeerConnect {
    /// Resolves a `PEER` argument as the CLI does: a PeerId, a unique id prefix
    /// (at least 6 characters), a device name, or `HOST:PORT`.
    pub(crate) async fn peer(&self, spec: &str) -> Result<PeerId, ApiError> {
        Ok(self
            .node
            .resolve_peer(spec, std::time::Duration::ZERO)
            .await?)
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl PeerConnect {
    /// Starts a node. Fails with `Io` if the data dir is in use by another node
    /// or a port cannot be bound, `Invalid` for a bad address.
    #[uniffi::constructor]
    pub async fn start(config: NodeConfig) -> Result<Arc<Self>, ApiError> {
        ignore_sigpipe();
        let node = Node::start(config.try_into()?).await?;
        let events = tokio::sync::Mutex::new(node.events());
        Ok(Arc::new(Self { node, events }))
    }

    /// [`PeerConnect::start`] with the web UI served on `web_addr`
    /// (`HOST:PORT`, port 0: any): browser guests that enter its PIN
    /// ([`PeerConnect::web_ui`]) are peers of kind `Browser`. (A constructor
    /// rather than a `NodeConfig` field, so the Flutter binding's generated
    /// `NodeConfig` stays as it is.) `Invalid` for a bad address or a build
    /// without the web UI.
    #[uniffi::constructor]
    pub async fn start_with_web_ui(
        config: NodeConfig,
        web_addr: String,
    ) -> Result<Arc<Self>, ApiError> {
        ignore_sigpipe();
        let mut config: peerconnect::Config = config.try_into()?;
        config.web = Some(
            web_addr
                .parse()
                .map_err(|e| ApiError::Invalid(format!("web address {web_addr:?}: {e}")))?,
        );
        let node = Node::start(config).await?;
        let events = tokio::sync::Mutex::new(node.events());
        Ok(Arc::new(Self { node, events }))
    }

    /// This node's PeerId.
    pub fn id(&self) -> String {
        self.node.id().to_string()
    }

    pub fn name(&self) -> String {
        self.node.name().to_string()
    }

    /// Addresses other nodes can dial (`HOST:PORT`).
    pub fn listen_addrs(&self) -> Vec<String> {
        strings(self.node.listen_addrs())
    }

    /// The web UI, if the node serves one ([`PeerConnect::start_with_web_ui`]). Its
    /// browser guests are peers of kind `Browser` in [`PeerConnect::peers`].
    /// Always `None` in a build without the web UI (feature `web` off).
    pub fn web_ui(&self) -> Option<WebUi> {
        web_ui_of(&self.node)
    }

    /// The next event; the first is `Listening`. Returns `None` once the node
    /// has shut down and every earlier event was read.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await.map(Event::from)
    }

    /// Peers known now: discovered on the LAN or connected.
    pub async fn peers(&self) -> Result<Vec<Peer>, ApiError> {
        Ok(self
            .node
            .peers()
            .await?
            .into_iter()
            .map(Peer::from)
            .collect())
    }

    /// Dials `addr` (`IP:PORT`) and returns the PeerId that answered once the
    /// session is up. `NotFound` if nobody answered.
    pub async fn connect(&self, addr: String) -> Result<String, ApiError> {
        let addr = addr
            .parse()
            .map_err(|e| ApiError::Invalid(format!("address {addr:?}: {e}")))?;
        Ok(self.node.connect(addr, None).await?.to_string())
    }

    /// Trusts, blocks or resets `peer` (a PeerId, unique prefix or name).
    pub async fn set_trust(&self, peer: String, trust: Trust) -> Result<(), ApiError> {
        Ok(self
            .node
            .set_trust(self.peer(&peer).await?, trust.into())
            .await?)
    }

    /// The PIN to give the LocalSend device `peer` (a PeerId, unique prefix
    /// or name) when sending it files or messages, for a device whose owner
    /// set one; `None` clears it. `NotFound` if `peer` is not a LocalSend
    /// device listed now.
    pub async fn set_localsend_pin(
        &self,
        peer: String,
        pin: Option<String>,
    ) -> Result<(), ApiError> {
        Ok(self.node.set_localsend_pin(self.peer(&peer).await?, pin)?)
    }

    /// Looks a PeerId or device name up in the DHT, beyond multicast reach.
    pub async fn find(&self, query: String) -> Result<Vec<FoundPeer>, ApiError> {
        Ok(self
            .node
            .find(&query)
            .await?
            .into_iter()
            .map(FoundPeer::from)
            .collect())
    }

    /// Stops the node: closes sessions and sockets and ends the event stream.
    pub async fn shutdown(&self) -> Result<(), ApiError> {
        Ok(self.node.shutdown().await?)
    }
}

/// Makes a write to a connection the peer closed fail with `EPIPE` instead of
/// raising SIGPIPE, whose default action ends the process.
///
/// Rust programs (the CLI) ignore SIGPIPE from their start; the apps that load
/// this library are Swift, Kotlin, Dart or C programs that may not, and TLS
/// writes go out with `writev`, which has no `MSG_NOSIGNAL`: a peer hanging up
/// mid-write killed the Swift test process on Linux. Only the default action
/// is replaced; a handler the host installed is left alone. Once per process.
fn ignore_sigpipe() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: sigaction with a null new action only reads the current
            // one into `old`, a zeroed plain C struct; `signal` installs
            // SIG_IGN, which runs no code of ours.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_DFL
                {
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                }
            }
        });
    }
}
