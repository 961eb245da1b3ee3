// The PIN screen for browsers on other devices.

import * as api from './api.js';
import { h, fill, deviceGuess } from './ui.js';

export function showLogin(root, session, pin, done) {
  const error = h('p', { class: 'form-error', role: 'alert', id: 'pin-error' });
  const pinInput = h('input', {
    id: 'pin', name: 'pin', inputmode: 'numeric', autocomplete: 'one-time-code',
    pattern: '[0-9]{6}', maxlength: '6', required: true, 'aria-describedby': 'pin-help pin-error',
    value: pin || '', class: 'pin-input',
  });
  const nameInput = h('input', { id: 'guest-name', name: 'name', maxlength: '64', value: deviceGuess(), autocomplete: 'off' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Connect');
  const form = h('form', { class: 'card login', 'aria-labelledby': 'login-title' },
    h('div', { class: 'login-logo' }, h('img', { src: '/icon.svg', alt: '', width: 48, height: 48 })),
    h('h1', { id: 'login-title' }, `Connect to ${session.node.name}`),
    h('p', { id: 'pin-help', class: 'muted' },
      'Enter the 6-digit PIN shown where PeerConnect runs on that device (in its terminal, or in its web page under Settings).'),
    h('label', { for: 'pin' }, 'PIN'),
    pinInput,
    h('label', { for: 'guest-name' }, 'Name of this device'),
    nameInput,
    error,
    button,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    button.disabled = true;
    try {
      await api.post('/api/login', { pin: pinInput.value.trim(), name: nameInput.value.trim() });
      done();
    } catch (e) {
      error.textContent = e.message;
      pinInput.select();
      pinInput.focus();
    } finally {
      button.disabled = false;
    }
  });
  fill(root, h('main', { id: 'main', class: 'login-page' }, form));
  if (pin) form.requestSubmit();
  else pinInput.focus();
}
