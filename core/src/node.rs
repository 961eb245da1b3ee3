//! [`Node`]: the public handle to a running PeerConnect node.
//!
//! `Node::start(config)` loads (or creates) the identity, opens the store, binds
//! the listener and discovery sockets and spawns the node actor. The handle is
//! cheap to clone; every clone talks to the same actor. `shutdown()` closes every
//! socket, ends every task and flushes the store; dropping the last handle does the
//! same in the background.

mod messages;
mod transfers;

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{Config, Storage};
use crate::error::{Error, Result};
use crate::event::{Event, PeerInfo, Trust};
use crate::identity::{Identity, PeerId};
use crate::net::actor::{Actor, Command, Stats};
use crate::net::dht::{Dht, DhtHandle};
use crate::net::gossip::Gossip;
use crate::net::links::{Links, Router};
use crate::proto::rooms::{RoomMessage, RoomMessageId};
use crate::rooms::{GuestRoom, RoomInfo, RoomSaid, RoomStats, Rooms};
use crate::store::Store;

/// Gossip frames from all peers waiting for the gossip service, at most.
const GOSSIP_QUEUE: usize = 256;
/// Gossip events waiting for the rooms layer, at most.
const GOSSIP_EVENTS: usize = 256;

#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Identity,
    name: String,
    data_dir: std::path::PathBuf,
    cmd: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    /// Receives every event since start; handed to the first `events()` caller.
    first_events: Mutex<Option<broadcast::Receiver<Event>>>,
    store: Arc<Store>,
    links: Arc<Links>,
    gossip: Gossip,
    rooms: Rooms,
    dht: Option<DhtHandle>,
    listen_addrs: Vec<SocketAddr>,
    messaging: crate::net::messaging::Handle,
    join: Mutex<Option<JoinHandle<()>>>,
    /// Front-end tasks tied to the node's life (control socket, web server).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Released at shutdown, so the data dir can be reused in this process.
    lock: Mutex<Option<DataDirLock>>,
    /// Cancelled at shutdown: ends every stream `events()` handed out.
    closed: tokio_util::sync::CancellationToken,
    /// The configuration the node started with.
    config: Config,
    #[cfg(feature = "web")]
    web: Option<crate::web::WebInfo>,
    transfers: crate::net::transfer::Service,
    /// Browser guests of the web UI (peers of kind `browser`).
    guests: Arc<crate::net::guest::Guests>,
    /// LocalSend devices heard of (peers of kind `localsend`).
    localsend_devices: Arc<crate::localsend::Devices>,
    /// Where the LocalSend service runs, once it does.
    localsend: std::sync::OnceLock<crate::localsend::LocalSendInfo>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// A handle that does not keep the node alive (for tasks the node owns).
#[derive(Clone)]
pub(crate) struct WeakNode(std::sync::Weak<Inner>);

impl WeakNode {
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.identity.peer_id())
            .field("listen", &self.inner.listen_addrs)
            .finish_non_exhaustive()
    }
}

/// A build without the web UI (cargo feature `web` off, as in a lean app
/// library): asking for it fails the start, unless it was optional, which
/// only says why it is not there.
#[cfg(not(feature = "web"))]
fn no_web(config: &Config) -> Result<Option<String>> {
    let Some(addr) = config.web else {
        return Ok(None);
    };
    let message =
        format!("web UI not started on {addr}: this build has no web UI (cargo feature `web`)");
    if config.web_options.optional {
        Ok(Some(message))
    } else {
        Err(Error::Invalid(message))
    }
}

