//! Tests of the driver: two sessions joined by in-memory (`tokio::io::duplex`)
//! or TCP (127.0.0.1) lanes, some of which die on command.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::*;

/// Makes both ends of a lane fail at once.
#[derive(Default)]
struct KillSwitch {
    dead: AtomicBool,
    wakers: [AtomicWaker; 2],
}

impl KillSwitch {
    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            w.wake();
        }
    }
}

/// One end of a killable lane.
struct Killable<T> {
    io: T,
    switch: Arc<KillSwitch>,
    end: usize,
}

fn killed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "lane killed by the test")
}

impl<T: AsyncRead + Unpin> AsyncRead for Killable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.wakers[self.end].register(cx.waker());
        if self.switch.dead.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Killable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.switch.dead.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn killable_pair<T>(a: T, b: T) -> (Killable<T>, Killable<T>, Arc<KillSwitch>) {
    let switch = Arc::new(KillSwitch::default());
    (
        Killable {
            io: a,
            switch: switch.clone(),
            end: 0,
        },
        Killable {
            io: b,
            switch: switch.clone(),
            end: 1,
        },
        switch,
    )
}

fn duplex_lane() -> (
    Killable<DuplexStream>,
    Killable<DuplexStream>,
    Arc<KillSwitch>,
) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    killable_pair(a, b)
}

async fn tcp_lane() -> (
    Killable<tokio::net::TcpStream>,
    Killable<tokio::net::TcpStream>,
    Arc<KillSwitch>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    killable_pair(a.unwrap(), b.unwrap().0)
}

fn test_config() -> MuxConfig {
    MuxConfig {
        mux: Config {
            window: 256 * 1024,
            bulk_window: 1 << 20,
            ..Config::default()
        },
        ..MuxConfig::default()
    }
}

/// Two sessions joined by `n` duplex lanes, with the lanes' kill switches.
async fn pair(n: usize) -> (MuxSession, MuxSession, Vec<Arc<KillSwitch>>) {
    let a = MuxSession::new(test_config(), Side::Low);
    let b = MuxSession::new(test_config(), Side::High);
    let mut switches = Vec::new();
    for _ in 0..n {
        let (x, y, s) = duplex_lane();
        a.add_lane(x).await;
        b.add_lane(y).await;
        switches.push(s);
    }
    (a, b, switches)
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(salt))
        .collect()
}

/// Writes `data` in uneven pieces, then half-closes.
async fn send_all<W: AsyncWrite + Unpin>(s: &mut W, data: &[u8]) {
    let mut at = 0;
    let mut step = 1;
    while at < data.len() {
        step = (step * 7 + 3) % 200_000 + 1;
        let end = (at + step).min(data.len());
        s.write_all(&data[at..end]).await.unwrap();
        at = end;
    }
    s.shutdown().await.unwrap();
}

async fn read_to_end<R: AsyncRead + Unpin>(s: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[track_caller]
fn assert_same(got: &[u8], want: &[u8]) {
    let diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && diff.is_none(),
        "got {} bytes, want {}, first difference at {diff:?}",
        got.len(),
        want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_stream_carries_bytes_both_ways_in_order_over_several_lanes() {
    let (a, b, _) = pair(3).await;
    let data = pattern(6 << 20, 1);
    let back = pattern(1 << 20, 2);
    let s = a.open_bulk_stream().await.unwrap();
    let (d, k) = (data.clone(), back.clone());
    let peer = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        let got = read_to_end(&mut t).await;
        send_all(&mut t, &k).await;
        assert_same(&got, &d);
        b
    });
    let (mut r, mut w) = tokio::io::split(s);
    let (_, got) = tokio::join!(send_all(&mut w, &data), read_to_end(&mut r));
    assert_same(&got, &back);
    let b = peer.await.unwrap();
    let stats = a.stats().await;
    assert_eq!(stats.lanes.len(), 3);
    assert!(
        stats.lanes.iter().all(|l| l.bytes_sent > 0),
        "every lane carried data: {stats:?}"
    );
    drop(b);
}

