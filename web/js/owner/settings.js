// Settings: device name, download folder, auto-accept from trusted peers;
// and how other devices get in (addresses, PIN, QR code).

import * as api from '../api.js';
import { h, fill, attempt, toast } from '../ui.js';

const LABELS = { name: 'device name', downloads: 'download folder', auto_accept_trusted: 'auto-accept' };

export function settingsView(ctx) {
  const name = h('input', { id: 'set-name', name: 'name', maxlength: 64, required: true, autocomplete: 'off' });
  const downloads = h('input', { id: 'set-downloads', name: 'downloads', required: true, autocomplete: 'off', spellcheck: false });
  const auto = h('input', { id: 'set-auto', name: 'auto', type: 'checkbox' });
  const notice = h('p', { class: 'notice', role: 'status' });
  const form = h('form', { class: 'card settings-form', 'aria-labelledby': 'settings-title' },
    h('h2', { id: 'settings-title' }, 'This device'),
    h('label', { for: 'set-name' }, 'Device name'),
    name,
    h('p', { class: 'hint' }, 'The name other devices see.'),
    h('label', { for: 'set-downloads' }, 'Download folder'),
    downloads,
    h('p', { class: 'hint' }, 'An absolute path on this computer; received files are saved there.'),
    h('div', { class: 'check' }, auto, h('label', { for: 'set-auto' }, 'Accept files from trusted devices without asking')),
    notice,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save')));
  const access = h('div', { class: 'card access' });
  const el = h('section', { class: 'view', 'aria-labelledby': 'settings-h1' },
    h('div', { class: 'view-head' }, h('h1', { id: 'settings-h1' }, 'Settings')),
    h('div', { class: 'settings-grid' }, form, access));

  function showSettings(s) {
    name.value = s.name;
    downloads.value = s.downloads;
    auto.checked = s.auto_accept_trusted;
    notice.textContent = s.restart_needed.length
      ? `Saved. The ${s.restart_needed.map((k) => LABELS[k] || k).join(', ')} change${s.restart_needed.length > 1 ? 's take' : ' takes'} effect when PeerConnect restarts.`
      : '';
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const s = await attempt(() => api.put('/api/settings', {
      name: name.value.trim(), downloads: downloads.value.trim(), auto_accept_trusted: auto.checked,
    }));
    if (s) {
      showSettings(s);
      toast('Settings saved');
    }
  });

  async function load() {
    const [s, n] = await Promise.all([attempt(() => api.get('/api/settings')), attempt(() => api.get('/api/node'))]);
    if (s) showSettings(s);
    if (!n) return;
    ctx.state.web = n.web;
    const lan = n.web.urls.filter((u) => !u.includes('127.0.0.1') && !u.includes('[::1]'));
    fill(access,
      h('h2', {}, 'Phones and other browsers'),
      h('p', { class: 'muted' }, 'On another device on this network, open this address and enter the PIN. Or scan the code: it carries the PIN.'),
      h('ul', { class: 'urls' }, (lan.length ? lan : n.web.urls).map((u) => h('li', { class: 'mono' }, u))),
      h('p', { class: 'pin-line' }, 'PIN ', h('strong', { class: 'mono pin' }, n.web.pin)),
      h('img', { class: 'qr', src: '/api/qr.svg', alt: `QR code for ${n.web.url}`, width: 180, height: 180 }),
      h('p', { class: 'hint' }, 'The PIN changes each time PeerConnect starts.'));
  }

  return { el, show: load, refresh: () => { if (!el.hidden) load(); } };
}
