//! Flow control: per-stream credit that the receiver grants as its application
//! reads, under a session-wide cap.
//!
//! Credit is an absolute offset (`max_offset`): the sender may send bytes below
//! it. Grants travel as [`Message::Window`](super::frame::Message::Window) frames
//! on any lane, so they can arrive out of order or twice: the sender keeps the
//! largest. The receiver grants `consumed + window` once less than half a window
//! remains, which keeps the sender busy while bounding what the receiver holds
//! to one window per stream.
//!
//! The session cap bounds the sum of outstanding grants (`granted - consumed`)
//! across streams, so a peer opening many bulk streams cannot make us promise
//! more memory than [`Config::session_window`](super::Config::session_window).
//! A stream whose grant the cap holds back is retried when others read.

/// Credit every stream starts with, before the receiver's first grant arrives.
/// A protocol constant: both sides must agree on it.
pub const INITIAL_WINDOW: u64 = 64 * 1024;

/// Largest credit a receiver may grant beyond what the sender has sent; more is
/// a protocol violation ("credit overflow").
pub const MAX_WINDOW: u64 = 1 << 30;

/// Receive side of one stream.
#[derive(Debug, Clone)]
pub struct RecvCredit {
    pub window: u64,
    /// The sender may send below this offset.
    pub granted: u64,
    /// The application has read everything below this offset.
    pub consumed: u64,
}

impl RecvCredit {
    pub fn new(window: u64) -> Self {
        Self {
            window,
            granted: INITIAL_WINDOW,
            consumed: 0,
        }
    }

    /// Granted and not yet read: what the sender may still make us hold.
    pub fn outstanding(&self) -> u64 {
        self.granted - self.consumed
    }

    /// The grant worth sending now, if any: extends credit to a full window once
    /// half of it is used, never by more than `cap_room`.
    pub fn next_grant(&self, cap_room: u64) -> Option<u64> {
        let target = self.consumed + self.window;
        if target <= self.granted || self.outstanding() > self.window / 2 {
            return None;
        }
        let grant = target.min(self.granted.saturating_add(cap_room));
        // Tiny grants cost a frame each; wait for the cap to free more.
        (grant > self.granted && (grant == target || grant - self.granted >= self.window / 8))
            .then_some(grant)
    }
}

/// The session-wide cap on outstanding grants.
#[derive(Debug, Clone)]
pub struct SessionCredit {
    pub cap: u64,
    pub outstanding: u64,
}

impl SessionCredit {
    pub fn room(&self) -> u64 {
        self.cap.saturating_sub(self.outstanding)
    }
}

/// Send side: the largest credit the peer has granted.
#[derive(Debug, Clone)]
pub struct SendCredit {
    pub max_offset: u64,
}

impl Default for SendCredit {
    fn default() -> Self {
        Self {
            max_offset: INITIAL_WINDOW,
        }
    }
}

/// A grant the peer may not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl SendCredit {
    /// Applies a grant; `sent` is how far we have sent. Returns whether credit grew.
    pub fn on_window(&mut self, max_offset: u64, sent: u64) -> Result<bool, Overflow> {
        if max_offset > sent.saturating_add(MAX_WINDOW) {
            return Err(Overflow);
        }
        if max_offset <= self.max_offset {
            return Ok(false);
        }
        self.max_offset = max_offset;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_grants_a_full_window_once_half_is_read() {
        let mut c = RecvCredit::new(1000);
        c.granted = 1000;
        c.consumed = 400;
        assert_eq!(c.next_grant(u64::MAX), None);
        c.consumed = 500;
        assert_eq!(c.next_grant(u64::MAX), Some(1500));
    }

    #[test]
    fn session_cap_limits_grants_and_skips_tiny_ones() {
        let mut c = RecvCredit::new(1000);
        c.granted = 1000;
        c.consumed = 1000;
        assert_eq!(c.next_grant(300), Some(1300));
        assert_eq!(c.next_grant(100), None);
        assert_eq!(c.next_grant(0), None);
    }

    #[test]
    fn stale_grants_are_ignored_and_huge_ones_refused() {
        let mut s = SendCredit::default();
        assert_eq!(s.on_window(100_000, 0), Ok(true));
        assert_eq!(s.on_window(90_000, 0), Ok(false));
        assert_eq!(s.max_offset, 100_000);
        assert_eq!(s.on_window(u64::MAX, 5), Err(Overflow));
        assert_eq!(s.on_window(MAX_WINDOW + 10, 10), Ok(true));
    }
}
