//! The target bodies (see the crate documentation).

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::Duration;

use bytes::BytesMut;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use peerconnect::identity::PeerId;
use peerconnect::proto::transfer::{
    self, Entry, Manifest, SafePath, ToReceiver, ToSender, collision_name, receiver, sender,
};
use peerconnect::proto::wire::{self, Datagram, Hello, StreamKind};
use peerconnect::proto::{discovery, gossip, hyparview, kademlia, messaging, mux, plumtree, rooms};

use crate::{
    Input, MAX_OPS, Model, Seen, addr, datagram_round_trip, frame_round_trip, identities, ms, peer,
};

// --- wire ---------------------------------------------------------------------

/// Frames (a stream of them, as a session's control stream reads them) and
/// datagrams: every decoder of `proto::wire` on the same bytes.
pub fn wire(data: &[u8]) {
    let mut buf = data;
    while let Ok(Some((m, used))) = wire::decode_frame::<wire::Message>(buf) {
        let len = wire::frame_len(buf[..wire::HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(
            used,
            wire::HEADER_LEN + len,
            "frame length and bytes used disagree"
        );
        frame_round_trip(&m);
        buf = &buf[used..];
    }
    if let Ok(h) = wire::decode_exact_frame::<Hello>(data) {
        frame_round_trip(&h);
        let _ = h.validate();
    }
    if let Ok(k) = wire::decode_exact_frame::<StreamKind>(data) {
        frame_round_trip(&k);
    }
    if let Ok(d) = wire::decode_datagram::<Datagram>(data) {
        datagram_round_trip(&d);
        match &d {
            Datagram::Announce(a) => {
                let _ = a.verify();
            }
            Datagram::Dht(m) => check_dht_message(m),
        }
    }
    if let Ok(d) = wire::decode_datagram::<Datagram>(data.get(4..).unwrap_or_default()) {
        datagram_round_trip(&d);
    }
}

fn check_dht_message(m: &kademlia::Message) {
    let records = match m {
        kademlia::Message::Value { records, .. } => records.as_slice(),
        kademlia::Message::Store { record, .. } => std::slice::from_ref(record),
        _ => &[],
    };
    for r in records {
        if r.check_shape().is_ok() {
            let _ = r.validate(1_700_000_000_000, Duration::from_secs(86_400));
            let _ = r.peer_record();
            let _ = r.user_value();
        }
    }
}

// --- discovery ----------------------------------------------------------------

/// Announcements one discovery input signs, and own announcements it asks for.
const MAX_SIGNED: usize = 8;

/// The discovery state machine fed datagrams: raw bytes, or announcements
/// built from fuzz bytes and signed by one of a few real keys (so the fuzzer
/// gets past the signature).
///
/// Signing and verifying cost tens of microseconds each, far more than the
/// rest of a step, so an input signs at most [`MAX_SIGNED`] announcements and
/// asks for at most as many of the node's own; further such steps are skipped.
/// A few are all any path of the state needs (new, updated, replaced, evicted
/// past `max_peers`), and the fuzzer gets through many more inputs.
pub fn discovery(data: &[u8]) {
    let config = discovery::Config {
        max_peers: 3,
        ..discovery::Config::default()
    };
    let max_peers = config.max_peers;
    let ids = identities();
    let me = ids[0].clone();
    let mut st = discovery::State::new(
        config,
        me.clone(),
        7,
        "fuzz".into(),
        wire::DeviceKind::Desktop,
        47471,
        ChaCha8Rng::seed_from_u64(0),
    );
    let mut inp = Input::new(data);
    let mut now = Duration::ZERO;
    let mut wall = 1_700_000_000_000u64;
    let (mut signed, mut announced) = (0, 0);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let ev = match inp.u8() % 6 {
            0 => discovery::InEvent::Datagram {
                from: addr(inp.u8()),
                bytes: inp.chunk().to_vec(),
                wall_ms: wall,
            },
            1 => {
                if signed == MAX_SIGNED {
                    continue;
                }
                signed += 1;
                let from = addr(inp.u8());
                let signer = &ids[inp.u8() as usize % ids.len()];
                let own_id = inp.bool();
                let Some(mut a) = inp.take::<discovery::Announce>() else {
                    continue;
                };
                if own_id {
                    a.id = signer.peer_id();
                }
                let signed = discovery::SignedAnnounce::sign(a, signer);
                let Ok(bytes) = wire::encode_datagram(&Datagram::Announce(signed)) else {
                    continue;
                };
                discovery::InEvent::Datagram {
                    from,
                    bytes,
                    wall_ms: wall,
                }
            }
            2 => discovery::InEvent::Timer(discovery::Timer::Expire),
            3 if announced < MAX_SIGNED => {
                announced += 1;
                discovery::InEvent::Timer(discovery::Timer::Announce)
            }
            3 => continue,
            4 => {
                let step = ms(u64::from(inp.u16()) * 16);
                now += step;
                wall += step.as_millis() as u64;
                continue;
            }
            _ if announced < MAX_SIGNED => {
                announced += 1;
                discovery::InEvent::Start
            }
            _ => continue,
        };
        for o in st.handle(now, wall, ev) {
            match o {
                discovery::OutEvent::Broadcast(b) | discovery::OutEvent::Unicast(_, b) => {
                    assert!(b.len() <= wire::MAX_DATAGRAM_LEN);
                    match wire::decode_datagram::<Datagram>(&b) {
                        Ok(Datagram::Announce(a)) => {
                            assert!(a.verify(), "our own announcement does not verify");
                            assert_eq!(a.announce.id, me.peer_id());
                        }
                        other => panic!("our own announcement does not decode: {other:?}"),
                    }
                }
                discovery::OutEvent::Emit(
                    discovery::Event::Discovered(p) | discovery::Event::Updated(p),
                ) => {
                    assert_ne!(p.id, me.peer_id(), "discovered ourselves");
                    assert!(p.name.len() <= wire::MAX_NAME_LEN);
                }
                _ => {}
            }
        }
        let peers: Vec<_> = st.peers().collect();
        assert!(
            peers.len() <= max_peers,
            "{} peers > {max_peers}",
            peers.len()
        );
        for p in peers {
            assert!(!p.addrs.is_empty() && p.addrs.len() <= 8, "{:?}", p.addrs);
        }
    }
}

// --- mux ----------------------------------------------------------------------

/// Mux frames: a lane's byte stream split into frames; each re-encodes to the
/// bytes it came from (the mux encoding is canonical).
pub fn mux_frame(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match mux::frame::Message::decode(&mut buf) {
            Ok(Some(m)) => {
                let used = before.len() - buf.len();
                assert_eq!(m.encoded_len(), used, "encoded_len of {m:?}");
                let mut out = Vec::new();
                m.encode(&mut out);
                assert_eq!(out, before[..used], "re-encoding {m:?} changed the bytes");
                let mut again = BytesMut::from(&out[..]);
                assert_eq!(mux::frame::Message::decode(&mut again), Ok(Some(m)));
                assert!(again.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf, before, "decode consumed bytes of an incomplete frame");
                break;
            }
            Err(_) => break,
        }
    }
}

