//! Finding a peer through the DHT where LAN discovery cannot work: two hosts
//! whose multicast and broadcast are dropped, joined only by a third node they
//! both know.

use std::time::Duration;

use peerconnect_tests::{Lan, UpProcess, find_until_found, peerconnect_bin, skip};
use serde_json::Value;

fn connected_to(seen: &[Value], name: &str) -> bool {
    seen.iter()
        .any(|v| v["event"] == "peer_connected" && v["peer"]["name"] == name)
}

#[test]
fn find_resolves_a_peer_reachable_only_through_a_shared_node() {
    const TEST: &str = "find_resolves_a_peer_reachable_only_through_a_shared_node";
    let lan = match Lan::up(3) {
        Ok(l) => l,
        Err(why) => return skip(TEST, &why),
    };
    if let Err(why) = lan.drop_multicast_and_broadcast() {
        return skip(TEST, &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let hub_addr = format!("{}:47471", lan.ip(3));
    let mut hub = UpProcess::start(&lan, 3, &dir.path().join("hub"), &["--name", "hub"]);
    hub.until(Duration::from_secs(10), "hub listening", |s| {
        s.iter().any(|v| v["event"] == "listening")
    });
    let mut alpha = UpProcess::start(
        &lan,
        1,
        &dir.path().join("alpha"),
        &["--name", "alpha", "--connect", &hub_addr],
    );
    let mut beta = UpProcess::start(
        &lan,
        2,
        &dir.path().join("beta"),
        &["--name", "beta", "--connect", &hub_addr],
    );
    alpha.until(Duration::from_secs(20), "alpha connected to hub", |s| {
        connected_to(s, "hub")
    });
    beta.until(Duration::from_secs(20), "beta connected to hub", |s| {
        connected_to(s, "hub")
    });
    // discovery is blocked: alpha has not met beta
    assert!(!connected_to(&alpha.seen, "beta"));
    let beta_id = beta.id();

    // beta publishes its record once it has joined; retry until it is there
    let out = find_until_found(Duration::from_secs(30), || {
        let mut cmd = lan.command(1, &peerconnect_bin());
        cmd.args(["find", "beta", "--json", "--data-dir"])
            .arg(dir.path().join("alpha"));
        cmd
    });
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let found: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(found["event"], "found");
    assert_eq!(found["peer"]["id"], beta_id.as_str());
    let addrs: Vec<&str> = found["peer"]["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        addrs.contains(&format!("{}:47471", lan.ip(2)).as_str()),
        "{addrs:?}"
    );

    // other commands now accept the found peer by name
    let out = lan
        .command(1, &peerconnect_bin())
        .args(["trust", "beta", "--json", "--data-dir"])
        .arg(dir.path().join("alpha"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], beta_id.as_str());

    for p in [alpha, beta, hub] {
        p.stop();
    }
}
