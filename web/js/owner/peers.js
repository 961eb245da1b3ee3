// Devices: live peers and browser guests (name, kind, trust, verification
// code, connected), remembered peers, trust/block, dialing by address.

import * as api from '../api.js';
import { h, fill, icon, code, kindLabel, attempt, toast } from '../ui.js';

const TRUST_LABEL = { trusted: 'Trusted', unknown: 'Not verified', blocked: 'Blocked' };

/** The card of one peer; `actions` are buttons for the right side. */
export function peerCard(p, actions) {
  const status = p.connected ? 'Connected' : p.online ? 'Seen' : 'Offline';
  return h('li', { class: `peer ${p.online ? '' : 'offline'}`, dataset: { id: p.id } },
    h('div', { class: `avatar kind-${p.kind}` }, icon(p.kind)),
    h('div', { class: 'peer-main' },
      h('div', { class: 'peer-name' },
        h('span', { class: 'name' }, p.name || p.id.slice(0, 8)),
        h('span', { class: `badge trust-${p.trust}` }, TRUST_LABEL[p.trust] || p.trust)),
      h('div', { class: 'peer-meta' },
        h('span', { class: `status ${p.connected ? 'on' : p.online ? 'seen' : 'off'}` }, status),
        h('span', {}, kindLabel(p.kind)),
        h('span', { class: 'mono', title: p.id }, p.id.slice(0, 8))),
      h('div', { class: 'peer-code' }, 'Verification code ',
        h('b', { class: 'mono', 'aria-label': `verification code ${p.verification_code.split('').join(' ')}` }, code(p.verification_code)))),
    actions && h('div', { class: 'peer-actions' }, actions),
  );
}

export function peersView(ctx) {
  const { state } = ctx;
  const online = h('ul', { class: 'peer-list', 'aria-label': 'Devices online' });
  const remembered = h('ul', { class: 'peer-list', 'aria-label': 'Remembered devices' });
  const rememberedBox = h('details', { class: 'remembered' },
    h('summary', {}, 'Remembered devices (offline)'), remembered);
  const empty = h('div', { class: 'empty' });
  const addr = h('input', { id: 'connect-addr', placeholder: '192.168.1.20:47471', autocomplete: 'off', required: true });
  const connectForm = h('form', { class: 'inline-form' },
    h('label', { for: 'connect-addr' }, 'Connect by address'),
    h('div', { class: 'row' }, addr, h('button', { type: 'submit' }, 'Connect')),
    h('p', { class: 'hint' }, 'For networks that block discovery: HOST:PORT of another PeerConnect node.'));
  connectForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await attempt(() => api.post('/api/connect', { peer: addr.value.trim() }));
    if (r) {
      toast('Connected');
      addr.value = '';
      ctx.refreshPeers();
    }
  });

  const el = h('section', { class: 'view', 'aria-labelledby': 'peers-title' },
    h('div', { class: 'view-head' }, h('h1', { id: 'peers-title' }, 'Devices')),
    empty, online, rememberedBox,
    h('div', { class: 'card' }, connectForm),
  );

  async function setTrust(p, trust) {
    if (trust === 'trusted' && !confirm(`Trust ${p.name}?\n\nFirst check that ${p.name} shows the same verification code: ${code(p.verification_code)}.`)) return;
    if (trust === 'blocked' && !confirm(`Block ${p.name}? Its connections will be refused${p.kind === 'browser' ? ' and its session ended' : ''}.`)) return;
    const r = await attempt(() => api.post(`/api/peers/${p.id}/trust`, { trust }));
    if (r) ctx.refreshPeers();
  }

  function actions(p) {
    const out = [];
    if (p.trust !== 'blocked') {
      out.push(h('button', {
        class: 'primary', onclick: () => { state.targets = new Set([p.id]); ctx.go('send'); },
        'aria-label': `Send files to ${p.name}`,
      }, icon('send'), 'Send'));
      out.push(h('button', { onclick: () => ctx.go('chat', p.id), 'aria-label': `Chat with ${p.name}` }, icon('chat'), 'Chat'));
    }
    if (p.trust === 'unknown') out.push(h('button', { onclick: () => setTrust(p, 'trusted'), 'aria-label': `Trust ${p.name}` }, 'Trust'));
    if (p.trust === 'trusted') out.push(h('button', { onclick: () => setTrust(p, 'unknown'), 'aria-label': `Stop trusting ${p.name}` }, 'Untrust'));
    if (p.trust === 'blocked') out.push(h('button', { onclick: () => setTrust(p, 'unknown'), 'aria-label': `Unblock ${p.name}` }, 'Unblock'));
    else out.push(h('button', { class: 'danger', onclick: () => setTrust(p, 'blocked'), 'aria-label': `Block ${p.name}` }, 'Block'));
    return out;
  }

  function render() {
    const all = [...state.peers.values()];
    const sort = (a, b) => (b.connected - a.connected) || a.name.localeCompare(b.name);
    const on = all.filter((p) => p.online).sort(sort);
    const off = all.filter((p) => !p.online).sort(sort);
    fill(online, on.map((p) => peerCard(p, actions(p))));
    fill(remembered, off.map((p) => peerCard(p, actions(p))));
    rememberedBox.hidden = off.length === 0;
    online.hidden = on.length === 0;
    empty.hidden = on.length > 0;
    if (!on.length) {
      const w = state.web;
      fill(empty,
        h('p', {}, h('strong', {}, 'No devices found yet.')),
        h('p', { class: 'muted' }, 'Devices running PeerConnect on this network appear here by themselves.'),
        w && !/\/\/(127\.|\[::1\])/.test(w.url) ? h('p', { class: 'muted' }, 'A phone without the app: open ', h('span', { class: 'mono' }, w.url),
          ' and enter the PIN ', h('strong', { class: 'mono' }, w.pin), '.') : null);
    }
  }

  return {
    el,
    show: () => render(),
    peersChanged: () => render(),
    refresh: async () => {
      if (!state.web) {
        const n = await attempt(() => api.get('/api/node'));
        if (n) state.web = n.web;
      }
      render();
    },
  };
}
