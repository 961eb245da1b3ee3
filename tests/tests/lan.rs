//! Discovery on a private LAN of network namespaces joined by a bridge, made and
//! removed by each test. Skipped (with the reason printed) where namespaces
//! cannot be made.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerconnect::proto::discovery::{Announce, SignedAnnounce};
use peerconnect::proto::wire::{self, Datagram, DeviceKind};
use peerconnect::{Config, Identity, Node};
use peerconnect_tests::{Lan, UpProcess, in_netns, peerconnect_bin, skip, wait_for};
use serde_json::Value;

fn connected_count(seen: &[Value]) -> usize {
    seen.iter()
        .filter(|v| v["event"] == "peer_connected")
        .map(|v| v["peer"]["id"].as_str().unwrap_or_default().to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

fn three_nodes_find_each_other(lan: &Lan) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut nodes: Vec<UpProcess> = (1..=3)
        .map(|i| {
            UpProcess::start(
                lan,
                i,
                &dir.path().join(format!("h{i}")),
                &["--name", &format!("host{i}")],
            )
        })
        .collect();
    for n in &mut nodes {
        n.until(Duration::from_secs(20), "both other peers connected", |s| {
            connected_count(s) == 2
        });
    }
    eprintln!(
        "three namespaces: all pairs connected after {:?}",
        started.elapsed()
    );
    let ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();
    // Each pair shows the same verification code on both sides.
    for (i, a) in nodes.iter().enumerate() {
        for (j, b) in nodes.iter().enumerate() {
            if i != j {
                assert_eq!(
                    a.codes()[&ids[j]],
                    b.codes()[&ids[i]],
                    "codes of pair {i},{j} differ"
                );
            }
        }
    }
    // `peers --json` in host 1 uses the running node and lists the other two.
    let out = lan
        .command(1, &peerconnect_bin())
        .args(["peers", "--json", "--data-dir"])
        .arg(dir.path().join("h1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("peers prints a JSON array");
    let listed: BTreeSet<&str> = peers.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(listed, BTreeSet::from([ids[1].as_str(), ids[2].as_str()]));
    assert!(peers.iter().all(|p| p["connected"] == true));
    for n in nodes {
        n.stop();
    }
}

#[test]
fn three_namespaces_discover_connect_and_agree_on_codes() {
    let lan = match Lan::up(3) {
        Ok(l) => l,
        Err(why) => return skip("three_namespaces_discover_connect_and_agree_on_codes", &why),
    };
    three_nodes_find_each_other(&lan);
}

#[test]
fn broadcast_alone_finds_peers_when_multicast_is_dropped() {
    let lan = match Lan::up(3) {
        Ok(l) => l,
        Err(why) => {
            return skip(
                "broadcast_alone_finds_peers_when_multicast_is_dropped",
                &why,
            );
        }
    };
    if let Err(why) = lan.drop_multicast() {
        return skip(
            "broadcast_alone_finds_peers_when_multicast_is_dropped",
            &why,
        );
    }
    three_nodes_find_each_other(&lan);
}

fn forged_announce(victim: &Identity, forger: &Identity, port: u16) -> Vec<u8> {
    let a = Announce {
        id: victim.peer_id(),
        instance: 1,
        name: "impostor".into(),
        kind: DeviceKind::Phone,
        tcp_port: port,
        version: wire::VERSION,
        timestamp_ms: u64::MAX / 2,
        reply: false,
    };
    // Signed by the forger, claiming the victim's id.
    wire::encode_datagram(&Datagram::Announce(SignedAnnounce::sign(a, forger))).unwrap()
}

#[test]
fn forged_and_garbage_datagrams_are_dropped_while_real_peers_connect() {
    let lan = match Lan::up(2) {
        Ok(l) => l,
        Err(why) => {
            return skip(
                "forged_and_garbage_datagrams_are_dropped_while_real_peers_connect",
                &why,
            );
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("a"), dir.path().join("b"));
    let victim = Identity::generate();
    let victim_id = victim.peer_id();
    let target = SocketAddr::from((lan.ip(1), peerconnect::config::DEFAULT_DISCOVERY_PORT));
    // The attacker on host 2 sends forgeries and garbage to host 1's discovery port
    // while a real node on host 2 announces itself.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (id_tx, id_rx) = std::sync::mpsc::channel();
    let host2 = in_netns(lan.ns(2), move || async move {
        let mut c = Config::new(&d2);
        c.name = "real".into();
        let node = Node::start(c).await.unwrap();
        id_tx.send(node.id()).unwrap();
        let s = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let forger = Identity::generate();
        for i in 0..200u32 {
            s.send_to(&forged_announce(&victim, &forger, 1), target)
                .await
                .unwrap();
            let garbage: Vec<u8> = (0..(i % 97)).map(|b| (b * 31 + i) as u8).collect();
            s.send_to(&garbage, target).await.unwrap();
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = stop_rx.await;
        node.shutdown().await.unwrap();
    });
    let real_id = id_rx.recv().unwrap();
    let result = in_netns(lan.ns(1), move || async move {
        let node = Node::start(Config::new(&d1)).await.unwrap();
        let peers = wait_for(Duration::from_secs(20), "the real peer to connect", || {
            let node = node.clone();
            async move {
                let p = node.peers().await.unwrap();
                p.iter()
                    .any(|p| p.id == real_id && p.connected)
                    .then_some(p)
            }
        })
        .await;
        let stats = wait_for(
            Duration::from_secs(10),
            "forgeries and garbage counted",
            || {
                let node = node.clone();
                async move {
                    let s = node.stats().await.unwrap();
                    (s.discovery.bad_signature > 0 && s.discovery.malformed > 0).then_some(s)
                }
            },
        )
        .await;
        node.shutdown().await.unwrap();
        (peers, stats)
    })
    .join();
    let _ = stop_tx.send(());
    host2.join().unwrap();
    let (peers, stats) = result.unwrap();
    assert!(
        !peers.iter().any(|p| p.id == victim_id),
        "forged peer was listed"
    );
    assert!(peers.iter().any(|p| p.id == real_id));
    assert!(stats.discovery.bad_signature >= 1);
}