impl Node {
    /// Starts a node. Fails if the data dir is used by another running node, or
    /// the listening or discovery port cannot be bound.
    pub async fn start(config: Config) -> Result<Node> {
        raise_fd_limit();
        let (lock, identity, store) = match config.storage {
            Storage::DataDir => {
                crate::data_dir::prepare(&config.data_dir).map_err(|e| {
                    Error::io(
                        format!("creating data dir {}", config.data_dir.display()),
                        e,
                    )
                })?;
                let lock = DataDirLock::acquire(&config.data_dir)?;
                let identity = Identity::load_or_create(&config.data_dir)?;
                (Some(lock), identity, Store::open(&config.data_dir)?)
            }
            Storage::Memory => (None, Identity::generate(), Store::in_memory()?),
        };
        let store = Arc::new(store);
        let (events, first) = broadcast::channel(config.event_buffer.max(1));
        let (cmd, cmd_rx) = mpsc::channel(64);
        let links = Links::new(cmd.clone(), config.event_buffer.min(1024));
        #[cfg(feature = "web")]
        let web = crate::web::bind(&config).await?;
        #[cfg(feature = "web")]
        let web_url = web
            .as_ref()
            .and_then(|w| w.as_ref().ok())
            .map(|b| b.info().url.clone());
        #[cfg(not(feature = "web"))]
        let (web, web_url) = (no_web(&config)?, None);
        let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
        let mut router = Router {
            gossip: Some(gossip_tx),
            ..Router::default()
        };
        let guests = Arc::new(crate::net::guest::Guests::new(
            identity.peer_id(),
            config.web_options.max_guests,
            config.web_options.session_idle,
        ));
        let localsend_devices = Arc::new(crate::localsend::Devices::new(identity.peer_id()));
        let (transfers, transfer_streams, transfer_task) = crate::net::transfer::Service::start(
            &config,
            identity.peer_id(),
            store.clone(),
            links.clone(),
            events.clone(),
            guests.clone(),
            localsend_devices.clone(),
        );
        router.transfer = Some(transfer_streams);
        let (messaging, messaging_service) =
            crate::net::messaging::prepare(&mut router, &links, identity.peer_id(), events.clone());
        // Taken before the actor runs, so the DHT misses no peer it sees.
        let seen = config.dht.then(|| links.subscribe_seen());
        let started = Actor::spawn(
            config.clone(),
            identity.clone(),
            store.clone(),
            events.clone(),
            cmd_rx,
            links.clone(),
            router,
            web_url,
        )
        .await?;
        let (gossip_events, gossip_events_rx) = mpsc::channel(GOSSIP_EVENTS);
        let (gossip, gossip_task) = Gossip::spawn(
            identity.peer_id(),
            &started.listen_addrs,
            config.gossip.clone(),
            links.clone(),
            gossip_rx,
            gossip_events,
        );
        let rooms = Rooms::new(
            identity.clone(),
            config.name.clone(),
            gossip.clone(),
            links.clone(),
            store.clone(),
            events.clone(),
        );
        let receiver = rooms.spawn_receiver(gossip_events_rx);
        let (dht, dht_task) = if config.dht {
            start_dht(&config, &identity, &started.listen_addrs).await?
        } else {
            (None, None)
        };
        let node = Node {
            inner: Arc::new(Inner {
                identity,
                name: config.name.clone(),
                data_dir: config.data_dir.clone(),
                cmd,
                events,
                first_events: Mutex::new(Some(first)),
                store,
                links,
                gossip,
                rooms,
                dht: dht.clone(),
                listen_addrs: started.listen_addrs,
                messaging,
                join: Mutex::new(Some(started.join)),
                tasks: Mutex::new(vec![gossip_task, receiver]),
                lock: Mutex::new(lock),
                closed: tokio_util::sync::CancellationToken::new(),
                #[cfg(feature = "web")]
                web: web
                    .as_ref()
                    .and_then(|w| w.as_ref().ok())
                    .map(|b| b.info().clone()),
                guests,
                localsend_devices,
                localsend: std::sync::OnceLock::new(),
                config: config.clone(),
                transfers,
            }),
        };
        node.own_task(transfer_task);
        node.own_task(messaging_service.spawn(node.store().clone(), node.links().clone()));
        if let Some(t) = crate::rooms::spawn_lonely_rooms(node.downgrade()) {
            node.own_task(t);
        }
        #[cfg(unix)]
        if config.storage == Storage::DataDir
            && let Some(t) = crate::control::serve(node.clone())
        {
            node.own_task(t);
        }
        #[cfg(feature = "web")]
        match web {
            Some(Ok(bound)) => {
                node.own_task(crate::web::serve(&node, bound, config.web_options.clone()))
            }
            Some(Err(message)) => node.emit(Event::Error { message }),
            None => {}
        }
        #[cfg(not(feature = "web"))]
        if let Some(message) = web {
            node.emit(Event::Error { message });
        }
        // LocalSend's multicast is discovery: without discovery it runs only
        // on a loopback address, which no other device reaches.
        #[cfg(feature = "web")]
        if config.localsend.enabled
            && (config.discovery.enabled || config.localsend.listen.ip().is_loopback())
        {
            match crate::localsend::start(&node, &config).await {
                Ok((tasks, info)) => {
                    for t in tasks {
                        node.own_task(t);
                    }
                    let _ = node.inner.localsend.set(info);
                }
                Err(message) => node.emit(Event::Error { message }),
            }
        }
        if let (Some(dht), Some(task), Some(seen)) = (dht, dht_task, seen) {
            node.own_task(task);
            node.own_task(crate::net::dht::attach(
                dht,
                node.store().clone(),
                seen,
                node.listen_addrs().to_vec(),
                node.name().to_string(),
            ));
        }
        Ok(node)
    }

