//! A hostile device on the LAN against the peer network (issue 14, M2 and L1),
//! played on 127.0.0.1 with the project's own transport: the attacker comes from
//! 127.0.0.2 (any 127/8 address is this machine), the honest peer from
//! 127.0.0.1. Each test asserts the bound held and that the honest peer still
//! connects and gets a message through.

use std::net::SocketAddr;
use std::time::Duration;

use peerconnect::net::transport::{Connection, Transport};
use peerconnect::proto::messaging::Status;
use peerconnect::proto::wire::{DeviceKind, Hello};
use peerconnect::{Config, Identity, Node, Trust};
use peerconnect_tests::wait_for;
use tokio::net::{TcpSocket, TcpStream};

const T: Duration = Duration::from_secs(30);

/// A node on 127.0.0.1 with the LAN defaults of the per-address caps (which
/// `Config::local` lifts, since all its peers share 127.0.0.1).
async fn lan_node(dir: &std::path::Path, name: &str, max_connections: usize) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    c.max_connections = max_connections;
    c.max_sessions_per_ip = peerconnect::config::MAX_SESSIONS_PER_IP;
    c.max_pending_handshakes_per_ip = peerconnect::config::MAX_PENDING_HANDSHAKES_PER_IP;
    Node::start(c).await.unwrap()
}

async fn honest(dir: &std::path::Path) -> Node {
    let mut c = Config::local(dir);
    c.name = "honest".into();
    Node::start(c).await.unwrap()
}

/// A TCP connection to `to` from the attacker's address 127.0.0.2.
async fn from_attacker(to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind("127.0.0.2:0".parse().unwrap())?;
    s.connect(to).await
}

fn hello(instance: u64) -> Hello {
    Hello {
        instance,
        name: "attacker".into(),
        kind: DeviceKind::Other,
        listen_port: 0,
    }
}

/// A full handshake (TLS and Hello) from 127.0.0.2 with `id`.
async fn attacker_session(id: &Identity, to: SocketAddr, instance: u64) -> Connection {
    let t = Transport::new(id, 64).unwrap();
    let mut conn = t.connect_with(to, None, from_attacker(to)).await.unwrap();
    conn.exchange_hello(&hello(instance)).await.unwrap();
    conn
}

/// The honest peer connects to `a` and gets a message delivered.
async fn honest_peer_is_served(a: &Node, b: &Node) {
    let a_id = b.connect(a.listen_addrs()[0], Some(a.id())).await.unwrap();
    let (_, status) = b
        .send_message_and_wait(a_id, "still there?", None, T)
        .await
        .unwrap();
    assert!(
        status >= Status::Delivered,
        "message not delivered: {status:?}"
    );
}

