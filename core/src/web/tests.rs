//! The API's access rules, driven through the real router with the client's
//! address injected (`MockConnectInfo`), so "a browser on another machine" is
//! tested without a second machine. The browser tests (tests/browser) do the
//! same over real sockets from a network namespace.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;
use crate::Config;

/// The owner: on this machine, with the owner secret (the helpers add its
/// cookie to every request from this address).
const OWNER: &str = "127.0.0.1:50000";
/// Another user of this machine: loopback, without the owner secret.
const LOCAL: &str = "127.0.0.1:50001";
const OWNER_TOKEN: &str = "owner-secret-of-the-fixture";
const PHONE: &str = "10.77.0.9:50000";
const HOST: &str = "10.77.0.1:47480";

struct Fixture {
    _dir: tempfile::TempDir,
    node: Node,
    app: App,
}

async fn fixture() -> Fixture {
    fixture_with(WebOptions::default()).await
}

async fn fixture_with(options: WebOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(dir.path());
    c.name = "owner-node".into();
    // The node owns the guest registry, sized from its options.
    c.web_options = options.clone();
    let node = Node::start(c).await.unwrap();
    let info = WebInfo {
        addr: HOST.parse().unwrap(),
        url: format!("http://{HOST}/"),
        urls: vec![format!("http://{HOST}/")],
        pin: "123456".into(),
        owner_url: format!("http://127.0.0.1:47480/owner?token={OWNER_TOKEN}"),
        owner_token: OWNER_TOKEN.into(),
    };
    let app = new_app(&node, info, options);
    // Follows events as the real server does (aborted with the node's runtime).
    drop(files::spawn_watcher(app.clone(), &node));
    Fixture {
        _dir: dir,
        node,
        app,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: serde_json::Value,
}

impl Fixture {
    /// Sends a request from `from` (a client address), with `Host` set to
    /// loopback for loopback clients and to the LAN address otherwise.
    async fn call(&self, from: &str, req: Request<Body>) -> Reply {
        let from: SocketAddr = from.parse().unwrap();
        let router = router(self.app.clone()).layer(MockConnectInfo(from));
        let res = router.oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            json,
        }
    }
}

fn host_for(from: &str) -> &'static str {
    if from.starts_with("127.") {
        "127.0.0.1:47480"
    } else {
        HOST
    }
}

/// The owner cookie for requests from [`OWNER`] that bring no cookie.
fn owner_cookie(from: &str, cookie: Option<&str>) -> Option<String> {
    match cookie {
        Some(c) => Some(c.to_string()),
        None if from == OWNER => Some(format!("pc_owner_47480={OWNER_TOKEN}")),
        None => None,
    }
}

