//! Browser guests: devices with no app that entered the web UI's PIN. Each
//! is a peer of kind `browser` with a random id, listed by
//! [`Node::peers`](crate::Node::peers) beside the node's other peers, with a
//! session cookie whose hash is kept here. The web server logs guests in and
//! out; the node owns the registry, so every front end sees them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::{PeerInfo, Trust};
use crate::identity::{PeerId, verification_code};
use crate::proto::wire::DeviceKind;

#[derive(Debug)]
struct Session {
    name: String,
    /// BLAKE3 of the cookie's token (the token itself is not kept).
    token: [u8; 32],
    ip: IpAddr,
    last_seen: Instant,
    sockets: usize,
    trust: Trust,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: BTreeMap<PeerId, Session>,
    by_token: HashMap<[u8; 32], PeerId>,
    /// Client addresses of blocked guests (for this run).
    blocked: HashSet<IpAddr>,
}

/// Why a login was refused (the PIN was right).
#[derive(Debug)]
pub(crate) enum LoginError {
    Blocked,
    Full(usize),
}

/// The registry of logged-in guests.
#[derive(Debug)]
pub(crate) struct Guests {
    me: PeerId,
    max: usize,
    idle: Duration,
    inner: Mutex<Inner>,
}

pub(crate) fn hash_token(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A display name from what the guest typed (trimmed, cut to the wire limit).
pub(crate) fn clean_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = crate::proto::wire::truncate_name(name.trim());
    if name.is_empty() {
        "Browser guest".into()
    } else {
        name
    }
}

impl Guests {
    pub fn new(me: PeerId, max: usize, idle: Duration) -> Self {
        Self {
            me,
            max,
            idle,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peer_info(&self, id: &PeerId, s: &Session) -> PeerInfo {
        PeerInfo {
            id: *id,
            name: s.name.clone(),
            kind: DeviceKind::Browser,
            addrs: Vec::new(),
            trust: s.trust,
            connected: s.sockets > 0,
            verification_code: verification_code(&self.me, id),
            localsend: None,
        }
    }

    /// Starts a session for a client that gave the right PIN: its cookie
    /// token and its peer entry.
    pub fn login(&self, ip: IpAddr, name: &str) -> Result<(String, PeerInfo), LoginError> {
        let mut g = self.lock();
        if g.blocked.contains(&ip) {
            return Err(LoginError::Blocked);
        }
        if g.by_id.len() >= self.max {
            return Err(LoginError::Full(self.max));
        }
        let token: [u8; 32] = rand::random();
        let token = crate::identity::base32_encode(&token);
        let id = PeerId::from_bytes(rand::random());
        let s = Session {
            name: clean_name(name),
            token: hash_token(&token),
            ip,
            last_seen: Instant::now(),
            sockets: 0,
            trust: Trust::Unknown,
        };
        let info = self.peer_info(&id, &s);
        g.by_token.insert(s.token, id);
        g.by_id.insert(id, s);
        Ok((token, info))
    }

    /// The guest a cookie token belongs to, if it is used from the address
    /// it was issued to (and notes it was seen).
    pub fn by_token(&self, token: &str, ip: IpAddr) -> Option<PeerId> {
        let mut g = self.lock();
        if g.blocked.contains(&ip) {
            return None;
        }
        let id = *g.by_token.get(&hash_token(token))?;
        let s = g.by_id.get_mut(&id)?;
        // A session is bound to the address it was issued to: a cookie
        // copied (sniffed) to another device is nobody there.
        if s.ip != ip {
            return None;
        }
        s.last_seen = Instant::now();
        Some(id)
    }

    pub fn is_guest(&self, id: &PeerId) -> bool {
        self.lock().by_id.contains_key(id)
    }

    pub fn info(&self, id: &PeerId) -> Option<PeerInfo> {
        let g = self.lock();
        g.by_id.get(id).map(|s| self.peer_info(id, s))
    }

    pub fn list(&self) -> Vec<PeerInfo> {
        let g = self.lock();
        g.by_id
            .iter()
            .map(|(id, s)| self.peer_info(id, s))
            .collect()
    }

    /// Ends a session; whether there was one.
    pub fn remove(&self, id: &PeerId) -> bool {
        let mut g = self.lock();
        match g.by_id.remove(id) {
            Some(s) => {
                g.by_token.remove(&s.token);
                true
            }
            None => false,
        }
    }

    /// Sets a guest's trust; blocking ends its session and refuses its
    /// address from then on (this run). `None` if there is no such guest.
    pub fn set_trust(&self, id: &PeerId, trust: Trust) -> Option<PeerInfo> {
        let mut g = self.lock();
        let s = g.by_id.get_mut(id)?;
        s.trust = trust;
        let info = self.peer_info(id, s);
        if trust == Trust::Blocked {
            let ip = s.ip;
            g.blocked.insert(ip);
            let s = g.by_id.remove(id).expect("present");
            g.by_token.remove(&s.token);
        }
        Some(info)
    }

    /// A WebSocket of the guest opened; the peer info if it is now connected
    /// (its first socket).
    pub fn socket_opened(&self, id: &PeerId) -> Option<PeerInfo> {
        let mut g = self.lock();
        let s = g.by_id.get_mut(id)?;
        s.sockets += 1;
        (s.sockets == 1).then(|| self.peer_info(id, s))
    }

    /// A WebSocket of the guest closed; whether it was its last.
    pub fn socket_closed(&self, id: &PeerId) -> bool {
        let mut g = self.lock();
        let Some(s) = g.by_id.get_mut(id) else {
            return false;
        };
        s.sockets = s.sockets.saturating_sub(1);
        s.last_seen = Instant::now();
        s.sockets == 0
    }

    /// Ends sessions idle for longer than the limit (with no socket open).
    pub fn expire(&self, now: Instant) -> Vec<PeerId> {
        let mut g = self.lock();
        let old: Vec<PeerId> = g
            .by_id
            .iter()
            .filter(|(_, s)| {
                s.sockets == 0 && now.saturating_duration_since(s.last_seen) > self.idle
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            if let Some(s) = g.by_id.remove(id) {
                g.by_token.remove(&s.token);
            }
        }
        old
    }
}
