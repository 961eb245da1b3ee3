//! [`State`]'s handlers: lanes, frames from the peer, the application's calls,
//! and the scheduler loop that turns all of it into transmissions.

use std::time::Duration;

use bytes::Bytes;

use crate::proto::wire::DecodeError;

use super::credit::{Overflow, RecvCredit, SendCredit, SessionCredit};
use super::reassembly::Reassembly;
use super::scheduler::{Lane, Sent, hedge_delay};
use super::send_buffer::SendBuffer;
use super::{
    CONTROL, Chunk, Config, Ctl, Error, Event, Fin, InEvent, LaneId, Message, OpenError, OutEvent,
    RecvSide, SendSide, Side, State, Stats, Stream, StreamId, StreamStats, VERSION,
};

impl State {
    /// A session with no lanes yet. `nonce` identifies this session on the wire
    /// (draw it from a seeded RNG in simulations, at random in production).
    pub fn new(config: Config, side: Side, nonce: u64) -> Self {
        let (next_local, next_peer) = match side {
            Side::Low => (2, 1),
            Side::High => (1, 2),
        };
        let mut state = Self {
            session_credit: SessionCredit {
                cap: config.session_window,
                outstanding: 0,
            },
            config,
            side,
            nonce,
            peer_nonce: None,
            now: Duration::ZERO,
            lanes: Default::default(),
            had_lane: false,
            dialing: 0,
            streams: Default::default(),
            next_local,
            next_peer,
            local_open: 0,
            peer_open: 0,
            control: Default::default(),
            resend: Default::default(),
            sendable: Default::default(),
            blocked: Default::default(),
            starved: Default::default(),
            rr: 0,
            out: Default::default(),
            closed: None,
            stats: Stats::default(),
        };
        state.insert_stream(CONTROL, false);
        state
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&Error> {
        self.closed.as_ref()
    }

    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// Feeds one input. Outputs collect for [`State::poll`].
    pub fn handle(&mut self, now: Duration, event: InEvent) {
        self.now = self.now.max(now);
        if self.closed.is_some() {
            if let InEvent::LaneAdded { lane, .. } = event {
                self.out.push_back(OutEvent::CloseLane(lane));
            }
            return;
        }
        let res = match event {
            InEvent::LaneAdded { lane, dialed } => {
                self.on_lane_added(lane, dialed);
                Ok(())
            }
            InEvent::LaneClosed(lane) => {
                self.on_lane_closed(lane);
                Ok(())
            }
            InEvent::DialFailed => {
                self.dialing = self.dialing.saturating_sub(1);
                Ok(())
            }
            InEvent::Message { lane, message } => self.on_message(lane, message),
            InEvent::Malformed { lane, error } => Err(Error::Malformed { lane, error }),
            InEvent::Written { lane, bytes } => {
                if let Some(l) = self.lanes.get_mut(&lane) {
                    l.queued = l.queued.saturating_sub(bytes);
                }
                Ok(())
            }
            InEvent::Write { stream, data } => {
                self.on_write(stream, data);
                Ok(())
            }
            InEvent::Finish(stream) => {
                if let Some(send) = self.streams.get_mut(&stream).and_then(|s| s.send.as_mut())
                    && send.fin == Fin::Open
                {
                    send.fin = Fin::Pending;
                    self.refresh(stream);
                }
                Ok(())
            }
            InEvent::Reset { stream, code } => {
                if self.streams.contains_key(&stream) {
                    self.remove_stream(stream);
                    self.control.push_back(Ctl::Reset { stream, code });
                    self.emit(Event::StreamReset { stream, code });
                }
                Ok(())
            }
            InEvent::Consumed { stream, bytes } => {
                self.on_consumed(stream, bytes);
                Ok(())
            }
            InEvent::Discard(stream) => {
                if let Some(r) = self.streams.get_mut(&stream).and_then(|s| s.recv.as_mut()) {
                    r.discard = true;
                    self.drain_discarded(stream);
                }
                Ok(())
            }
            InEvent::Flush => {
                self.flush_acks();
                Ok(())
            }
            InEvent::Timeout => {
                self.on_timeout();
                Ok(())
            }
            InEvent::Close => Err(Error::Closed),
        };
        match res {
            Ok(()) => self.schedule(),
            Err(e) => self.fail(e),
        }
    }

    /// Next output, if any. Drain after every [`State::handle`].
    pub fn poll(&mut self) -> Option<OutEvent> {
        self.out.pop_front()
    }

    /// When to feed [`InEvent::Timeout`] next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.closed.is_some() {
            return None;
        }
        let mut at = self
            .lanes
            .values()
            .map(|l| l.next_ping.min(l.last_input + self.config.lane_timeout))
            .min();
        if self.lanes.len() > 1 {
            let delay = hedge_delay(&self.lanes, self.config.hedge_floor);
            let hedge = self
                .lanes
                .values()
                .filter_map(|l| self.hedge_candidate(l))
                .map(|c| c.2 + delay)
                .min();
            at = at.into_iter().chain(hedge).min();
        }
        at
    }

    /// Opens a stream. Bulk streams get the larger window and ask for lanes.
    pub fn open_stream(&mut self, bulk: bool) -> Result<StreamId, OpenError> {
        if let Some(e) = &self.closed {
            return Err(OpenError::Closed(e.clone()));
        }
        if self.local_open >= self.config.max_streams || self.next_local > u64::from(u32::MAX) {
            return Err(OpenError::TooManyStreams);
        }
        let id = self.next_local as StreamId;
        self.next_local += 2;
        self.local_open += 1;
        self.insert_stream(id, bulk);
        if bulk {
            self.want_lanes();
        }
        self.schedule();
        Ok(id)
    }

    /// The next ordered chunk of a stream, then [`Chunk::Fin`] once if the peer
    /// finished it. Report what the application consumed with
    /// [`InEvent::Consumed`], or the peer runs out of credit.
    pub fn read(&mut self, stream: StreamId) -> Option<Chunk> {
        let recv = self.streams.get_mut(&stream)?.recv.as_mut()?;
        if let Some(b) = recv.asm.pop() {
            return Some(Chunk::Data(b));
        }
        if recv.final_size == Some(recv.asm.read_offset()) {
            let s = self.streams.get_mut(&stream)?;
            if let Some(r) = s.recv.take() {
                self.session_credit.outstanding -= self.cap_share(stream, &r.credit);
            }
            self.maybe_remove(stream);
            return Some(Chunk::Fin);
        }
        None
    }

    /// Buffers of a stream, or `None` once it is closed.
    pub fn stream_stats(&self, stream: StreamId) -> Option<StreamStats> {
        let s = self.streams.get(&stream)?;
        Some(StreamStats {
            send_buffered: s.send.as_ref().map_or(0, |x| x.buf.buffered()),
            recv_buffered: s.recv.as_ref().map_or(0, |x| x.asm.buffered()),
            send_credit: s.send.as_ref().map_or(0, |x| x.credit.max_offset),
        })
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.open_streams = self.streams.len();
        stats.lanes = self
            .lanes
            .values()
            .map(|l| {
                let mut s = l.stats.clone();
                s.queued = l.queued;
                s.unacked_frames = l.unacked.len() as u64;
                s.srtt = l.srtt;
                s
            })
            .collect();
        stats
    }

    // ----- streams ------------------------------------------------------------

    fn is_local(&self, id: StreamId) -> bool {
        id != CONTROL && id.is_multiple_of(2) == (self.side == Side::Low)
    }

    fn insert_stream(&mut self, id: StreamId, bulk: bool) {
        let recv = RecvSide {
            asm: Reassembly::default(),
            credit: RecvCredit::new(self.config.window_for(bulk)),
            final_size: None,
            max_received: 0,
            window_queued: false,
            discard: false,
        };
        self.session_credit.outstanding += self.cap_share(id, &recv.credit);
        self.streams.insert(
            id,
            Box::new(Stream {
                bulk,
                send: Some(SendSide {
                    buf: SendBuffer::default(),
                    credit: SendCredit::default(),
                    fin: Fin::Open,
                }),
                recv: Some(recv),
            }),
        );
        self.maybe_grant(id);
    }

    /// What a stream's receive credit counts against the session cap (the control
    /// stream is outside it, so it always has room).
    fn cap_share(&self, id: StreamId, credit: &RecvCredit) -> u64 {
        if id == CONTROL {
            0
        } else {
            credit.outstanding()
        }
    }

    fn remove_stream(&mut self, id: StreamId) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        if let Some(r) = &s.recv {
            self.session_credit.outstanding -= self.cap_share(id, &r.credit);
        }
        self.sendable.remove(&id);
        self.blocked.remove(&id);
        self.starved.remove(&id);
        if id != CONTROL {
            if self.is_local(id) {
                self.local_open -= 1;
            } else {
                self.peer_open -= 1;
            }
        }
        self.retry_starved();
    }

    fn maybe_remove(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get(&id)
            && s.recv.is_none()
            && s.send.is_none()
        {
            self.remove_stream(id);
            self.emit(Event::StreamClosed(id));
        }
    }

    /// Consumes everything readable of a stream nobody reads any more.
    fn drain_discarded(&mut self, id: StreamId) {
        let mut n = 0;
        while let Some(chunk) = self.read(id) {
            match chunk {
                Chunk::Data(b) => n += b.len() as u64,
                Chunk::Fin => return,
            }
        }
        if n > 0 {
            self.on_consumed(id, n);
        }
    }

    /// The stream a peer's frame refers to: `Ok(None)` if it is closed (a late
    /// or repeated frame), an error if it never existed and cannot be new.
    fn peer_stream(&mut self, id: StreamId, bulk: bool) -> Result<Option<StreamId>, Error> {
        if self.streams.contains_key(&id) {
            return Ok(Some(id));
        }
        let id64 = u64::from(id);
        if id == CONTROL
            || (self.is_local(id) && id64 < self.next_local)
            || (!self.is_local(id) && id64 < self.next_peer)
        {
            return Ok(None);
        }
        if self.is_local(id) {
            return Err(Error::UnknownStream(id));
        }
        let new = (id64 - self.next_peer) / 2 + 1;
        if self.peer_open as u64 + new > self.config.max_streams as u64 {
            return Err(Error::TooManyStreams(self.config.max_streams));
        }
        while self.next_peer <= id64 {
            let opened = self.next_peer as StreamId;
            self.next_peer += 2;
            self.peer_open += 1;
            let b = bulk && opened == id;
            self.insert_stream(opened, b);
            self.emit(Event::StreamOpened {
                stream: opened,
                bulk: b,
            });
        }
        Ok(Some(id))
    }

    fn on_write(&mut self, id: StreamId, data: Bytes) {
        if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut())
            && send.fin == Fin::Open
        {
            send.buf.write(data);
            self.refresh(id);
        }
    }

    fn on_consumed(&mut self, id: StreamId, bytes: u64) {
        let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return;
        };
        let before = recv.credit.outstanding();
        recv.credit.consumed = (recv.credit.consumed + bytes).min(recv.asm.read_offset());
        let freed = before - recv.credit.outstanding();
        if id != CONTROL {
            self.session_credit.outstanding -= freed;
        }
        self.maybe_grant(id);
        if freed > 0 {
            self.retry_starved();
        }
    }

    fn maybe_grant(&mut self, id: StreamId) {
        let room = if id == CONTROL {
            u64::MAX
        } else {
            self.session_credit.room()
        };
        let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return;
        };
        match recv.credit.next_grant(room) {
            Some(g) => {
                if id != CONTROL {
                    self.session_credit.outstanding += g - recv.credit.granted;
                }
                recv.credit.granted = g;
                self.starved.remove(&id);
                if !recv.window_queued {
                    recv.window_queued = true;
                    self.control.push_back(Ctl::Window(id));
                }
            }
            None if recv.credit.consumed + recv.credit.window > recv.credit.granted
                && recv.credit.outstanding() <= recv.credit.window / 2 =>
            {
                self.starved.insert(id);
            }
            None => {}
        }
    }

    fn retry_starved(&mut self) {
        if self.starved.is_empty() || self.session_credit.room() == 0 {
            return;
        }
        let ids: Vec<StreamId> = self.starved.iter().copied().collect();
        for id in ids {
            self.maybe_grant(id);
        }
    }

    /// Recomputes whether a stream has a frame to send now, or waits on the
    /// network (then it is in `blocked`, and hedging may help it).
    pub(super) fn refresh(&mut self, id: StreamId) {
        let (sendable, blocked) = match self.streams.get(&id).and_then(|s| s.send.as_ref()) {
            Some(s) => {
                let room = s.buf.sent() < s.credit.max_offset;
                let unsent = s.buf.unsent() > 0;
                let fin = s.fin == Fin::Pending && !unsent;
                // Waiting on the network: out of credit, or everything sent and
                // the tail not yet acknowledged (the reader cannot finish).
                let waiting = (unsent && !room) || (!unsent && s.buf.buffered() > 0);
                ((unsent && room) || fin, waiting)
            }
            None => (false, false),
        };
        if sendable {
            self.sendable.insert(id);
        } else {
            self.sendable.remove(&id);
        }
        if blocked {
            self.blocked.insert(id);
        } else {
            self.blocked.remove(&id);
        }
    }

    // ----- lanes --------------------------------------------------------------

    fn on_lane_added(&mut self, lane: LaneId, dialed: bool) {
        if dialed {
            self.dialing = self.dialing.saturating_sub(1);
        }
        self.had_lane = true;
        let mut l = Lane::new(lane, self.now);
        l.next_ping = self.now + self.config.ping_interval;
        self.lanes.insert(lane, Box::new(l));
        self.send_local(
            lane,
            Message::Hello {
                version: VERSION,
                session: self.nonce,
            },
        );
        self.send_local(
            lane,
            Message::Ping {
                token: micros(self.now),
            },
        );
    }

    fn on_lane_closed(&mut self, lane: LaneId) {
        let Some(l) = self.lanes.remove(&lane) else {
            return;
        };
        self.stats.lanes_closed += 1;
        for (sent, _, _) in l.unacked {
            match sent {
                Sent::Data { .. } => self.resend.push_back(sent),
                Sent::Window { stream } => self.queue_window(stream),
                Sent::Reset { stream, code } => self.control.push_back(Ctl::Reset { stream, code }),
                Sent::Close => {}
            }
        }
        if self.lanes.is_empty() && self.had_lane {
            self.fail(Error::AllLanesClosed);
        } else {
            self.want_lanes();
        }
    }

    fn queue_window(&mut self, id: StreamId) {
        if let Some(r) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut())
            && !r.window_queued
        {
            r.window_queued = true;
            self.control.push_back(Ctl::Window(id));
        }
    }

    /// Asks for lanes up to the maximum while a local bulk stream is open.
    fn want_lanes(&mut self) {
        let bulk = self
            .streams
            .iter()
            .any(|(id, s)| s.bulk && self.is_local(*id));
        if !bulk {
            return;
        }
        while self.lanes.len() + self.dialing < self.config.max_lanes {
            self.dialing += 1;
            self.out.push_back(OutEvent::DialLane);
        }
    }

    fn on_timeout(&mut self) {
        let now = self.now;
        let dead: Vec<LaneId> = self
            .lanes
            .iter()
            .filter(|(_, l)| now >= l.last_input + self.config.lane_timeout)
            .map(|(id, _)| *id)
            .collect();
        for lane in dead {
            self.out.push_back(OutEvent::CloseLane(lane));
            self.on_lane_closed(lane);
            if self.closed.is_some() {
                return;
            }
        }
        let due: Vec<LaneId> = self
            .lanes
            .iter()
            .filter(|(_, l)| now >= l.next_ping)
            .map(|(id, _)| *id)
            .collect();
        for lane in due {
            if let Some(l) = self.lanes.get_mut(&lane) {
                l.next_ping = now + self.config.ping_interval;
            }
            self.send_local(lane, Message::Ping { token: micros(now) });
        }
    }

    fn flush_acks(&mut self) {
        let lanes: Vec<LaneId> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.received > l.acked_received)
            .map(|(id, _)| *id)
            .collect();
        for lane in lanes {
            self.send_ack(lane);
        }
    }

    fn send_ack(&mut self, lane: LaneId) {
        if let Some(l) = self.lanes.get_mut(&lane) {
            l.acked_received = l.received;
            l.bytes_since_ack = 0;
            let frames = l.received;
            self.send_local(lane, Message::Ack { frames });
        }
    }

    // ----- frames from the peer ----------------------------------------------

    fn on_message(&mut self, lane: LaneId, message: Message) -> Result<(), Error> {
        let now = self.now;
        let len = message.encoded_len() as u64;
        let Some(l) = self.lanes.get_mut(&lane) else {
            return Ok(()); // a frame read before the lane was declared dead
        };
        l.last_input = now;
        l.stats.bytes_received += len;
        l.stats.frames_received += 1;
        if !l.hello {
            let Message::Hello { version, session } = message else {
                return Err(Error::NoHello { lane });
            };
            if version != VERSION {
                return Err(Error::Version { lane, version });
            }
            if *self.peer_nonce.get_or_insert(session) != session {
                return Err(Error::ForeignLane { lane });
            }
            l.hello = true;
            return Ok(());
        }
        if !message.is_lane_local() {
            l.received += 1;
            l.bytes_since_ack += len;
            if l.bytes_since_ack >= self.config.ack_every {
                self.send_ack(lane);
            }
        }
        match message {
            Message::Hello { .. } => Err(Error::Malformed {
                lane,
                error: DecodeError::Invalid("second hello on a lane"),
            }),
            Message::Data {
                stream,
                offset,
                fin,
                bulk,
                payload,
            } => self.on_data(stream, offset, fin, bulk, payload),
            Message::Window { stream, max_offset } => self.on_window(stream, max_offset),
            Message::Reset { stream, code } => {
                if let Some(id) = self.peer_stream(stream, false)? {
                    self.remove_stream(id);
                    self.emit(Event::StreamReset { stream: id, code });
                }
                Ok(())
            }
            Message::Ack { frames } => self.on_ack(lane, frames),
            Message::Ping { token } => {
                self.send_local(lane, Message::Pong { token });
                Ok(())
            }
            Message::Pong { token } => {
                let sent = Duration::from_micros(token);
                if let Some(l) = self.lanes.get_mut(&lane)
                    && sent <= now
                {
                    l.on_rtt_sample(now - sent);
                }
                Ok(())
            }
            Message::Close { code } => Err(Error::ClosedByPeer(code)),
        }
    }

    fn on_data(
        &mut self,
        id: StreamId,
        offset: u64,
        fin: bool,
        bulk: bool,
        payload: Bytes,
    ) -> Result<(), Error> {
        let Some(id) = self.peer_stream(id, bulk)? else {
            return Ok(());
        };
        let max_fragments = self.config.max_fragments;
        let bulk_window = self.config.bulk_window;
        let local = self.is_local(id);
        let s = self.streams.get_mut(&id).expect("peer_stream returned it");
        if bulk && !s.bulk && !local {
            s.bulk = true;
            if let Some(r) = s.recv.as_mut() {
                r.credit.window = r.credit.window.max(bulk_window);
            }
        }
        let Some(r) = s.recv.as_mut() else {
            return Ok(()); // the FIN was read already: a late copy
        };
        let end = offset.saturating_add(payload.len() as u64);
        if end > r.credit.granted {
            return Err(Error::FlowControl {
                stream: id,
                end,
                limit: r.credit.granted,
            });
        }
        match r.final_size {
            Some(size) if end > size || (fin && end != size) => {
                return Err(Error::FinalSize { stream: id });
            }
            None if fin && end < r.max_received => return Err(Error::FinalSize { stream: id }),
            None if fin => r.final_size = Some(end),
            _ => {}
        }
        r.max_received = r.max_received.max(end);
        let moved = r.asm.insert(offset, payload);
        if r.asm.fragments() > max_fragments {
            return Err(Error::TooFragmented {
                stream: id,
                max: max_fragments,
            });
        }
        if moved || (fin && r.final_size == Some(r.asm.contiguous_end())) {
            if r.discard {
                self.drain_discarded(id);
            } else {
                self.emit(Event::Readable(id));
            }
        }
        if bulk {
            self.maybe_grant(id);
        }
        Ok(())
    }

    fn on_window(&mut self, id: StreamId, max_offset: u64) -> Result<(), Error> {
        let Some(id) = self.peer_stream(id, false)? else {
            return Ok(());
        };
        let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
            return Ok(());
        };
        match send.credit.on_window(max_offset, send.buf.sent()) {
            Err(Overflow) => Err(Error::CreditOverflow { stream: id }),
            Ok(true) => {
                self.refresh(id);
                Ok(())
            }
            Ok(false) => Ok(()),
        }
    }

    fn on_ack(&mut self, lane: LaneId, frames: u64) -> Result<(), Error> {
        let now = self.now;
        let Some(l) = self.lanes.get_mut(&lane) else {
            return Ok(());
        };
        let sent = l.sent_counted;
        let base = sent - l.unacked.len() as u64;
        if frames > sent {
            return Err(Error::AckOverflow {
                lane,
                acked: frames,
                sent,
            });
        }
        let n = frames.saturating_sub(base) as usize;
        let mut done: Vec<Sent> = Vec::with_capacity(n);
        let mut newest = None;
        for (sent, at, _) in l.unacked.drain(..n) {
            newest = Some(at);
            done.push(sent);
        }
        if let Some(at) = newest {
            l.on_rtt_sample(now.saturating_sub(at));
            l.stalled = false;
        }
        let mut released: Option<(StreamId, u64)> = None;
        for sent in done {
            let Sent::Data {
                stream,
                offset,
                len,
                fin,
            } = sent
            else {
                continue;
            };
            let Some(send) = self.streams.get_mut(&stream).and_then(|s| s.send.as_mut()) else {
                continue;
            };
            let bytes = send.buf.on_acked(offset, u64::from(len));
            if fin {
                send.fin = Fin::Acked;
            }
            let finished = send.fin == Fin::Acked && send.buf.buffered() == 0;
            if finished {
                self.streams.get_mut(&stream).expect("found above").send = None;
                self.maybe_remove(stream);
            }
            if bytes > 0 || finished {
                self.refresh(stream);
            }
            match &mut released {
                Some((s, b)) if *s == stream => *b += bytes,
                _ => {
                    if let Some((s, b)) = released.take()
                        && b > 0
                    {
                        self.emit(Event::Released {
                            stream: s,
                            bytes: b,
                        });
                    }
                    released = Some((stream, bytes));
                }
            }
        }
        if let Some((s, b)) = released
            && b > 0
        {
            self.emit(Event::Released {
                stream: s,
                bytes: b,
            });
        }
        Ok(())
    }

    // ----- output -------------------------------------------------------------

    pub(super) fn emit(&mut self, event: Event) {
        self.out.push_back(OutEvent::Emit(event));
    }

    /// Transmits a lane-local frame (not counted, not resent).
    pub(super) fn send_local(&mut self, lane: LaneId, message: Message) {
        self.transmit(lane, message, None);
    }

    pub(super) fn transmit(&mut self, lane: LaneId, message: Message, sent: Option<Sent>) {
        let now = self.now;
        let l = self.lanes.get_mut(&lane).expect("transmit on a known lane");
        let len = message.encoded_len() as u64;
        l.queued += len;
        l.stats.bytes_sent += len;
        l.stats.frames_sent += 1;
        if let Some(sent) = sent {
            l.unacked.push_back((sent, now, false));
            l.sent_counted += 1;
        }
        self.out.push_back(OutEvent::Transmit { lane, message });
    }

    fn fail(&mut self, error: Error) {
        if self.closed.is_some() {
            return;
        }
        let lanes: Vec<LaneId> = self.lanes.keys().copied().collect();
        for lane in lanes {
            self.out.push_back(OutEvent::Transmit {
                lane,
                message: Message::Close { code: error.code() },
            });
            self.out.push_back(OutEvent::CloseLane(lane));
        }
        self.lanes.clear();
        self.streams.clear();
        self.sendable.clear();
        self.blocked.clear();
        self.resend.clear();
        self.control.clear();
        self.closed = Some(error.clone());
        self.emit(Event::Closed(error));
    }
}

fn micros(t: Duration) -> u64 {
    t.as_micros() as u64
}
