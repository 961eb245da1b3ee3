//! Progress accounting of one transfer: bytes done of the whole and of the
//! current file, files done, and the rate over the last seconds, reported at
//! most every [`INTERVAL`].
//!
//! "Done" counts bytes the receiver will hold (a resumed prefix counts at once);
//! "transferred" counts only bytes that crossed the network, and the rate is
//! measured on those.

use std::collections::VecDeque;
use std::time::Duration;

/// How often a running transfer reports progress.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Rate window.
const WINDOW: Duration = Duration::from_secs(2);

/// One report.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub files_done: u64,
    pub files_total: u64,
    /// Entry index of the file being worked on.
    pub file: Option<u32>,
    pub file_done: u64,
    pub file_total: u64,
    /// Bytes that crossed the network so far.
    pub transferred: u64,
    /// Bytes per second over the last two seconds.
    pub rate: u64,
}

#[derive(Debug, Clone)]
pub struct Progress {
    total_bytes: u64,
    files_total: u64,
    done_bytes: u64,
    files_done: u64,
    transferred: u64,
    file: Option<(u32, u64, u64)>,
    samples: VecDeque<(Duration, u64)>,
    last_report: Option<Duration>,
    changed: bool,
}

impl Progress {
    pub fn new(files_total: u64, total_bytes: u64) -> Self {
        Self {
            total_bytes,
            files_total,
            done_bytes: 0,
            files_done: 0,
            transferred: 0,
            file: None,
            samples: VecDeque::new(),
            last_report: None,
            changed: true,
        }
    }

    /// File `index` of `size` bytes begins, with `have` bytes already there.
    pub fn start_file(&mut self, index: u32, size: u64, have: u64) {
        self.file = Some((index, have.min(size), size));
        self.done_bytes += have.min(size);
        self.changed = true;
    }

    /// `n` more bytes of the current file crossed the network.
    pub fn add(&mut self, n: u64) {
        self.transferred += n;
        self.done_bytes += n;
        if let Some((_, done, _)) = &mut self.file {
            *done += n;
        }
        self.changed = true;
    }

    /// A file is over (arrived, failed, or skipped): its missing bytes count as
    /// done so that the totals add up.
    pub fn end_file(&mut self, size: u64, done_so_far: u64) {
        self.done_bytes += size.saturating_sub(done_so_far);
        self.files_done += 1;
        self.changed = true;
    }

    /// The file being worked on.
    pub fn file(&self) -> Option<u32> {
        self.file.map(|(i, _, _)| i)
    }

    /// The current file's bytes done.
    pub fn file_done(&self) -> u64 {
        self.file.map(|(_, d, _)| d).unwrap_or(0)
    }

    pub fn transferred(&self) -> u64 {
        self.transferred
    }

    pub fn done_bytes(&self) -> u64 {
        self.done_bytes.min(self.total_bytes)
    }

    pub fn files_done(&self) -> u64 {
        self.files_done
    }

    /// A report, if one is due at `now` (every [`INTERVAL`] while something
    /// changed).
    pub fn poll(&mut self, now: Duration) -> Option<Snapshot> {
        if let Some(last) = self.last_report
            && (now < last + INTERVAL || !self.changed)
        {
            return None;
        }
        Some(self.snapshot(now))
    }

    /// A report now, whether due or not.
    pub fn snapshot(&mut self, now: Duration) -> Snapshot {
        self.last_report = Some(now);
        self.changed = false;
        self.samples.push_back((now, self.transferred));
        while let Some(&(t, _)) = self.samples.front() {
            if now.saturating_sub(t) > WINDOW && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        let rate = match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                ((b1 - b0) as f64 / (t1 - t0).as_secs_f64()) as u64
            }
            _ => 0,
        };
        let (file, file_done, file_total) = match self.file {
            Some((i, d, t)) => (Some(i), d, t),
            None => (None, 0, 0),
        };
        Snapshot {
            done_bytes: self.done_bytes(),
            total_bytes: self.total_bytes,
            files_done: self.files_done,
            files_total: self.files_total,
            file,
            file_done,
            file_total,
            transferred: self.transferred,
            rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reports_come_every_interval_while_something_changes() {
        let mut p = Progress::new(1, 100);
        assert!(p.poll(ms(0)).is_some());
        p.start_file(0, 100, 0);
        p.add(10);
        assert!(p.poll(ms(50)).is_none());
        let s = p.poll(ms(100)).unwrap();
        assert_eq!((s.done_bytes, s.file_done, s.file_total), (10, 10, 100));
        assert!(p.poll(ms(300)).is_none(), "nothing changed");
    }

    #[test]
    fn a_resumed_prefix_is_done_but_not_transferred() {
        let mut p = Progress::new(1, 100);
        p.start_file(0, 100, 60);
        p.add(40);
        p.end_file(100, 100);
        let s = p.snapshot(ms(1000));
        assert_eq!((s.done_bytes, s.transferred, s.files_done), (100, 40, 1));
    }

    #[test]
    fn rate_is_measured_over_the_recent_window() {
        let mut p = Progress::new(1, 1 << 40);
        p.start_file(0, 1 << 40, 0);
        for t in 0..=50 {
            p.add(1_000_000);
            p.snapshot(ms(t * 100));
        }
        let s = p.snapshot(ms(5100));
        // 10 MB/s, measured over the window
        assert!((9_000_000..=11_000_000).contains(&s.rate), "{}", s.rate);
    }

    #[test]
    fn a_failed_file_still_adds_up() {
        let mut p = Progress::new(2, 30);
        p.start_file(0, 20, 0);
        p.add(5);
        p.end_file(20, 5);
        let s = p.snapshot(ms(0));
        assert_eq!((s.done_bytes, s.files_done), (20, 1));
    }
}
