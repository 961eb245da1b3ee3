//! Streams a peer opens, handed to the service they are for.
//!
//! Every stream a peer opens (the control stream aside) begins with one
//! [`StreamKind`] frame. One task per session accepts the streams; each new
//! stream's header is read in its own task (bounded in time, so a peer that
//! opens streams and says nothing holds nothing for long) and the stream goes
//! to the service's queue in the [`Router`]. A stream with a bad header, or for
//! a service this node does not run, is reset.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::identity::PeerId;
use crate::net::links::Router;
use crate::net::mux::{MuxSession, MuxStream};
use crate::net::transport::read_frame;
use crate::proto::wire::StreamKind;

/// A new stream's header must arrive within this long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Reset code of a stream whose header was bad or unserved.
const RESET_UNSERVED: u32 = 3;

/// Accepts `mux`'s incoming streams until the session ends.
pub(crate) fn spawn_accept_loop(peer: PeerId, mux: MuxSession, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(stream) = mux.accept_stream().await {
            tokio::spawn(route(peer, stream, router.clone()));
        }
    })
}

async fn route(peer: PeerId, mut stream: MuxStream, router: Router) {
    let refuse = |mut stream: MuxStream, why: &str| {
        tracing::debug!(peer = %peer.short(), "refusing a stream: {why}");
        router.bad_streams.fetch_add(1, Ordering::Relaxed);
        stream.reset(RESET_UNSERVED);
    };
    let kind = match tokio::time::timeout(HEADER_TIMEOUT, read_frame::<StreamKind, _>(&mut stream))
        .await
    {
        Ok(Ok(Ok(kind))) => kind,
        Ok(Ok(Err(e))) => return refuse(stream, &format!("bad header: {e}")),
        Ok(Err(_)) => return,
        Err(_) => return refuse(stream, "no header in time"),
    };
    let queue = match kind {
        StreamKind::Transfer | StreamKind::Tree => &router.transfer,
    };
    match queue {
        Some(tx) => {
            let _ = tx.send((peer, kind, stream)).await;
        }
        None => refuse(stream, "no service for it"),
    }
}
