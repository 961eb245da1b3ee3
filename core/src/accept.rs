//! Accept loops (web UI, control socket) that back off on errors instead of
//! spinning: `accept` fails at once and again while the process is out of
//! descriptors (`EMFILE`), so retrying without a pause burns a core and
//! starves the tasks that would free them.

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
