//! Files the owner sends a browser guest, over real sockets on 127.0.0.1: a
//! guest logs in with the PIN and downloads what `Node::send_files_to` and the
//! `peerconnect send` command (through the running node's control socket)
//! sent it, byte for byte; the owner's transfer list shows each complete; a
//! folder comes one file at a time in the listed order; a cancel by the owner
//! breaks the download in progress off and the share leaves the guest's list;
//! a guest that logs out without downloading ends its share.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use peerconnect::net::transfer::TransferId;
use peerconnect::proto::transfer::{Direction, TransferState};
use peerconnect::proto::wire::DeviceKind;
use peerconnect::{Config, Node, PeerId};
use peerconnect_tests::http::{self, http};
use peerconnect_tests::{peerconnect_bin, pseudo_random, wait_for};

const T: Duration = Duration::from_secs(30);
const JSON: (&str, &str) = ("Content-Type", "application/json");
/// Where the sender pauses itself, so a large download is still going when
/// the owner cancels.
const PAUSE_AFTER: u64 = 1 << 20;

struct Guest {
    web: SocketAddr,
    id: PeerId,
    cookie: String,
}

impl Guest {
    async fn get(&self, path: &str) -> http::Http {
        http(self.web, "GET", path, &[("Cookie", &self.cookie)], b"").await
    }

    /// The guest's list of files sent to it, as (share id, path, url) in
    /// the listed order.
    async fn shared(&self) -> Vec<(String, String, String)> {
        let r = self.get("/api/guest/shared").await;
        assert_eq!(r.status, 200, "{r:?}");
        let mut out = Vec::new();
        for s in r.json().as_array().unwrap() {
            for f in s["files"].as_array().unwrap() {
                out.push((
                    s["id"].as_str().unwrap().to_string(),
                    f["path"].as_str().unwrap().to_string(),
                    f["url"].as_str().unwrap().to_string(),
                ));
            }
        }
        out
    }

    /// Waits until share `id` lists its files; their (path, url).
    async fn files_of(&self, id: &str) -> Vec<(String, String)> {
        wait_for(T, "the share in the guest's list", || async {
            let files: Vec<(String, String)> = self
                .shared()
                .await
                .into_iter()
                .filter(|(s, _, _)| s == id)
                .map(|(_, p, u)| (p, u))
                .collect();
            (!files.is_empty()).then_some(files)
        })
        .await
    }
}