#[tokio::test]
async fn half_open_flood_from_one_address_leaves_an_honest_peer_served() {
    let dir = tempfile::tempdir().unwrap();
    // Few slots, so that the flood would take them all without a per-address cap.
    let a = lan_node(&dir.path().join("a"), "alpha", 16).await;
    let addr = a.listen_addrs()[0];
    // 64 connections that never start TLS, held for the whole test.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(from_attacker(addr).await.unwrap());
    }
    // The honest peer, queued behind the whole flood, gets a slot and is served.
    let b = honest(&dir.path().join("b")).await;
    honest_peer_is_served(&a, &b).await;
    // All but the 8 allowed in their handshake were closed before any TLS work.
    let refused = wait_for(T, "the flood refused past the per-address cap", || {
        let a = a.clone();
        async move {
            let s = a.stats().await.unwrap();
            (s.handshakes_refused >= 64 - 8).then_some(s.handshakes_refused)
        }
    })
    .await;
    assert_eq!(refused, 64 - 8);
    drop(flood);
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_peer_asking_for_many_lanes_is_refused_past_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let a = lan_node(&dir.path().join("a"), "alpha", 512).await;
    let addr = a.listen_addrs()[0];
    let rogue = Identity::generate();
    // Every connection with the same instance is one more lane of one session.
    let mut lanes = Vec::new();
    for _ in 0..20 {
        lanes.push(attacker_session(&rogue, addr, 7).await);
    }
    let (held, refused) = wait_for(T, "all 20 lanes taken in or refused", || {
        let a = a.clone();
        let rogue = rogue.peer_id();
        async move {
            let held = a.links().get(&rogue)?.mux.lane_count();
            let refused = a.stats().await.unwrap().lanes_refused as usize;
            (held + refused == 20).then_some((held, refused))
        }
    })
    .await;
    assert_eq!((held, refused), (8, 12), "lanes held and refused");
    let b = honest(&dir.path().join("b")).await;
    honest_peer_is_served(&a, &b).await;
    drop(lanes);
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn many_keys_from_one_address_get_at_most_the_per_address_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let a = lan_node(&dir.path().join("a"), "alpha", 512).await;
    let addr = a.listen_addrs()[0];
    let mut conns = Vec::new();
    for i in 0..20 {
        conns.push(attacker_session(&Identity::generate(), addr, i).await);
    }
    let stats = wait_for(T, "all 20 keys taken in or refused", || {
        let a = a.clone();
        async move {
            let s = a.stats().await.unwrap();
            (s.sessions + s.sessions_refused_per_ip as usize == 20).then_some(s)
        }
    })
    .await;
    assert_eq!(
        (stats.sessions, stats.sessions_refused_per_ip),
        (16, 4),
        "sessions from 127.0.0.2 held and refused"
    );
    let b = honest(&dir.path().join("b")).await;
    honest_peer_is_served(&a, &b).await;
    drop(conns);
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn fresh_keys_cannot_grow_the_peer_table_past_the_cap_nor_evict_a_trusted_peer() {
    let dir = tempfile::tempdir().unwrap();
    let a = honest_named(&dir.path().join("a"), "alpha").await;
    a.store().set_untrusted_peer_limit(10);
    let b = honest(&dir.path().join("b")).await;
    let a_id = b.connect(a.listen_addrs()[0], Some(a.id())).await.unwrap();
    wait_for(T, "a sees b", || {
        let a = a.clone();
        let b_id = b.id();
        async move { a.links().is_connected(&b_id).then_some(()) }
    })
    .await;
    a.set_trust(b.id(), Trust::Trusted).await.unwrap();
    b.shutdown().await.unwrap();
    // 30 fresh keys each complete a handshake and leave.
    let addr = a.listen_addrs()[0];
    for i in 0..30 {
        let id = Identity::generate();
        let t = Transport::new(&id, 4).unwrap();
        let mut conn = t.connect(addr, Some(a_id)).await.unwrap();
        conn.exchange_hello(&hello(i)).await.unwrap();
        let pid = id.peer_id();
        wait_for(T, "the key's session", || {
            let a = a.clone();
            async move { a.links().is_connected(&pid).then_some(()) }
        })
        .await;
    }
    let rows = a.known_peers().unwrap();
    let unknown = rows.iter().filter(|p| p.trust == Trust::Unknown).count();
    assert_eq!(unknown, 10, "stored rows of untrusted keys");
    let b_row = rows
        .iter()
        .find(|p| p.id == b.id())
        .expect("trusted peer kept");
    assert_eq!(b_row.trust, Trust::Trusted);
    assert!(!b_row.addrs.is_empty(), "trusted peer keeps its address");
    // the trusted peer comes back and is served
    let b = honest(&dir.path().join("b")).await;
    honest_peer_is_served(&a, &b).await;
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

/// Issue 14, L1: at start a node re-dials its trusted peers and the strangers
/// it was connected to lately, not every stored row: any key that connected
/// once left a row, and a restart must not dial wherever those point.
#[tokio::test]
async fn a_restart_redials_trusted_and_recent_peers_but_not_stale_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let b = honest(&dir.path().join("b")).await;
    let stale = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let recent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    {
        // Rows an earlier run left, newest first (the order they are read at
        // start): the stale stranger comes before the trusted peer.
        let store = peerconnect::store::Store::open(&a_dir).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let hour = 3_600_000;
        for (name, addr, seen) in [
            ("recent", recent.local_addr().unwrap(), now - hour),
            ("stale", stale.local_addr().unwrap(), now - 48 * hour),
        ] {
            let id = Identity::generate().peer_id();
            store
                .upsert_peer(&id, name, DeviceKind::Other, &[addr], seen)
                .unwrap();
        }
        store
            .upsert_peer(
                &b.id(),
                "honest",
                DeviceKind::Other,
                b.listen_addrs(),
                now - 72 * hour,
            )
            .unwrap();
        store.set_trust(&b.id(), Trust::Trusted).unwrap();
    }
    let a = honest_named(&a_dir, "alpha").await;
    wait_for(T, "the trusted peer re-dialed", || {
        let a = a.clone();
        let b_id = b.id();
        async move { a.links().is_connected(&b_id).then_some(()) }
    })
    .await;
    tokio::time::timeout(T, recent.accept())
        .await
        .expect("the stranger seen an hour ago was not re-dialed")
        .unwrap();
    // The start dials every row it picks in one pass, the stale one before
    // the two above: had it been picked, its connection would be queued by
    // now. The wait only gives a broken build time to show itself.
    let dialed = tokio::time::timeout(Duration::from_secs(2), stale.accept()).await;
    assert!(
        dialed.is_err(),
        "the stranger last seen two days ago was re-dialed at start"
    );
    honest_peer_is_served(&a, &b).await;
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

async fn honest_named(dir: &std::path::Path, name: &str) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    Node::start(c).await.unwrap()
}

