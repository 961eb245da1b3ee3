//! Tests of the whole session state machine: two [`State`]s joined by in-memory
//! lanes whose frames are delivered in a seeded random order (in order within a
//! lane and direction, as TCP does), with lanes dying, stalling and appearing.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use rand::Rng;

use super::*;
use crate::proto::sim::{SimRng, rng};

const A: usize = 0;
const B: usize = 1;

/// Two sessions and the lanes between them.
struct Pair {
    peers: [State; 2],
    /// Per lane: frames in flight towards each side.
    lanes: BTreeMap<LaneId, [VecDeque<Message>; 2]>,
    /// Per side and lane: bytes transmitted and not yet reported written.
    unwritten: [BTreeMap<LaneId, u64>; 2],
    /// Lanes whose socket does not drain (no delivery, no written reports).
    stalled: Vec<LaneId>,
    /// Lanes a side closed: they die once their frames are delivered.
    closing: Vec<LaneId>,
    next_lane: LaneId,
    now: Duration,
    events: [Vec<Event>; 2],
    dials: [usize; 2],
}

impl Pair {
    fn new(config: Config, lanes: usize) -> Self {
        let mut p = Self {
            peers: [
                State::new(config.clone(), Side::Low, 11),
                State::new(config, Side::High, 22),
            ],
            lanes: BTreeMap::new(),
            unwritten: Default::default(),
            stalled: Vec::new(),
            closing: Vec::new(),
            next_lane: 1,
            now: Duration::ZERO,
            events: Default::default(),
            dials: [0; 2],
        };
        for _ in 0..lanes {
            p.add_lane();
        }
        p
    }

    fn add_lane(&mut self) -> LaneId {
        let lane = self.next_lane;
        self.next_lane += 1;
        self.lanes.insert(lane, Default::default());
        for side in [A, B] {
            self.handle(
                side,
                InEvent::LaneAdded {
                    lane,
                    dialed: false,
                },
            );
        }
        lane
    }

    fn kill_lane(&mut self, lane: LaneId) {
        if self.lanes.remove(&lane).is_some() {
            for side in [A, B] {
                self.unwritten[side].remove(&lane);
                self.handle(side, InEvent::LaneClosed(lane));
            }
        }
    }

    fn handle(&mut self, side: usize, event: InEvent) {
        self.peers[side].handle(self.now, event);
        self.drain(side);
    }

    fn drain(&mut self, side: usize) {
        let mut close = Vec::new();
        while let Some(out) = self.peers[side].poll() {
            match out {
                OutEvent::Transmit { lane, message } => {
                    if let Some(q) = self.lanes.get_mut(&lane) {
                        *self.unwritten[side].entry(lane).or_default() +=
                            message.encoded_len() as u64;
                        q[1 - side].push_back(message);
                    }
                }
                OutEvent::CloseLane(lane) => close.push(lane),
                OutEvent::DialLane => self.dials[side] += 1,
                OutEvent::Emit(e) => self.events[side].push(e),
            }
        }
        self.closing.extend(close);
        self.reap();
    }

    /// Kills closing lanes that have nothing left in flight.
    fn reap(&mut self) {
        let done: Vec<LaneId> = self
            .closing
            .iter()
            .copied()
            .filter(|l| {
                self.lanes
                    .get(l)
                    .is_none_or(|q| q.iter().all(|d| d.is_empty()))
            })
            .collect();
        self.closing.retain(|l| !done.contains(l));
        for lane in done {
            self.kill_lane(lane);
        }
    }

    /// Delivers the next frame towards `side` on `lane`, if any.
    fn deliver(&mut self, lane: LaneId, side: usize) -> bool {
        if self.stalled.contains(&lane) {
            return false;
        }
        let Some(message) = self.lanes.get_mut(&lane).and_then(|q| q[side].pop_front()) else {
            return false;
        };
        self.handle(side, InEvent::Message { lane, message });
        self.reap();
        true
    }

