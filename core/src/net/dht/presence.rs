//! The node's presence in the DHT: feeds the DHT every peer the node meets and
//! keeps the node's own record published.
//!
//! Convention: a node's DHT listens on UDP at the same port number as its TCP
//! listener, so any dialable TCP address of a peer (from discovery, `--connect`,
//! an incoming connection, or the store) is also its DHT contact. The glue reads
//! the node's public [`Event`] stream, so the node actor knows nothing about the
//! DHT.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::DhtHandle;
use crate::event::Event;
use crate::node::WeakNode;

/// How often the node re-bootstraps while its routing table is nearly empty.
const REBOOTSTRAP: Duration = Duration::from_secs(30);

/// Starts the glue task for `node`'s DHT.
pub(crate) fn attach(
    node: WeakNode,
    dht: DhtHandle,
    mut events: crate::node::EventStream,
    own_addrs: Vec<SocketAddr>,
    name: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Peers remembered from earlier runs are contacts right away.
        if let Some(n) = node.upgrade() {
            for p in n.known_peers().unwrap_or_default() {
                if let Some(a) = p.addrs.first() {
                    let _ = dht.add_contact(p.id, *a).await;
                }
            }
        }
        let mut joined = bootstrap(&dht, &own_addrs, &name).await;
        let mut tick = tokio::time::interval(REBOOTSTRAP);
        tick.tick().await;
        loop {
            tokio::select! {
                e = events.recv() => {
                    let Some(e) = e else { return };
                    let peer = match e {
                        Event::PeerFound { peer }
                        | Event::PeerUpdated { peer }
                        | Event::PeerConnected { peer, .. } => peer,
                        _ => continue,
                    };
                    let Some(addr) = peer.addrs.iter().find(|a| a.is_ipv4()).or(peer.addrs.first()) else {
                        continue;
                    };
                    if dht.add_contact(peer.id, *addr).await.is_err() {
                        return;
                    }
                    if !joined {
                        joined = bootstrap(&dht, &own_addrs, &name).await;
                    }
                }
                _ = tick.tick() => {
                    if !joined {
                        joined = bootstrap(&dht, &own_addrs, &name).await;
                    }
                }
            }
        }
    })
}

/// Looks ourselves up (filling the routing table) and publishes our record;
/// true once at least one other node holds it.
async fn bootstrap(dht: &DhtHandle, own_addrs: &[SocketAddr], name: &str) -> bool {
    match dht.bootstrap().await {
        Ok(0) | Err(_) => return false,
        Ok(_) => {}
    }
    match dht.publish_self(own_addrs.to_vec(), name).await {
        Ok(replicas) => {
            tracing::debug!(replicas, "published our peer record");
            replicas > 0
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot publish our peer record");
            false
        }
    }
}
