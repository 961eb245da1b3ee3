//! One PEER rule for every command, with or without a running node: a
//! `HOST:PORT` is dialed, and a PeerId not connected is looked up in the DHT.
//! Nodes on 127.0.0.1 without discovery, joined by `--connect`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use peerconnect_tests::{UpProcess, find_until_found, peerconnect_bin, up_command};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn run(args: &[&str], data_dir: &Path) -> Output {
    Command::new(peerconnect_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

/// The JSON lines a command printed.
fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A loopback `up` with `args`, once it listens: (process, its id, its address).
fn up(dir: &Path, args: &[&str]) -> (UpProcess, String, String) {
    let mut cmd = up_command(dir, "127.0.0.1:0");
    cmd.args(args);
    let mut p = UpProcess::spawn(cmd);
    let l = p.listening(T);
    let addr = l["addrs"][0].as_str().unwrap().to_string();
    (p, p_id(&l), addr)
}

fn p_id(listening: &Value) -> String {
    listening["id"].as_str().unwrap().to_string()
}

/// `trust HOST:PORT` dials the address and trusts the peer that answers:
/// through a running node's control socket and with a node of its own alike.
#[test]
fn trust_host_port_works_with_and_without_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let (_beta, beta_id, beta_addr) = up(&dir.path().join("beta"), &["--name", "beta"]);
    let expect = |out: &Output| {
        assert!(
            out.status.success(),
            "trust {beta_addr} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = lines(out);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0]["event"], "trust");
        assert_eq!(said[0]["id"], beta_id.as_str());
        assert_eq!(said[0]["trust"], "trusted");
    };

    // No node runs on this data dir: `trust` starts its own.
    let alone = dir.path().join("alone");
    let out = run(&["trust", &beta_addr, "--no-discovery", "--json"], &alone);
    expect(&out);
    // The store says so: a node started there later reconnects to beta,
    // which it trusts.
    let (mut later, _, _) = up(&alone, &[]);
    let met = later.first(T, "reconnected to beta", |v| {
        v["event"] == "peer_connected" && v["peer"]["id"] == beta_id.as_str()
    });
    assert_eq!(met["peer"]["trust"], "trusted", "{met}");
    drop(later);

    // A node runs there: `trust` goes through its control socket.
    let running = dir.path().join("running");
    let (_alpha, _, _) = up(&running, &["--name", "alpha"]);
    let out = run(&["trust", &beta_addr, "--json"], &running);
    expect(&out);
    let out = run(&["peers", "--json"], &running);
    let peers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        peers
            .iter()
            .any(|p| p["id"] == beta_id.as_str() && p["trust"] == "trusted"),
        "{peers:?}"
    );
}

/// `send --to PEERID` for a peer the sender has never met, connected only to
/// a node both know: the sender asks the DHT where it is, and the files arrive.
#[test]
fn send_to_an_id_known_only_to_the_dht_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, hub_id, hub_addr) = up(&dir.path().join("hub"), &["--name", "hub"]);
    let dl = dir.path().join("dl");
    let (mut beta, beta_id, _) = up(
        &dir.path().join("beta"),
        &[
            "--name",
            "beta",
            "--connect",
            &hub_addr,
            "--yes",
            "--downloads",
            dl.to_str().unwrap(),
        ],
    );
    let alpha_dir = dir.path().join("alpha");
    let (mut alpha, _, _) = up(&alpha_dir, &["--name", "alpha", "--connect", &hub_addr]);
    for p in [&mut alpha, &mut beta] {
        p.first(T, "connected to the hub", |v| {
            v["event"] == "peer_connected" && v["peer"]["id"] == hub_id.as_str()
        });
    }
    // Beta's record reaches the DHT once it has joined; the hub (not alpha,
    // which must learn of beta only when it sends) finds it then.
    find_until_found(T, || {
        let mut cmd = Command::new(peerconnect_bin());
        cmd.args(["find", &beta_id, "--json", "--data-dir"])
            .arg(dir.path().join("hub"));
        cmd
    });
    assert!(
        !alpha
            .seen
            .iter()
            .any(|v| v["peer"]["id"] == beta_id.as_str()),
        "alpha met beta before sending: {:?}",
        alpha.seen
    );

    let file = dir.path().join("note.txt");
    std::fs::write(&file, "through the DHT").unwrap();
    let out = run(
        &["send", "--to", &beta_id, file.to_str().unwrap(), "--json"],
        &alpha_dir,
    );
    assert!(
        out.status.success(),
        "send to {beta_id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&out).last().unwrap()["event"],
        "transfer_complete",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("note.txt")).unwrap(),
        "through the DHT"
    );
}
