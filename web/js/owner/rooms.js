// Rooms: group chat with everyone on the LAN who joins the same name. The
// rooms this node is in on the left (or alone on a phone) with a form to join
// one; the open room's messages, each with its author's name, on the right.
// The owner's page uses /api/rooms; a browser guest's page the same view over
// /api/guest/rooms (the node takes part for the guest; the list also shows
// the node's rooms the guest is not in: opening one joins it). The owner can
// share files to everyone in the open room (/api/send?room=NAME).

import * as api from '../api.js';
import { h, fill, icon, when, attempt, toast } from '../ui.js';

export function roomsView(ctx, opts = {}) {
  const { state } = ctx;
  const base = opts.base || '/api/rooms';
  const isMine = opts.mine || ((m) => m.author === state.me.id);
  const path = (name, rest) => `${base}/${encodeURIComponent(name)}/${rest}`;
  let rooms = [];
  let open = null; // room name
  let reload = null;
  const shown = new Set(); // message ids in the open room
  const roomList = h('ul', { class: 'conv-list', 'aria-label': 'Rooms' });
  const nameInput = h('input', {
    name: 'room', placeholder: 'Room name', 'aria-label': 'Room name', maxlength: 64, required: true,
    autocomplete: 'off',
  });
  const joinForm = h('form', { class: 'inline-form room-join' }, nameInput,
    h('button', { type: 'submit', class: 'primary' }, 'Join'));
  const side = h('aside', { class: 'conv-side' }, h('h1', { class: 'conv-title' }, 'Rooms'), joinForm, roomList);
  const head = h('div', { class: 'thread-head' });
  const list = h('ol', { class: 'messages', role: 'log', 'aria-live': 'polite' });
  const empty = h('p', { class: 'muted thread-empty' }, 'No messages in this room yet.');
  const input = h('textarea', {
    rows: 1, placeholder: 'Message to the room', 'aria-label': 'Message to the room', maxlength: 65536,
    class: 'composer-input',
  });
  const say = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const composer = h('form', { class: 'composer' }, input, say);
  const body = h('div', { class: 'thread-body' }, list, empty, composer);
  const none = h('p', { class: 'muted thread-none' }, 'Join a room: everyone on the LAN who joins the same name is in it.');
  const slot = h('div', { class: 'thread-slot' }, none);
  const pane = h('section', { class: 'thread', 'aria-label': 'Room' }, head, slot);
  const el = h('section', { class: 'view chat-view rooms-view' }, side, pane);
  // The owner's page only: share files to every member of the open room.
  const canShare = !opts.base;
  const shareInput = h('input', { type: 'file', multiple: true, hidden: true, 'aria-label': 'Files to share to the room' });
  shareInput.addEventListener('change', () => share(open, [...shareInput.files]));

  async function share(name, picked) {
    shareInput.value = '';
    if (!name || !picked.length) return;
    const files = picked.map((file) => ({ file, path: file.name }));
    try {
      const r = await api.upload(`/api/send?room=${encodeURIComponent(name)}`, files);
      const n = r.transfers.length;
      toast(`Sharing ${files.length} file${files.length > 1 ? 's' : ''} with ${n} member${n === 1 ? '' : 's'} of ${name}`);
    } catch (e) {
      toast(`Not shared: ${e.message}`, 'error');
    }
  }

  function renderList() {
    fill(roomList, rooms.map((r) => h('li', {},
      h('button', {
        class: `conv ${r.name === open ? 'active' : ''}`, onclick: () => ctx.go('rooms', r.name),
        'aria-current': r.name === open ? 'true' : null,
      },
      h('div', { class: 'avatar small' }, icon('rooms')),
      h('div', { class: 'conv-main' },
        h('div', { class: 'conv-top' }, h('span', { class: 'name' }, r.name)),
        h('div', { class: 'conv-last muted' },
          r.joined === false ? 'not joined: open it to join'
            : r.neighbors ? `${r.neighbors} neighbour${r.neighbors === 1 ? '' : 's'} in the room` : 'waiting for members'))))));
  }

  function bubble(m) {
    shown.add(m.id);
    const mine = isMine(m);
    return h('li', { class: `msg ${mine ? 'out' : 'in'}`, dataset: { id: m.id } },
      mine ? null : h('div', { class: 'msg-author' }, m.author_name || m.author.slice(0, 8)),
      h('div', { class: 'bubble' }, m.text),
      h('div', { class: 'msg-meta' }, h('time', { datetime: new Date(m.time_ms).toISOString() }, when(m.time_ms))));
  }

  function add(m) {
    if (shown.has(m.id)) return;
    list.append(bubble(m));
    empty.hidden = true;
    list.scrollTop = list.scrollHeight;
  }

  async function loadRooms() {
    const r = await attempt(() => api.get(base));
    if (r) rooms = r;
    renderList();
  }

  async function openRoom(name) {
    open = name;
    el.classList.toggle('has-thread', !!name);
    renderList();
    if (!name) {
      fill(head);
      fill(slot, none);
      return;
    }
    if (rooms.find((r) => r.name === name)?.joined === false) {
      // A guest opening a room of the node's it is not in joins it.
      const r = await attempt(() => api.post(base, { name }));
      if (!r || open !== name) return;
      rooms = r;
      renderList();
    }
    fill(head,
      h('button', { class: 'icon-button back', onclick: () => ctx.go('rooms'), 'aria-label': 'Back to rooms' }, icon('back')),
      h('div', { class: 'thread-who' }, h('h2', {}, name)),
      canShare ? h('button', { class: 'share-room', onclick: () => shareInput.click() }, icon('send'), 'Share files') : null,
      canShare ? shareInput : null,
      h('button', { class: 'leave', onclick: () => leave(name) }, 'Leave'));
    fill(slot, body);
    list.setAttribute('aria-label', `Messages in ${name}`);
    shown.clear();
    fill(list);
    empty.hidden = false;
    const messages = await attempt(() => api.get(path(name, 'messages?limit=200')));
    if (open !== name || !messages) return;
    for (const m of messages) add(m);
    if (matchMedia('(min-width: 760px)').matches) input.focus();
  }

  async function leave(name) {
    const r = await attempt(() => api.post(path(name, 'leave')));
    if (!r) return;
    rooms = r;
    ctx.go('rooms');
  }

  joinForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = nameInput.value.trim();
    if (!name) return;
    const r = await attempt(() => api.post(base, { name }));
    if (!r) return;
    rooms = r;
    nameInput.value = '';
    ctx.go('rooms', name);
  });

  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      composer.requestSubmit();
    }
  });
  composer.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = input.value;
    if (!text.trim() || !open) return;
    say.disabled = true;
    try {
      add(await api.post(path(open, 'messages'), { text }));
      input.value = '';
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      say.disabled = false;
      input.focus();
    }
  });

  return {
    el,
    show: (arg) => {
      loadRooms();
      if (arg !== undefined || !open) openRoom(arg || null);
    },
    refresh: () => {
      loadRooms();
      if (open && !el.hidden) openRoom(open);
    },
    onEvent: (e) => {
      if (e.event === 'room_message' && e.room === open) add(e.message);
      if (e.event.startsWith('room_')) {
        // Neighbour counts change as members come and go: refresh the list soon.
        clearTimeout(reload);
        reload = setTimeout(loadRooms, 300);
      }
    },
  };
}
