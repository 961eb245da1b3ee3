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

use bytes::Bytes;

use super::frame::{Message, StreamId};
use super::{CONTROL, Ctl, Fin, LaneId, LaneStats, State};

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
    /// The lane sat on a frame a stream waited for; its frames were copied
    /// elsewhere and it gets no new data until it acknowledges something.
    pub stalled: bool,
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
            stalled: false,
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
/// lower id, avoiding stalled lanes. With `limit`, lanes holding `limit` bytes
/// or more are full.
pub fn pick(
    lanes: &BTreeMap<LaneId, Box<Lane>>,
    limit: Option<u64>,
    except: Option<LaneId>,
) -> Option<LaneId> {
    let best = |skip_stalled: bool| {
        lanes
            .iter()
            .filter(|(id, l)| {
                Some(**id) != except
                    && !(skip_stalled && l.stalled)
                    && limit.is_none_or(|m| l.queued < m)
            })
            .min_by_key(|(id, l)| (l.queued, l.srtt.unwrap_or(Duration::MAX), **id))
            .map(|(id, _)| *id)
    };
    // Stalled lanes only when no other lane can take the frame.
    best(true).or_else(|| best(false))
}

/// When a frame outstanding on a stalled lane is worth sending again on another:
/// three times the slowest lane RTT, and never sooner than `floor`.
pub fn hedge_delay(lanes: &BTreeMap<LaneId, Box<Lane>>, floor: Duration) -> Duration {
    let slowest = lanes
        .values()
        .filter_map(|l| l.srtt)
        .max()
        .unwrap_or(Duration::ZERO);
    (slowest * 3).max(floor)
}

/// The scheduler loop of [`State`]: turns queued work into transmissions.
impl State {
    /// Moves queued work onto lanes: control frames, resends, the control
    /// stream, then the other streams round-robin, then hedges.
    pub(super) fn schedule(&mut self) {
        if self.closed.is_some() || self.lanes.is_empty() {
            return;
        }
        while let Some(ctl) = self.control.pop_front() {
            let lane = pick(&self.lanes, None, None).expect("a lane exists");
            match ctl {
                Ctl::Window(stream) => {
                    let Some(r) = self.streams.get_mut(&stream).and_then(|s| s.recv.as_mut())
                    else {
                        continue;
                    };
                    r.window_queued = false;
                    let max_offset = r.credit.granted;
                    self.transmit(
                        lane,
                        Message::Window { stream, max_offset },
                        Some(Sent::Window { stream }),
                    );
                }
                Ctl::Reset { stream, code } => {
                    self.transmit(
                        lane,
                        Message::Reset { stream, code },
                        Some(Sent::Reset { stream, code }),
                    );
                }
            }
        }
        let limit = Some(self.config.lane_queue);
        while let Some(sent) = self.resend.front().cloned() {
            let Sent::Data {
                stream,
                offset,
                len,
                fin,
            } = sent
            else {
                self.resend.pop_front();
                continue;
            };
            let Some(payload) = self.resend_bytes(stream, offset, len, fin) else {
                self.resend.pop_front();
                continue;
            };
            let Some(lane) = pick(&self.lanes, limit, None) else {
                break;
            };
            self.resend.pop_front();
            self.send_again(lane, stream, offset, fin, payload, false);
        }
        while self.sendable.contains(&CONTROL) {
            let lane = pick(&self.lanes, None, None).expect("a lane exists");
            self.send_new(lane, CONTROL);
        }
        while let Some(lane) = pick(&self.lanes, limit, None) {
            let next = self
                .sendable
                .range(self.rr..)
                .next()
                .or_else(|| self.sendable.iter().next())
                .copied();
            let Some(id) = next else {
                break;
            };
            self.rr = id.wrapping_add(1);
            self.send_new(lane, id);
        }
        self.hedge();
    }

    /// The bytes of an unacknowledged frame to send again, or `None` if every
    /// part of it (FIN included) is acknowledged or the stream is gone.
    fn resend_bytes(&self, stream: StreamId, offset: u64, len: u32, fin: bool) -> Option<Bytes> {
        let send = self.streams.get(&stream)?.send.as_ref()?;
        if len == 0 {
            return (fin && send.fin != Fin::Acked).then(Bytes::new);
        }
        send.buf.resend(offset, len as usize)
    }

    fn send_again(
        &mut self,
        lane: LaneId,
        stream: StreamId,
        offset: u64,
        fin: bool,
        payload: Bytes,
        hedge: bool,
    ) {
        let bulk = self.streams.get(&stream).is_some_and(|s| s.bulk);
        let len = payload.len();
        self.stats.resent_frames += 1;
        self.stats.resent_bytes += len as u64;
        self.stats.hedged_frames += u64::from(hedge);
        if let Some(l) = self.lanes.get_mut(&lane) {
            l.stats.resent_frames += 1;
        }
        let sent = Sent::Data {
            stream,
            offset,
            len: len as u32,
            fin,
        };
        let message = Message::Data {
            stream,
            offset,
            fin,
            bulk,
            payload,
        };
        self.transmit(lane, message, Some(sent));
    }