    pub(crate) fn transfer_service(&self) -> &crate::net::transfer::Service {
        &self.inner.transfers
    }

    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Ties a task's life to the node: aborted at shutdown.
    pub(crate) fn own_task(&self, t: JoinHandle<()>) {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t);
    }

    pub fn id(&self) -> PeerId {
        self.inner.identity.peer_id()
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The configuration the node started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Where the web UI is served and its PIN (`None`: no web UI).
    #[cfg(feature = "web")]
    pub fn web(&self) -> Option<&crate::web::WebInfo> {
        self.inner.web.as_ref()
    }

    /// Puts an event on the node's stream (for services outside the actor).
    pub(crate) fn emit(&self, e: Event) {
        let _ = self.inner.events.send(e);
    }

    /// Connected peers' links, for the node's services.
    pub fn links(&self) -> &Arc<Links> {
        &self.inner.links
    }

    /// The gossip service (topics of any kind; rooms are built on it).
    pub fn gossip(&self) -> &Gossip {
        &self.inner.gossip
    }

    pub(crate) fn rooms_service(&self) -> &Rooms {
        &self.inner.rooms
    }

    /// Joins room `name` (no-op if already in it), bootstrapping from the peers
    /// the node knows. Messages of the room then arrive as
    /// [`Event::RoomMessage`].
    pub async fn join_room(&self, name: &str) -> Result<()> {
        self.inner.rooms.join(self, name).await
    }

    /// Leaves room `name` (no-op if not in it): no more of its messages arrive.
    pub async fn leave_room(&self, name: &str) -> Result<()> {
        self.inner.rooms.leave(name).await
    }

    /// Signs `text` and sends it to everyone in room `name` (which must be
    /// joined); stores it in the history. Fails with [`Error::Invalid`] for a
    /// text over 16 KiB.
    pub async fn room_say(&self, name: &str, text: &str) -> Result<RoomMessage> {
        self.inner.rooms.say(name, text).await
    }

    /// Like [`Node::room_say`], but first waits (within `wait`) for a neighbour
    /// that is in the room, and returns once the neighbours have read the
    /// message (or `wait` is over). For senders about to exit.
    pub async fn room_say_and_wait(
        &self,
        name: &str,
        text: &str,
        wait: std::time::Duration,
    ) -> Result<RoomSaid> {
        self.inner.rooms.say_and_wait(name, text, wait).await
    }

    /// Up to `limit` (at most 1000) stored messages of room `name`, oldest
    /// first: the latest, or those that arrived before message `before`.
    pub fn room_history(
        &self,
        name: &str,
        before: Option<RoomMessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>> {
        self.inner.rooms.history(name, before, limit)
    }

    /// Rooms joined, with their neighbour counts.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>> {
        self.inner.rooms.list().await
    }

    /// Whether the owner joined room `name`. [`Node::rooms`] also lists
    /// rooms the node is in only for its browser guests; this does not.
    pub fn owner_in_room(&self, name: &str) -> bool {
        self.inner.rooms.owner_in(name)
    }

    /// Neighbours in room `name` that proved they are members.
    pub async fn room_neighbors(&self, name: &str) -> Result<Vec<PeerId>> {
        self.inner.rooms.neighbors(name).await
    }

    /// Room messages received, and dropped by reason (forgeries, ...).
    pub fn room_stats(&self) -> RoomStats {
        self.inner.rooms.stats()
    }

    /// The rooms the node is in, as the browser guest `guest` sees them
    /// (whether it joined each). See [`crate::rooms`] on guests.
    pub(crate) async fn guest_rooms(&self, guest: PeerId) -> Result<Vec<GuestRoom>> {
        self.inner.rooms.guest_list(&guest).await
    }

    /// The browser guest `guest` joins room `name` (the node joins it for the
    /// guest if it is not in it; at most
    /// [`MAX_GUEST_ROOMS`](crate::rooms::MAX_GUEST_ROOMS) per guest).
    pub(crate) async fn guest_join_room(&self, guest: PeerId, name: &str) -> Result<()> {
        self.inner.rooms.guest_join(self, guest, name).await
    }

    /// The browser guest `guest` leaves room `name` (the node leaves it too
    /// when no guest is left in it and the owner had not joined it).
    pub(crate) async fn guest_leave_room(&self, guest: PeerId, name: &str) -> Result<()> {
        self.inner.rooms.guest_leave(guest, name).await
    }

    /// Whether the browser guest `guest` is in room `name` (gets its messages).
    pub(crate) fn guest_in_room(&self, guest: &PeerId, name: &str) -> bool {
        self.inner.rooms.guest_in(guest, name)
    }

    /// The stored messages of a room the browser guest `guest` is in.
    pub(crate) fn guest_room_history(
        &self,
        guest: PeerId,
        name: &str,
        before: Option<RoomMessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>> {
        self.inner.rooms.guest_history(&guest, name, before, limit)
    }

    /// The node says `text` in room `name` for the browser guest `guest`
    /// (which must be in it), named "GUEST (guest via NODE)".
    pub(crate) async fn guest_room_say(
        &self,
        guest: PeerId,
        name: &str,
        text: &str,
    ) -> Result<RoomMessage> {
        let info = self
            .inner
            .guests
            .info(&guest)
            .ok_or_else(|| Error::PeerNotFound(guest.short()))?;
        self.inner
            .rooms
            .guest_say(&guest, &info.name, name, text)
            .await
    }

    /// A browser guest's session ended (logout, expiry, block): it leaves its
    /// rooms.
    pub(crate) async fn guest_gone(&self, guest: PeerId) {
        if let Err(e) = self.inner.rooms.guest_gone(guest).await {
            tracing::debug!(error = %e, "cannot leave a gone guest's rooms");
        }
    }

    /// The node's store.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub(crate) fn messaging(&self) -> &crate::net::messaging::Handle {
        &self.inner.messaging
    }

    /// Events from now on (unlike [`events`](Self::events), never the backlog
    /// since start), for requests that watch the node for a while.
    pub fn subscribe(&self) -> EventStream {
        EventStream::new(self.inner.events.subscribe())
    }

    /// Addresses other nodes can dial (concrete, never a wildcard).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.inner.listen_addrs
    }

    /// The stream of [`Event`]s. The first caller receives every event since the
    /// node started (starting with `Listening`); later callers receive events from
    /// the moment they call. A subscriber that falls more than a few thousand
    /// events behind skips the oldest ones. The stream ends (after the events
    /// already sent) when the node shuts down.
    pub fn events(&self) -> EventStream {
        let first = self
            .inner
            .first_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        EventStream::until(
            first.unwrap_or_else(|| self.inner.events.subscribe()),
            self.inner.closed.clone(),
        )
    }

    /// Events from now on (never the backlog since start that the first
    /// [`Node::events`] caller gets).
    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(make(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Peers currently known: discovered on the LAN or connected.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        let mut peers: Vec<PeerInfo> = self.request(Command::Peers).await?;
        peers.extend(self.inner.guests.list());
        peers.extend(self.inner.localsend_devices.list());
        Ok(peers)
    }

    /// Where this node's LocalSend service runs (`None`: it does not).
    pub fn localsend(&self) -> Option<&crate::localsend::LocalSendInfo> {
        self.inner.localsend.get()
    }

    /// The PIN to give the LocalSend device `peer` when sending it files or
    /// messages (a device whose owner set one asks for it); `None` clears it.
    /// Fails if `peer` is not a LocalSend device listed now.
    pub fn set_localsend_pin(&self, peer: PeerId, pin: Option<String>) -> Result<()> {
        if self.inner.localsend_devices.set_pin(&peer, pin) {
            Ok(())
        } else {
            Err(Error::PeerNotFound(format!(
                "{} is not a LocalSend device listed now",
                peer.short()
            )))
        }
    }

    /// The LocalSend devices heard of (peers of kind `localsend`).
    pub(crate) fn localsend_devices(&self) -> &Arc<crate::localsend::Devices> {
        &self.inner.localsend_devices
    }

    /// The browser guests logged in to the web UI.
    pub(crate) fn guests(&self) -> &Arc<crate::net::guest::Guests> {
        &self.inner.guests
    }

    /// Dials `addr` (optionally requiring it to be `expected`) and returns the
    /// PeerId that answered once the session is up.
    pub async fn connect(&self, addr: SocketAddr, expected: Option<PeerId>) -> Result<PeerId> {
        self.request(|reply| Command::Connect {
            addr,
            expected,
            reply,
        })
        .await?
        .map_err(|e| Error::PeerNotFound(format!("{addr}: {e}")))
    }

    /// Trusts, blocks or resets a peer. Blocking closes its session at once and
    /// refuses its connections from then on.
    /// A browser guest is blocked the same way: its web session ends and
    /// its address is refused.
    pub async fn set_trust(&self, id: PeerId, trust: Trust) -> Result<()> {
        if let Some(peer) = self.inner.guests.set_trust(&id, trust) {
            self.store().set_trust(&id, trust)?;
            if trust == Trust::Blocked {
                self.local_transfers().peer_gone(&id);
                self.guest_gone(id).await;
                self.emit(Event::PeerLost { id });
            } else {
                self.emit(Event::PeerUpdated { peer });
            }
            return Ok(());
        }
        self.request(|reply| Command::SetTrust { id, trust, reply })
            .await?
            .map_err(Error::Invalid)
    }

    /// Counters (discovery drops, handshake failures, ...).
    pub async fn stats(&self) -> Result<Stats> {
        self.request(Command::Stats).await
    }

    /// Peers remembered in the store, online or not.
    pub fn known_peers(&self) -> Result<Vec<crate::store::StoredPeer>> {
        Ok(self.inner.store.peers()?)
    }

    /// The one peer `spec` names among live and remembered peers: a full id,
    /// a unique id prefix (≥ 6 characters) or a unique device name.
    async fn resolve_known(&self, spec: &str) -> Result<PeerId> {
        let live = self.peers().await?;
        let stored = self.known_peers()?;
        let candidates = live
            .iter()
            .map(|p| (p.id, p.name.clone()))
            .chain(stored.iter().map(|p| (p.id, p.name.clone())));
        resolve_among(spec, candidates)
    }

    /// The node's DHT, if enabled.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.inner.dht.as_ref()
    }

    /// Finds peers through the DHT by PeerId or device name, beyond multicast
    /// reach. Found peers are remembered, so other commands accept them as PEER
    /// (by name or id) and can dial them.
    pub async fn find(&self, spec: &str) -> Result<Vec<crate::proto::kademlia::PeerRecord>> {
        let dht = self
            .dht()
            .ok_or_else(|| Error::Invalid("the DHT is disabled on this node".into()))?;
        let found = match spec.trim().parse::<PeerId>() {
            Ok(id) => dht
                .find_peer(id)
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?
                .into_iter()
                .collect(),
            Err(_) => dht
                .find_by_name(spec.trim())
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?,
        };
        for r in &found {
            if r.id != self.id() {
                self.inner.store.upsert_peer(
                    &r.id,
                    &r.name,
                    crate::proto::wire::DeviceKind::Other,
                    &r.addrs,
                    crate::store::now_ms(),
                )?;
            }
        }
        Ok(found.into_iter().filter(|r| r.id != self.id()).collect())
    }

    /// Resolves a user's `PEER` argument, the one rule every command, the
    /// control socket, the web API and the bindings use:
    ///
    /// 1. `HOST:PORT`: dialed; the peer that answers, once the session is up;
    /// 2. a full PeerId, a unique id prefix (≥ 6 characters) or a unique device
    ///    name among live and remembered peers;
    /// 3. else (and for an id that is not connected, to learn where it is) the
    ///    DHT.
    ///
    /// A peer not found yet is waited for up to `wait`: every peer that connects
    /// or is discovered meanwhile (a new DHT contact, too) triggers another
    /// try, so the wait ends as soon as the peer is known.
    pub async fn resolve_peer(&self, spec: &str, wait: Duration) -> Result<PeerId> {
        let spec = spec.trim();
        if let Some(addr) = host_port(spec).await {
            return self.connect(addr, None).await;
        }
        // Subscribed before the first try: nothing that happens after it is missed.
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.resolve_known(spec).await {
                Ok(id)
                    if id == self.id()
                        || self.links().is_connected(&id)
                        || self.inner.guests.is_guest(&id)
                        || self.inner.localsend_devices.is_device(&id) =>
                {
                    return Ok(id);
                }
                // An id not connected: ask the DHT where it is, so it can be dialed.
                Ok(id) => {
                    if self.find_unique(&id.to_string()).await?.is_some()
                        || tokio::time::Instant::now() >= deadline
                    {
                        return Ok(id);
                    }
                }
                Err(Error::PeerNotFound(_)) => {
                    if let Some(id) = self.find_unique(spec).await? {
                        return Ok(id);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::PeerNotFound(spec.to_string()));
                    }
                }
                Err(e) => return Err(e),
            }
            // Wait for a peer to show up (or the deadline), then try again.
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Some(Event::PeerFound { .. } | Event::PeerUpdated { .. } | Event::PeerConnected { .. }) => break,
                        Some(_) => {}
                        None => return Err(Error::Shutdown),
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
    }

    /// The one peer the DHT knows by the id or name `spec` (remembered, so
    /// it can be dialed); `None` if the DHT is off or finds none.
    async fn find_unique(&self, spec: &str) -> Result<Option<PeerId>> {
        if self.dht().is_none() {
            return Ok(None);
        }
        let found = match self.find(spec).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(spec, error = %e, "DHT lookup failed");
                return Ok(None);
            }
        };
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.id)),
            many => Err(Error::AmbiguousPeer(
                spec.to_string(),
                many.iter()
                    .map(|r| format!("{} ({})", r.id.short(), r.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Stops the node: closes sessions and sockets, ends tasks, flushes the store.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.transfers.shutdown();
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        if self
            .inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            let _ = std::fs::remove_file(crate::control::socket_path(self.data_dir()));
        }
        if let Some(d) = self.dht() {
            d.shutdown().await;
        }
        let _ = self.request(Command::Shutdown).await;
        let join = self
            .inner
            .join
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(j) = join {
            let _ = j.await;
        }
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.inner.closed.cancel();
        Ok(())
    }
}

/// Binds the DHT's UDP socket on the TCP listener's port number (the convention
/// that lets every known TCP address double as a DHT contact) and spawns it.
async fn start_dht(
    config: &Config,
    identity: &Identity,
    listen_addrs: &[SocketAddr],
) -> Result<(Option<DhtHandle>, Option<JoinHandle<()>>)> {
    let port = listen_addrs.first().map(|a| a.port()).unwrap_or(0);
    let bind = SocketAddr::new(config.listen.ip(), port);
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%bind, error = %e, "DHT disabled: cannot bind its UDP port");
            return Ok((None, None));
        }
    };
    let (handle, task) = Dht::spawn(
        identity.clone(),
        socket,
        crate::proto::kademlia::Config::default(),
    )
    .map_err(|e| Error::io("starting the DHT", e))?;
    Ok((Some(handle), Some(task)))
}