    /// Reports every transmitted byte of `side` as written, except on stalled lanes.
    fn written(&mut self, side: usize) {
        let lanes: Vec<(LaneId, u64)> = self.unwritten[side]
            .iter()
            .filter(|(l, b)| **b > 0 && !self.stalled.contains(l))
            .map(|(l, b)| (*l, *b))
            .collect();
        for (lane, bytes) in lanes {
            self.unwritten[side].insert(lane, 0);
            self.handle(side, InEvent::Written { lane, bytes });
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for side in [A, B] {
            if self.peers[side]
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                self.handle(side, InEvent::Timeout);
            }
        }
    }

    /// One random step: deliver a few frames, report writes, flush acks.
    fn step(&mut self, rng: &mut SimRng) {
        let lanes: Vec<LaneId> = self.lanes.keys().copied().collect();
        for _ in 0..rng.random_range(1..6) {
            if lanes.is_empty() {
                break;
            }
            let lane = lanes[rng.random_range(0..lanes.len())];
            self.deliver(lane, rng.random_range(0..2));
        }
        if rng.random_bool(0.5) {
            self.written(rng.random_range(0..2));
        }
        if rng.random_bool(0.3) {
            self.handle(rng.random_range(0..2), InEvent::Flush);
        }
        self.advance(Duration::from_micros(rng.random_range(0..200)));
    }

    /// Reads everything `side` can read on `stream` into `out`; true at FIN.
    fn read_all(&mut self, side: usize, stream: StreamId, out: &mut Vec<u8>) -> bool {
        let mut fin = false;
        let mut n = 0;
        while let Some(c) = self.peers[side].read(stream) {
            match c {
                Chunk::Data(b) => {
                    n += b.len() as u64;
                    out.extend_from_slice(&b);
                }
                Chunk::Fin => fin = true,
            }
        }
        if n > 0 {
            self.handle(side, InEvent::Consumed { stream, bytes: n });
        }
        fin
    }

    fn closed(&self, side: usize) -> Option<&Error> {
        self.peers[side].closed()
    }
}

/// Compares byte strings without printing megabytes on failure.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first_diff.is_none(),
        "{what}: got {} bytes, want {}, first difference at {first_diff:?}",
        got.len(),
        want.len()
    );
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// Writes `data` on `stream` of `side` as its send buffer allows.
fn write_some(
    p: &mut Pair,
    side: usize,
    stream: StreamId,
    data: &[u8],
    written: &mut usize,
    rng: &mut SimRng,
) {
    let window = p.peers[side].config().window_for(true);
    let buffered = p.peers[side]
        .stream_stats(stream)
        .map_or(0, |s| s.send_buffered);
    let room = window.saturating_sub(buffered) as usize;
    let n = rng
        .random_range(1..100_000)
        .min(room)
        .min(data.len() - *written);
    if n > 0 {
        let chunk = Bytes::copy_from_slice(&data[*written..*written + n]);
        *written += n;
        p.handle(
            side,
            InEvent::Write {
                stream,
                data: chunk,
            },
        );
        if *written == data.len() {
            p.handle(side, InEvent::Finish(stream));
        }
    }
}

fn small_config() -> Config {
    Config {
        max_payload: 8 * 1024,
        window: 64 * 1024,
        bulk_window: 256 * 1024,
        lane_queue: 32 * 1024,
        ack_every: 16 * 1024,
        lane_timeout: Duration::from_secs(3600),
        ..Config::default()
    }
}