    /// Cuts and transmits the next new frame of a sendable stream.
    fn send_new(&mut self, lane: LaneId, id: StreamId) {
        let max = self.config.max_payload;
        let Some(s) = self.streams.get_mut(&id) else {
            self.sendable.remove(&id);
            return;
        };
        let bulk = s.bulk;
        let Some(send) = s.send.as_mut() else {
            self.sendable.remove(&id);
            return;
        };
        let frame = match send.buf.next_frame(max, send.credit.max_offset) {
            Some((offset, payload)) => Some((offset, payload)),
            None if send.fin == Fin::Pending && send.buf.unsent() == 0 => {
                Some((send.buf.written(), Bytes::new()))
            }
            None => None,
        };
        if let Some((offset, payload)) = frame {
            let fin = send.fin == Fin::Pending && send.buf.unsent() == 0;
            if fin {
                send.fin = Fin::Sent;
            }
            let sent = Sent::Data {
                stream: id,
                offset,
                len: payload.len() as u32,
                fin,
            };
            let message = Message::Data {
                stream: id,
                offset,
                fin,
                bulk,
                payload,
            };
            self.transmit(lane, message, Some(sent));
        }
        self.refresh(id);
    }

    /// The oldest frame on `lane` worth a copy on another lane if the lane
    /// sits on it: a grant (the peer may be waiting for it), control-stream
    /// data (it must stay responsive), or the frame holding the lowest
    /// unacknowledged byte of a credit-blocked stream. With its index and time.
    pub(super) fn hedge_candidate(&self, lane: &Lane) -> Option<(usize, Sent, Duration)> {
        lane.unhedged()
            .find(|(_, sent, _)| match sent {
                Sent::Window { .. } => true,
                Sent::Data { stream, offset, .. } => {
                    let una = self
                        .streams
                        .get(stream)
                        .and_then(|s| s.send.as_ref())
                        .map(|s| s.buf.una());
                    una.is_some_and(|u| u <= *offset)
                        && (*stream == CONTROL
                            || (self.blocked.contains(stream) && una == Some(*offset)))
                }
                _ => false,
            })
            .map(|(i, sent, at)| (i, sent.clone(), at))
    }

    /// Marks a lane stalled and copies every data frame it holds unacknowledged
    /// onto the other lanes (a lane death without closing the lane: if it
    /// recovers, the receiver drops the duplicates).
    fn evacuate(&mut self, lane: LaneId) {
        let Some(l) = self.lanes.get_mut(&lane) else {
            return;
        };
        l.stalled = true;
        let frames: Vec<(usize, StreamId, u64, u32, bool)> = l
            .unacked
            .iter()
            .enumerate()
            .filter_map(|(i, (sent, _, hedged))| match sent {
                Sent::Data {
                    stream,
                    offset,
                    len,
                    fin,
                } if !hedged => Some((i, *stream, *offset, *len, *fin)),
                _ => None,
            })
            .collect();
        for (i, stream, offset, len, fin) in frames {
            if let Some(entry) = self.lanes.get_mut(&lane).and_then(|l| l.unacked.get_mut(i)) {
                entry.2 = true;
            }
            let Some(payload) = self.resend_bytes(stream, offset, len, fin) else {
                continue;
            };
            let Some(to) = pick(&self.lanes, None, Some(lane)) else {
                return;
            };
            self.send_again(to, stream, offset, fin, payload, true);
        }
    }

    /// Copies frames that a lane has sat on for much longer than the lanes
    /// answer onto the best other lane (see [`State::hedge_candidate`]).
    fn hedge(&mut self) {
        if self.lanes.len() < 2 {
            return;
        }
        let delay = hedge_delay(&self.lanes, self.config.hedge_floor);
        let now = self.now;
        let candidates: Vec<(LaneId, usize, Sent)> = self
            .lanes
            .iter()
            .filter_map(|(id, l)| {
                let (i, sent, at) = self.hedge_candidate(l)?;
                (now >= at + delay).then_some((*id, i, sent))
            })
            .collect();
        for (from, index, sent) in candidates {
            let Some(to) = pick(&self.lanes, Some(self.config.lane_queue), Some(from)) else {
                continue;
            };
            match sent {
                Sent::Window { stream } => {
                    let Some(r) = self.streams.get(&stream).and_then(|s| s.recv.as_ref()) else {
                        continue;
                    };
                    let max_offset = r.credit.granted;
                    self.transmit(
                        to,
                        Message::Window { stream, max_offset },
                        Some(Sent::Window { stream }),
                    );
                }
                Sent::Data { stream, .. } if stream != CONTROL => {
                    // The lane sits on the frame a blocked stream waits for: it
                    // likely sits on the rest of its queue too (a TCP stall).
                    self.evacuate(from);
                    continue;
                }
                Sent::Data {
                    stream,
                    offset,
                    len,
                    fin,
                } => {
                    let Some(payload) = self.resend_bytes(stream, offset, len, fin) else {
                        continue;
                    };
                    self.send_again(to, stream, offset, fin, payload, true);
                }
                _ => continue,
            }
            if let Some(entry) = self
                .lanes
                .get_mut(&from)
                .and_then(|l| l.unacked.get_mut(index))
            {
                entry.2 = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(spec: &[(u64, Option<u64>)]) -> BTreeMap<LaneId, Box<Lane>> {
        spec.iter()
            .enumerate()
            .map(|(i, (queued, rtt_ms))| {
                let mut l = Lane::new(i as LaneId, Duration::ZERO);
                l.queued = *queued;
                l.srtt = rtt_ms.map(Duration::from_millis);
                (i as LaneId, Box::new(l))
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
    fn stalled_lanes_are_a_last_resort() {
        let mut l = lanes(&[(0, None), (500, None)]);
        l.get_mut(&0).unwrap().stalled = true;
        assert_eq!(pick(&l, None, None), Some(1));
        assert_eq!(pick(&l, Some(400), None), Some(0));
    }

    #[test]
    fn rtt_is_smoothed() {
        let mut l = Lane::new(0, Duration::ZERO);
        l.on_rtt_sample(Duration::from_millis(8));
        l.on_rtt_sample(Duration::from_millis(16));
        assert_eq!(l.srtt, Some(Duration::from_millis(9)));
    }
}