/// A node with its web UI on 127.0.0.1 and a guest logged in with the PIN.
/// With `pause_after`, the sender pauses itself once a transfer sent that
/// many bytes.
async fn node_and_guest(dir: &Path, pause_after: Option<u64>) -> (Node, Guest) {
    let mut c = Config::local(dir);
    c.name = "laptop".into();
    c.web = Some("127.0.0.1:0".parse().unwrap());
    c.transfer.pause_after = pause_after;
    let node = Node::start(c).await.unwrap();
    let info = node.web().unwrap().clone();
    let r = http(
        info.addr,
        "POST",
        "/api/login",
        &[JSON],
        serde_json::json!({"pin": info.pin, "name": "phone"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r
        .header("Set-Cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let id = r.json()["guest"]["id"].as_str().unwrap().parse().unwrap();
    (
        node,
        Guest {
            web: info.addr,
            id,
            cookie,
        },
    )
}

async fn state_of(node: &Node, id: TransferId) -> Option<TransferState> {
    node.transfers()
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.state)
}

async fn wait_state(node: &Node, id: TransferId, want: TransferState) {
    wait_for(T, &format!("transfer {id} {want:?}"), || async {
        (state_of(node, id).await == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sends_a_guest_files_from_the_node_and_the_cli_and_it_downloads_them() {
    let dir = tempfile::tempdir().unwrap();
    let (node, guest) = node_and_guest(&dir.path().join("node"), None).await;
    // The guest is one of the node's peers, of kind browser.
    let peers = node.peers().await.unwrap();
    let p = peers.iter().find(|p| p.id == guest.id).unwrap();
    assert_eq!((p.kind, p.name.as_str()), (DeviceKind::Browser, "phone"));

    // Through the Node API: one file of several blocks.
    let photo = dir.path().join("photo.jpg");
    let data = pseudo_random((3 << 20) + 1000, 3);
    std::fs::write(&photo, &data).unwrap();
    let ids = node
        .send_files_to(&[guest.id], std::slice::from_ref(&photo))
        .await
        .unwrap();
    let files = guest.files_of(&ids[0].to_string()).await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "photo.jpg");
    let r = guest.get(&files[0].1).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Disposition")
            .unwrap()
            .contains("photo.jpg")
    );
    assert!(r.body == data, "the download differs from the file sent");
    wait_state(&node, ids[0], TransferState::Complete).await;
    let t = node
        .transfers()
        .unwrap()
        .into_iter()
        .find(|t| t.id == ids[0])
        .unwrap();
    assert_eq!((t.peer, t.direction), (guest.id, Direction::Send));
    assert_eq!(t.done_bytes, data.len() as u64);
    // Downloaded once: a second time is refused, the file is still listed.
    assert_eq!(guest.get(&files[0].1).await.status, 409);

    // Through the CLI and the running node's control socket, by the
    // guest's name.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "from the command line").unwrap();
    let data_dir = node.data_dir().to_path_buf();
    let notes_arg = notes.clone();
    let cli = std::thread::spawn(move || {
        Command::new(peerconnect_bin())
            .args(["send", "--to", "phone"])
            .arg(&notes_arg)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--json")
            .output()
            .unwrap()
    });
    let (share, url) = wait_for(T, "the CLI's share in the guest's list", || async {
        guest
            .shared()
            .await
            .into_iter()
            .find(|(_, p, _)| p == "notes.txt")
            .map(|(s, _, u)| (s, u))
    })
    .await;
    let r = guest.get(&url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"from the command line");
    let out = cli.join().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.contains("transfer_complete")),
        "{stdout}"
    );
    wait_state(&node, share.parse().unwrap(), TransferState::Complete).await;

    // A folder: its files come one at a time, in the listed order.
    let album = dir.path().join("album");
    std::fs::create_dir_all(&album).unwrap();
    std::fs::write(album.join("a.txt"), "first").unwrap();
    std::fs::write(album.join("b.txt"), "second").unwrap();
    let ids = node
        .send_files_to(&[guest.id], std::slice::from_ref(&album))
        .await
        .unwrap();
    let files = guest.files_of(&ids[0].to_string()).await;
    let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(paths, ["album/a.txt", "album/b.txt"]);
    let early = guest.get(&files[1].1).await;
    assert_eq!(early.status, 409);
    assert!(
        early.json()["error"]
            .as_str()
            .unwrap()
            .contains("album/a.txt"),
        "{early:?}"
    );
    assert_eq!(guest.get(&files[0].1).await.body, b"first");
    assert_eq!(guest.get(&files[1].1).await.body, b"second");
    wait_state(&node, ids[0], TransferState::Complete).await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_by_the_owner_breaks_the_guests_download_off_and_a_logout_ends_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let (node, guest) = node_and_guest(&dir.path().join("node"), Some(PAUSE_AFTER)).await;
    let video = dir.path().join("video.mp4");
    let size = 4 * PAUSE_AFTER as usize;
    std::fs::write(&video, pseudo_random(size, 8)).unwrap();
    let id = node
        .send_files_to(&[guest.id], std::slice::from_ref(&video))
        .await
        .unwrap()[0];
    let files = guest.files_of(&id.to_string()).await;
    let cookie = ("Cookie", guest.cookie.as_str());
    let download = http::start(guest.web, "GET", &files[0].1, &[cookie], b"").await;
    assert_eq!(download.status(), 200);
    // The sender pauses itself partway: the download is still going.
    wait_state(&node, id, TransferState::Paused).await;
    node.cancel_transfer(id).unwrap();
    let got = download.finish().await;
    assert!(
        got.body.len() < size,
        "the download got all {} bytes",
        got.body.len()
    );
    wait_state(&node, id, TransferState::Cancelled).await;
    assert!(guest.shared().await.is_empty());
    assert_eq!(guest.get(&files[0].1).await.status, 404);

    // A guest that never downloads: its logout ends the share.
    let id = node
        .send_files_to(&[guest.id], std::slice::from_ref(&video))
        .await
        .unwrap()[0];
    guest.files_of(&id.to_string()).await;
    let r = http(guest.web, "POST", "/api/logout", &[cookie, JSON], b"{}").await;
    assert_eq!(r.status, 204, "{r:?}");
    wait_state(&node, id, TransferState::Cancelled).await;
    node.shutdown().await.unwrap();
}
