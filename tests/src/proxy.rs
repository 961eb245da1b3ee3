//! A TCP relay on 127.0.0.1 that stands between two nodes, to make network
//! faults happen where a test wants them: drop one connection (one mux lane)
//! with a reset, drop them all (the peer vanishes), or stop forwarding while
//! holding the sockets open (the peer vanishes silently, as a laptop leaving
//! the Wi-Fi does).
//!
//! Every connection made to [`Proxy::addr`] is one connection to the target;
//! bytes are counted per connection and direction. A node dialing the proxy
//! dials its extra lanes there too, so each lane is one relayed connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One relayed connection.
pub struct Relayed {
    /// Bytes forwarded from the dialing side to the target.
    pub up: AtomicU64,
    /// Bytes forwarded from the target back.
    pub down: AtomicU64,
    /// Set once the connection ended (either side closed, or it was killed).
    pub ended: AtomicBool,
    kill: watch::Sender<bool>,
}

/// What [`Proxy::on_bytes`] is told after each forwarded read.
pub type OnBytes = Box<dyn Fn(&Proxy) + Send + Sync>;

#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    conns: Mutex<Vec<Arc<Relayed>>>,
    frozen: AtomicBool,
    on_bytes: Mutex<Option<Arc<OnBytes>>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// Starts relaying connections made to a new 127.0.0.1 port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inner = Arc::new(Inner {
            addr: listener.local_addr().unwrap(),
            conns: Mutex::new(Vec::new()),
            frozen: AtomicBool::new(false),
            on_bytes: Mutex::new(None),
            accept: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            while let Ok((a, _)) = listener.accept().await {
                let Some(inner) = weak.upgrade() else { return };
                let Ok(b) = TcpStream::connect(target).await else {
                    continue;
                };
                let (kill, killed) = watch::channel(false);
                let r = Arc::new(Relayed {
                    up: AtomicU64::new(0),
                    down: AtomicU64::new(0),
                    ended: AtomicBool::new(false),
                    kill,
                });
                inner.conns.lock().unwrap().push(r.clone());
                tokio::spawn(relay(Proxy { inner }, a, b, r, killed));
            }
        });
        *inner.accept.lock().unwrap() = Some(task);
        Proxy { inner }
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Every connection relayed so far, in the order they were made.
    pub fn connections(&self) -> Vec<Arc<Relayed>> {
        self.inner.conns.lock().unwrap().clone()
    }

    /// Connections still open.
    pub fn live(&self) -> Vec<Arc<Relayed>> {
        self.connections()
            .into_iter()
            .filter(|c| !c.ended.load(Ordering::SeqCst))
            .collect()
    }

    /// Bytes forwarded towards the target, over all connections.
    pub fn total_up(&self) -> u64 {
        self.connections()
            .iter()
            .map(|c| c.up.load(Ordering::SeqCst))
            .sum()
    }

    /// Calls `f` after every forwarded read (from the relaying task: keep it
    /// short), so a fault can be placed at a byte point without racing.
    pub fn on_bytes(&self, f: impl Fn(&Proxy) + Send + Sync + 'static) {
        *self.inner.on_bytes.lock().unwrap() = Some(Arc::new(Box::new(f)));
    }

    /// Drops one connection with a TCP reset on both of its sockets.
    pub fn kill(&self, c: &Relayed) {
        let _ = c.kill.send(true);
    }

    /// Drops every connection with a reset, and refuses new ones. (Relaying
    /// tasks otherwise live as long as their connections, or the runtime.)
    pub fn kill_all(&self) {
        if let Some(t) = self.inner.accept.lock().unwrap().take() {
            t.abort();
        }
        for c in self.connections() {
            self.kill(&c);
        }
    }

    /// Stops forwarding in both directions while keeping every socket open:
    /// the peer behind the proxy falls silent.
    pub fn freeze(&self) {
        self.inner.frozen.store(true, Ordering::SeqCst);
    }
}

async fn relay(
    proxy: Proxy,
    a: TcpStream,
    b: TcpStream,
    r: Arc<Relayed>,
    mut killed: watch::Receiver<bool>,
) {
    let _ = (a.set_nodelay(true), b.set_nodelay(true));
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let up = copy(&proxy, &mut ar, &mut bw, &r.up);
    let down = copy(&proxy, &mut br, &mut aw, &r.down);
    let was_killed = tokio::select! {
        _ = async { tokio::join!(up, down) } => false,
        _ = killed.wait_for(|k| *k) => true,
    };
    r.ended.store(true, Ordering::SeqCst);
    if was_killed {
        let (Ok(a), Ok(b)) = (ar.reunite(aw), br.reunite(bw)) else {
            return;
        };
        // A reset, not an orderly close: the lane is cut, not finished.
        let _ = (a.set_zero_linger(), b.set_zero_linger());
    }
}

async fn copy(
    proxy: &Proxy,
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    count: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if proxy.inner.frozen.load(Ordering::SeqCst) {
            // Hold the socket open and forward nothing, ever again.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
        let hook = proxy.inner.on_bytes.lock().unwrap().clone();
        if let Some(f) = hook {
            f(proxy);
        }
    }
    let _ = to.shutdown().await;
}
