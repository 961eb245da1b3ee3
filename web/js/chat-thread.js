// A conversation thread: messages (oldest first), status marks, the composer.
// Used by the owner's chat view and by the browser guest's chat.

import { h, fill, when, toast } from './ui.js';

const STATUS = { pending: 'waiting', sent: 'sent', delivered: 'delivered', read: 'read' };
const ORDER = ['pending', 'sent', 'delivered', 'read'];
const later = (a, b) => (ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b);

/**
 * `send(text)` resolves with the stored message; `markRead(id)` is called
 * with the newest incoming message shown.
 */
export function thread({ label, send, markRead }) {
  const list = h('ol', { class: 'messages', role: 'log', 'aria-label': label, 'aria-live': 'polite' });
  const input = h('textarea', {
    rows: 1, placeholder: 'Message', 'aria-label': 'Message', maxlength: 65536, class: 'composer-input',
  });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const form = h('form', { class: 'composer' }, input, button);
  const ids = new Map();
  // Statuses that arrived (as events) before their message was shown: the
  // event can beat the answer to the send request.
  const early = new Map();
  const empty = h('p', { class: 'muted thread-empty' }, 'No messages yet. Say hello!');

  function bubble(m) {
    if (early.has(m.id)) {
      m = { ...m, status: later(early.get(m.id), m.status) };
      early.delete(m.id);
    }
    const status = m.outgoing ? h('span', { class: `mstatus ${m.status}` }, STATUS[m.status] || m.status) : null;
    const li = h('li', { class: `msg ${m.outgoing ? 'out' : 'in'}`, dataset: { id: m.id } },
      h('div', { class: 'bubble' }, m.text),
      h('div', { class: 'msg-meta' }, h('time', { datetime: new Date(m.sent_ms).toISOString() }, when(m.sent_ms)), status));
    ids.set(m.id, li);
    return li;
  }

  function scroll() {
    list.scrollTop = list.scrollHeight;
  }

  function readUpTo() {
    const lastIn = [...list.querySelectorAll('.msg.in')].pop();
    if (lastIn && markRead && document.visibilityState === 'visible') markRead(lastIn.dataset.id);
  }

  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  input.addEventListener('input', () => {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    button.disabled = true;
    try {
      const m = await send(text);
      input.value = '';
      input.style.height = 'auto';
      api.add(m);
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      button.disabled = false;
      input.focus();
    }
  });

  const api = {
    el: h('div', { class: 'thread-body' }, list, empty, form),
    input,
    /** Replaces the messages. */
    set(messages) {
      ids.clear();
      fill(list, messages.map(bubble));
      empty.hidden = messages.length > 0;
      scroll();
      readUpTo();
    },
    /** Adds a message (ignored if shown already). */
    add(m) {
      if (ids.has(m.id)) return;
      list.append(bubble(m));
      empty.hidden = true;
      scroll();
      if (!m.outgoing) readUpTo();
    },
    status(id, status) {
      const s = ids.get(id)?.querySelector('.mstatus');
      if (!s) {
        if (early.size > 200) early.clear();
        early.set(id, later(status, early.get(id) || 'pending'));
        return;
      }
      const now = ORDER.find((o) => s.classList.contains(o)) || 'pending';
      const next = later(status, now);
      s.className = `mstatus ${next}`;
      s.textContent = STATUS[next] || next;
    },
  };
  return api;
}