/// The mux session state fed lanes, frames from the peer (decoded from fuzz
/// bytes, as they would arrive) and local calls, in any order.
pub fn mux_state(data: &[u8]) {
    let config = mux::Config {
        max_lanes: 3,
        max_payload: 512,
        window: 2048,
        bulk_window: 4096,
        session_window: 8192,
        lane_queue: 8192,
        max_streams: 4,
        max_fragments: 8,
        ack_every: 1024,
        ..mux::Config::default()
    };
    let cfg = config.clone();
    let mut inp = Input::new(data);
    let side = if inp.bool() {
        mux::Side::Low
    } else {
        mux::Side::High
    };
    let mut st = mux::State::new(config, side, 99);
    let mut now = Duration::ZERO;
    let mut opened: Vec<u32> = vec![mux::CONTROL];
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let lane = u64::from(inp.u8() % 4);
        let stream = |inp: &mut Input<'_>, opened: &[u32]| -> u32 {
            let i = inp.u8();
            if i & 0x80 != 0 {
                u32::from(i & 0x7f)
            } else {
                opened[i as usize % opened.len()]
            }
        };
        let ev = match inp.u8() % 16 {
            0 => mux::InEvent::LaneAdded {
                lane,
                dialed: inp.bool(),
            },
            1 => mux::InEvent::LaneClosed(lane),
            2..=5 => {
                // One frame as the peer sends it: its bytes decode, or the lane
                // is malformed.
                let mut b = BytesMut::from(inp.chunk());
                match mux::frame::Message::decode(&mut b) {
                    Ok(Some(message)) => mux::InEvent::Message { lane, message },
                    Ok(None) => continue,
                    Err(error) => mux::InEvent::Malformed { lane, error },
                }
            }
            6 => mux::InEvent::Written {
                lane,
                bytes: u64::from(inp.u16()),
            },
            7 => mux::InEvent::Write {
                stream: stream(&mut inp, &opened),
                data: bytes::Bytes::copy_from_slice(inp.chunk()),
            },
            8 => mux::InEvent::Finish(stream(&mut inp, &opened)),
            9 => mux::InEvent::Reset {
                stream: stream(&mut inp, &opened),
                code: u32::from(inp.u8()),
            },
            10 => mux::InEvent::Consumed {
                stream: stream(&mut inp, &opened),
                bytes: u64::from(inp.u16()),
            },
            11 => mux::InEvent::Discard(stream(&mut inp, &opened)),
            12 => {
                let n = inp.u16() as usize % 1500;
                mux::InEvent::Write {
                    stream: stream(&mut inp, &opened),
                    data: bytes::Bytes::from(vec![0xab; n]),
                }
            }
            13 => {
                if let Ok(id) = st.open_stream(inp.bool()) {
                    opened.push(id);
                }
                continue;
            }
            14 => {
                let s = stream(&mut inp, &opened);
                while let Some(c) = st.read(s) {
                    if let mux::Chunk::Data(b) = c {
                        st.handle(
                            now,
                            mux::InEvent::Consumed {
                                stream: s,
                                bytes: b.len() as u64,
                            },
                        );
                    }
                }
                continue;
            }
            _ => match inp.u8() % 4 {
                0 => {
                    now += ms(u64::from(inp.u16()));
                    mux::InEvent::Timeout
                }
                1 => mux::InEvent::Flush,
                2 => mux::InEvent::DialFailed,
                _ => mux::InEvent::Close,
            },
        };
        st.handle(now, ev);
        while let Some(o) = st.poll() {
            match o {
                mux::OutEvent::Transmit { message, .. } => {
                    // What we send decodes back to itself.
                    let mut b = Vec::new();
                    message.encode(&mut b);
                    let mut b = BytesMut::from(&b[..]);
                    assert_eq!(
                        mux::frame::Message::decode(&mut b),
                        Ok(Some(message.clone()))
                    );
                    if let mux::frame::Message::Data { payload, .. } = &message {
                        assert!(payload.len() <= cfg.max_payload, "oversize payload sent");
                    }
                }
                mux::OutEvent::Emit(mux::Event::StreamOpened { stream, .. })
                    if opened.len() < 64 =>
                {
                    opened.push(stream);
                }
                _ => {}
            }
        }
        // Bounds: streams the peer can make us hold, and what each buffers.
        let stats = st.stats();
        assert!(
            stats.open_streams <= 2 * cfg.max_streams + 1,
            "{} streams open",
            stats.open_streams
        );
        for s in &opened {
            if let Some(ss) = st.stream_stats(*s) {
                assert!(
                    ss.recv_buffered <= cfg.bulk_window,
                    "stream {s} buffers {} bytes, beyond any window",
                    ss.recv_buffered
                );
            }
        }
    }
}