/// `spec` as a `HOST:PORT` to dial (an IP address, or a host name that
/// resolves), if it is one.
async fn host_port(spec: &str) -> Option<SocketAddr> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = spec.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    tokio::net::lookup_host(spec).await.ok()?.next()
}

/// Picks the one peer `spec` names: an exact id, a unique prefix of at least six
/// characters, or a unique device name (case-insensitive).
pub fn resolve_among(
    spec: &str,
    candidates: impl IntoIterator<Item = (PeerId, String)>,
) -> Result<PeerId> {
    let spec = spec.trim();
    if let Ok(id) = spec.parse::<PeerId>() {
        return Ok(id);
    }
    let mut by_prefix = Vec::new();
    let mut by_name = Vec::new();
    let lower = spec.to_lowercase();
    for (id, name) in candidates {
        if spec.len() >= 6
            && id.to_string().starts_with(&lower)
            && !by_prefix.contains(&(id, name.clone()))
        {
            by_prefix.push((id, name.clone()));
        }
        if name.to_lowercase() == lower && !by_name.iter().any(|(i, _)| *i == id) {
            by_name.push((id, name));
        }
    }
    by_prefix.dedup_by_key(|(id, _)| *id);
    let pick = if !by_prefix.is_empty() {
        by_prefix
    } else {
        by_name
    };
    match pick.as_slice() {
        [] => Err(Error::PeerNotFound(spec.to_string())),
        [(id, _)] => Ok(*id),
        many => Err(Error::AmbiguousPeer(
            spec.to_string(),
            many.iter()
                .map(|(id, n)| format!("{} ({n})", id.short()))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// A stream of [`Event`]s (see [`Node::events`]).
pub struct EventStream {
    inner: tokio_util::sync::ReusableBoxFuture<'static, (Option<Event>, Receiver)>,
}

type Receiver = (
    broadcast::Receiver<Event>,
    Option<tokio_util::sync::CancellationToken>,
);

async fn next_event(mut rx: Receiver) -> (Option<Event>, Receiver) {
    loop {
        let recv = async {
            match &rx.1 {
                // biased: events sent before the node closed are delivered first
                Some(closed) => tokio::select! {
                    biased;
                    r = rx.0.recv() => r,
                    () = closed.cancelled() => Err(broadcast::error::RecvError::Closed),
                },
                None => rx.0.recv().await,
            }
        };
        match recv.await {
            Ok(e) => return (Some(e), rx),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("event subscriber fell behind and missed {n} events");
            }
            Err(broadcast::error::RecvError::Closed) => return (None, rx),
        }
    }
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Self {
            inner: tokio_util::sync::ReusableBoxFuture::new(next_event((rx, None))),
        }
    }

    /// A stream that also ends when `closed` is cancelled.
    fn until(rx: broadcast::Receiver<Event>, closed: tokio_util::sync::CancellationToken) -> Self {
        Self {
            inner: tokio_util::sync::ReusableBoxFuture::new(next_event((rx, Some(closed)))),
        }
    }

    /// The next event, or `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let (e, rx) = futures::ready!(self.inner.poll(cx));
        self.inner.set(next_event(rx));
        Poll::Ready(e)
    }
}

/// An exclusive lock on the data dir, held for the node's lifetime, so two nodes
/// never share one identity and store by accident.
struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("node.lock");
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(crate::data_dir::FILE_MODE);
        }
        let file = opts
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                return Err(Error::DataDirInUse(dir.display().to_string()));
            }
        }
        Ok(Self { _file: file })
    }
}