/// Sends `len` bytes each way on one bulk stream while lanes die and appear;
/// returns what each side received.
fn transfer_with_chaos(seed: u64, lanes: usize, len: usize, kills: usize) {
    let mut rng = rng(seed, 0);
    let mut p = Pair::new(small_config(), lanes);
    let stream = p.peers[A].open_stream(true).unwrap();
    p.drain(A);
    let data = pattern(len, seed as u8);
    let back = pattern(len / 2, seed as u8 ^ 0x55);
    let (mut wa, mut wb) = (0, 0);
    let (mut got_b, mut got_a) = (Vec::new(), Vec::new());
    let (mut fin_b, mut fin_a) = (false, false);
    let mut kills_left = kills;
    let mut b_opened = false;
    for _ in 0..200_000 {
        if fin_a && fin_b {
            break;
        }
        write_some(&mut p, A, stream, &data, &mut wa, &mut rng);
        if !b_opened
            && p.events[B]
                .iter()
                .any(|e| matches!(e, Event::StreamOpened { stream: s, .. } if *s == stream))
        {
            b_opened = true;
        }
        if b_opened {
            write_some(&mut p, B, stream, &back, &mut wb, &mut rng);
            if rng.random_bool(0.7) {
                fin_b |= p.read_all(B, stream, &mut got_b);
            }
        }
        if rng.random_bool(0.7) {
            fin_a |= p.read_all(A, stream, &mut got_a);
        }
        p.step(&mut rng);
        if kills_left > 0 && rng.random_bool(0.002) {
            kills_left -= 1;
            let lanes: Vec<LaneId> = p.lanes.keys().copied().collect();
            if lanes.len() == 1 || rng.random_bool(0.5) {
                p.add_lane();
            }
            p.kill_lane(lanes[rng.random_range(0..lanes.len())]);
        }
        assert_eq!(p.closed(A), None, "seed {seed}");
        assert_eq!(p.closed(B), None, "seed {seed}");
    }
    assert_same(&got_b, &data, &format!("seed {seed}: bytes there"));
    assert_same(&got_a, &back, &format!("seed {seed}: bytes back"));
    assert!(fin_a && fin_b, "seed {seed}: transfer did not finish");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any interleaving of lanes, any delay, and the duplicates that resends
    /// make: each side reads exactly the bytes the other wrote, in order.
    #[test]
    fn any_lane_interleaving_gives_back_the_bytes_in_order(seed: u64, lanes in 1usize..5, len in 1usize..300_000) {
        transfer_with_chaos(seed, lanes, len, 0);
    }

    /// Killing lanes in the middle of a stream loses nothing.
    #[test]
    fn killing_lanes_mid_stream_loses_nothing(seed: u64, lanes in 1usize..5, len in 50_000usize..300_000) {
        transfer_with_chaos(seed, lanes, len, 4);
    }
}

#[test]
fn lane_death_resends_its_unacknowledged_frames_elsewhere() {
    let mut p = Pair::new(small_config(), 2);
    let s = p.peers[A].open_stream(false).unwrap();
    p.drain(A);
    let data = pattern(60_000, 1);
    p.handle(
        A,
        InEvent::Write {
            stream: s,
            data: Bytes::from(data.clone()),
        },
    );
    p.handle(A, InEvent::Finish(s));
    // Lane 1 carried frames B never reads: they die with it.
    p.kill_lane(1);
    let mut got = Vec::new();
    let mut rng = rng(5, 0);
    for _ in 0..10_000 {
        if p.read_all(B, s, &mut got) {
            break;
        }
        p.step(&mut rng);
    }
    assert_same(&got, &data, "after lane death");
    assert!(p.peers[A].stats().resent_frames > 0);
    assert_eq!(p.peers[A].stats().lanes_closed, 1);
}

#[test]
fn a_reader_that_stops_keeps_both_buffers_within_the_window() {
    let config = small_config();
    let window = config.window;
    let mut p = Pair::new(config, 3);
    let s = p.peers[A].open_stream(false).unwrap();
    p.drain(A);
    let data = pattern(1_000_000, 9);
    let mut written = 0;
    let mut rng = rng(3, 0);
    for _ in 0..5_000 {
        // Only ever write what the send buffer allows, like the driver does.
        let buffered = p.peers[A].stream_stats(s).unwrap().send_buffered;
        let n = (window - buffered).min((data.len() - written) as u64) as usize;
        if n > 0 {
            p.handle(
                A,
                InEvent::Write {
                    stream: s,
                    data: Bytes::copy_from_slice(&data[written..written + n]),
                },
            );
            written += n;
        }
        p.step(&mut rng);
        let a = p.peers[A].stream_stats(s).unwrap();
        assert!(
            a.send_buffered <= window,
            "sender holds {} > {window}",
            a.send_buffered
        );
        if let Some(b) = p.peers[B].stream_stats(s) {
            assert!(
                b.recv_buffered <= window,
                "receiver holds {} > {window}",
                b.recv_buffered
            );
        }
    }
    assert!(written < data.len(), "the sender never stopped");
    // The reader resumes: everything arrives.
    let mut got = Vec::new();
    for _ in 0..100_000 {
        if written < data.len() {
            let buffered = p.peers[A].stream_stats(s).map_or(0, |x| x.send_buffered);
            let n = (window - buffered).min((data.len() - written) as u64) as usize;
            if n > 0 {
                p.handle(
                    A,
                    InEvent::Write {
                        stream: s,
                        data: Bytes::copy_from_slice(&data[written..written + n]),
                    },
                );
                written += n;
                if written == data.len() {
                    p.handle(A, InEvent::Finish(s));
                }
            }
        }
        if p.read_all(B, s, &mut got) {
            break;
        }
        p.step(&mut rng);
    }
    assert_same(&got, &data, "after the reader resumed");
}