// --- transfer -----------------------------------------------------------------

/// Transfer frames in both directions, manifests made of the offered entries,
/// and the receiver's state machine driven by a sender's frames.
pub fn transfer(data: &[u8]) {
    let mut inp = Input::new(data);
    let budget = if inp.bool() {
        receiver::OfferBudget::TRUSTED
    } else {
        receiver::OfferBudget::UNTRUSTED
    };
    let mut rx = receiver::State::with_budget(budget);
    let mut sizes: BTreeMap<u32, (u64, u64)> = BTreeMap::new(); // index -> (size, pos)
    let mut open: Option<u32> = None;
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 4 {
            0 | 1 => {
                let Some(msg) = inp.take::<ToReceiver>() else {
                    continue;
                };
                frame_round_trip(&msg);
                if let ToReceiver::Entries(e) = &msg {
                    check_manifest(e.clone());
                }
                match rx.on_message(msg) {
                    Ok(receiver::Action::Offer) => {
                        let m = rx.manifest().expect("an offer has a manifest").clone();
                        for (i, p) in (0..m.len() as u32).filter_map(|i| m.path(i).map(|p| (i, p)))
                        {
                            check_safe(p);
                            let _ = i;
                        }
                        let selected: Vec<bool> = (0..m.len()).map(|_| inp.bool()).collect();
                        let mut allowed = BTreeMap::new();
                        for (i, e) in m.entries().iter().enumerate() {
                            if let Some(size) = e.size() {
                                // What a `.part` on disk can hold: at most the file.
                                let held = inp.u64() % (size.min(1 << 40) + 1);
                                allowed.insert(i as u32, held);
                                sizes.insert(i as u32, (size, 0));
                            }
                        }
                        rx.accept(&selected, allowed);
                        for f in rx.files() {
                            assert!(
                                selected[*f as usize] && m.entries()[*f as usize].size().is_some()
                            );
                        }
                    }
                    Ok(receiver::Action::Open {
                        index,
                        offset,
                        size,
                    }) => {
                        assert!(open.is_none(), "file {index} opened while another is open");
                        assert!(offset <= size);
                        assert_eq!(sizes.get(&index).map(|s| s.0), Some(size));
                        sizes.insert(index, (size, offset));
                        open = Some(index);
                    }
                    Ok(receiver::Action::Write { index, offset, len }) => {
                        assert_eq!(open, Some(index), "write to a file that is not open");
                        let (size, pos) = sizes[&index];
                        assert_eq!(offset, pos, "write not where the last one ended");
                        assert!(
                            offset + u64::from(len) <= size,
                            "write past the end of the file"
                        );
                        assert!(len as usize <= transfer::BLOCK);
                        sizes.insert(index, (size, pos + u64::from(len)));
                    }
                    Ok(receiver::Action::Finish { index, .. }) => {
                        assert_eq!(open, Some(index));
                        let (size, pos) = sizes[&index];
                        assert_eq!(pos, size, "file finished before its last byte");
                        open = None;
                    }
                    Ok(receiver::Action::Skipped { index, .. }) => {
                        if open == Some(index) {
                            open = None;
                        }
                    }
                    Ok(receiver::Action::Done) => assert!(open.is_none()),
                    Ok(receiver::Action::Continue) => {}
                    Err(_) => return,
                }
            }
            2 => {
                if let Some(msg) = inp.take::<ToSender>() {
                    frame_round_trip(&msg);
                    if let ToSender::Accept { selected, .. } = &msg {
                        let _ = transfer::manifest::ranges_to_mask(selected, 1 + inp.u8() as usize);
                    }
                }
            }
            _ => {
                if let Some(entries) = inp.take::<Vec<Entry>>() {
                    check_manifest(entries);
                }
            }
        }
    }
}

