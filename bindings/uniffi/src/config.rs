//! [`NodeConfig`]: what a node starts from, with the core's LAN defaults for
//! everything left out.

use std::path::PathBuf;

use crate::error::ApiError;
use crate::event::DeviceKind;

/// How to start a node. Only `data_dir` is required; the rest defaults to the
/// core's LAN defaults (listen on `0.0.0.0:47471`, discovery and DHT on).
#[derive(Debug, Clone, uniffi::Record)]
pub struct NodeConfig {
    /// Holds the node's identity and store; one running node per directory.
    pub data_dir: String,
    /// Device name shown to others (default: the host name).
    #[uniffi(default)]
    pub name: Option<String>,
    #[uniffi(default)]
    pub kind: Option<DeviceKind>,
    /// TCP address to listen on, `HOST:PORT` (port 0: any).
    #[uniffi(default)]
    pub listen_addr: Option<String>,
    /// LAN discovery by multicast and broadcast.
    #[uniffi(default = true)]
    pub discovery: bool,
    /// Addresses (`HOST:PORT`) to dial at start.
    #[uniffi(default)]
    pub connect: Vec<String>,
    /// Where received files go.
    #[uniffi(default)]
    pub downloads_dir: Option<String>,
    /// The Kademlia DHT, to find peers beyond multicast reach.
    #[uniffi(default = true)]
    pub dht: bool,
}

impl TryFrom<NodeConfig> for peerconnect::Config {
    type Error = ApiError;

    fn try_from(c: NodeConfig) -> Result<Self, ApiError> {
        let mut config = peerconnect::Config::new(c.data_dir);
        if let Some(name) = c.name {
            config.name = name;
        }
        if let Some(kind) = c.kind {
            config.kind = kind.into();
        }
        if let Some(listen) = c.listen_addr {
            config.listen = listen
                .parse()
                .map_err(|e| ApiError::Invalid(format!("listen address {listen:?}: {e}")))?;
        }
        config.discovery.enabled = c.discovery;
        config.connect = c.connect;
        if let Some(dir) = c.downloads_dir {
            config.downloads = PathBuf::from(dir);
        }
        config.dht = c.dht;
        Ok(config)
    }
}
