//! What accept loops (peers, web UI, control socket) share: a backoff on
//! errors instead of spinning, and an [`Admission`] of connections per
//! address and in total. On errors: `accept` fails at once and again while the process is out of
//! descriptors (`EMFILE`), so retrying without a pause burns a core and
//! starves the tasks that would free them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// First pause after an accept error.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause: the pause doubles per error in a row up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The pause before the next accept: reset by a success, doubled by each
/// error in a row.
#[derive(Debug, Default)]
pub struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// An accept succeeded.
    pub fn reset(&mut self) {
        self.next = None;
    }

    /// An accept failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let d = self.next.unwrap_or(FIRST_BACKOFF);
        self.next = Some((d * 2).min(MAX_BACKOFF));
        d
    }
}

/// Connections (or handshakes) open at once, in total and per client
/// address; a [`Slot`] holds one place until it is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    max_total: usize,
    max_per_ip: usize,
    inner: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    ip: IpAddr,
    /// Counted against the total (see [`Admission::admit_outside_total`]).
    in_total: bool,
    inner: Arc<Mutex<Counts>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if self.in_total {
            g.total -= 1;
        }
        if let Some(n) = g.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            inner: Arc::default(),
        }
    }

    /// A slot for `ip`, if both caps allow one more.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        self.take(ip, true)
    }

    /// A slot for `ip` under its per-address cap only, not counted in the
    /// total: for an address that must keep places of its own.
    pub fn admit_outside_total(&self, ip: IpAddr) -> Option<Slot> {
        self.take(ip, false)
    }

    fn take(&self, ip: IpAddr, in_total: bool) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = g.per_ip.get(&ip).copied().unwrap_or(0);
        if (in_total && g.total >= self.max_total) || from_ip >= self.max_per_ip {
            return None;
        }
        if in_total {
            g.total += 1;
        }
        *g.per_ip.entry(ip).or_default() += 1;
        Some(Slot {
            ip,
            in_total,
            inner: self.inner.clone(),
        })
    }

    /// Slots counted in the total, open now.
    pub fn open(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.failed(), FIRST_BACKOFF);
        assert_eq!(b.failed(), FIRST_BACKOFF * 2);
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.failed(), MAX_BACKOFF);
        b.reset();
        assert_eq!(b.failed(), FIRST_BACKOFF);
    }
}
