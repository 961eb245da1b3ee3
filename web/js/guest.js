// The browser guest's app (a phone or another computer with no PeerConnect):
// send files to the node, get the files it sends, chat with its owner, chat
// in rooms (the node takes part for the guest).

import * as api from './api.js';
import { h, fill, icon, code, toast, attempt } from './ui.js';
import { thread } from './chat-thread.js';
import { guestSendView, guestFilesView } from './guest-files.js';
import { roomsView } from './owner/rooms.js';

export function startGuest(root, session) {
  const me = session.guest;
  const node = session.node;
  const views = {};
  const linkState = h('span', { class: 'link-state', role: 'status' }, 'connecting…');

  // --- chat -------------------------------------------------------------
  // Messages as this guest sees them (events carry the node's side).
  const mine = (m) => ({ ...m, outgoing: m.from === me.id });
  const t = thread({
    label: `Messages with ${node.name}`,
    send: (text) => api.post('/api/guest/messages', { text }),
    markRead: (upTo) => api.post('/api/guest/read', { up_to: upTo }).catch(() => {}),
  });
  const chatEl = h('section', { class: 'view guest-chat', 'aria-labelledby': 'g-chat-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'g-chat-title' }, `Chat with ${node.name}`)),
    h('div', { class: 'thread' }, h('div', { class: 'thread-slot' }, t.el)));
  views.chat = {
    el: chatEl,
    refresh: async () => {
      const m = await attempt(() => api.get('/api/guest/messages?limit=200'));
      if (m) t.set(m.map(mine));
    },
    onEvent: (e) => {
      if (e.event === 'message_received') t.add(mine(e.message));
      else if (e.event === 'message_status') {
        // A message from the owner: fetch it (events carry status only).
        views.chat.refresh();
      }
    },
  };

  views.send = guestSendView(node);
  views.files = guestFilesView(node);
  // Room messages this guest said carry the node as author and this name.
  views.rooms = roomsView({ state: { me }, go: (name, arg) => show(name, arg) }, {
    base: '/api/guest/rooms',
    mine: (m) => m.author === node.id && m.author_name === session.room_author,
  });

  // --- shell ------------------------------------------------------------
  const list = [['send', 'Send'], ['files', 'Files'], ['chat', 'Chat'], ['rooms', 'Rooms']];
  const nav = h('nav', { class: 'tabs', 'aria-label': 'Views' });
  const main = h('main', { id: 'main', tabindex: '-1' });
  for (const [name, label] of list) {
    views[name].el.hidden = true;
    main.append(views[name].el);
    const ic = name === 'files' ? 'download' : name;
    nav.append(h('a', { href: `#${name}`, class: 'tab', dataset: { view: name } }, icon(ic), h('span', { class: 'tab-label' }, label)));
  }
  const logout = h('button', { class: 'link', onclick: async () => { await attempt(() => api.post('/api/logout')); location.reload(); } }, 'Leave');
  const header = h('header', { class: 'top' },
    h('div', { class: 'brand' }, h('img', { src: '/icon.svg', alt: '', width: 28, height: 28 }), h('span', {}, node.name)),
    h('div', { class: 'me' }, linkState, logout));
  const whoami = h('p', { class: 'whoami' }, 'You appear as ', h('strong', {}, me.name),
    ' · code ', h('span', { class: 'mono', id: 'guest-code' }, code(me.verification_code)));
  main.prepend(whoami);
  fill(root, h('div', { class: 'shell guest' }, header, nav, main));

  function show(name, arg) {
    if (!views[name]) name = list[0][0];
    if (location.hash.slice(1).split('/')[0] !== name) history.replaceState(null, '', `#${name}`);
    for (const [n, v] of Object.entries(views)) v.el.hidden = n !== name;
    for (const a of nav.querySelectorAll('.tab')) {
      if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    views[name].show?.(arg);
  }
  const fromHash = () => {
    const [name, arg] = location.hash.slice(1).split('/');
    show(name, arg && decodeURIComponent(arg));
  };
  window.addEventListener('hashchange', fromHash);

  api.events((e) => {
    if (e.event === 'peer_lost' && e.id === me.id) {
      toast('The owner ended this session', 'error');
      setTimeout(() => location.reload(), 1500);
      return;
    }
    for (const v of Object.values(views)) v.onEvent?.(e);
  }, (open) => {
    linkState.textContent = open ? 'live' : 'reconnecting…';
    linkState.classList.toggle('live', open);
    if (open) for (const v of Object.values(views)) v.refresh?.();
    else {
      // Session over (node restarted, blocked, expired)? Back to the PIN screen.
      api.get('/api/session').then((s) => { if (s.role !== 'guest') location.reload(); }).catch(() => {});
    }
  });
  fromHash();
}
