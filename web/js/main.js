// Entry point: asks the node who we are, then starts the owner's app, the
// browser guest's app, or the PIN screen.

import * as api from './api.js';
import { h, fill } from './ui.js';
import { startOwner } from './owner.js';
import { startGuest } from './guest.js';
import { showLogin } from './login.js';

async function boot() {
  const root = document.getElementById('app');
  // A QR code from `peerconnect up` carries the PIN in the fragment (never
  // sent to the server); take it and drop it from the address bar.
  const pin = new URLSearchParams(location.hash.slice(1)).get('pin');
  if (pin) history.replaceState(null, '', location.pathname + location.search);
  let session;
  try {
    session = await api.get('/api/session');
  } catch (e) {
    fill(root, h('p', { class: 'loading' }, `Cannot reach the node: ${e.message}`));
    return;
  }
  root.removeAttribute('aria-busy');
  if (session.role === 'owner') startOwner(root, session);
  else if (session.role === 'guest') startGuest(root, session);
  else showLogin(root, session, pin, boot);
}

boot();