/// Sends `n` messages from `from` to `to`, each acknowledged before the next.
async fn send_all(from: &Node, to: &Node, tag: &str, n: usize) {
    from.connect(to.listen_addrs()[0], Some(to.id()))
        .await
        .unwrap();
    for i in 0..n {
        let (_, status) = from
            .send_message_and_wait(to.id(), format!("{tag}{i}"), None, T)
            .await
            .unwrap();
        assert!(status >= Status::Delivered, "{tag}{i} not delivered");
    }
}

#[tokio::test]
async fn messages_from_untrusted_peers_are_capped_and_a_trusted_peers_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = honest_named(&dir.path().join("a"), "alpha").await;
    a.store()
        .set_untrusted_message_quota(peerconnect::store::UntrustedMessageQuota {
            per_peer_messages: 20,
            per_peer_bytes: 1 << 20,
            total_messages: 30,
            total_bytes: 1 << 20,
            check_every: 1,
        });
    let friend = honest_named(&dir.path().join("f"), "friend").await;
    let spammer = honest_named(&dir.path().join("s"), "spammer").await;
    let stranger = honest_named(&dir.path().join("x"), "stranger").await;
    // the friend is trusted once it is known
    friend
        .connect(a.listen_addrs()[0], Some(a.id()))
        .await
        .unwrap();
    wait_for(T, "a sees the friend", || {
        let a = a.clone();
        let f = friend.id();
        async move { a.links().is_connected(&f).then_some(()) }
    })
    .await;
    a.set_trust(friend.id(), Trust::Trusted).await.unwrap();
    send_all(&friend, &a, "f", 40).await;
    send_all(&spammer, &a, "s", 50).await;
    send_all(&stranger, &a, "x", 15).await;
    let count = |p: &Node| a.message_counts(p.id()).unwrap().incoming;
    assert_eq!(count(&friend), 40, "every message of the trusted peer kept");
    assert!(count(&spammer) <= 20, "per-peer cap: {}", count(&spammer));
    assert!(
        count(&spammer) + count(&stranger) <= 30,
        "total cap of untrusted peers: {} + {}",
        count(&spammer),
        count(&stranger)
    );
    // the newest are the ones kept
    let last = |p: &Node| a.conversation(p.id(), None, 1).unwrap()[0].text.clone();
    assert_eq!(last(&spammer), "s49");
    assert_eq!(last(&stranger), "x14");
    assert_eq!(count(&stranger), 15);
    for n in [a, friend, spammer, stranger] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn room_history_from_an_untrusted_author_is_capped_and_a_trusted_authors_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = honest_named(&dir.path().join("a"), "alpha").await;
    a.store()
        .set_untrusted_room_quota(peerconnect::store::UntrustedRoomQuota {
            per_author: 10,
            per_room: 1000,
            check_every: 1,
        });
    let friend = honest_named(&dir.path().join("f"), "friend").await;
    let spammer = honest_named(&dir.path().join("s"), "spammer").await;
    for n in [&friend, &spammer] {
        n.connect(a.listen_addrs()[0], Some(a.id())).await.unwrap();
        let id = n.id();
        wait_for(T, "a sees the peer", || {
            let a = a.clone();
            async move { a.links().is_connected(&id).then_some(()) }
        })
        .await;
    }
    a.set_trust(friend.id(), Trust::Trusted).await.unwrap();
    for n in [&a, &friend, &spammer] {
        n.join_room("lobby").await.unwrap();
    }
    for n in [&friend, &spammer] {
        wait_for(T, "a neighbour in the room", || {
            let n = n.clone();
            async move { (!n.room_neighbors("lobby").await.unwrap().is_empty()).then_some(()) }
        })
        .await;
    }
    let mut events = a.events();
    let mut last = None;
    for i in 0..30 {
        last = Some(spammer.room_say("lobby", &format!("s{i}")).await.unwrap());
    }
    for i in 0..20 {
        last = Some(friend.room_say("lobby", &format!("f{i}")).await.unwrap());
    }
    let last = last.unwrap();
    peerconnect_tests::next_matching(&mut events, T, "the friend's last message", |e| match e {
        peerconnect::Event::RoomMessage { message, .. } if message.id == last.id => Some(()),
        _ => None,
    })
    .await;
    // all 50 reached a and were stored (some may since have been evicted)
    wait_for(T, "all 50 room messages received", || {
        let a = a.clone();
        async move { (a.room_stats().received >= 50).then_some(()) }
    })
    .await;
    let h = a.room_history("lobby", None, 1000).unwrap();
    let by = |p: &Node| h.iter().filter(|m| m.author == p.id()).count();
    assert_eq!(by(&friend), 20, "every message of the trusted author kept");
    assert!(by(&spammer) <= 10, "per-author cap: {}", by(&spammer));
    let honest_said = a.room_say("lobby", "mine").await.unwrap();
    assert!(
        a.room_history("lobby", None, 1000)
            .unwrap()
            .contains(&honest_said)
    );
    for n in [a, friend, spammer] {
        n.shutdown().await.unwrap();
    }
}

