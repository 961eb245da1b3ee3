//! Per-source rate limiting of incoming requests: one token bucket per address.
//!
//! Each source address may send `burst` requests at once and then `rate` per
//! second. The bucket is kept in the "virtual scheduling" form of the generic
//! cell rate algorithm (ITU-T I.371), which is the same limit as a token bucket
//! but needs one number per source: the theoretical arrival time (TAT) of its next
//! request. A request is admitted if it is no more than `(burst - 1) / rate` ahead
//! of schedule; each admitted request pushes the schedule back by `1 / rate`.
//!
//! A source whose TAT has passed holds a full bucket, which is the same as not
//! being tracked, so such entries are pruned: the table holds only sources that
//! sent recently, and never more than `max_sources` of them (new sources beyond
//! that are refused until some quiet down, so spoofed source addresses cost a
//! bounded amount of memory). Time comes from the caller's `now`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TokenBuckets {
    /// Time one token takes to refill; zero disables limiting.
    interval: Duration,
    /// How far ahead of schedule a source may be: (burst - 1) intervals.
    tolerance: Duration,
    max_sources: usize,
    tat: BTreeMap<SocketAddr, Duration>,
    /// Table size at which the next prune happens (amortizes pruning).
    next_prune: usize,
}

const MIN_PRUNE_AT: usize = 64;

impl TokenBuckets {
    /// Buckets of `burst` tokens refilled at `rate` per second (0: no limit).
    pub fn new(rate: u32, burst: u32, max_sources: usize) -> Self {
        let interval = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / rate
        };
        Self {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            max_sources: max_sources.max(1),
            tat: BTreeMap::new(),
            next_prune: MIN_PRUNE_AT,
        }
    }

    /// Takes a token from `from`'s bucket if it has one.
    pub fn allow(&mut self, from: SocketAddr, now: Duration) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        let tat = self.tat.get(&from).copied().unwrap_or(now).max(now);
        if tat > now + self.tolerance {
            return false;
        }
        if !self.tat.contains_key(&from) {
            if self.tat.len() >= self.next_prune.min(self.max_sources) {
                self.prune(now);
            }
            if self.tat.len() >= self.max_sources {
                return false;
            }
        }
        self.tat.insert(from, tat + self.interval);
        true
    }

    fn prune(&mut self, now: Duration) {
        self.tat.retain(|_, tat| *tat > now);
        self.next_prune = (self.tat.len() * 2).max(MIN_PRUNE_AT);
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.tat.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_is_admitted_then_the_rate_applies() {
        let mut b = TokenBuckets::new(10, 5, 100);
        let admitted = (0..20).filter(|_| b.allow(addr(1), ms(0))).count();
        assert_eq!(admitted, 5);
        // one token per 100 ms
        assert!(!b.allow(addr(1), ms(50)));
        assert!(b.allow(addr(1), ms(100)));
        assert!(!b.allow(addr(1), ms(150)));
        // a quiet source gets its full burst back
        let later = (0..20).filter(|_| b.allow(addr(1), ms(10_000))).count();
        assert_eq!(later, 5);
    }

    #[test]
    fn sources_are_limited_independently() {
        let mut b = TokenBuckets::new(1, 1, 100);
        assert!(b.allow(addr(1), ms(0)));
        assert!(!b.allow(addr(1), ms(0)));
        assert!(b.allow(addr(2), ms(0)));
    }

    #[test]
    fn quiet_sources_are_forgotten_and_the_table_is_bounded() {
        let mut b = TokenBuckets::new(100, 2, 100);
        for i in 0..100 {
            assert!(b.allow(addr(i), ms(0)));
        }
        assert!(!b.allow(addr(500), ms(0)), "table full of active sources");
        // 10 ms later every bucket has refilled: all are pruned on demand
        assert!(b.allow(addr(500), ms(10)));
        assert_eq!(b.tracked(), 1);
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let mut b = TokenBuckets::new(0, 0, 1);
        assert!((0..1000).all(|i| b.allow(addr(i), ms(0))));
    }
}
