//! Turning events into lines for humans, or JSON lines for scripts.

use peerconnect::localsend::LocalSendInfo;
use peerconnect::web::WebInfo;
use peerconnect::{Event, PeerInfo};

pub struct Printer {
    json: bool,
    /// The web UI, announced after the `listening` event.
    web: Option<WebInfo>,
    /// The LocalSend service, announced after the `listening` event.
    localsend: Option<LocalSendInfo>,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            web: None,
            localsend: None,
        }
    }

    /// Also prints the web UI's URLs, PIN and QR code after `listening`.
    pub fn with_web(mut self, web: Option<WebInfo>) -> Self {
        self.web = web;
        self
    }

    /// Also prints where LocalSend is served after `listening`.
    pub fn with_localsend(mut self, ls: Option<LocalSendInfo>) -> Self {
        self.localsend = ls;
        self
    }

    pub fn event(&self, e: &Event) {
        if self.json {
            println!("{}", serde_json::to_string(e).expect("events serialize"));
            if let (Event::Listening { .. }, Some(w)) = (e, &self.web) {
                println!(
                    "{}",
                    serde_json::json!({"event": "web", "url": w.url, "urls": w.urls, "pin": w.pin, "owner_url": w.owner_url})
                );
            }
            if let (Event::Listening { .. }, Some(l)) = (e, &self.localsend) {
                println!(
                    "{}",
                    serde_json::json!({"event": "localsend", "addr": l.addr, "fingerprint": l.fingerprint, "discovery": l.discovery})
                );
            }
            return;
        }
        match e {
            Event::Listening {
                id,
                name,
                addrs,
                web,
            } => {
                println!("PeerConnect node {name}");
                println!("  id     {id}");
                for a in addrs {
                    println!("  listen {a}");
                }
                match (&self.web, web) {
                    (Some(w), _) => print_web(w),
                    (None, Some(w)) => println!("  web    {w}"),
                    (None, None) => {}
                }
                if let Some(l) = &self.localsend {
                    println!("  localsend {} (fingerprint {})", l.addr, l.fingerprint);
                }
            }
            Event::PeerFound { peer } => println!("+ found     {}", describe(peer)),
            Event::PeerUpdated { peer } => println!("~ updated   {}", describe(peer)),
            Event::PeerLost { id } => println!("- lost      {}", id.short()),
            Event::PeerConnected {
                peer,
                verification_code,
            } => println!(
                "= connected {} (verification code {verification_code})",
                describe(peer)
            ),
            Event::PeerDisconnected { id, reason } => println!(
                "x disconnected {}{}",
                id.short(),
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Event::Error { message } => eprintln!("error: {message}"),
            Event::RoomMessage { room, message } => println!(
                "[{room}] {} ({}): {}",
                message.author_name,
                message.author.short(),
                message.text
            ),
            Event::RoomJoined { room } => println!("> joined room {room}"),
            Event::RoomLeft { room } => println!("< left room {room}"),
            Event::Offer {
                id,
                name,
                verification_code,
                files,
                total_bytes,
                auto_accepted,
                ..
            } => println!(
                "> offer     {id} from {name} (code {verification_code}): {files} files, {} bytes{}",
                total_bytes,
                if *auto_accepted {
                    ", accepted"
                } else {
                    "; answer with `peerconnect receive`"
                }
            ),
            Event::TransferDone {
                path,
                bytes,
                direction,
                ..
            } => println!(
                "  {:<9} {path} ({bytes} bytes)",
                match direction {
                    peerconnect::proto::transfer::Direction::Send => "sent",
                    peerconnect::proto::transfer::Direction::Receive => "received",
                }
            ),
            Event::TransferComplete {
                id,
                direction,
                files,
                failed,
                ..
            } => println!(
                "  complete  {id} ({}): {files} files, {failed} failed",
                direction.as_str()
            ),
            Event::TransferFailed {
                id, path, error, ..
            } => match path {
                Some(p) => eprintln!("error: transfer {id}: {p}: {error}"),
                None => eprintln!("error: transfer {id}: {error}"),
            },
            Event::TransferCancelled { id, by_peer, .. } => println!(
                "  cancelled {id}{}",
                if *by_peer { " by the peer" } else { "" }
            ),
            Event::TransferRejected { id, reason, .. } => println!("  refused   {id}: {reason}"),
            Event::Progress { .. } => {}
            Event::MessageReceived { message } => {
                println!(
                    "< message   from {}: {}",
                    message.from.short(),
                    message.text
                )
            }
            Event::MessageStatus { id, peer, status } => {
                println!("· message   {id} to {}: {status}", peer.short())
            }
            other => println!(
                "{}",
                serde_json::to_string(other).expect("events serialize")
            ),
        }
    }

    pub fn peers(&self, peers: &[PeerInfo]) {
        if self.json {
            println!("{}", serde_json::to_string(peers).expect("peers serialize"));
            return;
        }
        if peers.is_empty() {
            println!(
                "no peers found (try --connect HOST:PORT if discovery is blocked on this network)"
            );
            return;
        }
        println!(
            "{:<10} {:<20} {:<8} {:<8} {:<6} {:<10} ADDRESSES",
            "ID", "NAME", "KIND", "TRUST", "CODE", "CONNECTED"
        );
        for p in peers {
            println!(
                "{:<10} {:<20} {:<8} {:<8} {:<6} {:<10} {}",
                p.id.short(),
                p.name,
                p.kind.as_str(),
                p.trust.as_str(),
                p.verification_code,
                if p.connected { "yes" } else { "no" },
                p.addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}

fn describe(p: &PeerInfo) -> String {
    let addr = p
        .addrs
        .first()
        .map(|a| format!(" at {a}"))
        .unwrap_or_default();
    format!("{} ({}, {}){addr}", p.name, p.id.short(), p.kind.as_str())
}

/// The web UI's addresses, the PIN and a QR code of the LAN URL (carrying the
/// PIN, so a phone that scans it is let in at once).
fn print_web(w: &WebInfo) {
    for u in &w.urls {
        println!("  web    {u}");
    }
    println!("  owner  {}", w.owner_url);
    println!("         (open this link on this machine to manage the node; keep it private)");
    println!("  PIN    {}  (browsers on other devices enter it)", w.pin);
    let link = format!("{}#pin={}", w.url, w.pin);
    match qrcode::QrCode::new(link.as_bytes()) {
        Ok(code) => {
            // Light modules drawn as blocks: right on the usual dark terminal.
            let qr = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            println!("  scan to open {} on a phone:", w.url);
            println!("{qr}");
        }
        Err(e) => println!("  (no QR code: {e})"),
    }
}