fn get(from: &str, path: &str, cookie: Option<&str>) -> Request<Body> {
    let cookie = owner_cookie(from, cookie);
    let cookie = cookie.as_deref();
    let mut b = Request::get(path).header(header::HOST, host_for(from));
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn post(from: &str, path: &str, cookie: Option<&str>, body: serde_json::Value) -> Request<Body> {
    let cookie = owner_cookie(from, cookie);
    let cookie = cookie.as_deref();
    let host = host_for(from);
    let mut b = Request::post(path)
        .header(header::HOST, host)
        .header(header::ORIGIN, format!("http://{host}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Logs in from `from` with the right PIN; returns the `Cookie` header value.
async fn login(f: &Fixture, from: &str, name: &str) -> (String, PeerId) {
    let r = f
        .call(
            from,
            post(
                from,
                "/api/login",
                None,
                serde_json::json!({"pin": "123456", "name": name}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let id = r.json["guest"]["id"].as_str().unwrap().parse().unwrap();
    (cookie, id)
}

/// Polls `cond` until it gives a value, failing after 30 s.
async fn wait_until<T, F, Fut>(mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_owner_secret_makes_the_owner_and_other_clients_need_the_pin() {
    let f = fixture().await;
    let r = f.call(OWNER, get(OWNER, "/api/peers", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = f.call(PHONE, get(PHONE, "/api/peers", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.call(PHONE, get(PHONE, "/api/events", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.call(PHONE, get(PHONE, "/api/guest/messages", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The session endpoint and the static UI are open: they show the PIN screen.
    let r = f.call(PHONE, get(PHONE, "/api/session", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["role"], "none");
    assert_eq!(r.json["node"]["name"], "owner-node");
    // A page that rebinds its own DNS name to 127.0.0.1 is not the owner.
    let req = Request::get("/api/peers")
        .header(header::HOST, "evil.example:47480")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.call(OWNER, req).await.status, StatusCode::UNAUTHORIZED);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn another_local_user_without_the_owner_secret_is_a_stranger() {
    let f = fixture().await;
    // A file the owner received.
    let file = f.node.data_dir().join("received.txt");
    std::fs::write(&file, b"private").unwrap();
    f.app.files.on_note(
        &crate::net::transfer::TransferNote::Received(Event::TransferDone {
            id: crate::net::transfer::TransferId(7),
            peer: f.node.id(),
            direction: crate::proto::transfer::Direction::Receive,
            path: file.to_string_lossy().into_owned(),
            bytes: 7,
            blake3: blake3::hash(b"private").to_hex().to_string(),
        }),
        |_| "peer".into(),
    );
    let settings = |cookie: Option<&str>| {
        let mut b = Request::put("/api/settings")
            .header(header::HOST, "127.0.0.1:47480")
            .header(header::ORIGIN, "http://127.0.0.1:47480")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(r#"{"name":"taken"}"#)).unwrap()
    };
    // Loopback alone: the PIN page, 401 from the API, no PIN, no file.
    for path in ["/api/node", "/api/received/0", "/api/peers"] {
        let r = f.call(LOCAL, get(LOCAL, path, None)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.json);
        assert!(
            !r.json.to_string().contains("123456"),
            "{path} leaked the PIN"
        );
    }
    let r = f.call(LOCAL, settings(None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.call(LOCAL, get(LOCAL, "/api/session", None)).await;
    assert_eq!(r.json["role"], "none");
    // A wrong or forged secret is no better.
    let r = f
        .call(LOCAL, get(LOCAL, "/api/node", Some("pc_owner_47480=guess")))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f.call(LOCAL, get(LOCAL, "/owner?token=guess", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The owner link sets a strict HttpOnly owner cookie and leads to the UI ...
    let r = f
        .call(
            LOCAL,
            get(LOCAL, &format!("/owner?token={OWNER_TOKEN}"), None),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/");
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    // ... with which the owner is served: PIN, settings, the received file.
    let r = f.call(LOCAL, get(LOCAL, "/api/node", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["web"]["pin"], "123456");
    assert!(r.json["web"].get("owner_token").is_none());
    let r = f.call(LOCAL, settings(Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let from: SocketAddr = LOCAL.parse().unwrap();
    let res = router(f.app.clone())
        .layer(MockConnectInfo(from))
        .oneshot(get(LOCAL, "/api/received/0", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&body[..], b"private");
    // The bearer form works for scripts; the secret from another machine does not.
    let req = Request::get("/api/node")
        .header(header::HOST, "127.0.0.1:47480")
        .header(header::AUTHORIZATION, format!("Bearer {OWNER_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.call(LOCAL, req).await.status, StatusCode::OK);
    let r = f.call(PHONE, get(PHONE, "/api/node", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_right_pin_gives_a_strict_httponly_session_that_is_a_guest_not_the_owner() {
    let f = fixture().await;
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/login",
                None,
                serde_json::json!({"pin": "000000"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    let mut events = f.node.subscribe();
    let (cookie, id) = login(&f, PHONE, "Ana's phone").await;
    let r = f.call(PHONE, get(PHONE, "/api/guest", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["guest"]["kind"], "browser");
    assert_eq!(r.json["guest"]["name"], "Ana's phone");
    // A guest is not the owner.
    let r = f.call(PHONE, get(PHONE, "/api/peers", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // ... and shows up in the owner's peer list as a browser guest.
    let r = f.call(OWNER, get(OWNER, "/api/peers", None)).await;
    let list = r.json.as_array().unwrap();
    assert!(
        list.iter()
            .any(|p| p["id"] == id.to_string() && p["kind"] == "browser" && p["online"] == true)
    );
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Event::PeerFound { peer }) = events.recv().await
                && peer.id == id
            {
                return peer;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(found.kind, crate::proto::wire::DeviceKind::Browser);
    // A forged cookie is nobody.
    let r = f
        .call(PHONE, get(PHONE, "/api/guest", Some("pc_session=forged")))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Logging out ends the session.
    let r = f
        .call(
            PHONE,
            post(PHONE, "/api/logout", Some(&cookie), serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f.call(PHONE, get(PHONE, "/api/guest", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn pin_guessing_is_rate_limited_even_the_right_pin() {
    let f = fixture().await;
    for i in 0..auth::PER_CLIENT_BURST as usize {
        let r = f
            .call(
                PHONE,
                post(
                    PHONE,
                    "/api/login",
                    None,
                    serde_json::json!({"pin": format!("{i:06}")}),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/login",
                None,
                serde_json::json!({"pin": "123456"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=auth::PER_CLIENT_REFILL.as_secs()).contains(&wait));
    // Another device is not locked out by this one.
    login(&f, "10.77.0.10:40000", "tablet").await;
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn strangers_draining_the_pin_budget_do_not_lock_out_the_right_pin() {
    let f = fixture().await;
    let wrong = |from: &str| {
        post(
            from,
            "/api/login",
            None,
            serde_json::json!({"pin": "000000"}),
        )
    };
    // Wrong PINs from several addresses until the shared budget is spent.
    let per = auth::PER_CLIENT_BURST as usize;
    let clients = (auth::GLOBAL_BURST as usize).div_ceil(per) + 1;
    let mut refused = 0;
    for c in 0..clients {
        let from = format!("10.66.0.{}:4000", c + 1);
        for _ in 0..per {
            let r = f.call(&from, wrong(&from)).await;
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status),
                "{}",
                r.json
            );
            refused += usize::from(r.status == StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert!(refused > 0, "the shared budget was never spent");
    // The bound holds: a wrong PIN from a fresh address is refused with a wait
    // and takes that address's burst.
    let r = f.call("10.66.1.1:4000", wrong("10.66.1.1:4000")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
    let r = f.call("10.66.1.1:4000", wrong("10.66.1.1:4000")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
    // An honest device with the right PIN still gets in.
    login(&f, "10.66.2.1:4000", "honest phone").await;
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn cross_origin_requests_are_refused() {
    let f = fixture().await;
    let evil = |path: &str| {
        Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "http://evil.example")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"pin":"123456"}"#))
            .unwrap()
    };
    let r = f.call(PHONE, evil("/api/login")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    // Not even the owner's browser may be driven by another site.
    let req = Request::post("/api/connect")
        .header(header::HOST, "127.0.0.1:47480")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"peer":"127.0.0.1:1"}"#))
        .unwrap();
    assert_eq!(f.call(OWNER, req).await.status, StatusCode::FORBIDDEN);
    // Nor open its event stream.
    let req = Request::get("/api/events")
        .header(header::HOST, "127.0.0.1:47480")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::UPGRADE, "websocket")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.call(OWNER, req).await.status, StatusCode::FORBIDDEN);
    // A fetch from another site without Origin still says so.
    let req = Request::post("/api/login")
        .header(header::HOST, HOST)
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"pin":"123456"}"#))
        .unwrap();
    assert_eq!(f.call(PHONE, req).await.status, StatusCode::FORBIDDEN);
    // Another site's <img> or <script> pointing at the owner's API is refused
    // too, though it could not read the answer.
    let req = Request::get("/api/peers")
        .header(header::HOST, "127.0.0.1:47480")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.call(OWNER, req).await.status, StatusCode::FORBIDDEN);
    // The UI's files may be loaded from anywhere (they hold nothing private).
    let req = Request::get("/")
        .header(header::HOST, "127.0.0.1:47480")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.call(OWNER, req).await.status, StatusCode::OK);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_guest_and_the_owner_chat_and_the_history_is_kept() {
    let f = fixture().await;
    let (cookie, id) = login(&f, PHONE, "phone").await;
    let mut events = f.node.subscribe();
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/messages",
                Some(&cookie),
                serde_json::json!({"text": "hello from the phone"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // The first message event (the node's own start-up events may come first).
    let e = loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(e, Event::MessageReceived { .. }) {
            break e;
        }
    };
    assert!(
        matches!(&e, Event::MessageReceived { message } if message.from == id && message.text == "hello from the phone"),
        "{e:?}"
    );
    let r = f
        .call(
            OWNER,
            post(
                OWNER,
                &format!("/api/messages/{id}"),
                None,
                serde_json::json!({"text": "hi phone"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "delivered");
    let r = f
        .call(PHONE, get(PHONE, "/api/guest/messages", Some(&cookie)))
        .await;
    let texts: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello from the phone", "hi phone"]);
    let r = f.call(OWNER, get(OWNER, "/api/conversations", None)).await;
    let c = &r.json.as_array().unwrap()[0];
    assert_eq!(c["peer"], id.to_string());
    assert_eq!(c["name"], "phone");
    // A guest cannot read anyone else's conversation: the routes take no peer.
    let r = f
        .call(
            PHONE,
            get(PHONE, &format!("/api/messages/{id}"), Some(&cookie)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocking_a_guest_ends_its_session_and_refuses_its_address() {
    let f = fixture().await;
    let (cookie, id) = login(&f, PHONE, "phone").await;
    let r = f
        .call(
            OWNER,
            post(
                OWNER,
                &format!("/api/peers/{id}/trust"),
                None,
                serde_json::json!({"trust": "blocked"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f.call(PHONE, get(PHONE, "/api/guest", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/login",
                None,
                serde_json::json!({"pin": "123456"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // It stays listed (blocked) so the owner can unblock it.
    let r = f.call(OWNER, get(OWNER, "/api/peers", None)).await;
    assert!(
        r.json
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id.to_string() && p["trust"] == "blocked")
    );
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn guests_are_capped() {
    let f = fixture_with(WebOptions {
        max_guests: 1,
        ..WebOptions::default()
    })
    .await;
    login(&f, PHONE, "one").await;
    let r = f
        .call(
            "10.77.0.10:1",
            post(
                "10.77.0.10:1",
                "/api/login",
                None,
                serde_json::json!({"pin": "123456"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn settings_are_saved_and_say_what_needs_a_restart() {
    let f = fixture().await;
    let put = |body: serde_json::Value| {
        Request::put("/api/settings")
            .header(header::HOST, "127.0.0.1:47480")
            .header(header::COOKIE, format!("pc_owner_47480={OWNER_TOKEN}"))
            .header(header::ORIGIN, "http://127.0.0.1:47480")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let r = f
        .call(OWNER, put(serde_json::json!({"name": "  den  "})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["name"], "den");
    assert_eq!(r.json["restart_needed"], serde_json::json!(["name"]));
    let r = f
        .call(OWNER, put(serde_json::json!({"downloads": "relative/dir"})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let saved = crate::store::SavedSettings::load(f.node.data_dir()).unwrap();
    assert_eq!(saved.name.as_deref(), Some("den"));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_node_with_web_serves_the_ui_and_announces_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(dir.path());
    c.web = Some("127.0.0.1:0".parse().unwrap());
    let node = Node::start(c).await.unwrap();
    let info = node.web().unwrap().clone();
    assert_eq!(info.pin.len(), 6);
    let mut events = node.events();
    match events.recv().await.unwrap() {
        Event::Listening { web, .. } => assert_eq!(web.as_deref(), Some(info.url.as_str())),
        e => panic!("first event {e:?}"),
    }
    // A plain HTTP/1.1 request over a real socket.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(info.addr).await.unwrap();
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            info.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("<title>PeerConnect</title>"));
    node.shutdown().await.unwrap();
    // The port is free again once the node stopped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpListener::bind(info.addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "web port still bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_optional_web_address_in_use_only_warns() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(dir.path());
    c.web = Some(taken.local_addr().unwrap());
    assert!(Node::start(c.clone()).await.is_err());
    c.web_options.optional = true;
    let node = Node::start(c).await.unwrap();
    assert!(node.web().is_none());
    let mut events = node.events();
    let mut saw = false;
    for _ in 0..2 {
        if let Some(Event::Error { message }) = events.recv().await {
            saw |= message.contains("web UI not started");
        }
    }
    assert!(saw);
    node.shutdown().await.unwrap();
}

/// A multipart body with one part per (path, bytes).
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----pcboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (path, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn upload(
    from: &str,
    path: &str,
    cookie: Option<&str>,
    files: &[(&str, &[u8])],
    with_length: bool,
) -> Request<Body> {
    let cookie = owner_cookie(from, cookie);
    let cookie = cookie.as_deref();
    let host = host_for(from);
    let (ct, body) = multipart(files);
    let mut b = Request::post(path)
        .header(header::HOST, host)
        .header(header::ORIGIN, format!("http://{host}"))
        .header(header::CONTENT_TYPE, ct);
    if with_length {
        b = b.header(header::CONTENT_LENGTH, body.len());
    }
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn uploads_over_the_cap_are_refused_whether_announced_or_not() {
    let f = fixture_with(WebOptions {
        max_upload: 1000,
        ..WebOptions::default()
    })
    .await;
    let (cookie, guest) = login(&f, PHONE, "phone").await;
    let big = vec![7u8; 5000];
    // Announced by Content-Length: refused before a byte is stored.
    let r = f
        .call(
            OWNER,
            upload(
                OWNER,
                &format!("/api/send?to={guest}"),
                None,
                &[("big.bin", &big)],
                true,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    // Not announced (streamed): refused when the count passes the cap.
    let r = f
        .call(
            OWNER,
            upload(
                OWNER,
                &format!("/api/send?to={guest}"),
                None,
                &[("big.bin", &big)],
                false,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    // Nothing is left behind in the outbox.
    let outbox = f.node.data_dir().join("web-outbox");
    let left = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0);
    // A guest cannot even offer more than the cap.
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/offers",
                Some(&cookie),
                serde_json::json!({"entries": [{"path": "big.bin", "size": 5000}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_offer_that_cannot_fit_on_disk_is_refused() {
    let f = fixture_with(WebOptions {
        max_upload: u64::MAX,
        ..WebOptions::default()
    })
    .await;
    let (cookie, _) = login(&f, PHONE, "phone").await;
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/offers",
                Some(&cookie),
                serde_json::json!({"entries": [{"path": "huge.iso", "size": 1u64 << 62}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.json);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_guest_uploads_only_after_consent_and_never_more_than_offered() {
    let f = fixture().await;
    let (cookie, guest) = login(&f, PHONE, "phone").await;
    let mut events = f.node.subscribe();
    let offer = |entries: serde_json::Value| {
        post(
            PHONE,
            "/api/guest/offers",
            Some(&cookie),
            serde_json::json!({ "entries": entries }),
        )
    };
    // Unsafe paths are refused like any peer's offer.
    let r = f
        .call(
            PHONE,
            offer(serde_json::json!([{"path": "../etc/passwd", "size": 1}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = f
        .call(
            PHONE,
            offer(
                serde_json::json!([{"path": "a.txt", "size": 5}, {"path": "dir/b.txt", "size": 3}]),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["state"], "offered");
    let id = r.json["id"].as_str().unwrap().to_string();
    // The owner hears of it as an offer from the guest.
    let e = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(e @ Event::Offer { .. }) = events.recv().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(&e, Event::Offer { peer, files: 2, total_bytes: 8, auto_accepted: false, .. } if *peer == guest)
    );
    let send = |files: &[(&str, &[u8])]| {
        upload(
            PHONE,
            &format!("/api/guest/offers/{id}/upload"),
            Some(&cookie),
            files,
            true,
        )
    };
    // Not before the owner said yes.
    let r = f.call(PHONE, send(&[("a.txt", b"hello")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    let r = f
        .call(
            OWNER,
            post(
                OWNER,
                &format!("/api/offers/{id}/accept"),
                None,
                serde_json::json!({}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = f
        .call(PHONE, send(&[("a.txt", b"hello"), ("dir/b.txt", b"abc")]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["failed"], 0);
    let downloads = f.node.config().downloads.clone();
    assert_eq!(std::fs::read(downloads.join("a.txt")).unwrap(), b"hello");
    assert_eq!(std::fs::read(downloads.join("dir/b.txt")).unwrap(), b"abc");
    // Once is enough.
    let r = f.call(PHONE, send(&[("a.txt", b"hello")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // The owner lists them as received, with a working download link.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = f.call(OWNER, get(OWNER, "/api/received", None)).await;
        if r.json.as_array().is_some_and(|a| a.len() == 2) {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "received: {}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"a.txt") && names.contains(&"b.txt"),
        "{names:?}"
    );
    let a = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "a.txt")
        .unwrap();
    assert_eq!(a["blake3"], blake3::hash(b"hello").to_hex().to_string());
    let req = get(OWNER, a["url"].as_str().unwrap(), None);
    let from: SocketAddr = OWNER.parse().unwrap();
    let res = router(f.app.clone())
        .layer(MockConnectInfo(from))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&body[..], b"hello");

    // A second offer: a part larger than offered is cut off and nothing of it stays.
    let r = f
        .call(
            PHONE,
            offer(serde_json::json!([{"path": "c.txt", "size": 2}])),
        )
        .await;
    let id2 = r.json["id"].as_str().unwrap().to_string();
    f.call(
        OWNER,
        post(
            OWNER,
            &format!("/api/offers/{id2}/accept"),
            None,
            serde_json::json!({}),
        ),
    )
    .await;
    let r = f
        .call(
            PHONE,
            upload(
                PHONE,
                &format!("/api/guest/offers/{id2}/upload"),
                Some(&cookie),
                &[("c.txt", b"much more than two bytes")],
                false,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    assert!(!downloads.join("c.txt").exists());
    assert!(!downloads.join("c.txt.part").exists());
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn files_the_owner_sends_a_guest_are_for_that_guest_only() {
    let f = fixture().await;
    let (cookie, guest) = login(&f, PHONE, "phone").await;
    let (other, _) = login(&f, "10.77.0.10:1", "tablet").await;
    let r = f
        .call(
            OWNER,
            upload(
                OWNER,
                &format!("/api/send?to={guest}"),
                None,
                &[("folder/pic.jpg", b"JPEGDATA")],
                true,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["transfers"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["transfers"][0]["peer"], guest.to_string());
    let r = wait_until(|| async {
        let r = f
            .call(PHONE, get(PHONE, "/api/guest/shared", Some(&cookie)))
            .await;
        (r.json.as_array().is_some_and(|a| !a.is_empty())).then_some(r)
    })
    .await;
    let file = &r.json[0]["files"][0];
    assert_eq!(file["path"], "folder/pic.jpg");
    let url = file["url"].as_str().unwrap().to_string();
    let r = f
        .call("10.77.0.10:1", get("10.77.0.10:1", &url, Some(&other)))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let from: SocketAddr = PHONE.parse().unwrap();
    let res = router(f.app.clone())
        .layer(MockConnectInfo(from))
        .oneshot(get(PHONE, &url, Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("pic.jpg")
    );
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&body[..], b"JPEGDATA");
    // When the guest leaves, its share and the staged copy go.
    let r = f
        .call(
            PHONE,
            post(PHONE, "/api/logout", Some(&cookie), serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let outbox = f.node.data_dir().join("web-outbox");
    wait_until(|| async {
        let left = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
        (left == 0).then_some(())
    })
    .await;
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn shares_to_a_guest_are_bounded_live_and_ended() {
    use crate::net::transfer::local::{ENDED_KEPT, download::LIVE_PER_PEER};
    use crate::proto::transfer::TransferState;
    let f = fixture().await;
    let (cookie, guest) = login(&f, PHONE, "phone").await;
    let file = f.node.data_dir().join("note.txt");
    std::fs::write(&file, "hi").unwrap();
    let state = |id: crate::net::transfer::TransferId| {
        f.node
            .transfers()
            .unwrap()
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| (t.state, t.error))
    };
    // One past the limit of live shares fails at once; the others wait for
    // the guest.
    let mut ids = Vec::new();
    for _ in 0..=LIVE_PER_PEER {
        ids.extend(
            f.node
                .send_files_to(&[guest], std::slice::from_ref(&file))
                .await
                .unwrap(),
        );
    }
    let failed = wait_until(|| async {
        let failed: Vec<String> = ids
            .iter()
            .filter_map(|id| match state(*id) {
                Some((TransferState::Failed, e)) => Some(e.unwrap_or_default()),
                _ => None,
            })
            .collect();
        (!failed.is_empty()).then_some(failed)
    })
    .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("limit"), "{failed:?}");
    let listed = f
        .call(PHONE, get(PHONE, "/api/guest/shared", Some(&cookie)))
        .await;
    assert_eq!(listed.json.as_array().unwrap().len(), LIVE_PER_PEER);
    // Cancelled by the owner, they leave the guest's list.
    let nothing_listed = || async {
        let r = f
            .call(PHONE, get(PHONE, "/api/guest/shared", Some(&cookie)))
            .await;
        (r.json == serde_json::json!([])).then_some(())
    };
    for id in &ids {
        let _ = f.node.cancel_transfer(*id);
    }
    wait_until(nothing_listed).await;
    // Sending and cancelling in a loop holds no more than the ended kept.
    for round in 0..40 {
        let id = f
            .node
            .send_files_to(&[guest], std::slice::from_ref(&file))
            .await
            .unwrap()[0];
        wait_until(|| async {
            matches!(
                state(id),
                Some((TransferState::Offered | TransferState::Running, _))
            )
            .then_some(())
        })
        .await;
        f.node.cancel_transfer(id).unwrap();
        wait_until(|| async {
            matches!(state(id), Some((TransferState::Cancelled, _))).then_some(())
        })
        .await;
        wait_until(nothing_listed).await;
        let held = f.node.local_transfers().shares_held(&guest);
        assert!(held <= ENDED_KEPT + 1, "round {round}: {held} shares held");
    }
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn offering_and_cancelling_in_a_loop_holds_a_bounded_number_of_offers() {
    let f = fixture().await;
    let (cookie, guest) = login(&f, PHONE, "phone").await;
    // A few hundred entries per offer, as a folder of photos would have.
    let entries: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"path": format!("dir/photo-{i:04}.jpg"), "size": 10}))
        .collect();
    let offer = || {
        post(
            PHONE,
            "/api/guest/offers",
            Some(&cookie),
            serde_json::json!({ "entries": entries }),
        )
    };
    for round in 0..200 {
        let r = f.call(PHONE, offer()).await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.json);
        let id = r.json["id"].as_str().unwrap().to_string();
        let r = f
            .call(
                PHONE,
                post(
                    PHONE,
                    &format!("/api/guest/offers/{id}/cancel"),
                    Some(&cookie),
                    serde_json::json!({}),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {}", r.json);
    }
    let held = f.node.local_transfers().held(&guest);
    assert!(
        held <= crate::net::transfer::local::ENDED_KEPT + 1,
        "{held} offers held after 200 rounds"
    );
    // A fresh offer still works, and the owner sees only it waiting.
    let r = f.call(PHONE, offer()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["state"], "offered");
    let id = r.json["id"].clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = f.call(OWNER, get(OWNER, "/api/offers", None)).await;
        let list = r.json.as_array().cloned().unwrap_or_default();
        if list.len() == 1 && list[0]["id"] == id {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "offers: {}", r.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.node.shutdown().await.unwrap();
}

/// A web node on 127.0.0.1 with these options (the owner's address is
/// 127.0.0.1; other loopback addresses stand in for other devices).
async fn web_node(options: WebOptions) -> (tempfile::TempDir, Node, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(dir.path());
    c.web = Some("127.0.0.1:0".parse().unwrap());
    c.web_options = options;
    let node = Node::start(c).await.unwrap();
    let addr = node.web().unwrap().addr;
    (dir, node, addr)
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Whether the server closes `s` (EOF or reset) before `within` passes.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected bytes from the server"),
        Err(_) => false,
    }
}

/// Sends one request on `s` (kept alive) and returns the status line.
async fn status_on(s: &mut tokio::net::TcpStream, addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut byte))
            .await
            .expect("no answer")
            .unwrap();
        assert_eq!(n, 1, "closed before answering");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn connections_past_the_caps_are_closed_at_once_and_the_owner_is_served() {
    let (_dir, node, addr) = web_node(WebOptions {
        max_connections: 6,
        max_connections_per_ip: 4,
        // Long: nothing here may be closed for being idle.
        header_timeout: Duration::from_secs(600),
        ..WebOptions::default()
    })
    .await;
    // One device opens more than its share: the excess is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    for i in 0..6 {
        let mut extra = connect_from("127.0.0.2", addr).await;
        assert!(
            closed_within(&mut extra, Duration::from_secs(30)).await,
            "connection {i} past the per-address cap stayed open"
        );
    }
    // The owner is served meanwhile, and so are the device's own connections.
    let mut owner = connect_from("127.0.0.1", addr).await;
    assert!(
        status_on(&mut owner, addr, "/api/session")
            .await
            .starts_with("HTTP/1.1 200")
    );
    for s in &mut held {
        assert!(status_on(s, addr, "/").await.starts_with("HTTP/1.1 200"));
    }
    drop(owner);
    // A second device fills the total: the next connection from anyone is closed.
    let mut second = Vec::new();
    while second.len() < 2 {
        let mut s = connect_from("127.0.0.3", addr).await;
        // The owner's closed connection may not be freed yet: retry.
        if !closed_within(&mut s, Duration::from_millis(200)).await {
            second.push(s);
        }
    }
    let mut third = connect_from("127.0.0.4", addr).await;
    assert!(closed_within(&mut third, Duration::from_secs(30)).await);
    // Once the first device leaves, others (the owner) are served again.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut owner = connect_from("127.0.0.1", addr).await;
        let req = format!("GET /api/session HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let mut buf = [0u8; 12];
        // Closed (the slots were not freed yet) shows as a failed write or read.
        if owner.write_all(req.as_bytes()).await.is_ok()
            && let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(20), owner.read_exact(&mut buf)).await
        {
            assert_eq!(&buf, b"HTTP/1.1 200");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "owner never served again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_but_slow_bodies_are_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = Duration::from_millis(500);
    let (_dir, node, addr) = web_node(WebOptions {
        header_timeout: timeout,
        ..WebOptions::default()
    })
    .await;
    // Connects and says nothing.
    let mut silent = connect_from("127.0.0.2", addr).await;
    // Sends half a request head and stops.
    let mut dribble = connect_from("127.0.0.2", addr).await;
    dribble
        .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    // One request, then idle on a kept-alive connection.
    let mut kept = connect_from("127.0.0.2", addr).await;
    assert!(
        status_on(&mut kept, addr, "/api/session")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Generous deadlines: the assertion is that they are closed at all.
    for (name, s) in [("silent", &mut silent), ("dribble", &mut dribble)] {
        assert!(
            closed_within(s, Duration::from_secs(60)).await,
            "{name} stayed open"
        );
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut buf = [0u8; 4096];
            match kept.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle keep-alive connection stayed open");
    // A body that takes longer than the header timeout is still read whole:
    // a PIN login whose body arrives after several timeouts' worth of time.
    let mut slow = connect_from("127.0.0.2", addr).await;
    let body = br#"{"pin":"000000"}"#;
    slow.write_all(
        format!(
            "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for chunk in body.chunks(4) {
        // Not an assertion: the body must span more than the header timeout.
        tokio::time::sleep(timeout).await;
        slow.write_all(chunk).await.unwrap();
    }
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(30), slow.read_exact(&mut answer))
        .await
        .expect("no answer to the slow body")
        .expect("the slow body's connection was closed");
    assert_eq!(&answer, b"HTTP/1.1 401", "a wrong PIN, read whole");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_guest_cookie_works_only_from_the_address_it_was_issued_to() {
    let f = fixture().await;
    let (cookie, _) = login(&f, PHONE, "phone").await;
    let thief = "10.77.0.66:4000";
    let r = f.call(thief, get(thief, "/api/guest", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    let r = f.call(PHONE, get(PHONE, "/api/guest", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_guest_upload_leaves_no_empty_folders_but_keeps_whole_files() {
    let f = fixture().await;
    let (cookie, _) = login(&f, PHONE, "phone").await;
    let downloads = f.node.config().downloads.clone();
    let entries = serde_json::json!([
        {"path": "album/ok.txt", "size": 2},
        {"path": "album/deep/er/bad.txt", "size": 2},
        {"path": "other/x/y.txt", "size": 2}
    ]);
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/offers",
                Some(&cookie),
                serde_json::json!({ "entries": entries }),
            ),
        )
        .await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = f
        .call(
            OWNER,
            post(
                OWNER,
                &format!("/api/offers/{id}/accept"),
                None,
                serde_json::json!({}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // The second file is larger than offered: the upload fails there.
    let r = f
        .call(
            PHONE,
            upload(
                PHONE,
                &format!("/api/guest/offers/{id}/upload"),
                Some(&cookie),
                &[
                    ("album/ok.txt", b"ok"),
                    ("album/deep/er/bad.txt", b"far too long"),
                ],
                false,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    // The whole file stays; the folders made for the failed one go.
    assert_eq!(
        std::fs::read(downloads.join("album/ok.txt")).unwrap(),
        b"ok"
    );
    assert!(
        !downloads.join("album/deep").exists(),
        "empty folders left behind"
    );
    assert!(!downloads.join("other").exists());
    // The guest can still offer and upload afterwards.
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/offers",
                Some(&cookie),
                serde_json::json!({ "entries": [{"path": "later.txt", "size": 1}] }),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_websocket_outlives_the_header_timeout_and_holds_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = Duration::from_millis(300);
    let (_dir, node, addr) = web_node(WebOptions {
        header_timeout: timeout,
        max_connections_per_ip: 1,
        ..WebOptions::default()
    })
    .await;
    let cookie = node.web().unwrap().owner_cookie();
    let mut ws = connect_from("127.0.0.1", addr).await;
    ws.write_all(
        format!(
            "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Cookie: {cookie}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), ws.read(&mut byte))
            .await
            .expect("no upgrade answer")
            .unwrap();
        assert_eq!(n, 1, "closed during the upgrade");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The upgraded connection still holds the address's only slot.
    let mut second = connect_from("127.0.0.1", addr).await;
    assert!(closed_within(&mut second, Duration::from_secs(30)).await);
    // Not an assertion: let several header timeouts pass.
    tokio::time::sleep(timeout * 4).await;
    node.emit(Event::Error {
        message: "still there?".into(),
    });
    let mut frame = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(20), ws.read_exact(&mut frame))
        .await
        .expect("no event on the WebSocket")
        .expect("the WebSocket was closed");
    assert_eq!(frame[0], 0x81, "a final text frame");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_guest_upload_is_one_of_the_nodes_transfers_answered_paused_and_cancelled_like_a_peers() {
    use crate::proto::transfer::{Direction, Selection, TransferId, TransferState};
    let f = fixture().await;
    let (cookie, guest) = login(&f, PHONE, "phone").await;
    let mut events = f.node.subscribe();
    let size = 4usize << 20;
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/offers",
                Some(&cookie),
                serde_json::json!({"entries": [{"path": "big.bin", "size": size}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let id: TransferId = r.json["id"].as_str().unwrap().parse().unwrap();
    // Answered through the node's API, as a peer's offer is.
    f.node.accept_offer(id, Selection::All).unwrap();
    f.node.pause_transfer(id).unwrap();
    let listed = f.node.transfers().unwrap();
    let t = listed
        .iter()
        .find(|t| t.id == id)
        .expect("the guest's upload is one of the node's transfers");
    assert_eq!((t.peer, t.direction), (guest, Direction::Receive));
    // The upload stalls while the transfer is paused, and the owner's cancel
    // ends it: the guest is told, nothing stays on disk.
    let body = vec![9u8; size];
    let up = {
        let req = upload(
            PHONE,
            &format!("/api/guest/offers/{id}/upload"),
            Some(&cookie),
            &[("big.bin", &body)],
            true,
        );
        let router =
            router(f.app.clone()).layer(MockConnectInfo(PHONE.parse::<SocketAddr>().unwrap()));
        tokio::spawn(async move { router.oneshot(req).await.unwrap().status() })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = f
            .node
            .transfers()
            .unwrap()
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.state);
        if state == Some(TransferState::Paused) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "state {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!up.is_finished(), "the upload went on while paused");
    f.node.cancel_transfer(id).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), up)
        .await
        .expect("the cancel ends the upload")
        .unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::TransferCancelled {
                id: i,
                by_peer: false,
                ..
            }) = events.recv().await
                && i == id
            {
                return;
            }
        }
    })
    .await
    .expect("a transfer_cancelled event, as for a peer's transfer");
    let downloads = f.node.config().downloads.clone();
    assert!(!downloads.join("big.bin").exists());
    assert!(!downloads.join("big.bin.part").exists());
    let r = f
        .call(
            PHONE,
            get(PHONE, &format!("/api/guest/offers/{id}"), Some(&cookie)),
        )
        .await;
    assert_eq!(r.json["state"], "cancelled", "{}", r.json);
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_guest_is_a_peer_of_the_node_listed_and_blocked_through_its_api() {
    use crate::proto::wire::DeviceKind;
    let f = fixture().await;
    let (cookie, id) = login(&f, PHONE, "phone").await;
    // Node::peers is what the CLI's `peers`, the control socket and the
    // bindings list.
    let peers = f.node.peers().await.unwrap();
    let g = peers
        .iter()
        .find(|p| p.id == id)
        .expect("the guest is among the node's peers");
    assert_eq!((g.name.as_str(), g.kind), ("phone", DeviceKind::Browser));
    assert_eq!(
        g.verification_code,
        crate::identity::verification_code(&f.node.id(), &id)
    );
    assert_eq!(peers.iter().filter(|p| p.id == id).count(), 1);
    let r = f.call(OWNER, get(OWNER, "/api/peers", None)).await;
    let listed = r.json.as_array().unwrap();
    assert_eq!(
        listed.iter().filter(|p| p["id"] == id.to_string()).count(),
        1,
        "listed once in the web UI: {}",
        r.json
    );
    // Blocked through the node (as `peerconnect block` does): the session ends.
    f.node
        .set_trust(id, crate::event::Trust::Blocked)
        .await
        .unwrap();
    let r = f.call(PHONE, get(PHONE, "/api/guest", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!f.node.peers().await.unwrap().iter().any(|p| p.id == id));
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_owner_messages_a_guest_through_send_message_as_any_peer_with_one_id_sequence() {
    use crate::proto::messaging::{MessageId, Status};
    let f = fixture().await;
    let (cookie, id) = login(&f, PHONE, "phone").await;
    let mut events = f.node.subscribe();
    // What the CLI's `msg` and the bindings call: delivered once stored.
    let to_guest = f.node.send_message(id, "hi phone", None).await.unwrap();
    assert_eq!(to_guest.status, Status::Delivered);
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/messages",
                Some(&cookie),
                serde_json::json!({"text": "hi owner"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let from_guest: MessageId = r.json["id"].as_str().unwrap().parse().unwrap();
    // Both directions take their ids from the messaging service's one
    // generator: the later message has the later id.
    assert!(from_guest > to_guest.id, "{from_guest} <= {}", to_guest.id);
    let page = f.node.conversation(id, None, 10).unwrap();
    let texts: Vec<&str> = page.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hi phone", "hi owner"]);
    // The owner reads the guest's message (no receipt is kept owed to it).
    assert_eq!(f.node.mark_read(id, from_guest).await.unwrap(), 1);
    assert!(f.node.store().owed_receipts(&id, 10).unwrap().is_empty());
    // The guest's page shows the owner's message: it is read.
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/read",
                Some(&cookie),
                serde_json::json!({"up_to": to_guest.id}),
            ),
        )
        .await;
    assert_eq!(r.json["marked"], 1, "{}", r.json);
    let mut statuses = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        if let Event::MessageStatus { id: m, status, .. } = e
            && m == to_guest.id
        {
            statuses.push(status);
            if status == Status::Read {
                break;
            }
        }
    }
    assert_eq!(statuses, [Status::Delivered, Status::Read]);
    // Once the guest has left, a message to it fails and stores nothing.
    f.node
        .set_trust(id, crate::event::Trust::Blocked)
        .await
        .unwrap();
    let err = f.node.send_message(id, "still there?", None).await;
    assert!(
        matches!(
            err,
            Err(crate::Error::Messaging(
                crate::proto::messaging::Error::GuestLeft(_)
            ))
        ),
        "{err:?}"
    );
    assert_eq!(f.node.conversation(id, None, 10).unwrap().len(), 2);
    f.node.shutdown().await.unwrap();
}

/// Waits (up to 20 s) for `cond` to hold, checking after each event of `node`.
async fn wait_for(node: &Node, what: &str, mut cond: impl FnMut() -> bool) {
    let mut events = node.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // A quiet second re-checks too (what changed may not be an event).
        let wait = left.min(Duration::from_secs(1));
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let _ = tokio::time::timeout(wait, events.recv()).await;
    }
}

async fn room_names(node: &Node) -> Vec<String> {
    node.rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[tokio::test]
async fn a_guest_joins_a_room_through_the_node_and_talks_with_another_node() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::local(dir.path());
    c.name = "other-node".into();
    let other = Node::start(c).await.unwrap();
    other
        .connect(f.node.listen_addrs()[0], Some(f.node.id()))
        .await
        .unwrap();
    other.join_room("lobby").await.unwrap();
    let mut other_events = other.subscribe();

    let (cookie, id) = login(&f, PHONE, "phone").await;
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/rooms",
                Some(&cookie),
                serde_json::json!({"name": "lobby"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json[0]["name"], "lobby", "{}", r.json);
    assert_eq!(r.json[0]["joined"], true, "{}", r.json);
    // The node joined for its guest; its owner had not.
    assert_eq!(room_names(&f.node).await, ["lobby"]);

    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/rooms/lobby/messages",
                Some(&cookie),
                serde_json::json!({"text": "hello room"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["author"], f.node.id().to_string());
    assert_eq!(r.json["author_name"], "phone (guest via owner-node)");
    // The other node gets it, signed by the guest's node, with the guest's name.
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(Event::RoomMessage { room, message }) = other_events.recv().await
                && message.text == "hello room"
            {
                return (room, message);
            }
        }
    })
    .await
    .expect("the other node gets the guest's room message");
    assert_eq!(got.0, "lobby");
    assert_eq!(got.1.author, f.node.id());
    assert_eq!(got.1.author_name, "phone (guest via owner-node)");

    // The other node answers; the guest reads it in the room's history.
    other.room_say("lobby", "hi guest").await.unwrap();
    let texts = || {
        f.node
            .guest_room_history(id, "lobby", None, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect::<Vec<_>>()
    };
    wait_for(&f.node, "the other node's answer", || {
        texts().contains(&"hi guest".to_string())
    })
    .await;
    let r = f
        .call(
            PHONE,
            get(PHONE, "/api/guest/rooms/lobby/messages", Some(&cookie)),
        )
        .await;
    let got: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["hello room", "hi guest"]);

    // The guest leaves: the node, in the room only for it, leaves too.
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/rooms/lobby/leave",
                Some(&cookie),
                serde_json::json!({}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(room_names(&f.node).await.is_empty());
    other.shutdown().await.unwrap();
    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn guest_rooms_are_bounded_private_and_follow_the_owners_membership() {
    let f = fixture().await;
    let (cookie, id) = login(&f, PHONE, "phone").await;
    let (tablet, tablet_id) = login(&f, "10.77.0.10:40000", "tablet").await;
    let join = |cookie: String, from: &'static str, name: &str| {
        let req = post(
            from,
            "/api/guest/rooms",
            Some(&cookie),
            serde_json::json!({ "name": name }),
        );
        let f = &f;
        async move { f.call(from, req).await }
    };
    for i in 0..crate::rooms::MAX_GUEST_ROOMS {
        let r = join(cookie.clone(), PHONE, &format!("room {i}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let r = join(cookie.clone(), PHONE, "one too many").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("at most 8 rooms"),
        "{}",
        r.json
    );
    assert!(!room_names(&f.node).await.contains(&"one too many".into()));

    // Another guest neither reads nor writes a room it did not join.
    let from = "10.77.0.10:40000";
    let r = f
        .call(
            from,
            get(from, "/api/guest/rooms/room%200/messages", Some(&tablet)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = f
        .call(
            from,
            post(
                from,
                "/api/guest/rooms/room%200/messages",
                Some(&tablet),
                serde_json::json!({"text": "psst"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(f.node.guest_in_room(&id, "room 0"));
    assert!(!f.node.guest_in_room(&tablet_id, "room 0"));
    // Live messages of a room reach the sockets of its guests only.
    let live = |room: &str| Event::RoomMessage {
        room: room.into(),
        message: crate::proto::rooms::RoomMessage {
            id: crate::proto::rooms::RoomMessageId([9; 16]),
            room: room.into(),
            author: f.node.id(),
            author_name: "owner-node".into(),
            text: "hi".into(),
            time_ms: 0,
        },
    };
    assert!(socket::shown_to_guest(&f.app, &id, &live("room 0")));
    assert!(!socket::shown_to_guest(&f.app, &tablet_id, &live("room 0")));
    assert!(!socket::shown_to_guest(&f.app, &id, &live("elsewhere")));

    // Text is bound like the owner's.
    let big = "x".repeat(crate::proto::rooms::MAX_TEXT_LEN + 1);
    let r = f
        .call(
            PHONE,
            post(
                PHONE,
                "/api/guest/rooms/room%200/messages",
                Some(&cookie),
                serde_json::json!({ "text": big }),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(f.node.room_history("room 0", None, 10).unwrap().is_empty());

    // The owner joins a guest's room: when the guest leaves, the node stays.
    f.node.join_room("room 0").await.unwrap();
    f.node.guest_leave_room(id, "room 0").await.unwrap();
    assert!(room_names(&f.node).await.contains(&"room 0".into()));
    // The owner leaves a room a guest is still in: the node stays for it.
    f.node.leave_room("room 1").await.unwrap();
    assert!(room_names(&f.node).await.contains(&"room 1".into()));

    // A room the node is in only for the guest: a `room say` from the
    // command line joins it for the owner just for that say, and leaves
    // again, so the guest leaving it still takes the node out.
    let sink = crate::control::Sink::channel().0;
    let say = crate::control::Request::RoomSay {
        room: "room 2".into(),
        text: "from the terminal".into(),
        wait_ms: 0,
    };
    let reply = crate::control::dispatch(f.node.clone(), say, &sink).await;
    assert!(
        matches!(reply, crate::control::Reply::Ok { .. }),
        "{reply:?}"
    );
    f.node.guest_leave_room(id, "room 2").await.unwrap();
    assert!(
        !room_names(&f.node).await.contains(&"room 2".into()),
        "the node stayed in a room only its departed guest and one CLI say had joined"
    );

    // The guest is blocked: the node leaves every room it was in only for
    // it, and keeps the owner's.
    f.node
        .set_trust(id, crate::event::Trust::Blocked)
        .await
        .unwrap();
    assert_eq!(room_names(&f.node).await, ["room 0"]);
    f.node.shutdown().await.unwrap();
}

/// Issue 19, "share to a room": `POST /api/send?room=NAME` offers the upload
/// to every member of a room the owner is in (3 members: one file goes down a
/// relay tree); each member gets the same bytes. A room with no member known
/// is refused and leaves nothing staged.
#[tokio::test]
async fn the_owner_shares_a_file_to_every_member_of_a_room() {
    let f = fixture().await;
    let r = f
        .call(
            OWNER,
            post(
                OWNER,
                "/api/rooms",
                None,
                serde_json::json!({"name": "class"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let data = b"slides for everyone in the room".repeat(4000);
    let r = f
        .call(
            OWNER,
            upload(
                OWNER,
                "/api/send?room=class",
                None,
                &[("slides.pdf", &data)],
                true,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let outbox = f.node.data_dir().join("web-outbox");
    let left = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a refused share left files staged");

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut members = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let mut c = Config::local(d.path());
        c.name = format!("member{i}");
        c.accept_all = true;
        let m = Node::start(c).await.unwrap();
        m.connect(f.node.listen_addrs()[0], Some(f.node.id()))
            .await
            .unwrap();
        m.join_room("class").await.unwrap();
        members.push(m);
    }
    wait_until(|| async {
        let rooms = f.node.rooms().await.unwrap();
        rooms
            .iter()
            .any(|r| r.name == "class" && r.neighbors == 3)
            .then_some(())
    })
    .await;
    let r = f
        .call(
            OWNER,
            upload(
                OWNER,
                "/api/send?room=class",
                None,
                &[("slides.pdf", &data)],
                true,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let mut got: Vec<String> = r.json["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["peer"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = members.iter().map(|m| m.id().to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    for m in &members {
        let path = m.data_dir().join("downloads").join("slides.pdf");
        wait_until(|| async { (std::fs::read(&path).ok()? == data).then_some(()) }).await;
    }
    for m in members {
        m.shutdown().await.unwrap();
    }
    f.node.shutdown().await.unwrap();
}
