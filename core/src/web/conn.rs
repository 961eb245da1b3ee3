//! The web server's own accept loop: HTTP/1.1 (hyper) over every accepted
//! TCP connection, with the bounds `axum::serve` lacks, so idle or slow
//! connections from the LAN cannot take the node's descriptors.
//!
//! - At most [`WebOptions::max_connections`] connections at once, and
//!   [`WebOptions::max_connections_per_ip`] from one client address; a
//!   connection past either is closed as soon as it is accepted. A slot is
//!   held for the connection's whole life, WebSockets included (the slot
//!   travels inside the IO that the upgrade hands over).
//! - A request's head must arrive within [`WebOptions::header_timeout`] of
//!   the connection becoming ready for it: a client that connects and sends
//!   nothing, dribbles its headers, or keeps an idle keep-alive connection
//!   open is disconnected then (hyper runs one timer for the head of each
//!   request, started when the connection waits for it, so it is also the
//!   keep-alive idle timeout). Bodies (uploads) and WebSockets are not under
//!   this timer.
//! - Accept errors (out of descriptors) back off ([`crate::accept`]).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::middleware::AddExtension;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::WebOptions;
use crate::accept::{Admission, Slot};

/// A slot for a connection from `ip`, if the caps allow one more. The
/// owner's machine (127.0.0.1, ::1: no LAN device can send from there) has
/// only its per-address cap, so devices filling the total cannot keep the
/// owner out.
fn admit(admission: &Admission, ip: IpAddr) -> Option<Slot> {
    let ip = ip.to_canonical();
    let owner =
        ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]);
    if owner {
        admission.admit_outside_total(ip)
    } else {
        admission.admit(ip)
    }
}

/// A TCP stream that holds its connection's slot until it is dropped
/// (after a WebSocket upgrade too).
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `stop` is cancelled (then every
/// connection is dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: &WebOptions,
    stop: CancellationToken,
) {
    let admission = Admission::new(options.max_connections, options.max_connections_per_ip);
    let header_timeout = options.header_timeout;
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut backoff = crate::accept::Backoff::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.reset();
                a
            }
            Err(e) => {
                let wait = backoff.failed();
                tracing::debug!(error = %e, ?wait, "web UI: accept failed");
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        let Some(slot) = admit(&admission, peer.ip()) else {
            tracing::debug!(%peer, open = admission.open(), "web UI: connection refused (cap)");
            // Dropping it closes it now.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(service) = make.call(peer).await;
        let io = TokioIo::new(Counted {
            stream,
            _slot: slot,
        });
        let stop = stop.clone();
        tokio::spawn(serve_connection(io, service, header_timeout, stop));
    }
}

async fn serve_connection(
    io: TokioIo<Counted>,
    service: AddExtension<axum::Router, ConnectInfo<SocketAddr>>,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let service = TowerToHyperService::new(service);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::select! {
        res = conn => if let Err(e) = res {
            tracing::trace!(error = %e, "web UI connection ended");
        },
        () = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_caps_per_address_and_in_total_and_frees_slots() {
        let a = Admission::new(3, 2);
        let x: IpAddr = "10.0.0.2".parse().unwrap();
        let y: IpAddr = "10.0.0.3".parse().unwrap();
        let z: IpAddr = "10.0.0.4".parse().unwrap();
        let x1 = admit(&a, x).unwrap();
        let _x2 = admit(&a, x).unwrap();
        assert!(admit(&a, x).is_none(), "third from one address");
        let _y1 = admit(&a, y).unwrap();
        assert!(admit(&a, z).is_none(), "past the total");
        // The owner's machine still gets in, up to its own cap.
        let o1 = admit(&a, "127.0.0.1".parse().unwrap()).unwrap();
        let _o2 = admit(&a, "::1".parse().unwrap()).unwrap();
        let _o3 = admit(&a, "127.0.0.1".parse().unwrap()).unwrap();
        assert!(admit(&a, "127.0.0.1".parse().unwrap()).is_none());
        drop(o1);
        drop(x1);
        assert_eq!(a.open(), 2);
        admit(&a, z).unwrap();
    }
}
