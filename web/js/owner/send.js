// Send: pick files and folders (pickers or drag and drop), pick one or
// several devices (or share to everyone in a room this node is in), send;
// then per-file and overall progress.

import * as api from '../api.js';
import { h, fill, icon, bytes, progress, toast } from '../ui.js';
import { picker } from '../files.js';
import { transferCard } from '../transfer-card.js';

export function sendView(ctx) {
  const { state } = ctx;
  const targets = h('ul', { class: 'targets', 'aria-label': 'Devices to send to' });
  const sendButton = h('button', { type: 'submit', class: 'primary big', disabled: true }, icon('send'), 'Send');
  const uploads = h('ul', { class: 'transfer-list', 'aria-label': 'Preparing' });
  const sending = h('ul', { class: 'transfer-list', 'aria-label': 'Sending' });
  const sendingBox = h('div', { class: 'sending' }, h('h2', {}, 'Sending'), uploads, sending);
  const pick = picker({ id: 'send', onChange: () => update() });
  const roomSelect = h('select', { id: 'share-room', 'aria-label': 'Room to share to', onchange: () => update() });
  const roomButton = h('button', { type: 'button', class: 'share-room', disabled: true }, icon('rooms'), 'Share to room');
  const roomRow = h('div', { class: 'share-room-row', hidden: true },
    h('label', { for: 'share-room', class: 'muted small' }, 'Or everyone in a room: '), roomSelect, roomButton);
  /** transfer ids started from this page */
  const mine = new Set();

  const form = h('form', { class: 'send-form' },
    h('div', { class: 'card' }, h('h2', {}, '1. Files'), pick.el),
    h('div', { class: 'card' }, h('h2', {}, '2. Devices'), targets, roomRow),
    h('div', { class: 'send-bar' }, sendButton));
  const el = h('section', { class: 'view', 'aria-labelledby': 'send-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'send-title' }, 'Send files')),
    form, sendingBox);

  function candidates() {
    return [...state.peers.values()]
      .filter((p) => p.online && p.trust !== 'blocked')
      .sort((a, b) => (b.connected - a.connected) || a.name.localeCompare(b.name));
  }

  function renderTargets() {
    const list = candidates();
    for (const id of [...state.targets]) if (!state.peers.get(id)?.online) state.targets.delete(id);
    if (!list.length) {
      fill(targets, h('li', { class: 'muted' }, 'No device is online. Devices appear here when PeerConnect finds them.'));
    } else {
      fill(targets, list.map((p) => {
        const box = h('input', {
          type: 'checkbox', id: `to-${p.id}`, checked: state.targets.has(p.id),
          onchange: (e) => { if (e.target.checked) state.targets.add(p.id); else state.targets.delete(p.id); update(); },
        });
        return h('li', { class: 'target' }, box,
          h('label', { for: `to-${p.id}` },
            h('span', { class: `avatar small kind-${p.kind}` }, icon(p.kind)),
            h('span', { class: 'target-name' }, p.name,
              h('span', { class: 'muted small' }, p.kind === 'browser' ? ' · browser guest' : p.connected ? ' · connected' : ' · seen'))));
      }));
    }
    update();
  }

  async function loadRooms() {
    const rooms = await api.get('/api/rooms').catch(() => []);
    const keep = roomSelect.value;
    fill(roomSelect, rooms.map((r) => h('option', { value: r.name },
      `${r.name} (${r.neighbors} member${r.neighbors === 1 ? '' : 's'})`)));
    if (rooms.some((r) => r.name === keep)) roomSelect.value = keep;
    roomRow.hidden = !rooms.length;
    update();
  }

  function update() {
    const n = pick.get().length;
    const m = state.targets.size;
    roomButton.disabled = !n || !roomSelect.value;
    sendButton.disabled = !n || !m;
    fill(sendButton, icon('send'), n && m ? `Send ${n} file${n > 1 ? 's' : ''} to ${m} device${m > 1 ? 's' : ''}` : 'Send');
  }

  function renderSending() {
    const list = state.transfers.list().filter((t) => mine.has(t.id));
    fill(sending, list.map((t) => transferCard({ ...t, peerName: ctx.peerName(t.peer) }, ctx.transferActions(t))));
    sendingBox.hidden = !list.length && !uploads.children.length;
  }
  state.transfers.subscribe(renderSending);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = [...state.targets];
    if (!to.length) return;
    start(to.map((id) => `to=${encodeURIComponent(id)}`).join('&'));
  });
  roomButton.addEventListener('click', () => {
    if (roomSelect.value) start(`room=${encodeURIComponent(roomSelect.value)}`);
  });

  /** Uploads the picked files to /api/send?QUERY (peers or a room). */
  async function start(query) {
    const files = pick.get();
    if (!files.length) return;
    const total = files.reduce((n, f) => n + f.file.size, 0);
    const bar = progress('Uploading to this node', 0, total || 1);
    const text = h('span', { class: 'small muted' }, `0 of ${bytes(total)}`);
    const row = h('li', { class: 'transfer state-uploading' },
      h('div', { class: 'transfer-head' }, h('span', { class: 'dir send', 'aria-hidden': 'true' }, '↑'),
        h('div', { class: 'transfer-title' }, h('strong', {}, `Preparing ${files.length} file${files.length > 1 ? 's' : ''}`),
          h('span', { class: 'muted small' }, ' · handing them to PeerConnect')),
        h('span', { class: 'tstate running' }, 'Preparing')),
      h('div', { class: 'overall' }, bar, text));
    uploads.append(row);
    sendingBox.hidden = false;
    sendingBox.scrollIntoView({ block: 'start' });
    pick.clear();
    try {
      const r = await api.upload(`/api/send?${query}`, files, (sent, all) => {
        bar.max = all;
        bar.value = sent;
        text.textContent = `${bytes(sent)} of ${bytes(all)}`;
      });
      for (const t of r.transfers) {
        mine.add(t.id);
        state.transfers.put(t.id, { peer: t.peer, direction: 'send', total_bytes: r.total_bytes, files: r.files, state: t.state || 'offered' });
      }
    } catch (e) {
      toast(`Not sent: ${e.message}`, 'error');
    } finally {
      row.remove();
      renderSending();
    }
  }

  return {
    el,
    show: () => { renderTargets(); renderSending(); loadRooms(); },
    peersChanged: () => renderTargets(),
  };
}