#[test]
fn many_concurrent_streams_all_make_progress() {
    let mut p = Pair::new(small_config(), 2);
    let mut rng = rng(8, 0);
    let streams: Vec<StreamId> = (0..40)
        .map(|_| p.peers[A].open_stream(false).unwrap())
        .collect();
    p.drain(A);
    let data: Vec<Vec<u8>> = (0..40).map(|i| pattern(200_000, i as u8)).collect();
    let mut written = vec![0usize; 40];
    let mut got = vec![Vec::new(); 40];
    let mut done = [false; 40];
    for round in 0..20_000 {
        for (i, s) in streams.iter().enumerate() {
            write_some(&mut p, A, *s, &data[i], &mut written[i], &mut rng);
            done[i] |= p.read_all(B, *s, &mut got[i]);
        }
        p.step(&mut rng);
        if round == 300 {
            // Halfway through, every stream has moved: none is starved.
            assert!(
                got.iter().all(|g| !g.is_empty()),
                "a stream made no progress"
            );
        }
        if done.iter().all(|d| *d) {
            break;
        }
    }
    assert!(done.iter().all(|d| *d));
    for (g, d) in got.iter().zip(&data) {
        assert_same(g, d, "stream");
    }
}

#[test]
fn a_stalled_lane_is_hedged_around() {
    let mut p = Pair::new(small_config(), 2);
    let s = p.peers[A].open_stream(true).unwrap();
    p.drain(A);
    // Lane 1 stops draining after taking some frames: its socket is stuck.
    p.stalled.push(1);
    let data = pattern(2_000_000, 4);
    let mut written = 0;
    let mut got = Vec::new();
    let mut rng = rng(6, 0);
    for _ in 0..200_000 {
        write_some(&mut p, A, s, &data, &mut written, &mut rng);
        if p.read_all(B, s, &mut got) {
            break;
        }
        p.step(&mut rng);
        p.advance(Duration::from_millis(1));
    }
    if got.len() != data.len() {
        eprintln!(
            "A {:?} {:?} {:?} {:?}",
            p.peers[A].stats(),
            p.peers[A].stream_stats(s),
            p.peers[A].blocked,
            p.peers[A].poll_timeout()
        );
        eprintln!(
            "B {:?} {:?}",
            p.peers[B].stats(),
            p.peers[B].stream_stats(s)
        );
        eprintln!("unacked {:?}", p.peers[A].lanes[&1].unacked);
        eprintln!(
            "una {:?}",
            p.peers[A].streams[&s].send.as_ref().unwrap().buf.una()
        );
        eprintln!(
            "acked {:?}",
            p.peers[A].streams[&s].send.as_ref().unwrap().buf
        );
    }
    assert_same(&got, &data, "around the stalled lane");
    assert!(p.peers[A].stats().hedged_frames > 0);
    assert_eq!(
        p.peers[A].lane_count(),
        2,
        "the stalled lane was not declared dead"
    );
}

#[test]
fn a_silent_lane_times_out_and_its_frames_go_elsewhere() {
    let config = Config {
        lane_timeout: Duration::from_secs(5),
        ..small_config()
    };
    let mut p = Pair::new(config, 2);
    let s = p.peers[A].open_stream(false).unwrap();
    p.drain(A);
    p.handle(
        A,
        InEvent::Write {
            stream: s,
            data: Bytes::from(pattern(50_000, 2)),
        },
    );
    p.stalled.push(1);
    let mut got = Vec::new();
    let mut rng = rng(2, 0);
    for _ in 0..100_000 {
        p.read_all(B, s, &mut got);
        // Hedging delivers the bytes early; the lane still has to time out.
        if got.len() == 50_000 && p.peers[A].stats().lanes_closed >= 1 {
            break;
        }
        p.step(&mut rng);
        p.advance(Duration::from_millis(10));
    }
    assert_same(&got, &pattern(50_000, 2), "after the timeout");
    assert!(p.peers[A].stats().lanes_closed >= 1);
}

