// The owner's app (a browser on the node's own machine): the shell with its
// navigation, the shared state, and the event stream feeding every view.

import * as api from './api.js';
import { h, fill, icon, toast, attempt } from './ui.js';
import { peersView } from './owner/peers.js';
import { chatView } from './owner/chat.js';
import { roomsView } from './owner/rooms.js';
import { settingsView } from './owner/settings.js';
import { sendView } from './owner/send.js';
import { transfersView } from './owner/transfers.js';
import { transfersModel } from './transfers-model.js';

/** What the views share. */
export function createState(session) {
  return {
    me: session.node,
    /** id → peer (PeerInfo + online) */
    peers: new Map(),
    /** peer ids picked as targets in the Send view */
    targets: new Set(),
    web: null,
    transfers: transfersModel(),
  };
}

export function startOwner(root, session) {
  const state = createState(session);
  const views = {};
  const ctx = {
    state,
    go: (name, arg) => show(name, arg),
    peerName: (id) => state.peers.get(id)?.name || id.slice(0, 8),
    refreshPeers: () => refreshPeers(),
    transferActions: (t) => transferActions(t),
  };
  const list = [
    ['peers', 'Devices', peersView(ctx)],
    ['send', 'Send', sendView(ctx)],
    ['transfers', 'Transfers', transfersView(ctx)],
    ['chat', 'Chat', chatView(ctx)],
    ['rooms', 'Rooms', roomsView(ctx)],
    ['settings', 'Settings', settingsView(ctx)],
  ];
  const linkState = h('span', { class: 'link-state', role: 'status' }, 'connecting…');
  const nav = h('nav', { class: 'tabs', 'aria-label': 'Views' });
  const main = h('main', { id: 'main', tabindex: '-1' });
  for (const [name, label, view] of list) {
    views[name] = view;
    view.el.hidden = true;
    view.el.id = `view-${name}`;
    main.append(view.el);
    nav.append(h('a', {
      href: `#${name}`, class: 'tab', dataset: { view: name },
    }, icon(name), h('span', { class: 'tab-label' }, label), h('span', { class: 'tab-badge', hidden: true })));
  }
  const header = h('header', { class: 'top' },
    h('div', { class: 'brand' }, h('img', { src: '/icon.svg', alt: '', width: 28, height: 28 }),
      h('span', {}, 'PeerConnect')),
    h('div', { class: 'me' }, h('span', { class: 'me-name', id: 'me-name' }, state.me.name), linkState),
  );
  fill(root, h('div', { class: 'shell' }, header, nav, main));

  let current = null;
  function show(name, arg) {
    if (!views[name]) name = 'peers';
    if (location.hash.slice(1).split('/')[0] !== name) history.replaceState(null, '', `#${name}`);
    for (const [n, v] of Object.entries(views)) v.el.hidden = n !== name;
    for (const a of nav.querySelectorAll('.tab')) {
      if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    current = name;
    views[name].show?.(arg);
  }
  window.addEventListener('hashchange', () => {
    const [name, arg] = location.hash.slice(1).split('/');
    if (name !== current || arg) show(name, arg && decodeURIComponent(arg));
  });

  /** Pause, resume and cancel buttons for a transfer that is not over. */
  function transferActions(t) {
    if (state.transfers.isFinal(t) || (t.direction === 'receive' && t.state === 'offered')) return [];
    const call = (what) => attempt(() => api.post(`/api/transfers/${t.id}/${what}`));
    const out = [];
    const guest = state.peers.get(t.peer)?.kind === 'browser';
    if (!guest && t.state === 'running') out.push(h('button', { onclick: () => call('pause') }, 'Pause'));
    if (!guest && t.state === 'paused') out.push(h('button', { onclick: () => call('resume') }, 'Resume'));
    out.push(h('button', { class: 'danger', onclick: () => call('cancel') }, 'Cancel'));
    return out;
  }

  async function refreshTransfers() {
    const [list, offers] = await Promise.all([api.get('/api/transfers'), api.get('/api/offers')]);
    state.transfers.load(list);
    for (const o of offers) state.transfers.apply(o);
  }

  async function refreshPeers() {
    const peers = await api.get('/api/peers');
    state.peers = new Map(peers.map((p) => [p.id, p]));
    for (const v of Object.values(views)) v.peersChanged?.();
  }

  function onEvent(e) {
    const p = e.peer;
    switch (e.event) {
      case 'peer_found':
      case 'peer_updated':
        state.peers.set(p.id, { ...state.peers.get(p.id), ...p, online: true });
        break;
      case 'peer_connected':
        state.peers.set(p.id, { ...state.peers.get(p.id), ...p, connected: true, online: true });
        break;
      case 'peer_disconnected': {
        const old = state.peers.get(e.id);
        if (old) state.peers.set(e.id, { ...old, connected: false });
        break;
      }
      case 'peer_lost': {
        const old = state.peers.get(e.id);
        if (old && old.kind === 'browser' && old.trust !== 'blocked') state.peers.delete(e.id);
        else if (old) state.peers.set(e.id, { ...old, connected: false, online: false });
        break;
      }
      case 'error':
        toast(e.message, 'error');
        break;
      default:
        break;
    }
    if (e.event.startsWith('peer_')) {
      for (const v of Object.values(views)) v.peersChanged?.();
    }
    state.transfers.apply(e);
    if (e.event === 'offer' && !e.auto_accepted) toast(`${e.name} wants to send you ${e.files} file${e.files === 1 ? '' : 's'}`);
    for (const v of Object.values(views)) v.onEvent?.(e);
  }

  api.events(onEvent, async (open) => {
    linkState.textContent = open ? 'live' : 'reconnecting…';
    linkState.classList.toggle('live', open);
    if (open) {
      // Anything may have changed while the stream was down.
      await refreshPeers().catch((e) => toast(e.message, 'error'));
      await refreshTransfers().catch((e) => toast(e.message, 'error'));
      for (const v of Object.values(views)) v.refresh?.();
    }
  });

  const [name, arg] = location.hash.slice(1).split('/');
  show(name || 'peers', arg && decodeURIComponent(arg));
}
