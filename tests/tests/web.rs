//! The web UI's access rules over real sockets: a node in one network
//! namespace, a "phone" in another reaching it at its LAN address (so the
//! server sees a non-loopback client, as on a real LAN), the owner on the
//! node's own loopback. Plain HTTP/1.1 written by hand: no client library.

use std::net::SocketAddr;
use std::time::Duration;

use peerconnect::{Config, Event, Node};
use peerconnect_tests::http::http;
use peerconnect_tests::{Lan, in_netns, skip};

const T: Duration = Duration::from_secs(20);

fn json_body(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn a_browser_on_another_host_needs_the_pin_then_chats_with_the_owner() {
    let lan = match Lan::up(2) {
        Ok(l) => l,
        Err(why) => return skip("a_browser_on_another_host_needs_the_pin", &why),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let (info_tx, info_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = in_netns(lan.ns(1), move || async move {
        let mut c = Config::local(&data);
        c.name = "laptop".into();
        c.web = Some("0.0.0.0:0".parse().unwrap());
        let node = Node::start(c).await.unwrap();
        let mut events = node.subscribe();
        info_tx.send(node.web().unwrap().clone()).unwrap();
        // The guest's message reaches the owner as a message event.
        let got = tokio::time::timeout(T, async {
            loop {
                if let Some(Event::MessageReceived { message }) = events.recv().await {
                    return message.text;
                }
            }
        })
        .await
        .expect("no message from the guest");
        // The owner (loopback, on the node's host) answers it.
        let port = node.web().unwrap().addr.port();
        let owner: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Loopback alone is not the owner: the owner secret is needed.
        let nobody = http(owner, "GET", "/api/peers", &[], b"").await;
        assert_eq!(nobody.status, 401);
        let cookie = node.web().unwrap().owner_cookie();
        let as_owner = ("Cookie", cookie.as_str());
        let peers = http(owner, "GET", "/api/peers", &[as_owner], b"").await;
        assert_eq!(peers.status, 200);
        let guest = peers.json()[0]["id"].as_str().unwrap().to_string();
        assert_eq!(peers.json()[0]["kind"], "browser");
        let r = http(
            owner,
            "POST",
            &format!("/api/messages/{guest}"),
            &[JSON, as_owner],
            &json_body(serde_json::json!({"text": "hello phone"})),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r);
        let _ = done_rx.await;
        node.shutdown().await.unwrap();
        got
    });
    let info: peerconnect::web::WebInfo = info_rx.recv_timeout(T).unwrap();
    let port = info.addr.port();
    let node_addr: SocketAddr = format!("{}:{port}", lan.ip(1)).parse().unwrap();
    assert!(
        info.urls.iter().any(|u| u.contains(&lan.ip(1).to_string())),
        "{:?}",
        info.urls
    );
    let pin = info.pin.clone();
    let client = in_netns(lan.ns(2), move || async move {
        // No PIN: the UI loads, the API refuses.
        let r = http(node_addr, "GET", "/", &[], b"").await;
        assert_eq!(r.status, 200);
        for path in ["/api/peers", "/api/guest/messages", "/api/events"] {
            assert_eq!(
                http(node_addr, "GET", path, &[], b"").await.status,
                401,
                "{path}"
            );
        }
        let wrong = if pin == "000000" { "000001" } else { "000000" };
        let r = http(
            node_addr,
            "POST",
            "/api/login",
            &[JSON],
            &json_body(serde_json::json!({"pin": wrong})),
        )
        .await;
        assert_eq!(r.status, 401);
        let r = http(
            node_addr,
            "POST",
            "/api/login",
            &[JSON],
            &json_body(serde_json::json!({"pin": pin, "name": "phone"})),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.header("set-cookie").unwrap().to_string();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        let cookie = set.split(';').next().unwrap().to_string();
        let ck = ("Cookie", cookie.as_str());
        // A guest, not the owner.
        assert_eq!(
            http(node_addr, "GET", "/api/peers", &[ck], b"")
                .await
                .status,
            403
        );
        let r = http(
            node_addr,
            "POST",
            "/api/guest/messages",
            &[JSON, ck],
            &json_body(serde_json::json!({"text": "hi from the phone"})),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        // The owner's answer shows up in the guest's history.
        let deadline = std::time::Instant::now() + T;
        loop {
            let r = http(node_addr, "GET", "/api/guest/messages", &[ck], b"").await;
            let texts: Vec<String> = r
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_string())
                .collect();
            if texts.len() == 2 {
                assert_eq!(texts, ["hi from the phone", "hello phone"]);
                assert_eq!(r.json()[0]["outgoing"], true);
                assert_eq!(r.json()[1]["outgoing"], false);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no answer: {texts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    client.join().unwrap();
    let _ = done_tx.send(());
    assert_eq!(server.join().unwrap(), "hi from the phone");
}
