//! PLACEHOLDER single-lane session, to be replaced by the real multiplexer
//! (issue 4). Same public shape: a session per peer, lanes added as they
//! connect, stream 0 as the control stream, `closed()` when the last lane dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::{Mutex, watch};

/// Which half of the stream-id space this side uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Low,
    High,
}

#[derive(Debug, Clone, Default)]
pub struct MuxConfig {}

pub type MuxStream = DuplexStream;

#[derive(Debug, Clone)]
pub struct MuxSession {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    control: Mutex<Option<DuplexStream>>,
    pump_end: Mutex<Option<DuplexStream>>,
    lanes: AtomicUsize,
    closed_tx: watch::Sender<bool>,
}

impl MuxSession {
    pub fn new(_config: MuxConfig, _side: Side) -> Self {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let (closed_tx, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                control: Mutex::new(Some(a)),
                pump_end: Mutex::new(Some(b)),
                lanes: AtomicUsize::new(0),
                closed_tx,
            }),
        }
    }

    pub async fn add_lane<S>(&self, mut io: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Some(mut end) = self.inner.pump_end.lock().await.take() else {
            return; // placeholder: extra lanes are ignored
        };
        self.inner.lanes.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut closed = inner.closed_tx.subscribe();
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut io, &mut end) => {}
                _ = closed.wait_for(|c| *c) => {}
            }
            inner.lanes.fetch_sub(1, Ordering::SeqCst);
            inner.closed_tx.send_replace(true);
        });
    }

    pub async fn control(&self) -> Option<MuxStream> {
        self.inner.control.lock().await.take()
    }

    pub fn lane_count(&self) -> usize {
        self.inner.lanes.load(Ordering::SeqCst)
    }

    pub fn close(&self) {
        self.inner.closed_tx.send_replace(true);
    }

    pub async fn closed(&self) {
        let mut rx = self.inner.closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}
