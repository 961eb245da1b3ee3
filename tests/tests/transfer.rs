//! File transfers between nodes on 127.0.0.1: folders arrive identical, names
//! in use get " (1)", consent, traversal attempts, corruption, resume, cancel,
//! pause and several receivers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use peerconnect::net::transfer::TransferId;
use peerconnect::{Config, Event, Node};
use peerconnect_tests::{next_matching, wait_for};

const T: Duration = Duration::from_secs(30);

async fn node(dir: &Path, name: &str, accept_all: bool) -> Node {
    let mut c = Config::local(dir);
    c.name = name.into();
    c.accept_all = accept_all;
    Node::start(c).await.unwrap()
}

/// Two connected nodes: `a` sends, `b` receives into `b_downloads`.
async fn pair(dir: &Path, accept_all: bool) -> (Node, Node) {
    let a = node(&dir.join("a"), "alpha", false).await;
    let b = node(&dir.join("b"), "beta", accept_all).await;
    a.connect(b.listen_addrs()[0], None).await.unwrap();
    (a, b)
}

fn downloads(n: &Node) -> PathBuf {
    n.data_dir().join("downloads")
}

/// Every file and folder below `root`, relative, with file contents.
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                walk(root, &e.path(), out);
            } else {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Waits for the final event of transfer `id`.
async fn finished(events: &mut peerconnect::EventStream, id: TransferId) -> Event {
    next_matching(events, T, "the transfer's final event", |e| {
        (e.transfer_id() == Some(id) && e.ends_transfer()).then(|| e.clone())
    })
    .await
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn a_folder_with_nested_empty_unicode_and_empty_files_arrives_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), true).await;
    let src = dir.path().join("src/My Photos");
    std::fs::create_dir_all(src.join("2024/январь")).unwrap();
    std::fs::create_dir_all(src.join("empty folder/also empty")).unwrap();
    std::fs::write(src.join("2024/январь/ümlaut é.txt"), "grüße").unwrap();
    std::fs::write(src.join("2024/zero bytes"), b"").unwrap();
    std::fs::write(src.join("big.bin"), pseudo_random(3 << 20, 7)).unwrap();
    std::fs::write(src.join("日本語 名前.md"), "# hi").unwrap();
    let mut ea = a.events();
    let mut eb = b.events();
    let id = a
        .send_files(b.id(), std::slice::from_ref(&src))
        .await
        .unwrap();
    let end = finished(&mut ea, id).await;
    assert!(
        matches!(
            end,
            Event::TransferComplete {
                failed: 0,
                files: 4,
                ..
            }
        ),
        "{end:?}"
    );
    let end_b = finished(&mut eb, id).await;
    assert!(
        matches!(end_b, Event::TransferComplete { failed: 0, .. }),
        "{end_b:?}"
    );
    let got = downloads(&b).join("My Photos");
    assert_eq!(tree(&got), tree(&src));
    assert!(
        !tree(&downloads(&b)).keys().any(|k| k.ends_with(".part")),
        "no part files are left"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
