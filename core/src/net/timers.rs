//! The timer queue every driver task keeps: the sans-IO states ask for timers
//! as output data (`ScheduleTimer(delay, Timer)`), the task files them here
//! and sleeps until the earliest is due.
//!
//! Invariant: timers due at the same instant fire in the order they were
//! inserted (a sequence number breaks ties), so a seeded run replays.

use std::collections::BTreeMap;

use tokio::time::Instant;

/// Timers by due time, then insertion order.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    queue: BTreeMap<(Instant, u64), T>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            queue: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Files `t` to fire at `at`.
    pub fn insert(&mut self, at: Instant, t: T) {
        self.seq += 1;
        self.queue.insert((at, self.seq), t);
    }

    /// When the earliest timer is due (`None`: nothing scheduled).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// Takes the earliest timer due at `now` or before. Called in a loop with
    /// one `now`, it fires only timers already due, each once, even if firing
    /// one schedules another due at once.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    /// Drops every timer.
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

/// Sleeps until `at`, or forever for `None` (a `select!` arm that never fires
/// while no timer is scheduled).
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_fire_in_due_order_then_insertion_order() {
        let t0 = Instant::now();
        let mut q = Timers::default();
        q.insert(t0 + Duration::from_secs(2), "late");
        q.insert(t0 + Duration::from_secs(1), "first");
        q.insert(t0 + Duration::from_secs(1), "second");
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None, "nothing is due yet");
        let now = t0 + Duration::from_secs(1);
        assert_eq!(q.pop_due(now), Some("first"));
        q.insert(now, "rescheduled");
        assert_eq!(q.pop_due(now), Some("second"));
        assert_eq!(q.pop_due(now), Some("rescheduled"));
        assert_eq!(q.pop_due(now), None);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(2)));
        q.clear();
        assert_eq!(q.next_deadline(), None);
    }
}