/// Raises this process's soft limit of open files to its hard limit, once:
/// every connection (peers, web clients, the control socket) and every file
/// being sent or received takes a descriptor, and the default soft limit
/// (often 1024, 256 on macOS) is reached long before the node's own caps.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
            unsafe {
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return;
                }
                let want = lim.rlim_max;
                // macOS refuses more than OPEN_MAX for the soft limit.
                #[cfg(target_os = "macos")]
                let want = want.min(libc::OPEN_MAX as libc::rlim_t);
                if want > lim.rlim_cur {
                    let old = lim.rlim_cur;
                    lim.rlim_cur = want;
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        tracing::debug!(from = old, to = want, "raised the open file limit");
                    }
                }
            }
        });
    }
}

/// Whether another process holds the data dir lock (a node is running there).
pub fn data_dir_in_use(dir: &Path) -> bool {
    match DataDirLock::acquire(dir) {
        Ok(_) => false,
        Err(Error::DataDirInUse(_)) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        Identity::from_secret([n; 32]).peer_id()
    }

    #[test]
    fn resolve_by_prefix_name_and_full_id() {
        let (a, b) = (id(1), id(2));
        let cands = || vec![(a, "Laptop".to_string()), (b, "phone".to_string())];
        assert_eq!(resolve_among(&a.to_string(), cands()).unwrap(), a);
        assert_eq!(resolve_among(&b.to_string()[..6], cands()).unwrap(), b);
        assert_eq!(resolve_among("laptop", cands()).unwrap(), a);
        assert!(matches!(
            resolve_among("tablet", cands()),
            Err(Error::PeerNotFound(_))
        ));
    }

    #[test]
    fn short_prefixes_do_not_match_and_duplicates_are_ambiguous() {
        let (a, b) = (id(1), id(2));
        assert!(resolve_among(&a.to_string()[..5], vec![(a, "x".into())]).is_err());
        let r = resolve_among("same", vec![(a, "same".into()), (b, "same".into())]);
        assert!(matches!(r, Err(Error::AmbiguousPeer(..))));
        // the same peer listed twice (live and stored) is not ambiguous
        assert_eq!(
            resolve_among("x", vec![(a, "x".into()), (a, "x".into())]).unwrap(),
            a
        );
    }

    #[tokio::test]
    async fn event_streams_end_at_shutdown_after_the_events_sent_before() {
        let dir = tempfile::tempdir().unwrap();
        let a = Node::start(Config::local(dir.path())).await.unwrap();
        let first = a.events();
        let later = a.events();
        a.shutdown().await.unwrap();
        let drain = |mut s: EventStream| async move {
            let mut seen = Vec::new();
            while let Some(e) = s.recv().await {
                seen.push(e);
            }
            seen
        };
        let (first, _) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            (drain(first).await, drain(later).await)
        })
        .await
        .expect("streams must end once the node is shut down");
        assert!(
            matches!(first.first(), Some(Event::Listening { .. })),
            "{first:?}"
        );
        assert!(a.events().recv().await.is_none());
    }

    #[tokio::test]
    async fn a_hold_taken_after_a_close_was_queued_keeps_the_session() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Node::start(Config::local(da.path())).await.unwrap();
        let b = Node::start(Config::local(db.path())).await.unwrap();
        let bid = a.connect(b.listen_addrs()[0], None).await.unwrap();
        let links = a.links();
        let session = links.get(&bid).expect("connected").session;
        // The test runtime has one thread: the actor cannot run between these
        // two lines, so the close is queued unheld and executed after the hold.
        assert!(links.close(bid, session), "the close is queued");
        let hold = links.hold(bid);
        // Commands run in order: once this answers, the close has been handled.
        a.peers().await.unwrap();
        assert_eq!(
            links.get(&bid).map(|l| l.session),
            Some(session),
            "a held session must not be closed"
        );
        drop(hold);
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn second_node_on_one_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Node::start(Config::local(dir.path())).await.unwrap();
        let err = Node::start(Config::local(dir.path())).await.unwrap_err();
        assert!(matches!(err, Error::DataDirInUse(_)), "{err}");
        a.shutdown().await.unwrap();
    }
}
