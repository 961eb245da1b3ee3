//! The node's presence in the DHT: feeds the DHT every peer the node meets and
//! keeps the node's own record published.
//!
//! Convention: a node's DHT listens on UDP at the same port number as its TCP
//! listener, so any dialable TCP address of a peer (from discovery, `--connect`,
//! an incoming connection, or the store) is also its DHT contact. The glue
//! reads the node's internal channel of peers seen ([`Links::subscribe_seen`])
//! and the store, so the node actor knows nothing about the DHT and the public
//! event stream's losses cannot starve it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use super::DhtHandle;
use crate::net::links::PeerSeen;
use crate::store::Store;

/// How often the node re-bootstraps while its routing table is nearly empty.
const REBOOTSTRAP: Duration = Duration::from_secs(30);

/// Starts the glue task for a node's DHT: `seen` is the node's channel of
/// peers seen (subscribed before any peer could be seen), `store` its peer
/// store.
pub(crate) fn attach(
    dht: DhtHandle,
    store: Arc<Store>,
    mut seen: broadcast::Receiver<PeerSeen>,
    own_addrs: Vec<SocketAddr>,
    name: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Peers remembered from earlier runs are contacts right away.
        if add_known(&dht, &store).await.is_err() {
            return;
        }
        let mut joined = bootstrap(&dht, &own_addrs, &name).await;
        let mut tick = tokio::time::interval(REBOOTSTRAP);
        tick.tick().await;
        loop {
            tokio::select! {
                s = seen.recv() => {
                    let added = match s {
                        Ok(s) => add_contact(&dht, &s).await,
                        // Missed some: the store has every peer's addresses.
                        Err(RecvError::Lagged(_)) => add_known(&dht, &store).await,
                        Err(RecvError::Closed) => return,
                    };
                    if added.is_err() {
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

/// Gives the DHT a peer as a contact at its first IPv4 address (else its
/// first); `Err` once the DHT has stopped.
async fn add_contact(dht: &DhtHandle, s: &PeerSeen) -> Result<(), ()> {
    let Some(addr) = s.addrs.iter().find(|a| a.is_ipv4()).or(s.addrs.first()) else {
        return Ok(());
    };
    dht.add_contact(s.peer, *addr).await.map_err(drop)
}

/// Every peer of the store as a contact.
async fn add_known(dht: &DhtHandle, store: &Store) -> Result<(), ()> {
    for p in store.peers().unwrap_or_default() {
        if let Some(a) = p.addrs.first() {
            dht.add_contact(p.id, *a).await.map_err(drop)?;
        }
    }
    Ok(())
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
