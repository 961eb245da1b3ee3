//! Lanes as the scheduler sees them: how many bytes each has queued, how fast
//! it answers, and which counted frames it carried that the peer has not yet
//! acknowledged.
//!
//! Choice of lane: the one with the fewest queued bytes (handed to its writer and
//! not yet written to the socket); ties go to the lower smoothed RTT, then the
//! lower lane id so that runs are deterministic. A lane whose socket stalls stops
//! draining, its queue stays full, and the scheduler sends elsewhere: this is what
//! makes several TCP connections on a lossy link add up.
//!
//! Acknowledgements are per lane and cumulative in frames: the receiver counts the
//! counted (non lane-local) frames it read from a lane and says "I have read N".
//! TCP keeps a lane's frames in order, so the first `N` entries of
//! [`Lane::unacked`] are done. When a lane dies, what is left in `unacked` is all
//! that may have been lost, and is sent again elsewhere.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::frame::StreamId;
use super::{LaneId, LaneStats};

/// How deep into a lane's unacknowledged frames a hedge looks.
const HEDGE_SCAN: usize = 16;

/// A counted frame a lane carried, kept until the peer acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Data {
        stream: StreamId,
        offset: u64,
        len: u32,
        fin: bool,
    },
    Window {
        stream: StreamId,
    },
    Reset {
        stream: StreamId,
        code: u32,
    },
    Close,
}

#[derive(Debug)]
pub struct Lane {
    /// Bytes handed to the lane's writer and not yet reported written.
    pub queued: u64,
    pub srtt: Option<Duration>,
    /// Counted frames sent and not yet acknowledged, oldest first, with the time
    /// each was handed to the writer and whether it was already hedged.
    pub unacked: VecDeque<(Sent, Duration, bool)>,
    /// Counted frames received (what our next ACK says) and the last ACK sent.
    pub received: u64,
    pub acked_received: u64,
    pub bytes_since_ack: u64,
    /// Counted frames handed to the writer.
    pub sent_counted: u64,
    pub hello: bool,
    pub last_input: Duration,
    pub next_ping: Duration,
    pub stats: LaneStats,
}

impl Lane {
    pub fn new(id: LaneId, now: Duration) -> Self {
        Self {
            queued: 0,
            srtt: None,
            unacked: VecDeque::new(),
            received: 0,
            acked_received: 0,
            bytes_since_ack: 0,
            sent_counted: 0,
            hello: false,
            last_input: now,
            next_ping: now,
            stats: LaneStats {
                lane: id,
                ..LaneStats::default()
            },
        }
    }

    pub fn on_rtt_sample(&mut self, sample: Duration) {
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
    }

    /// Unacknowledged frames not hedged yet, oldest first, among the first
    /// few: `(index, frame, sent at)`.
    pub fn unhedged(&self) -> impl Iterator<Item = (usize, &Sent, Duration)> + '_ {
        self.unacked
            .iter()
            .take(HEDGE_SCAN)
            .enumerate()
            .filter_map(|(i, (sent, at, hedged))| (!hedged).then_some((i, sent, *at)))
    }
}

/// The lane a frame should go to: fewest queued bytes, then lower RTT, then
/// lower id. With `limit`, lanes holding `limit` bytes or more are full.
pub fn pick(
    lanes: &BTreeMap<LaneId, Lane>,
    limit: Option<u64>,
    except: Option<LaneId>,
) -> Option<LaneId> {
    lanes
        .iter()
        .filter(|(id, l)| Some(**id) != except && limit.is_none_or(|m| l.queued < m))
        .min_by_key(|(id, l)| (l.queued, l.srtt.unwrap_or(Duration::MAX), **id))
        .map(|(id, _)| *id)
}

/// When a frame outstanding on a stalled lane is worth sending again on another:
/// twice the slowest healthy RTT, and never sooner than `floor`.
pub fn hedge_delay(lanes: &BTreeMap<LaneId, Lane>, floor: Duration) -> Duration {
    let slowest = lanes
        .values()
        .filter_map(|l| l.srtt)
        .max()
        .unwrap_or(Duration::ZERO);
    (slowest * 2).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(spec: &[(u64, Option<u64>)]) -> BTreeMap<LaneId, Lane> {
        spec.iter()
            .enumerate()
            .map(|(i, (queued, rtt_ms))| {
                let mut l = Lane::new(i as LaneId, Duration::ZERO);
                l.queued = *queued;
                l.srtt = rtt_ms.map(Duration::from_millis);
                (i as LaneId, l)
            })
            .collect()
    }

    #[test]
    fn least_queued_lane_wins() {
        let l = lanes(&[(500, Some(1)), (100, Some(9)), (300, None)]);
        assert_eq!(pick(&l, None, None), Some(1));
    }

    #[test]
    fn ties_go_to_the_lower_rtt_then_the_lower_id() {
        let l = lanes(&[(100, Some(5)), (100, Some(2)), (100, Some(2)), (100, None)]);
        assert_eq!(pick(&l, None, None), Some(1));
        assert_eq!(pick(&l, None, Some(1)), Some(2));
    }

    #[test]
    fn full_lanes_are_skipped_under_a_limit() {
        let l = lanes(&[(1000, None), (2000, None)]);
        assert_eq!(pick(&l, Some(1000), None), None);
        assert_eq!(pick(&l, Some(1001), None), Some(0));
        assert_eq!(pick(&l, None, None), Some(0));
    }

    #[test]
    fn rtt_is_smoothed() {
        let mut l = Lane::new(0, Duration::ZERO);
        l.on_rtt_sample(Duration::from_millis(8));
        l.on_rtt_sample(Duration::from_millis(16));
        assert_eq!(l.srtt, Some(Duration::from_millis(9)));
    }
}
