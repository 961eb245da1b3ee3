// The guest's file views: sending files to the node (an offer the owner
// accepts, then the upload) and the files the owner sent to this guest.

import * as api from './api.js';
import { h, fill, icon, bytes, when, toast, attempt } from './ui.js';
import { picker } from './files.js';
import { transferCard } from './transfer-card.js';
import { transfersModel } from './transfers-model.js';

/** Send files to the node: offer, wait for the owner, upload with progress. */
export function guestSendView(node) {
  const model = transfersModel();
  /** offer id → {files: [{file, path}], started} */
  const pending = new Map();
  const pick = picker({ id: 'gsend', onChange: () => update(), label: `Drop files or folders to send to ${node.name}` });
  const button = h('button', { type: 'submit', class: 'primary big', disabled: true }, icon('send'), 'Send');
  const list = h('ul', { class: 'transfer-list', 'aria-label': 'Sent files' });
  const form = h('form', { class: 'send-form single' }, h('div', { class: 'card' }, pick.el), h('div', { class: 'send-bar' }, button));
  const el = h('section', { class: 'view', 'aria-labelledby': 'g-send-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'g-send-title' }, `Send to ${node.name}`)),
    form, h('div', { class: 'sending' }, list));

  function update() {
    const n = pick.get().length;
    button.disabled = !n;
    fill(button, icon('send'), n ? `Send ${n} file${n > 1 ? 's' : ''}` : 'Send');
  }

  function render() {
    fill(list, model.list().map((t) => {
      const p = pending.get(t.id);
      const actions = [];
      if (p && !model.isFinal(t)) actions.push(h('button', { class: 'danger', onclick: () => cancel(t.id) }, 'Cancel'));
      return transferCard({ ...t, direction: 'send', peerName: node.name,
        state: t.state === 'offered' ? 'offered' : t.state }, actions);
    }));
  }
  model.subscribe(render);

  async function cancel(id) {
    const p = pending.get(id);
    p?.abort.abort();
    await attempt(() => api.post(`/api/guest/offers/${id}/cancel`));
  }

  /** Uploads an accepted offer's files; progress per file from bytes sent. */
  async function start(id) {
    const p = pending.get(id);
    if (!p || p.started) return;
    p.started = true;
    const t = model.put(id, { state: 'running' });
    const sizes = p.files.map((f) => f.file.size);
    try {
      await api.upload(`/api/guest/offers/${id}/upload`, p.files, (sent) => {
        // Multipart puts the files in order: whatever was sent covers them in turn.
        let left = sent;
        t.files.forEach((f, i) => {
          f.done = Math.max(0, Math.min(sizes[i], left));
          left -= sizes[i];
        });
        model.put(id, { done_bytes: Math.min(sent, t.total_bytes) });
      }, p.abort.signal);
      for (const f of t.files) f.state = 'done';
      model.put(id, { state: 'complete', done_bytes: t.total_bytes });
    } catch (e) {
      model.put(id, { state: 'failed', error: e.message });
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const files = pick.get();
    if (!files.length) return;
    button.disabled = true;
    try {
      const r = await api.post('/api/guest/offers', { entries: files.map((f) => ({ path: f.path, size: f.file.size })) });
      pending.set(r.id, { files, started: false, abort: new AbortController() });
      model.put(r.id, {
        direction: 'send', state: 'offered', total_bytes: files.reduce((n, f) => n + f.file.size, 0),
        files: files.map((f) => ({ path: f.path, size: f.file.size })),
      });
      pick.clear();
      if (r.state === 'accepted') start(r.id);
    } catch (e) {
      toast(`Not sent: ${e.message}`, 'error');
    } finally {
      update();
    }
  });

  return {
    el,
    onEvent(e) {
      if (!pending.has(e.id)) return;
      if (e.event === 'progress' && !pending.get(e.id).started) start(e.id);
      else if (e.event === 'transfer_rejected') model.put(e.id, { state: 'rejected', error: e.reason || `${node.name} refused` });
      else if (e.event === 'transfer_cancelled') {
        pending.get(e.id).abort.abort();
        model.put(e.id, { state: 'cancelled', error: 'Cancelled' });
      }
    },
    async refresh() {
      // Offers answered while the stream was down.
      for (const [id, p] of pending) {
        if (p.started) continue;
        const s = await attempt(() => api.get(`/api/guest/offers/${id}`));
        if (s?.state === 'accepted') start(id);
        else if (s && s.state !== 'offered') model.put(id, { state: s.state, error: s.error });
      }
    },
  };
}

/** The files the owner sent to this guest, with download links. The node
 *  streams each file as it is downloaded: the files of one sending come one
 *  at a time, in the listed order. */
export function guestFilesView(node) {
  const list = h('ul', { class: 'received', 'aria-label': `Files from ${node.name}` });
  const el = h('section', { class: 'view', 'aria-labelledby': 'g-files-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'g-files-title' }, `Files from ${node.name}`)), list);
  let shares = [];
  /** What stands where the download button would: done, failed, or busy. */
  function action(f) {
    if (f.state === 'done') return h('span', { class: 'muted small' }, 'Downloaded');
    if (f.state === 'failed') return h('span', { class: 'muted small', title: f.error || '' }, 'Failed');
    if (f.state === 'downloading') return h('span', { class: 'muted small' }, 'Downloading…');
    return h('a', { class: 'button primary', href: f.url, download: f.path.split('/').pop(), 'aria-label': `Download ${f.path}` }, icon('download'), 'Download');
  }
  function render() {
    const files = shares.flatMap((s) => s.files.map((f) => ({ ...f, at_ms: s.at_ms })));
    fill(list, files.length ? files.map((f) => h('li', { class: 'received-file' },
      icon('file'),
      h('div', { class: 'received-main' },
        h('span', { class: 'file-name', title: f.path }, f.path),
        h('span', { class: 'muted small' }, `${bytes(f.size)} · ${when(f.at_ms)}`)),
      action(f)))
      : h('li', { class: 'muted' }, `Files ${node.name} sends you appear here.`));
  }
  async function refresh() {
    const s = await attempt(() => api.get('/api/guest/shared'));
    if (s) shares = s;
    render();
  }
  return {
    el,
    refresh,
    show: refresh,
    onEvent(e) {
      // The node's sending side: a new sending, a file done, the end.
      // Progress comes often while a file downloads: only a new sending
      // needs the list again.
      if (e.direction !== 'send') return;
      const ends = ['transfer_done', 'transfer_failed', 'transfer_cancelled', 'transfer_complete'];
      if (ends.includes(e.event) || (e.event === 'progress' && !shares.some((s) => s.id === e.id))) refresh();
    },
  };
}
