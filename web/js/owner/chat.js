// Direct chat: conversations on the left (or alone on a phone), the open
// thread on the right.

import * as api from '../api.js';
import { h, fill, icon, code, when, attempt } from '../ui.js';
import { thread } from '../chat-thread.js';

export function chatView(ctx) {
  const { state } = ctx;
  let conversations = [];
  let open = null; // peer id
  let t = null;
  const convList = h('ul', { class: 'conv-list', 'aria-label': 'Conversations' });
  const side = h('aside', { class: 'conv-side' }, h('h1', { class: 'conv-title' }, 'Chat'), convList);
  const head = h('div', { class: 'thread-head' });
  const pane = h('section', { class: 'thread', 'aria-label': 'Conversation' }, head,
    h('div', { class: 'thread-slot' }, h('p', { class: 'muted thread-none' }, 'Pick a conversation or a device.')));
  const el = h('section', { class: 'view chat-view' }, side, pane);

  function items() {
    const seen = new Set(conversations.map((c) => c.peer));
    const rows = conversations.map((c) => ({
      id: c.peer, name: state.peers.get(c.peer)?.name || c.name || c.peer.slice(0, 8),
      last: c.last, unread: c.unread,
    }));
    for (const p of state.peers.values()) {
      if (!seen.has(p.id) && p.online && p.trust !== 'blocked') rows.push({ id: p.id, name: p.name, last: null, unread: 0 });
    }
    return rows;
  }

  function renderList() {
    fill(convList, items().map((c) => {
      const p = state.peers.get(c.id);
      return h('li', {},
        h('button', {
          class: `conv ${c.id === open ? 'active' : ''}`, onclick: () => ctx.go('chat', c.id),
          'aria-current': c.id === open ? 'true' : null,
        },
        h('div', { class: `avatar small kind-${p?.kind || 'other'}` }, icon(p?.kind || 'other')),
        h('div', { class: 'conv-main' },
          h('div', { class: 'conv-top' }, h('span', { class: 'name' }, c.name),
            c.last ? h('time', { class: 'muted' }, when(c.last.sent_ms)) : null),
          h('div', { class: 'conv-last muted' }, c.last ? `${c.last.outgoing ? 'You: ' : ''}${c.last.text}` : 'No messages yet')),
        c.unread ? h('span', { class: 'unread', 'aria-label': `${c.unread} unread` }, String(c.unread)) : null));
    }));
    const total = conversations.reduce((n, c) => n + c.unread, 0);
    const badge = document.querySelector('.tab[data-view="chat"] .tab-badge');
    if (badge) {
      badge.hidden = total === 0;
      badge.textContent = String(total);
    }
  }

  async function loadConversations() {
    const c = await attempt(() => api.get('/api/conversations'));
    if (c) conversations = c;
    renderList();
  }

  let reloadTimer = null;
  const reloadSoon = () => {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(loadConversations, 150);
  };

  let lastRead = null;
  async function openThread(id) {
    open = id;
    lastRead = null;
    el.classList.toggle('has-thread', !!id);
    renderList();
    const slot = pane.querySelector('.thread-slot');
    if (!id) {
      fill(head);
      return;
    }
    const p = state.peers.get(id);
    const name = ctx.peerName(id);
    fill(head,
      h('button', { class: 'icon-button back', onclick: () => ctx.go('chat'), 'aria-label': 'Back to conversations' }, icon('back')),
      h('div', { class: 'thread-who' }, h('h2', {}, name),
        p ? h('div', { class: 'muted small' }, p.connected ? 'connected' : p.online ? 'seen' : 'offline',
          ' · code ', h('span', { class: 'mono' }, code(p.verification_code))) : null));
    t = thread({
      label: `Messages with ${name}`,
      send: (text) => api.post(`/api/messages/${id}`, { text }),
      markRead: (upTo) => {
        if (upTo === lastRead) return;
        lastRead = upTo;
        api.post(`/api/messages/${id}/read`, { up_to: upTo }).then(reloadSoon).catch(() => {});
      },
    });
    fill(slot, t.el);
    const messages = await attempt(() => api.get(`/api/messages/${id}?limit=200`));
    if (open === id && messages) t.set(messages);
    if (matchMedia('(min-width: 760px)').matches) t.input.focus();
  }

  return {
    el,
    show: (arg) => {
      loadConversations();
      if (arg !== undefined || !open) openThread(arg || null);
    },
    refresh: () => {
      if (!el.hidden) {
        loadConversations();
        if (open) openThread(open);
      } else {
        loadConversations();
      }
    },
    peersChanged: () => renderList(),
    onEvent: (e) => {
      if (e.event === 'message_received') {
        const m = e.message;
        const peer = m.outgoing ? m.to : m.from;
        if (t && peer === open && !el.hidden) t.add(m);
        reloadSoon();
      } else if (e.event === 'message_status') {
        if (t && e.peer === open) t.status(e.id, e.status);
        reloadSoon();
      }
    },
  };
}