/// A manifest that validates holds only safe paths, no duplicates, nothing
/// under a file, and sizes that add up.
fn check_manifest(entries: Vec<Entry>) {
    let Ok(m) = Manifest::new(entries) else {
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0u64;
    for (i, e) in m.entries().iter().enumerate() {
        let p = m.path(i as u32).expect("every entry has a path");
        assert_eq!(p.as_str(), e.path);
        check_safe(p);
        assert!(seen.insert(e.path.clone()), "duplicate {:?}", e.path);
        total += e.size().unwrap_or(0);
    }
    assert_eq!(total, m.total_bytes());
    for e in m.entries() {
        if e.size().is_some() {
            let under = format!("{}/", e.path);
            assert!(
                !m.entries().iter().any(|x| x.path.starts_with(&under)),
                "entry under file {:?}",
                e.path
            );
        }
    }
    let mask = transfer::manifest::ranges_to_mask(
        &transfer::manifest::mask_to_ranges(&vec![true; m.len()]),
        m.len(),
    )
    .expect("our own ranges");
    assert!(mask.iter().all(|b| *b));
    let _ = m.fingerprint();
}

/// Windows device names, written out independently of the code under test.
fn is_device_name(component: &str) -> bool {
    let stem = component.split('.').next().unwrap_or("");
    let stem = stem.trim_end_matches([' ', '.']).to_ascii_uppercase();
    if ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"].contains(&stem.as_str()) {
        return true;
    }
    let Some(d) = stem
        .strip_prefix("COM")
        .or_else(|| stem.strip_prefix("LPT"))
    else {
        return false;
    };
    matches!(
        d,
        "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
    )
}