#[test]
fn last_lane_dying_closes_the_session() {
    let mut p = Pair::new(small_config(), 1);
    p.kill_lane(1);
    assert_eq!(p.closed(A), Some(&Error::AllLanesClosed));
    assert!(p.events[A].contains(&Event::Closed(Error::AllLanesClosed)));
    assert!(matches!(
        p.peers[A].open_stream(false),
        Err(OpenError::Closed(_))
    ));
}

#[test]
fn streams_are_numbered_by_side_and_control_exists_on_both() {
    let mut p = Pair::new(small_config(), 1);
    assert_eq!(p.peers[A].open_stream(false), Ok(2));
    assert_eq!(p.peers[B].open_stream(false), Ok(1));
    assert_eq!(p.peers[A].open_stream(false), Ok(4));
    p.handle(
        A,
        InEvent::Write {
            stream: CONTROL,
            data: Bytes::from_static(b"hi"),
        },
    );
    p.handle(
        A,
        InEvent::Write {
            stream: 4,
            data: Bytes::from_static(b"x"),
        },
    );
    while p.deliver(1, B) {}
    // Stream 4's frame opened 2 as well, in order.
    let opened: Vec<StreamId> = p.events[B]
        .iter()
        .filter_map(|e| match e {
            Event::StreamOpened { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(opened, vec![2, 4]);
    let mut got = Vec::new();
    p.read_all(B, CONTROL, &mut got);
    assert_eq!(got, b"hi");
}

#[test]
fn half_close_delivers_fin_and_the_other_direction_still_flows() {
    let mut p = Pair::new(small_config(), 1);
    let s = p.peers[A].open_stream(false).unwrap();
    p.handle(
        A,
        InEvent::Write {
            stream: s,
            data: Bytes::from_static(b"request"),
        },
    );
    p.handle(A, InEvent::Finish(s));
    while p.deliver(1, B) {}
    let mut got = Vec::new();
    assert!(p.read_all(B, s, &mut got));
    assert_eq!(got, b"request");
    p.handle(
        B,
        InEvent::Write {
            stream: s,
            data: Bytes::from_static(b"reply"),
        },
    );
    p.handle(B, InEvent::Finish(s));
    while p.deliver(1, A) {}
    let mut back = Vec::new();
    assert!(p.read_all(A, s, &mut back));
    assert_eq!(back, b"reply");
}

#[test]
fn reset_reaches_the_peer() {
    let mut p = Pair::new(small_config(), 1);
    let s = p.peers[A].open_stream(false).unwrap();
    p.handle(
        A,
        InEvent::Write {
            stream: s,
            data: Bytes::from_static(b"abc"),
        },
    );
    p.handle(A, InEvent::Reset { stream: s, code: 7 });
    while p.deliver(1, B) {}
    assert!(p.events[B].contains(&Event::StreamReset { stream: s, code: 7 }));
    assert_eq!(p.peers[B].stream_stats(s), None);
    assert_eq!(p.closed(B), None);
}

/// Feeds `message` to B on lane 1 (after hellos) and returns B's error.
fn bad_input(message: Message) -> Option<Error> {
    let mut p = Pair::new(small_config(), 1);
    while p.deliver(1, B) {}
    p.handle(B, InEvent::Message { lane: 1, message });
    p.closed(B).cloned()
}

#[test]
fn bad_input_resets_the_session_with_a_clear_error() {
    let data = |stream, offset, len: usize| Message::Data {
        stream,
        offset,
        fin: false,
        bulk: false,
        payload: Bytes::from(vec![0; len]),
    };
    // B is High: it opens odd ids, so stream 3 was never opened by it.
    assert_eq!(bad_input(data(3, 0, 1)), Some(Error::UnknownStream(3)));
    assert!(matches!(
        bad_input(data(2, credit::INITIAL_WINDOW, 1)),
        Some(Error::FlowControl { stream: 2, .. })
    ));
    assert!(matches!(
        bad_input(data(2, u64::MAX - 1, 8)),
        Some(Error::FlowControl { .. })
    ));
    assert_eq!(
        bad_input(Message::Window {
            stream: 0,
            max_offset: u64::MAX
        }),
        Some(Error::CreditOverflow { stream: 0 })
    );
    assert_eq!(
        bad_input(data(1_000_000, 0, 1)),
        Some(Error::TooManyStreams(256))
    );
    assert!(matches!(
        bad_input(Message::Ack { frames: 1000 }),
        Some(Error::AckOverflow { .. })
    ));
    assert_eq!(
        bad_input(Message::Close { code: 3 }),
        Some(Error::ClosedByPeer(3))
    );
    let fin = |offset, len: usize, fin| Message::Data {
        stream: 2,
        offset,
        fin,
        bulk: false,
        payload: Bytes::from(vec![0; len]),
    };
    let mut p = Pair::new(small_config(), 1);
    while p.deliver(1, B) {}
    p.handle(
        B,
        InEvent::Message {
            lane: 1,
            message: fin(10, 5, false),
        },
    );
    p.handle(
        B,
        InEvent::Message {
            lane: 1,
            message: fin(0, 5, true),
        },
    );
    assert_eq!(p.closed(B), Some(&Error::FinalSize { stream: 2 }));
    // The error goes to the peer as a CLOSE.
    while p.deliver(1, A) {}
    assert_eq!(p.closed(A), Some(&Error::ClosedByPeer(1)));
}

#[test]
fn lanes_must_say_hello_for_the_same_session() {
    let mut p = Pair::new(small_config(), 1);
    p.lanes.get_mut(&1).unwrap()[B].clear();
    p.handle(
        B,
        InEvent::Message {
            lane: 1,
            message: Message::Ping { token: 1 },
        },
    );
    assert_eq!(p.closed(B), Some(&Error::NoHello { lane: 1 }));

    let mut p = Pair::new(small_config(), 2);
    while p.deliver(1, B) {}
    p.lanes.get_mut(&2).unwrap()[B].clear();
    p.handle(
        B,
        InEvent::Message {
            lane: 2,
            message: Message::Hello {
                version: VERSION,
                session: 99,
            },
        },
    );
    assert_eq!(p.closed(B), Some(&Error::ForeignLane { lane: 2 }));

    let mut p = Pair::new(small_config(), 1);
    p.lanes.get_mut(&1).unwrap()[B].clear();
    p.handle(
        B,
        InEvent::Message {
            lane: 1,
            message: Message::Hello {
                version: 9,
                session: 11,
            },
        },
    );
    assert_eq!(
        p.closed(B),
        Some(&Error::Version {
            lane: 1,
            version: 9
        })
    );
}

#[test]
fn a_bulk_stream_asks_for_lanes_up_to_the_maximum() {
    let mut p = Pair::new(small_config(), 1);
    p.peers[A].open_stream(true).unwrap();
    p.drain(A);
    assert_eq!(p.dials[A], 3);
    p.peers[A].open_stream(true).unwrap();
    p.drain(A);
    assert_eq!(p.dials[A], 3, "dials in flight count towards the maximum");
    assert_eq!(p.dials[B], 0);
}

#[test]
fn the_session_cap_bounds_what_many_bulk_streams_are_granted() {
    let config = Config {
        session_window: 1 << 20,
        ..small_config()
    };
    let mut p = Pair::new(config, 1);
    for _ in 0..20 {
        p.peers[A].open_stream(true).unwrap();
    }
    p.drain(A);
    let total: u64 = (1..=20u32)
        .map(|i| {
            p.peers[A]
                .streams
                .get(&(i * 2))
                .unwrap()
                .recv
                .as_ref()
                .unwrap()
                .credit
                .outstanding()
        })
        .sum();
    assert!(
        total <= (1 << 20) + 20 * credit::INITIAL_WINDOW,
        "granted {total}"
    );
}
