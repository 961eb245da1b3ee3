//! Watches this host's IP addresses, so the node follows its own network:
//! Wi-Fi roaming, a new DHCP lease, a VPN going up, Ethernet plugged in.
//!
//! On Linux a netlink socket subscribed to link and address changes wakes the
//! watcher at once; everywhere (and as a safety net) the addresses are also
//! rescanned every [`POLL`]. Each change is reported as the whole new set;
//! what to do about it is decided in [`crate::proto::roaming`] and by the
//! discovery state machine.
//!
//! The netlink socket is made by [`spawn`]'s caller thread, so a node started
//! inside a network namespace watches that namespace.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Rescan period when no netlink event arrives.
pub const POLL: Duration = Duration::from_secs(2);
/// Changes that come in a burst (an address removed, then one added) are
/// reported once, this long after the first.
const SETTLE: Duration = Duration::from_millis(50);

/// Every address of this host's interfaces that are up, loopback included.
pub fn local_ips() -> BTreeSet<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|all| all.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// What the receiver of a report did with it.
pub enum Report {
    /// Taken: the next report is of the next change.
    Taken,
    /// Not taken now (the receiver is busy): reported again at the next
    /// rescan, changed or not.
    Busy,
    /// The receiver is gone: the watcher ends.
    Stop,
}

/// Starts the watcher: `report(set)` is called with the new address set after
/// each change (never for the first scan).
pub fn spawn<F>(mut report: F) -> JoinHandle<()>
where
    F: FnMut(BTreeSet<IpAddr>) -> Report + Send + 'static,
{
    let mut wake = netlink::subscribe();
    let mut last = local_ips();
    tokio::spawn(async move {
        loop {
            match &mut wake {
                Some(w) => {
                    let _ = tokio::time::timeout(POLL, w.recv()).await;
                }
                None => tokio::time::sleep(POLL).await,
            }
            tokio::time::sleep(SETTLE).await;
            if let Some(w) = &mut wake {
                while w.try_recv().is_ok() {}
            }
            let now = local_ips();
            if now != last {
                tracing::info!(addrs = ?now, "this host's addresses changed");
                match report(now.clone()) {
                    Report::Taken => last = now,
                    Report::Busy => {}
                    Report::Stop => return,
                }
            }
        }
    })
}

#[cfg(target_os = "linux")]
mod netlink {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use tokio::io::unix::AsyncFd;
    use tokio::sync::mpsc;

    const RTMGRP_LINK: u32 = 0x1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;

    /// A receiver woken on each batch of netlink route messages (its content
    /// is not read: the watcher rescans), or `None` if netlink is unavailable.
    pub(super) fn subscribe() -> Option<mpsc::Receiver<()>> {
        // SAFETY: plain socket(2)/bind(2) calls on a struct we own; the fd is
        // owned by `OwnedFd` from here on.
        let fd = unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return None;
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
            let rc = libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            );
            if rc != 0 {
                return None;
            }
            fd
        };
        // SAFETY: `fd` is an open socket owned by the `AsyncFd` for its whole
        // life; `OwnedFd::as_raw_fd` always returns that same descriptor.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()? };
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let Ok(mut guard) = fd.readable().await else {
                    return;
                };
                // Drain what is queued; an overflow (ENOBUFS) is a wake-up too.
                loop {
                    // SAFETY: recv(2) into a buffer we own, of its length.
                    let n = unsafe {
                        libc::recv(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            libc::MSG_DONTWAIT,
                        )
                    };
                    if n < 0 {
                        let e = std::io::Error::last_os_error();
                        if e.kind() == std::io::ErrorKind::WouldBlock {
                            guard.clear_ready();
                            break;
                        }
                        if e.raw_os_error() != Some(libc::ENOBUFS) {
                            tracing::debug!(error = %e, "netlink watch ends");
                            return;
                        }
                    }
                }
                if tx.try_send(()).is_err() && tx.is_closed() {
                    return;
                }
            }
        });
        Some(rx)
    }
}

#[cfg(not(target_os = "linux"))]
mod netlink {
    pub(super) fn subscribe() -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }
}
