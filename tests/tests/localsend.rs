//! PeerConnect speaking LocalSend with clients nobody here wrote: the Rust
//! crate `localsend-rs` (its CLI) and the PyPI daemon `localsendd` (with
//! `localsendctl`), on a private LAN of network namespaces. `scripts/test`
//! installs both; the test says SKIPPED (with the reason) when a tool or
//! namespaces are missing.
//!
//! One PeerConnect node (in this process, in host 1) meets `localsendd`
//! (host 2) and `localsend-rs` (host 3), and a sender played by this test
//! (for what no client can be made to do: a bad `sha256`, a second session).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerconnect::localsend::client::{Framing, Response, request, tls_identity};
use peerconnect::proto::transfer::Selection;
use peerconnect::proto::wire::DeviceKind;
use peerconnect::{Config, Event, Node};
use peerconnect_tests::crash::tree;
use peerconnect_tests::{Lan, in_netns, peerconnect_bin, pseudo_random, skip, wait_for};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const NAME: &str = "pc-laptop";
const LSD_ALIAS: &str = "lsd-host2";

/// Where `scripts/test` puts the `localsendd` virtualenv.
const VENV: &str = "/var/cache/peerconnect/localsend-venv";

/// `name` on PATH, in ~/.cargo/bin or in the LocalSend virtualenv.
fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    if let Some(v) = std::env::var_os("PEERCONNECT_LOCALSEND_VENV") {
        dirs.push(Path::new(&v).join("bin"));
    }
    dirs.push(Path::new(VENV).join("bin"));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// `program ARGS…` inside namespace `ns`, run from a tokio task (the node
/// shares the thread, so nothing may block it).
async fn run_in(ns: &str, program: &Path, args: &[&str]) -> std::process::Output {
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{} {args:?} did not end within {T:?}", program.display()))
    .unwrap();
    eprintln!(
        "{} {args:?}: {}\n  stdout: {}\n  stderr: {}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// How the test answers offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    All,
    Reject,
}

/// Answers every offer as `policy` says; the offers seen so far.
fn answer_offers(node: &Node, policy: Arc<Mutex<Answer>>) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (node, seen2) = (node.clone(), seen.clone());
    let mut events = node.events();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let Event::Offer {
                id, auto_accepted, ..
            } = &e
                && !auto_accepted
            {
                let answer = *policy.lock().unwrap();
                match answer {
                    Answer::All => node.accept_offer(*id, Selection::All).unwrap(),
                    Answer::Reject => node.reject_offer(*id).unwrap(),
                }
            }
            seen2.lock().unwrap().push(e);
        }
    });
    seen
}

/// A request of the sender this test plays, to the node at 127.0.0.1.
async fn call(path: &str, body: &[u8], framing: Framing) -> Response {
    let addr = "127.0.0.1:53317".parse().unwrap();
    request(
        addr,
        Some(tester().0.clone()),
        "POST",
        path,
        body,
        framing,
        T,
    )
    .await
    .unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The client certificate of the sender this test plays, and its fingerprint.
fn tester() -> &'static (Arc<rustls::ClientConfig>, String) {
    static ID: std::sync::OnceLock<(Arc<rustls::ClientConfig>, String)> =
        std::sync::OnceLock::new();
    ID.get_or_init(|| tls_identity().unwrap())
}

/// The `info` of the sender this test plays.
fn tester_info() -> Value {
    json!({"alias": "tester", "version": "2.1", "deviceModel": "test", "deviceType": "headless",
           "fingerprint": tester().1, "port": 53317, "protocol": "https", "download": false})
}

fn prepare_body(files: &[(&str, &str, &[u8], Option<String>)]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for (id, name, data, sha) in files {
        let mut f = json!({"id": id, "fileName": name, "size": data.len(), "fileType": "application/octet-stream"});
        if let Some(s) = sha {
            f["sha256"] = json!(s);
        }
        map.insert(id.to_string(), f);
    }
    serde_json::to_vec(&json!({"info": tester_info(), "files": map})).unwrap()
}

fn session(r: &Response) -> (String, Value) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    (
        v["sessionId"].as_str().unwrap().to_string(),
        v["files"].clone(),
    )
}