async fn transfer_survives_a_lane_kill(
    a: MuxSession,
    b: MuxSession,
    switches: Vec<Arc<KillSwitch>>,
) {
    let data = pattern(8 << 20, 3);
    let mut s = a.open_bulk_stream().await.unwrap();
    let d = data.clone();
    let reader = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut killed = false;
        loop {
            let n = t.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if !killed && got.len() > d.len() / 3 {
                killed = true;
                switches[0].kill();
            }
        }
        assert_same(&got, &d);
        b
    });
    send_all(&mut s, &data).await;
    let b = reader.await.unwrap();
    let stats = a.stats().await;
    assert_eq!(stats.lanes_closed, 1, "{stats:?}");
    assert_eq!(a.lane_count(), 2);
    assert!(!a.is_closed() && !b.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_duplex_lane_mid_stream_loses_nothing() {
    let (a, b, switches) = pair(3).await;
    transfer_survives_a_lane_kill(a, b, switches).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_tcp_lane_mid_stream_loses_nothing() {
    let a = MuxSession::new(test_config(), Side::Low);
    let b = MuxSession::new(test_config(), Side::High);
    let mut switches = Vec::new();
    for _ in 0..3 {
        let (x, y, s) = tcp_lane().await;
        a.add_lane(x).await;
        b.add_lane(y).await;
        switches.push(s);
    }
    transfer_survives_a_lane_kill(a, b, switches).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_keeps_the_senders_buffer_within_the_window() {
    let (a, b, _) = pair(2).await;
    let window = test_config().mux.window;
    let mut s = a.open_stream().await.unwrap();
    let id = s.id();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0u64;
        // Far more than the windows: the writer must block.
        for _ in 0..1000 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
            written += chunk.len() as u64;
        }
        written
    });
    let t = b.accept_stream().await.unwrap();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = a.stream_stats(id).await.unwrap();
        assert!(
            sent.send_buffered <= window,
            "sender holds {} > {window}",
            sent.send_buffered
        );
        let recv = b.stream_stats(id).await.unwrap();
        assert!(
            recv.recv_buffered <= window,
            "receiver holds {} > {window}",
            recv.recv_buffered
        );
    }
    assert!(!writer.is_finished(), "the writer never blocked");
    drop(t);
    // Dropping the unread stream resets it: the blocked writer fails.
    let written = writer.await.unwrap();
    assert!(written < 1000 * 64 * 1024);
    assert!(!a.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_all_complete() {
    let (a, b, _) = pair(2).await;
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let mut t = b.accept_stream().await.unwrap();
            tasks.push(tokio::spawn(async move {
                // Echo everything back.
                let got = read_to_end(&mut t).await;
                send_all(&mut t, &got).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        b
    });
    let mut clients = Vec::new();
    for i in 0..32u8 {
        let s = if i % 2 == 0 {
            a.open_bulk_stream().await
        } else {
            a.open_stream().await
        }
        .unwrap();
        clients.push(tokio::spawn(async move {
            let data = pattern(200_000 + usize::from(i) * 1000, i);
            let (mut r, mut w) = tokio::io::split(s);
            let (_, got) = tokio::join!(send_all(&mut w, &data), read_to_end(&mut r));
            assert_same(&got, &data);
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_messages_flow_while_a_bulk_stream_is_saturated() {
    let (a, b, _) = pair(2).await;
    let mut ca = a.control().await.unwrap();
    assert!(
        a.control().await.is_none(),
        "the control stream is handed out once"
    );
    let mut cb = b.control().await.unwrap();
    let mut bulk = a.open_bulk_stream().await.unwrap();
    let sink = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        read_to_end(&mut t).await.len()
    });
    let pump = tokio::spawn(async move {
        send_all(&mut bulk, &pattern(16 << 20, 5)).await;
    });
    for i in 0..100u32 {
        ca.write_all(&i.to_be_bytes()).await.unwrap();
        let mut echo = [0u8; 4];
        cb.read_exact(&mut echo).await.unwrap();
        assert_eq!(u32::from_be_bytes(echo), i);
        cb.write_all(&echo).await.unwrap();
        ca.read_exact(&mut echo).await.unwrap();
    }
    pump.await.unwrap();
    assert_eq!(sink.await.unwrap(), 16 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_peer_closes_that_session_only() {
    let (good_a, good_b, _) = pair(1).await;
    let victim = MuxSession::new(test_config(), Side::Low);
    let (lane, mut attacker) = tokio::io::duplex(64 * 1024);
    victim.add_lane(lane).await;
    let mut s = victim.open_stream().await.unwrap();
    // A valid hello, then a frame of an unknown type.
    let mut bytes = bytes::BytesMut::new();
    crate::proto::mux::Message::Hello {
        version: crate::proto::mux::VERSION,
        session: 1,
    }
    .encode(&mut bytes);
    bytes.extend_from_slice(&[0, 0, 0, 1, 0xee]);
    attacker.write_all(&bytes).await.unwrap();
    let err = victim.closed().await;
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    let mut buf = [0u8; 1];
    let read = s.read(&mut buf).await.unwrap_err();
    assert_eq!(read.kind(), io::ErrorKind::ConnectionAborted);
    assert!(s.write_all(b"x").await.is_err());
    // The other session is unaffected.
    let mut x = good_a.open_stream().await.unwrap();
    send_all(&mut x, b"still fine").await;
    let mut y = good_b.accept_stream().await.unwrap();
    assert_eq!(read_to_end(&mut y).await, b"still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_lane_dying_ends_the_session_and_fails_streams() {
    let (a, b, switches) = pair(1).await;
    let mut s = a.open_stream().await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut t = b.accept_stream().await.unwrap();
    let mut got = [0u8; 5];
    t.read_exact(&mut got).await.unwrap();
    switches[0].kill();
    assert_eq!(a.closed().await, Error::AllLanesClosed);
    assert_eq!(b.closed().await, Error::AllLanesClosed);
    assert!(s.read(&mut got).await.is_err());
    assert!(a.open_stream().await.is_err());
    assert!(b.accept_stream().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_reaches_the_peer_and_a_dropped_unfinished_stream_resets() {
    let (a, b, _) = pair(1).await;
    let mut s = a.open_stream().await.unwrap();
    s.write_all(b"partial").await.unwrap();
    let mut t = b.accept_stream().await.unwrap();
    let mut buf = [0u8; 7];
    t.read_exact(&mut buf).await.unwrap();
    drop(s);
    let err = t.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

    let mut s = a.open_stream().await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut t = b.accept_stream().await.unwrap();
    t.reset(9);
    let mut one = [0u8; 1];
    let err = loop {
        match s.read(&mut one).await {
            Err(e) => break e,
            Ok(_) => continue,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_stream_dropped_early_still_delivers_everything() {
    let (a, b, _) = pair(2).await;
    let data = pattern(3 << 20, 8);
    let reader = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        read_to_end(&mut t).await
    });
    let mut s = a.open_bulk_stream().await.unwrap();
    // The peer echoes nothing, so this side's reads never reach EOF before drop.
    send_all(&mut s, &data).await;
    drop(s);
    assert_same(&reader.await.unwrap(), &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_stream_dials_lanes_up_to_the_maximum() {
    let b = MuxSession::new(test_config(), Side::High);
    let b2 = b.clone();
    let dialer: LaneDialer = Arc::new(move || {
        let b = b2.clone();
        async move {
            let (x, y) = tokio::io::duplex(256 * 1024);
            b.add_lane(y).await;
            Ok(Box::new(x) as BoxedLane)
        }
        .boxed()
    });
    let a = MuxSession::with_dialer(test_config(), Side::Low, Some(dialer));
    let (x, y) = tokio::io::duplex(256 * 1024);
    a.add_lane(x).await;
    b.add_lane(y).await;
    let mut s = a.open_stream().await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let _t = b.accept_stream().await.unwrap();
    assert_eq!(a.lane_count(), 1, "normal streams do not dial");
    let mut bulk = a.open_bulk_stream().await.unwrap();
    let data = pattern(1 << 20, 4);
    let sink = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        read_to_end(&mut t).await
    });
    send_all(&mut bulk, &data).await;
    assert_same(&sink.await.unwrap(), &data);
    // Dials complete in the background: wait for them, with a deadline.
    for _ in 0..500 {
        if a.lane_count() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.lane_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_stream_over_tls_lanes_arrives_intact() {
    use crate::identity::Identity;
    use crate::net::transport::Transport;
    let (ia, ib) = (Identity::generate(), Identity::generate());
    let (ta, tb) = (
        Transport::new(&ia, 16).unwrap(),
        Transport::new(&ib, 16).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let a = MuxSession::new(test_config(), Side::Low);
    let b = MuxSession::new(test_config(), Side::High);
    for _ in 0..3 {
        let accept = async {
            let (tcp, from) = listener.accept().await.unwrap();
            tb.accept(tcp, from).await.unwrap()
        };
        let (x, y) = tokio::join!(ta.connect(addr, Some(ib.peer_id())), accept);
        a.add_lane(x.unwrap()).await;
        b.add_lane(y).await;
    }
    let data = pattern(4 << 20, 6);
    let d = data.clone();
    let reader = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        assert_same(&read_to_end(&mut t).await, &d);
        b
    });
    let mut s = a.open_bulk_stream().await.unwrap();
    send_all(&mut s, &data).await;
    let b = reader.await.unwrap();
    assert_eq!(a.lane_count(), 3);
    assert_eq!(b.lane_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_writes_bigger_than_the_window_arrive_intact_between_copied_ones() {
    let (a, b, _) = pair(2).await;
    let data = pattern(5 << 20, 7);
    let d = data.clone();
    let reader = tokio::spawn(async move {
        let mut t = b.accept_stream().await.unwrap();
        assert_same(&read_to_end(&mut t).await, &d);
        b
    });
    let mut s = a.open_bulk_stream().await.unwrap();
    // 3 MiB handed over whole (three times the bulk window), then a copied
    // write, then the rest handed over.
    let mut first = bytes::Bytes::copy_from_slice(&data[..3 << 20]);
    std::future::poll_fn(|cx| s.poll_write_bytes(cx, &mut first))
        .await
        .unwrap();
    assert!(first.is_empty(), "everything was handed over");
    s.write_all(&data[3 << 20..(3 << 20) + 1000]).await.unwrap();
    let mut rest = bytes::Bytes::copy_from_slice(&data[(3 << 20) + 1000..]);
    std::future::poll_fn(|cx| s.poll_write_bytes(cx, &mut rest))
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut late = bytes::Bytes::from_static(b"late");
    let e = std::future::poll_fn(|cx| s.poll_write_bytes(cx, &mut late))
        .await
        .expect_err("no writes after shutdown");
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    drop(reader.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_going_from_bulk_to_quiet_and_back_loses_nothing() {
    // The lane's read buffer grows for bulk data and drops back to its floor
    // when only small frames come: every switch must keep frames whole.
    let (a, b, _) = pair(1).await;
    let mut small_a = a.open_stream().await.unwrap();
    small_a.write_all(b"hi").await.unwrap();
    let mut small_b = b.accept_stream().await.unwrap();
    let mut hi = [0u8; 2];
    small_b.read_exact(&mut hi).await.unwrap();
    for round in 0..3u8 {
        let data = pattern(2 << 20, round);
        let d = data.clone();
        let b2 = b.clone();
        let reader = tokio::spawn(async move {
            let mut t = b2.accept_stream().await.unwrap();
            assert_same(&read_to_end(&mut t).await, &d);
        });
        let mut s = a.open_bulk_stream().await.unwrap();
        send_all(&mut s, &data).await;
        reader.await.unwrap();
        for i in 0..20u8 {
            let msg = [round, i, 1, 2, 3];
            small_a.write_all(&msg).await.unwrap();
            let mut got = [0u8; 5];
            small_b.read_exact(&mut got).await.unwrap();
            assert_eq!(got, msg, "small message {i} after bulk round {round}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_received_bytes_themselves_gives_the_stream_in_order() {
    let (a, b, _) = pair(2).await;
    // Far more than the window: the writer only finishes if reading this way
    // gives the peer its credit back.
    let data = pattern(4 * test_config().mux.bulk_window as usize + 12_345, 3);
    let mut s = a.open_bulk_stream().await.unwrap();
    let d = data.clone();
    let writer = tokio::spawn(async move { send_all(&mut s, &d).await });
    let mut t = b.accept_stream().await.unwrap();
    let max = 50_000;
    let mut got = Vec::new();
    let read = async {
        while let Some(piece) = std::future::poll_fn(|cx| t.poll_read_bytes(cx, max))
            .await
            .unwrap()
        {
            assert!(!piece.is_empty() && piece.len() <= max, "{}", piece.len());
            got.extend_from_slice(&piece);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the stream stalled: credit was not given back");
    writer.await.unwrap();
    assert_same(&got, &data);
}