/// Issue 14, H2 (and "raise RLIMIT_NOFILE at start"): a node started with a
/// soft limit of 256 open files raises it to the hard limit, so a flood of
/// connections meets the node's own caps, not "Too many open files" in its
/// peer, web and control accept loops. Run as a `peerconnect up` child.
#[test]
fn a_node_started_with_a_low_descriptor_limit_raises_it_to_the_hard_limit() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    const LOW: libc::rlim_t = 256;
    let mut ours = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut ours) },
        0
    );
    if ours.rlim_max <= LOW {
        eprintln!("SKIPPED: the hard limit of open files is {}", ours.rlim_max);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = peerconnect_tests::up_command(dir.path(), "127.0.0.1:0");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let low = libc::rlimit {
                rlim_cur: LOW,
                rlim_max: libc::RLIM_INFINITY,
            };
            let mut lim = low;
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = low.rlim_cur;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // `up --json` says it is listening once the node started.
    let listening = lines.map_while(Result::ok).any(|l| {
        serde_json::from_str::<serde_json::Value>(&l).is_ok_and(|v| v["event"] == "listening")
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "the node never said it was listening");
    let limits = limits.unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("no open files line in /proc/PID/limits");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (f[3], f[4]),
        (
            ours.rlim_max.to_string().as_str(),
            ours.rlim_max.to_string().as_str()
        ),
        "soft and hard limit of the node started at {LOW}: {line}"
    );
}