/// Every file under `dir`, relative path → bytes (`.part` files included).
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if !dir.exists() {
        return Vec::new();
    }
    tree(dir)
        .0
        .into_iter()
        .map(|(rel, p)| (rel, std::fs::read(p).unwrap()))
        .collect()
}

#[test]
fn localsend_clients_nobody_here_wrote_discover_send_and_are_refused() {
    const TEST: &str = "localsend_clients_nobody_here_wrote_discover_send_and_are_refused";
    let (Some(lsrs), Some(lsd), Some(lsctl)) = (
        tool("localsend-rs"),
        tool("localsendd"),
        tool("localsendctl"),
    ) else {
        return skip(
            TEST,
            "localsend-rs or localsendd/localsendctl is not installed (scripts/test installs them)",
        );
    };
    let lan = match Lan::up(3) {
        Ok(l) => l,
        Err(why) => return skip(TEST, &why),
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    // Host 2: localsendd, accepting what it is sent, HTTPS with its own
    // certificate.
    let home = root.join("lsd-home");
    std::fs::create_dir_all(&home).unwrap();
    let socket = root.join("lsd.sock");
    let mut daemon = lan.command(2, &lsd);
    daemon
        .args(["--unattended", "--encryption", "--alias", LSD_ALIAS])
        .arg("--download-dir")
        .arg(root.join("lsd-dl"))
        .arg("--socket")
        .arg(&socket)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_RUNTIME_DIR", &home)
        .stdout(std::process::Stdio::null());
    let daemon = KillOnDrop(daemon.spawn().unwrap());
    let (ns1, ns3) = (lan.ns(1).to_string(), lan.ns(3).to_string());
    let src = root.join("album");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("notes é.txt"), "sun and sea").unwrap();
    std::fs::write(src.join("photo.bin"), pseudo_random(700_000, 7)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();

    let host1 = in_netns(lan.ns(1), move || async move {
        let dl = root.join("dl");
        let mut c = Config::new(root.join("pc"));
        c.name = NAME.into();
        c.downloads = dl.clone();
        c.dht = false;
        c.localsend.enabled = true;
        let node = Node::start(c.clone()).await.unwrap();
        let ls = node.localsend().cloned().expect("LocalSend runs");
        assert!(ls.discovery);
        let policy = Arc::new(Mutex::new(Answer::All));
        let offers = answer_offers(&node, policy.clone());

        // 1. PeerConnect lists localsendd (it answers our announcement).
        let t = Instant::now();
        let lsd_peer = wait_for(T, "localsendd in the peer list", || {
            let node = node.clone();
            async move {
                node.peers()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|p| p.kind == DeviceKind::LocalSend && p.name == LSD_ALIAS)
            }
        })
        .await;
        eprintln!("localsendd listed after {:?}", t.elapsed());
        let info = lsd_peer.localsend.clone().unwrap();
        assert_eq!(info.fingerprint.len(), 64, "{info:?}");
        assert_eq!(lsd_peer.addrs[0].ip().to_string(), "10.77.0.2");
        let out = run_in(
            &ns1,
            &peerconnect_bin(),
            &[
                "peers",
                "--json",
                "--data-dir",
                root.join("pc").to_str().unwrap(),
            ],
        )
        .await;
        assert!(out.status.success());
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let p = listed
            .iter()
            .find(|p| p["name"] == LSD_ALIAS)
            .expect("peers --json lists localsendd");
        assert_eq!(p["kind"], "localsend");
        assert_eq!(p["localsend"]["fingerprint"], info.fingerprint.as_str());

        // 2. localsend-rs lists PeerConnect.
        let out = run_in(&ns3, &lsrs, &["discover", "--timeout", "3", "--json"]).await;
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(NAME), "discover did not list {NAME}: {text}");
        assert!(
            text.contains(&ls.fingerprint),
            "nor our fingerprint: {text}"
        );

        // 3. A folder's files from localsend-rs arrive byte-identical (it
        //    uploads them in an order of its own, not the offer's).
        let files: Vec<String> = ["notes é.txt", "photo.bin", "empty"]
            .iter()
            .map(|f| src.join(f).to_string_lossy().into_owned())
            .collect();
        let mut args = vec!["send", "10.77.0.1"];
        args.extend(files.iter().map(String::as_str));
        let out = run_in(&ns3, &lsrs, &args).await;
        assert!(out.status.success(), "localsend-rs send failed");
        let got = files_in(&dl);
        let want: Vec<(PathBuf, Vec<u8>)> = {
            let mut w: Vec<_> = ["empty", "notes é.txt", "photo.bin"]
                .iter()
                .map(|f| (PathBuf::from(f), std::fs::read(src.join(f)).unwrap()))
                .collect();
            w.sort();
            w
        };
        assert_eq!(
            got.len(),
            want.len(),
            "{:?}",
            got.iter().map(|g| &g.0).collect::<Vec<_>>()
        );
        assert!(got == want, "the files differ from what was sent");
        {
            let seen = offers.lock().unwrap();
            let offer = seen
                .iter()
                .find(|e| matches!(e, Event::Offer { .. }))
                .expect("the offer was raised as any peer's");
            let Event::Offer { name, files, .. } = offer else {
                unreachable!()
            };
            assert_eq!(*files, 3);
            assert!(!name.is_empty());
        }
        std::fs::remove_dir_all(&dl).unwrap();

        // 4. A rejected offer: refused, nothing written.
        *policy.lock().unwrap() = Answer::Reject;
        let out = run_in(&ns3, &lsrs, &["send", "10.77.0.1", &files[0]]).await;
        assert!(!out.status.success(), "a rejected send reported success");
        assert!(files_in(&dl).is_empty(), "a rejected offer wrote files");
        *policy.lock().unwrap() = Answer::All;

        // 5. localsendd lists PeerConnect too, and sends it files with its
        //    client certificate and sha256s.
        let sock = socket.to_str().unwrap();
        let out = run_in(&ns1, &lsctl, &["--socket", sock, "devices", "--json"]).await;
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(NAME),
            "localsendd did not list {NAME}: {text}"
        );
        let out = run_in(
            &ns1,
            &lsctl,
            &[
                "--socket",
                sock,
                "send",
                "--to",
                "10.77.0.1",
                "--wait",
                "--quiet",
                &files[1],
                &files[0],
            ],
        )
        .await;
        assert!(out.status.success(), "localsendctl send failed");
        let mut want: Vec<(PathBuf, Vec<u8>)> = ["notes é.txt", "photo.bin"]
            .iter()
            .map(|f| (PathBuf::from(f), std::fs::read(src.join(f)).unwrap()))
            .collect();
        want.sort();
        assert!(files_in(&dl) == want, "localsendd's files differ");
        std::fs::remove_dir_all(&dl).unwrap();

        // 5b. PeerConnect sends localsendd a folder with a subfolder
        //     (localsendd keeps file names, not folders; it takes no empty
        //     file): every file arrives byte-identical (localsendd checks
        //     the sha256 we send), and the transfer completes.
        let trip = root.join("trip");
        std::fs::create_dir_all(trip.join("day 1")).unwrap();
        std::fs::write(trip.join("day 1/beach.jpg"), pseudo_random(900_000, 9)).unwrap();
        std::fs::write(trip.join("plan.txt"), "swim, eat, sleep").unwrap();
        let lsd_dl = root.join("lsd-dl");
        empty_dir(&lsd_dl);
        let mut events = node.subscribe();
        let id = node
            .send_files(lsd_peer.id, std::slice::from_ref(&trip))
            .await
            .unwrap();
        match final_event(&mut events, id).await {
            Event::TransferComplete { files, failed, .. } => {
                assert_eq!((files, failed), (2, 0));
            }
            other => panic!("sending to localsendd ended {other:?}"),
        }
        let mut want: Vec<(PathBuf, Vec<u8>)> = ["day 1/beach.jpg", "plan.txt"]
            .iter()
            .map(|f| {
                let name = Path::new(f).file_name().unwrap();
                (PathBuf::from(name), std::fs::read(trip.join(f)).unwrap())
            })
            .collect();
        want.sort();
        assert!(
            files_in(&lsd_dl) == want,
            "localsendd got other files: {:?}",
            files_in(&lsd_dl).iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        empty_dir(&lsd_dl);

        // 5c. localsendd asks for a PIN: `peerconnect send` without it is
        //     refused (and says why), nothing written; with `--pin` it
        //     gets through.
        let out = run_in(&ns1, &lsctl, &["--socket", sock, "pin", "2468"]).await;
        assert!(out.status.success());
        let data_dir = root.join("pc");
        let send_cli = |pin: Option<&'static str>| {
            let mut args = vec![
                "send".to_string(),
                "--to".into(),
                LSD_ALIAS.into(),
                "--json".into(),
                "--data-dir".into(),
                data_dir.to_string_lossy().into_owned(),
            ];
            if let Some(p) = pin {
                args.extend(["--pin".to_string(), p.to_string()]);
            }
            args.push(files[1].clone());
            args
        };
        let args = send_cli(None);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_in(&ns1, &peerconnect_bin(), &args).await;
        assert!(!out.status.success(), "a send without the PIN succeeded");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("PIN"),
            "the refusal does not name the PIN: {said}"
        );
        assert!(files_in(&lsd_dl).is_empty(), "a refused send wrote files");
        let args = send_cli(Some("2468"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_in(&ns1, &peerconnect_bin(), &args).await;
        assert!(out.status.success(), "the right PIN was refused");
        assert!(
            files_in(&lsd_dl)
                == vec![(
                    PathBuf::from("photo.bin"),
                    std::fs::read(&files[1]).unwrap()
                )],
            "localsendd did not get photo.bin"
        );
        let out = run_in(&ns1, &lsctl, &["--socket", sock, "pin", "--clear"]).await;
        assert!(out.status.success());
        node.set_localsend_pin(lsd_peer.id, None).unwrap();
        empty_dir(&lsd_dl);

        // 5d. A message to localsendd travels as LocalSend text: localsendd
        //     (which shows no texts) takes it as a .txt file holding it.
        let sent = node
            .send_message(lsd_peer.id, "hello from PeerConnect", None)
            .await
            .unwrap();
        assert!(sent.outgoing);
        let got = files_in(&lsd_dl);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].0.to_string_lossy().ends_with(".txt"));
        assert_eq!(got[0].1, b"hello from PeerConnect");
        empty_dir(&lsd_dl);

        // 6. A corrupted upload (sha256 mismatch) is refused, its file
        //    deleted; the good file of the same session arrives though it
        //    is uploaded after the bad one, against the offer's order; a
        //    second session meanwhile gets 409.
        let good = b"good bytes".to_vec();
        let bad = b"bad bytes".to_vec();
        let body = prepare_body(&[
            ("g", "good.txt", &good, Some(sha256_hex(&good))),
            ("b", "bad.txt", &bad, Some(sha256_hex(b"other bytes"))),
        ]);
        let r = call("/api/localsend/v2/prepare-upload", &body, Framing::Length).await;
        let (sid, tokens) = session(&r);
        let again = call("/api/localsend/v2/prepare-upload", &body, Framing::Length).await;
        assert_eq!(again.status, 409, "a second session while one runs");
        let up = |id: &str| {
            format!(
                "/api/localsend/v2/upload?sessionId={sid}&fileId={id}&token={}",
                tokens[id].as_str().unwrap()
            )
        };
        // In the reverse of the offer's order, as a client may.
        let r = call(&up("b"), &bad, Framing::Length).await;
        assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
        let r = call(&up("g"), &good, Framing::Chunked(3)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let got = files_in(&dl);
        assert_eq!(got, vec![(PathBuf::from("good.txt"), good.clone())]);
        // The session is over: a new one can start, and cancel frees it.
        let r = call("/api/localsend/v2/prepare-upload", &body, Framing::Length).await;
        let (sid, _) = session(&r);
        let r = call(
            &format!("/api/localsend/v2/cancel?sessionId={sid}"),
            b"",
            Framing::Length,
        )
        .await;
        assert_eq!(r.status, 200);
        let r = call("/api/localsend/v2/prepare-upload", &body, Framing::Length).await;
        let (sid, _) = session(&r);
        call(
            &format!("/api/localsend/v2/cancel?sessionId={sid}"),
            b"",
            Framing::Length,
        )
        .await;
        std::fs::remove_dir_all(&dl).unwrap();

        // 6b. A text share (LocalSend's: one text/plain file whose preview
        //     is the text) is a direct message from that device: 204 and
        //     nothing written; a flood of them gets 429.
        let text = "meet at the library at 4";
        let mut f = json!({"id": "t", "fileName": "msg.txt", "size": text.len(),
                           "fileType": "text/plain", "preview": text});
        let body = |f: &Value| {
            serde_json::to_vec(&json!({"info": tester_info(), "files": {"t": f}})).unwrap()
        };
        let r = call(
            "/api/localsend/v2/prepare-upload",
            &body(&f),
            Framing::Length,
        )
        .await;
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        let got = wait_for(T, "the text as a message", || {
            let offers = offers.clone();
            async move {
                offers.lock().unwrap().iter().find_map(|e| match e {
                    Event::MessageReceived { message } if message.text == text => {
                        Some(message.clone())
                    }
                    _ => None,
                })
            }
        })
        .await;
        let tester_id = peerconnect::localsend::device_id(&tester().1);
        assert_eq!(got.from, tester_id, "the message is from the device");
        assert!(!got.outgoing);
        assert!(
            !dl.exists() || files_in(&dl).is_empty(),
            "a text wrote a file"
        );
        let mut statuses = Vec::new();
        for i in 0..20 {
            f["preview"] = json!(format!("spam {i:02}"));
            f["size"] = json!(7);
            let r = call(
                "/api/localsend/v2/prepare-upload",
                &body(&f),
                Framing::Length,
            )
            .await;
            statuses.push(r.status);
        }
        assert!(statuses.contains(&429), "no bound on texts: {statuses:?}");

        // 7. With a PIN: 401 without or wrong, 429 after repeated failures,
        //    and a sender with the right PIN gets through. Same data dir:
        //    the same fingerprint.
        node.shutdown().await.unwrap();
        c.localsend.pin = Some("4711".into());
        let node = Node::start(c).await.unwrap();
        assert_eq!(node.localsend().unwrap().fingerprint, ls.fingerprint);
        let _offers = answer_offers(&node, policy.clone());
        let out = run_in(
            &ns3,
            &lsrs,
            &["send", "10.77.0.1", &files[0], "--pin", "0000"],
        )
        .await;
        assert!(!out.status.success(), "a wrong PIN got through");
        assert!(files_in(&dl).is_empty());
        let body = prepare_body(&[("g", "good.txt", &good, None)]);
        let prep = |pin: &str| format!("/api/localsend/v2/prepare-upload?pin={pin}");
        let r = call("/api/localsend/v2/prepare-upload", &body, Framing::Length).await;
        assert_eq!(r.status, 401, "no PIN");
        for _ in 0..3 {
            assert_eq!(
                call(&prep("1234"), &body, Framing::Length).await.status,
                401
            );
        }
        assert_eq!(
            call(&prep("4711"), &body, Framing::Length).await.status,
            429,
            "locked out after 3 wrong PINs, even with the right one"
        );
        let out = run_in(
            &ns3,
            &lsrs,
            &["send", "10.77.0.1", &files[0], "--pin", "4711"],
        )
        .await;
        assert!(out.status.success(), "the right PIN was refused");
        let got = files_in(&dl);
        assert_eq!(
            got,
            vec![(PathBuf::from("notes é.txt"), b"sun and sea".to_vec())]
        );
        node.shutdown().await.unwrap();
    });
    host1.join().unwrap();
    drop(daemon);
    eprintln!("{TEST}: {:?}", started.elapsed());
}

/// Empties `dir` (localsendd writes into its download folder but does not
/// make it).
fn empty_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

/// The final event of transfer `id` (complete, failed, cancelled, rejected).
async fn final_event(
    events: &mut peerconnect::node::EventStream,
    id: peerconnect::net::transfer::TransferId,
) -> Event {
    tokio::time::timeout(T, async {
        loop {
            let e = events.recv().await.expect("the node runs");
            if let Event::TransferFailed {
                id: i, path, error, ..
            } = &e
                && *i == id
            {
                eprintln!("transfer {id}: {path:?} failed: {error}");
            }
            let final_of = match &e {
                Event::TransferComplete { id: i, .. }
                | Event::TransferCancelled { id: i, .. }
                | Event::TransferRejected { id: i, .. } => *i == id,
                Event::TransferFailed { id: i, path, .. } => *i == id && path.is_none(),
                _ => false,
            };
            if final_of {
                return e;
            }
        }
    })
    .await
    .expect("the transfer ended in time")
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
