// Transfers: offers waiting for an answer (accept/reject), transfers in
// progress and finished, and received files with download links.

import * as api from '../api.js';
import { h, fill, icon, bytes, code, when, attempt } from '../ui.js';
import { transferCard } from '../transfer-card.js';

export function transfersView(ctx) {
  const { state } = ctx;
  const offers = h('ul', { class: 'transfer-list', 'aria-label': 'Offers waiting for you' });
  const active = h('ul', { class: 'transfer-list', 'aria-label': 'Transfers' });
  const received = h('ul', { class: 'received', 'aria-label': 'Received files' });
  const offersBox = h('div', {}, h('h2', {}, 'Waiting for you'), offers);
  const activeBox = h('div', {}, h('h2', {}, 'In progress and recent'), active);
  const el = h('section', { class: 'view', 'aria-labelledby': 'tr-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'tr-title' }, 'Transfers')),
    offersBox, activeBox,
    h('div', {}, h('h2', {}, 'Received files'), received));
  let files = [];

  function offerCard(t) {
    const o = t.offer;
    const p = state.peers.get(t.peer);
    const name = o?.name || ctx.peerName(t.peer);
    const entries = (o?.entries || []).filter((e) => !e.dir);
    return h('li', { class: 'transfer offer', dataset: { id: t.id } },
      h('div', { class: 'transfer-head' },
        h('span', { class: 'dir receive', 'aria-hidden': 'true' }, '↓'),
        h('div', { class: 'transfer-title' },
          h('strong', {}, `${name} wants to send you ${o?.files ?? entries.length} file${(o?.files ?? entries.length) === 1 ? '' : 's'}`),
          h('span', { class: 'muted small' }, ` · ${bytes(o?.total_bytes ?? t.total_bytes)}`)),
        h('span', { class: `badge trust-${p?.trust || (o?.trusted ? 'trusted' : 'unknown')}` }, o?.trusted ? 'Trusted' : 'Not verified')),
      o ? h('p', { class: 'small muted' }, 'Verification code ', h('span', { class: 'mono' }, code(o.verification_code)),
        o.free_bytes !== undefined ? ` · ${bytes(o.free_bytes)} free here` : '') : null,
      h('ul', { class: 'offer-files' }, entries.slice(0, 8).map((e) => h('li', {}, icon('file'), h('span', { class: 'file-name' }, e.path), h('span', { class: 'muted small' }, bytes(e.size)))),
        entries.length > 8 ? h('li', { class: 'muted small' }, `… and ${entries.length - 8} more`) : null),
      h('div', { class: 'transfer-actions' },
        h('button', { class: 'primary', onclick: () => decide(t, 'accept'), 'aria-label': `Accept the files from ${name}` }, icon('check'), 'Accept'),
        h('button', { class: 'danger', onclick: () => decide(t, 'reject'), 'aria-label': `Reject the files from ${name}` }, icon('x'), 'Reject')));
  }

  async function decide(t, what) {
    const r = await attempt(() => api.post(`/api/offers/${t.id}/${what}`));
    if (r !== undefined) state.transfers.put(t.id, { state: what === 'accept' ? 'running' : 'rejected' });
  }

  function render() {
    const all = state.transfers.list();
    const waiting = all.filter((t) => t.direction === 'receive' && t.state === 'offered');
    fill(offers, waiting.map(offerCard));
    offersBox.hidden = !waiting.length;
    const rest = all.filter((t) => !(t.direction === 'receive' && t.state === 'offered')).slice(0, 50);
    fill(active, rest.length ? rest.map((t) => transferCard({ ...t, peerName: t.peerName || ctx.peerName(t.peer) }, ctx.transferActions(t)))
      : h('li', { class: 'muted' }, 'No transfers yet.'));
    fill(received, files.length ? files.map((f) => h('li', { class: 'received-file' },
      icon('file'),
      h('div', { class: 'received-main' },
        h('span', { class: 'file-name', title: f.path }, f.name),
        h('span', { class: 'muted small' }, `${bytes(f.bytes)} · from ${f.peer_name || ctx.peerName(f.peer)} · ${when(f.at_ms)}`)),
      h('a', { class: 'button', href: f.url, download: f.name, 'aria-label': `Download ${f.name}` }, icon('download'), 'Download')))
      : h('li', { class: 'muted' }, 'Files you receive appear here.'));
    const waitingBadge = document.querySelector('.tab[data-view="transfers"] .tab-badge');
    if (waitingBadge) {
      waitingBadge.hidden = !waiting.length;
      waitingBadge.textContent = String(waiting.length);
    }
  }
  state.transfers.subscribe(render);

  async function loadReceived() {
    const r = await attempt(() => api.get('/api/received'));
    if (r) files = r;
    render();
  }

  let timer = null;
  return {
    el,
    show: () => { render(); loadReceived(); },
    refresh: () => loadReceived(),
    peersChanged: () => render(),
    onEvent: (e) => {
      if (e.event === 'transfer_done' && e.direction === 'receive') {
        clearTimeout(timer);
        timer = setTimeout(loadReceived, 100);
      }
    },
  };
}
