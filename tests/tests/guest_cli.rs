//! A browser guest of `peerconnect up`'s web UI, logged in over HTTP on
//! 127.0.0.1, seen from the command line: `peerconnect peers --json` lists it
//! and `peerconnect msg` reaches it (both through the running node).

use std::process::Command;
use std::time::Duration;

use peerconnect_tests::http::http;
use peerconnect_tests::{UpProcess, peerconnect_bin};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_browser_guest_shows_in_peers_json_and_takes_a_cli_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let data = data.to_str().unwrap();
    let mut cmd = Command::new(peerconnect_bin());
    cmd.args([
        "up",
        "--data-dir",
        data,
        "--name",
        "host",
        "--no-discovery",
        "--listen",
        "127.0.0.1:0",
        "--web",
        "127.0.0.1:0",
        "--json",
    ]);
    let mut up = UpProcess::spawn(cmd);
    up.listening(T);
    let web = up.first(T, "the web line", |v| v["event"] == "web");
    let pin = web["pin"].as_str().unwrap();
    let url = web["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u.as_str())
        .find(|u| u.contains("127.0.0.1"))
        .unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    // A loopback client without the owner's cookie is a guest once it
    // gives the PIN (another user of this machine, a browser on it).
    let body = serde_json::json!({"pin": pin, "name": "cli phone"}).to_string();
    let r = http(
        addr,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let guest = r.json()["guest"]["id"].as_str().unwrap().to_string();
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let out = Command::new(peerconnect_bin())
        .args(["peers", "--json", "--wait", "0", "--data-dir", data])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&serde_json::Value> = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] == guest.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{peers}");
    assert_eq!(listed[0]["name"], "cli phone");
    assert_eq!(listed[0]["kind"], "browser");

    // `msg` by the guest's name, as for any peer: the guest reads it.
    let out = Command::new(peerconnect_bin())
        .args(["msg", "cli phone", "hello from the cli", "--data-dir", data])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = http(
        addr,
        "GET",
        "/api/guest/messages",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    let texts: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["hello from the cli"]);
    drop(up);
}