/// What a SafePath promises: joined onto a folder it stays inside it, on Unix
/// and on Windows.
pub fn check_safe(p: &SafePath) {
    let s = p.as_str();
    assert!(!s.is_empty() && !s.starts_with('/'), "absolute {s:?}");
    assert!(!s.contains('\\'), "backslash in {s:?}");
    assert!(
        !s.chars().any(|c| c.is_ascii_control()),
        "control char in {s:?}"
    );
    assert!(s.len() <= transfer::safe_path::MAX_PATH);
    assert!(Path::new(s).is_relative());
    let base = Path::new("/downloads");
    let joined = base.join(s);
    assert!(joined.starts_with(base), "{s:?} leaves the folder");
    let mut n = 0;
    for c in Path::new(s).components() {
        assert!(
            matches!(c, Component::Normal(_)),
            "{s:?} has component {c:?}"
        );
        n += 1;
    }
    assert!(n <= transfer::safe_path::MAX_DEPTH);
    for c in s.split('/') {
        assert!(!c.is_empty() && c != "." && c != "..", "{s:?}");
        assert!(c.len() <= transfer::safe_path::MAX_COMPONENT);
        let b = c.as_bytes();
        assert!(
            !(b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'),
            "drive prefix in {s:?}"
        );
        assert!(!is_device_name(c), "device name in {s:?}");
    }
    assert_eq!(p.components().count(), n);
    assert_eq!(p.ancestors().count(), n - 1);
}

/// `SafePath::parse` on any string (and the " (n)" names made from what it
/// accepts, which must be safe too).
pub fn safe_path(data: &[u8]) {
    let (n, text) = match data.split_first() {
        Some((n, rest)) => (u32::from(*n), rest),
        None => (0, data),
    };
    let s = String::from_utf8_lossy(text);
    if let Ok(p) = SafePath::parse(&s) {
        check_safe(&p);
        for n in [1, n.max(1), u32::MAX] {
            let renamed = collision_name(p.root(), n);
            let q = SafePath::parse(&renamed)
                .unwrap_or_else(|e| panic!("{renamed:?}, the rename of {:?}: {e}", p.root()));
            check_safe(&q);
            assert_eq!(q.components().count(), 1);
        }
    }
    // The same bytes as one offer's entries.
    check_manifest(
        s.split('\n')
            .enumerate()
            .map(|(i, p)| {
                if i % 2 == 0 {
                    Entry::file(p, i as u64)
                } else {
                    Entry::dir(p)
                }
            })
            .collect(),
    );
}

// --- messaging ----------------------------------------------------------------

/// The direct-messaging state driven by links going up and down, frames from
/// peers, and a driver that answers outbox loads from a model of the store.
pub fn messaging(data: &[u8]) {
    let config = messaging::Config {
        window: 4,
        ..messaging::Config::default()
    };
    let window = config.window;
    let mut st = messaging::State::new(config);
    let mut inp = Input::new(data);
    let mut now = Duration::ZERO;
    // The outbox as the store holds it: per peer, seq -> envelope.
    let mut outbox: Model<PeerId, Model<u64, messaging::Envelope>> = Model::new();
    let mut next_seq = 1u64;
    let mut next_id = 1u128;
    let mut sessions: Model<PeerId, u64> = Model::new();
    let mut out = Vec::new();
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let p = peer(1 + inp.u8() % 3);
        let ev = match inp.u8() % 8 {
            0 => {
                let session = u64::from(inp.u8() % 4);
                sessions.insert(p, session);
                messaging::InEvent::LinkUp { peer: p, session }
            }
            1 => messaging::InEvent::LinkDown {
                peer: p,
                session: sessions.get(&p).copied().unwrap_or(0),
            },
            2 | 3 => {
                let Some(message) = inp.take::<messaging::Message>() else {
                    continue;
                };
                frame_round_trip(&message);
                messaging::InEvent::Received { peer: p, message }
            }
            4 => {
                let envelope = messaging::Envelope {
                    id: messaging::MessageId::from_parts(1, next_id),
                    sent_ms: 1,
                    text: "hi".into(),
                    reply_to: None,
                };
                next_id += 1;
                let seq = next_seq;
                next_seq += 1;
                outbox.entry(p).or_default().insert(seq, envelope.clone());
                messaging::InEvent::Queued {
                    peer: p,
                    message: messaging::Queued { seq, envelope },
                }
            }
            5 => messaging::InEvent::SendFailed {
                peer: p,
                session: sessions.get(&p).copied().unwrap_or(0),
            },
            6 => messaging::InEvent::Timer(messaging::Timer::Resume {
                peer: p,
                session: sessions.get(&p).copied().unwrap_or(0),
            }),
            _ => {
                // Acknowledge what was sent to `p` (as its node would).
                let ids: Vec<_> = outbox
                    .get(&p)
                    .map(|o| {
                        o.values()
                            .take(1 + inp.u8() as usize % 3)
                            .map(|e| e.id)
                            .collect()
                    })
                    .unwrap_or_default();
                messaging::InEvent::Received {
                    peer: p,
                    message: messaging::Message::Ack { ids },
                }
            }
        };
        now += ms(10);
        let mut pending = vec![ev];
        let mut rounds = 0;
        while let Some(ev) = pending.pop() {
            rounds += 1;
            assert!(rounds < 1000, "the driver loop does not settle");
            out.clear();
            st.handle(now, ev, &mut out);
            for o in out.drain(..) {
                match o {
                    messaging::OutEvent::LoadOutbox {
                        peer,
                        load,
                        after,
                        limit,
                    } => {
                        let rows = outbox
                            .get(&peer)
                            .map(|o| {
                                o.range(after.map_or(0, |a| a + 1)..)
                                    .take(limit)
                                    .map(|(seq, e)| messaging::Queued {
                                        seq: *seq,
                                        envelope: e.clone(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        pending.push(messaging::InEvent::OutboxPage { peer, load, rows });
                    }
                    messaging::OutEvent::SetStatus { peer, ids, status } => {
                        if matches!(
                            status,
                            messaging::Status::Delivered | messaging::Status::Read
                        ) && let Some(o) = outbox.get_mut(&peer)
                        {
                            o.retain(|_, e| !ids.contains(&e.id));
                        }
                    }
                    messaging::OutEvent::Send { message, .. } => {
                        frame_round_trip(&message);
                        match &message {
                            messaging::Message::Ack { ids } | messaging::Message::Read { ids } => {
                                assert!(
                                    !ids.is_empty() && ids.len() <= messaging::MAX_IDS_PER_FRAME
                                )
                            }
                            messaging::Message::Deliver(e) => {
                                assert!(messaging::check_text(&e.text).is_ok())
                            }
                        }
                    }
                    messaging::OutEvent::Store { envelope, peer } => {
                        assert!(messaging::check_text(&envelope.text).is_ok());
                        pending.push(messaging::InEvent::Stored {
                            peer,
                            ids: vec![envelope.id],
                        });
                    }
                    _ => {}
                }
            }
        }
        for (p, _) in st.links() {
            assert!(st.in_flight(&p) <= window, "more than the window in flight");
        }
    }
}

// --- gossip -------------------------------------------------------------------

/// All of gossip (HyParView membership, Plumtree, rumor mongering and flooding
/// under the topic multiplexer) fed (from-peer, message) inputs, timers and
/// lost connections. Checks the views stay within their capacities and that
/// no broadcast reaches the application twice.
pub fn gossip(data: &[u8]) {
    let config = gossip::Config {
        membership: hyparview::Config {
            active_view_capacity: 3,
            passive_view_capacity: 5,
            ..hyparview::Config::default()
        },
        max_topics: 2,
        ..gossip::Config::default()
    };
    let active_cap = config.membership.active_view_capacity;
    let passive_cap = config.membership.passive_view_capacity;
    let max_topics = config.max_topics;
    let me = hyparview::PeerInfo {
        id: peer(0),
        data: hyparview::PeerData(vec![1]),
    };
    let mut st = gossip::State::new(me, config, ChaCha8Rng::seed_from_u64(1));
    let topics = [gossip::TopicId([1; 32]), gossip::TopicId([2; 32])];
    let strategies = [
        gossip::Strategy::Plumtree,
        gossip::Strategy::Rumor,
        gossip::Strategy::Flood,
        gossip::Strategy::Lan,
    ];
    let mut inp = Input::new(data);
    let mut now = Duration::ZERO;
    // What reached the application, per topic (emptied when we leave it).
    let mut delivered: Model<gossip::TopicId, Seen<plumtree::MessageId>> = Model::new();
    let mut timers: Vec<gossip::Timer> = Vec::new();
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let topic = topics[inp.u8() as usize % topics.len()];
        let from = peer(1 + inp.u8() % 5);
        let ev = match inp.u8() % 10 {
            0 => gossip::InEvent::Join {
                topic,
                strategy: strategies[inp.u8() as usize % strategies.len()],
                bootstrap: (0..inp.u8() % 3)
                    .map(|i| hyparview::PeerInfo {
                        id: peer(1 + i),
                        data: hyparview::PeerData(vec![i]),
                    })
                    .collect(),
            },
            1 => {
                delivered.remove(&topic);
                gossip::InEvent::Leave(topic)
            }
            2..=5 => {
                let Some(body) = inp.take::<gossip::Body>() else {
                    continue;
                };
                let message = gossip::Message { topic, body };
                frame_round_trip(&wire::Message::Gossip(message.clone()));
                gossip::InEvent::Message { from, message }
            }
            6 => gossip::InEvent::ConnectionLost(from),
            7 => {
                if timers.is_empty() {
                    continue;
                }
                let t = timers.remove(inp.u8() as usize % timers.len());
                gossip::InEvent::Timer(t)
            }
            8 => {
                let payload = plumtree::Payload::from(inp.chunk().to_vec());
                let mut out = Vec::new();
                if let Ok(id) = st.broadcast(now, topic, payload, &mut out) {
                    // Our own broadcast must not come back to us as news.
                    delivered.entry(topic).or_default().insert(id);
                }
                continue;
            }
            _ => {
                now += ms(u64::from(inp.u8()));
                continue;
            }
        };
        for o in st.handle(now, ev) {
            match o {
                gossip::OutEvent::Emit(gossip::Event::Received { topic, delivery }) => {
                    assert_eq!(
                        delivery.id,
                        plumtree::MessageId::of(&delivery.payload.0),
                        "delivery id is not the payload's"
                    );
                    assert!(
                        delivered.entry(topic).or_default().insert(delivery.id),
                        "message {:?} delivered twice in topic {topic:?}",
                        delivery.id
                    );
                }
                gossip::OutEvent::ScheduleTimer(_, t) if timers.len() < 64 => timers.push(t),
                gossip::OutEvent::Send(to, m) => {
                    assert_ne!(to, peer(0), "sent to ourselves");
                    frame_round_trip(&wire::Message::Gossip(m));
                }
                gossip::OutEvent::Dial(to, _) => assert_ne!(to, peer(0), "dialled ourselves"),
                _ => {}
            }
        }
        let mut joined = 0;
        for t in &topics {
            if st.is_joined(t) {
                joined += 1;
            }
            let active = st.neighbors(t);
            let passive = st.passive_view(t);
            assert!(
                active.len() <= active_cap,
                "active view {} > {active_cap}",
                active.len()
            );
            assert!(
                passive.len() <= passive_cap,
                "passive view {} > {passive_cap}",
                passive.len()
            );
            assert!(!active.contains(&peer(0)) && !passive.contains(&peer(0)));
            assert!(
                active.iter().all(|a| !passive.contains(a)),
                "a peer in both views"
            );
        }
        assert!(joined <= max_topics);
    }
}

// --- kademlia -----------------------------------------------------------------

/// The DHT node fed datagrams: raw bytes, or RPCs decoded from fuzz bytes whose
/// records are signed by real keys (so STOREs get past the signature check).
pub fn kademlia(data: &[u8]) {
    let config = kademlia::Config {
        k: 4,
        max_records: 8,
        max_records_per_key: 2,
        max_queries: 4,
        ..kademlia::Config::default()
    };
    let cfg = config.clone();
    let ids = identities();
    let wall0 = 1_700_000_000_000u64;
    let mut st = kademlia::State::new(config, ids[0].clone(), wall0, ChaCha8Rng::seed_from_u64(2));
    let mut inp = Input::new(data);
    let mut now = Duration::ZERO;
    let mut timers: Vec<kademlia::Timer> = Vec::new();
    let mut tag = 0;
    let mut own_keys: Seen<Vec<u8>> = Seen::new();
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let from = addr(inp.u8());
        let ev = match inp.u8() % 8 {
            0 => kademlia::InEvent::Datagram {
                from,
                bytes: inp.chunk().to_vec(),
            },
            1 | 2 => {
                let Some(message) = inp.take::<kademlia::Message>() else {
                    continue;
                };
                datagram_round_trip(&Datagram::Dht(message.clone()));
                check_dht_message(&message);
                kademlia::InEvent::Message { from, message }
            }
            3 => {
                // A STORE of a record signed by one of our peers.
                let signer = &ids[1 + inp.u8() as usize % (ids.len() - 1)];
                let seq = u64::from(inp.u8());
                let expires_ms = wall0 + now.as_millis() as u64 + u64::from(inp.u32());
                let (key, value) = if inp.bool() {
                    let name = String::from_utf8_lossy(inp.bytes(8)).into_owned();
                    (
                        kademlia::Key::for_peer(&signer.peer_id()),
                        kademlia::Value::Peer(kademlia::record::PeerInfo {
                            name,
                            addrs: vec![addr(inp.u8())],
                        }),
                    )
                } else {
                    let k = inp.bytes(2).to_vec();
                    (
                        kademlia::Key::for_value(&k),
                        kademlia::Value::Bytes(inp.chunk().to_vec()),
                    )
                };
                let record = kademlia::Record::sign(signer, key, seq, expires_ms, value);
                kademlia::InEvent::Message {
                    from,
                    message: kademlia::Message::Store {
                        from: signer.peer_id(),
                        rpc: u64::from(inp.u8()),
                        record,
                    },
                }
            }
            4 => {
                if timers.is_empty() {
                    continue;
                }
                kademlia::InEvent::Timer(timers.remove(inp.u8() as usize % timers.len()))
            }
            5 => {
                tag += 1;
                let command = match inp.u8() % 4 {
                    0 => kademlia::Command::Bootstrap,
                    1 => kademlia::Command::FindPeer(peer(inp.u8())),
                    2 => kademlia::Command::Get(inp.bytes(2).to_vec()),
                    _ => {
                        let key = inp.bytes(2).to_vec();
                        own_keys.insert(key.clone());
                        kademlia::Command::Put {
                            key,
                            value: inp.chunk().to_vec(),
                        }
                    }
                };
                kademlia::InEvent::Command {
                    tag: kademlia::Tag(tag),
                    command,
                }
            }
            6 => kademlia::InEvent::AddContact(kademlia::Contact::new(peer(inp.u8()), from)),
            _ => {
                now += ms(u64::from(inp.u16()) * 8);
                continue;
            }
        };
        for o in st.handle(now, ev) {
            match o {
                kademlia::OutEvent::Send(_, m) => {
                    // Everything we send fits in one datagram and decodes back.
                    let d = Datagram::Dht(m);
                    let b = wire::encode_datagram(&d)
                        .unwrap_or_else(|e| panic!("our own DHT message does not fit: {e}"));
                    assert_eq!(wire::decode_datagram::<Datagram>(&b).as_ref(), Ok(&d));
                }
                kademlia::OutEvent::ScheduleTimer(_, t) if timers.len() < 64 => timers.push(t),
                _ => {}
            }
        }
        assert!(
            st.record_store().len() <= cfg.max_records,
            "record store overflows"
        );
        // Republishing re-stores each of our own records at once (they are
        // the user's, not the network's); nothing else goes past the limit.
        assert!(
            st.active_queries() <= cfg.max_queries + own_keys.len(),
            "{} lookups running, the limit is {}",
            st.active_queries(),
            cfg.max_queries
        );
        assert!(st.routing_table().len() <= cfg.k * kademlia::KEY_BITS);
        assert!(
            st.routing_table()
                .iter()
                .all(|e| e.contact.id != ids[0].peer_id())
        );
    }
}

// --- web ----------------------------------------------------------------------

/// What browsers send the web UI: JSON bodies, query strings, upload file names,
/// guest names; and the download header made from a file name.
pub fn web(data: &[u8]) {
    use peerconnect::web::fuzzing;
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match sel % 3 {
        0 => {
            if let Some(m) = fuzzing::json_body(rest) {
                assert!(m.files() > 0);
                for i in 0..m.len() as u32 {
                    check_safe(m.path(i).expect("path"));
                }
            }
        }
        1 => fuzzing::query(&text),
        _ => {}
    }
    if let Ok(p) = fuzzing::upload_path(&text) {
        check_safe(&p);
    }
    let cd = fuzzing::content_disposition(&text);
    assert!(
        axum_header_ok(&cd),
        "Content-Disposition for {text:?} is not a header value: {cd:?}"
    );
    let name = fuzzing::guest_name(&text);
    assert!(
        !name.is_empty() && name.len() <= wire::MAX_NAME_LEN,
        "{name:?}"
    );
    assert!(!name.chars().any(char::is_control), "{name:?}");
}

/// Whether `v` is a valid HTTP header value: visible ASCII, spaces and tabs.
fn axum_header_ok(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

// --- transfer, the sender's side ------------------------------------------------

/// The sender's state machine fed the receiver's answer, resume proofs and
/// per-file replies, interleaved with the driver starting and ending files.
/// Checks the sender believes only what it may: claims only for selected
/// files and within their size, a file reported received only once it was
/// sent, replies in travel order, and a summary that adds up.
pub fn transfer_sender(data: &[u8]) {
    let mut inp = Input::new(data);
    let entries = if inp.bool() {
        inp.take::<Vec<Entry>>().unwrap_or_default()
    } else {
        vec![
            Entry::dir("d"),
            Entry::file("d/a", 3 * transfer::resume::MIN_CHUNK + 5),
            Entry::file("d/b", 1),
            Entry::file("c", 0),
            Entry::file("e", 2),
        ]
    };
    let Ok(m) = Manifest::new(entries) else {
        return;
    };
    let mut st = sender::State::new(&m);
    let mut accepted = false;
    let mut started = 0usize; // files the driver started (in travel order)
    let mut ended: Seen<u32> = Seen::new(); // ... and wrote `End` for
    let mut answered = 0usize;
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut done_sent = false;
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 4 {
            0 | 1 => {
                let Some(msg) = inp.take::<ToSender>() else {
                    continue;
                };
                frame_round_trip(&msg);
                if !accepted {
                    match st.on_answer(msg) {
                        Ok(sender::Answer::Continue) => {}
                        Ok(sender::Answer::Accepted) => {
                            accepted = true;
                            check_accepted(&m, &mut st, &mut inp);
                        }
                        Ok(sender::Answer::Rejected(reason)) => {
                            assert!(reason.len() <= transfer::MAX_REASON);
                            assert!(st.is_complete());
                            return;
                        }
                        Err(_) => return,
                    }
                } else {
                    let files = st.files().to_vec();
                    match st.on_reply(msg) {
                        Ok(sender::Reply::FileOk(i)) => {
                            assert_eq!(files.get(answered), Some(&i), "FileOk out of order");
                            assert!(answered < started, "FileOk for a file not started");
                            assert!(ended.remove(&i), "FileOk for file {i} before its End");
                            answered += 1;
                            ok += 1;
                        }
                        Ok(sender::Reply::FileFailed(i, reason)) => {
                            assert_eq!(files.get(answered), Some(&i), "FileFailed out of order");
                            assert!(answered < started, "FileFailed for a file not started");
                            assert!(reason.len() <= transfer::MAX_REASON);
                            ended.remove(&i);
                            answered += 1;
                            failed += 1;
                        }
                        Ok(sender::Reply::Complete { ok: o, failed: f }) => {
                            assert!(done_sent, "complete before Done");
                            assert_eq!((o, f), (ok, failed), "summary differs from replies");
                            assert_eq!(o as usize + f as usize, files.len());
                            assert_eq!(answered, files.len());
                            assert!(st.is_complete());
                            return;
                        }
                        Err(_) => return,
                    }
                }
            }
            2 => {
                // The driver starts the next file; `End` unless it is skipped.
                if !accepted || done_sent {
                    continue;
                }
                let Some(&i) = st.files().get(started) else {
                    continue;
                };
                st.on_started(i);
                started += 1;
                if inp.bool() {
                    st.on_ended(i);
                    ended.insert(i);
                }
            }
            _ => {
                if accepted && !done_sent && started == st.files().len() {
                    st.on_done_sent();
                    done_sent = true;
                }
            }
        }
    }
}

/// After `Accept` and its proofs: the files are the selected non-directories,
/// in manifest order, and every claim is about one of them and fits it.
fn check_accepted(m: &Manifest, st: &mut sender::State, inp: &mut Input<'_>) {
    assert_eq!(st.selected().len(), m.len());
    let want: Vec<u32> = (0..m.len())
        .filter(|&i| st.selected()[i] && m.entries()[i].size().is_some())
        .map(|i| i as u32)
        .collect();
    assert_eq!(st.files(), &want[..], "files are not the selected files");
    for (i, claim) in st.take_claims() {
        assert!(want.contains(&i), "claim for {i}, not a selected file");
        let size = m.entries()[i as usize].size().expect("a file");
        if let sender::Claim::Chunks(mut proof) = claim {
            let chunk = transfer::resume::chunk_size(size);
            assert!(proof.claimed() <= size.div_ceil(chunk));
            // Compare some chunks, matching or not: the resume point stays
            // a chunk boundary within the file.
            while let Some(r) = proof.next_range() {
                assert!(r.start < r.end && r.end <= size, "chunk {r:?} of {size}");
                if !proof.check(&[inp.u8(); 32]) {
                    break;
                }
            }
            let at = proof.offset();
            assert!(
                at <= size && (at % chunk == 0 || at == size),
                "resume at {at}"
            );
        }
    }
}

// --- rooms --------------------------------------------------------------------

/// Room messages as they arrive in a gossip payload: any bytes, and messages
/// built from fuzz bytes and signed by real keys, as sent or with one byte
/// changed by a relay. A payload is accepted only if it is one signed message
/// of this room within the limits; a relay cannot change an accepted message.
pub fn rooms(data: &[u8]) {
    let ids = identities();
    let names = ["lobby", "staff", "é", "x"];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let topic = rooms::topic(names[inp.u8() as usize % names.len()]);
        match inp.u8() % 2 {
            0 => {
                let payload = inp.chunk();
                if let Ok(s) = rooms::SignedRoomMessage::decode(payload, &topic) {
                    check_room_message(&s, &topic);
                }
            }
            _ => {
                let signer = &ids[inp.u8() as usize % ids.len()];
                let own = inp.bool();
                let flip = inp.u16();
                let in_room = inp.bool();
                let Some(mut message) = inp.take::<rooms::RoomMessage>() else {
                    continue;
                };
                // Signed by `signer` as the author; unless `own`, the payload
                // then names whoever the fuzz bytes named (a forgery).
                let claimed = message.author;
                message.author = signer.peer_id();
                if in_room && let Some(&n) = names.iter().find(|n| rooms::topic(n) == topic) {
                    message.room = n.to_string();
                }
                let mut signed = rooms::SignedRoomMessage::sign(message.clone(), signer);
                if !own {
                    signed.message.author = claimed;
                    message.author = claimed;
                }
                let genuine = message.author == signer.peer_id();
                let fits = message.text.len() <= rooms::MAX_TEXT_LEN
                    && message.author_name.len() <= wire::MAX_NAME_LEN
                    && rooms::check_name(&message.room).is_ok();
                let here = rooms::topic(&message.room) == topic;
                let payload = signed.encode();
                match rooms::SignedRoomMessage::decode(&payload, &topic) {
                    Ok(s) => {
                        assert!(genuine && fits && here, "accepted {message:?}");
                        assert_eq!(s, signed);
                        check_room_message(&s, &topic);
                    }
                    Err(why) => assert!(
                        !(genuine && fits && here),
                        "a genuine message of this room refused: {why}"
                    ),
                }
                // A relay changes one byte.
                let mut changed = payload.clone();
                if !changed.is_empty() {
                    let i = flip as usize % changed.len();
                    changed[i] ^= 1 << (flip >> 13);
                    if let Ok(s) = rooms::SignedRoomMessage::decode(&changed, &topic) {
                        assert_eq!(s.message, message, "a relay changed a message");
                    }
                }
            }
        }
    }
}

fn check_room_message(s: &rooms::SignedRoomMessage, topic: &gossip::TopicId) {
    let m = &s.message;
    assert!(s.verify(), "accepted with a bad signature");
    assert!(rooms::check_name(&m.room).is_ok(), "room name {:?}", m.room);
    assert!(rooms::check_text(&m.text).is_ok());
    assert!(m.author_name.len() <= wire::MAX_NAME_LEN);
    assert_eq!(&rooms::topic(&m.room), topic, "accepted from another room");
    assert_eq!(
        rooms::SignedRoomMessage::decode(&s.encode(), topic).as_ref(),
        Ok(s),
        "re-encoded room message does not decode to itself"
    );
}
