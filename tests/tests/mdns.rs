//! DNS-SD (mDNS) against a browser nobody here wrote: python `zeroconf` (in
//! the virtualenv `scripts/test` makes for the LocalSend tools), on a private
//! LAN of network namespaces whose hosts drop PeerConnect's own discovery
//! (its multicast groups and subnet broadcast) but pass mDNS. The test says
//! SKIPPED (with the reason) when namespaces, `nft` or `zeroconf` are missing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use peerconnect_tests::{Lan, UpProcess, skip};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// Where `scripts/test` puts the virtualenv.
const VENV: &str = "/var/cache/peerconnect/localsend-venv";

/// Browses `_peerconnect._tcp` until every id in argv[2] (comma-separated)
/// is seen, then 2 s more (answers to the same queries from other nodes
/// arrive within a second), at most argv[3] seconds; prints every service
/// resolved as one JSON array.
const BROWSER: &str = r#"
import json, sys, time
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf
ty, want, deadline = "_peerconnect._tcp.local.", set(sys.argv[2].split(",")), float(sys.argv[3])
zc = Zeroconf()
names = set()
class Listener(ServiceListener):
    def add_service(self, zc, t, name): names.add(name)
    def update_service(self, zc, t, name): names.add(name)
    def remove_service(self, zc, t, name): pass
ServiceBrowser(zc, ty, Listener())
seen, done_at, end = {}, None, time.monotonic() + deadline
while time.monotonic() < end:
    for name in sorted(names - set(seen)):
        info = zc.get_service_info(ty, name, timeout=2000)
        if info is not None:
            props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            seen[name] = {"name": name, "port": info.port, "props": props,
                          "addrs": info.parsed_addresses()}
    if done_at is None and want <= {s["props"].get("id") for s in seen.values()}:
        done_at = time.monotonic()
    if done_at is not None and time.monotonic() - done_at >= 2:
        break
    time.sleep(0.1)
zc.close()
print(json.dumps(list(seen.values())))
"#;

/// The virtualenv's python, if it has `zeroconf`.
fn python_with_zeroconf() -> Option<PathBuf> {
    let venv = std::env::var_os("PEERCONNECT_LOCALSEND_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(VENV));
    let py = venv.join("bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import zeroconf"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

/// The port of the node's `listening` address on the LAN.
fn port(listening: &Value) -> u16 {
    let addr = listening["addrs"][0].as_str().expect("an address");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn connected_to(seen: &[Value], id: &str) -> bool {
    seen.iter()
        .any(|v| v["event"] == "peer_connected" && v["peer"]["id"] == id)
}

#[test]
fn mdns_advertises_to_zeroconf_and_connects_nodes_when_our_multicast_is_dropped() {
    const TEST: &str =
        "mdns_advertises_to_zeroconf_and_connects_nodes_when_our_multicast_is_dropped";
    let Some(python) = python_with_zeroconf() else {
        return skip(
            TEST,
            "python zeroconf is not installed in the virtualenv (scripts/test installs it)",
        );
    };
    let lan = match Lan::up(4) {
        Ok(l) => l,
        Err(why) => return skip(TEST, &why),
    };
    if let Err(why) = lan.drop_peerconnect_discovery() {
        return skip(TEST, &why);
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // Ports chosen by the OS: the advertised port must be the one in use.
    let common = ["--no-web", "--no-localsend", "--listen", "0.0.0.0:0"];
    let start = |host: usize, name: &str, extra: &[&str]| {
        let mut args = vec!["--name", name];
        args.extend(common);
        args.extend(extra);
        UpProcess::start(&lan, host, &dir.path().join(name), &args)
    };
    let mut a = start(1, "mdns-a", &[]);
    let mut b = start(2, "mdns-b", &[]);
    let mut quiet = start(3, "quiet-c", &["--no-mdns"]);
    let (la, lb) = (a.listening(T), b.listening(T));
    quiet.listening(T);
    let (ida, idb, idq) = (a.id(), b.id(), quiet.id());

    // Only mDNS can have brought these two together.
    a.until(T, "a connected to b", |s| connected_to(s, &idb));
    b.until(T, "b connected to a", |s| connected_to(s, &ida));
    eprintln!("connected through mDNS after {:?}", started.elapsed());

    let out = lan
        .command(4, &python)
        .args(["-c", BROWSER, "browse", &format!("{ida},{idb}"), "20"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the zeroconf browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("zeroconf saw {seen:#?}");
    let record = |id: &str| {
        seen.iter()
            .find(|s| s["props"]["id"] == id)
            .unwrap_or_else(|| panic!("zeroconf did not see {id}: {seen:#?}"))
            .clone()
    };
    for (id, name, listening, host) in [(&ida, "mdns-a", &la, 1), (&idb, "mdns-b", &lb, 2)] {
        let r = record(id);
        assert_eq!(r["port"], port(listening), "{r}");
        assert_eq!(r["props"]["name"], name, "{r}");
        let ip = lan.ip(host).to_string();
        assert!(
            r["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| *a == ip.as_str()),
            "{r} lacks {ip}"
        );
    }
    // The --no-mdns node would have answered the same queries.
    assert!(
        !seen.iter().any(|s| s["props"]["id"] == idq.as_str()),
        "a --no-mdns node was seen: {seen:#?}"
    );
    eprintln!("{TEST}: done in {:?}", started.elapsed());
    for n in [a, b, quiet] {
        n.stop();
    }
}
