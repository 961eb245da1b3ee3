// A transfer as a card: who, which way, overall and per-file progress bars,
// and its buttons. Shared by the owner's views and the guest's.

import { h, bytes, progress } from './ui.js';

const STATE = {
  offered: 'Waiting for an answer', running: 'Transferring', paused: 'Paused',
  interrupted: 'Interrupted', complete: 'Done', failed: 'Failed', cancelled: 'Cancelled',
  rejected: 'Refused', resumed: 'Resumed later', uploading: 'Uploading to this node',
};

/**
 * `t`: {id, peerName, direction, state, done_bytes, total_bytes, rate,
 * files: [{path, size, done, state}], error}. `actions`: buttons.
 */
export function transferCard(t, actions) {
  const pct = t.total_bytes ? Math.floor((100 * t.done_bytes) / t.total_bytes) : (t.state === 'complete' ? 100 : 0);
  const finished = t.state === 'complete';
  const bad = ['failed', 'cancelled', 'rejected'].includes(t.state);
  const files = t.files || [];
  const shown = files.slice(0, 50);
  return h('li', { class: `transfer state-${t.state}${bad ? ' bad' : ''}`, dataset: { id: t.id } },
    h('div', { class: 'transfer-head' },
      h('span', { class: `dir ${t.direction}`, 'aria-hidden': 'true' }, t.direction === 'send' ? '↑' : '↓'),
      h('div', { class: 'transfer-title' },
        h('strong', {}, t.direction === 'send' ? `To ${t.peerName}` : `From ${t.peerName}`),
        h('span', { class: 'muted small' },
          ` · ${files.length || t.files_total || 0} file${(files.length || t.files_total) === 1 ? '' : 's'} · ${bytes(t.total_bytes)}`)),
      h('span', { class: `tstate ${t.state}` }, STATE[t.state] || t.state)),
    h('div', { class: `overall${finished ? ' done' : ''}` },
      progress(`${t.direction === 'send' ? 'Sent' : 'Received'} ${pct}%`, finished ? t.total_bytes || 1 : t.done_bytes, t.total_bytes || 1),
      h('div', { class: 'overall-text small muted' },
        `${bytes(t.done_bytes)} of ${bytes(t.total_bytes)} (${pct}%)`,
        t.rate && t.state === 'running' ? ` · ${bytes(t.rate)}/s` : '')),
    t.error ? h('p', { class: 'transfer-error' }, t.error) : null,
    shown.length > 0 ? h('ul', { class: 'file-progress' }, shown.map((f) => {
      const done = f.state === 'done' ? f.size : Math.min(f.done || 0, f.size);
      const el = progress(`${f.path}: ${f.size ? Math.floor((100 * done) / f.size) : 100}%`, f.size === 0 && f.state === 'done' ? 1 : done, f.size || 1);
      if (f.state === 'done') el.classList.add('done');
      if (f.state === 'failed') el.classList.add('failed');
      return h('li', { class: `file-row ${f.state || ''}` },
        h('div', { class: 'file-line' },
          h('span', { class: 'file-name', title: f.path }, f.path),
          h('span', { class: 'muted small' }, f.state === 'done' ? `${bytes(f.size)} ✓` : f.state === 'failed' ? 'failed' : bytes(f.size))),
        el);
    })) : null,
    files.length > shown.length ? h('p', { class: 'muted small' }, `… and ${files.length - shown.length} more files`) : null,
    actions && actions.length ? h('div', { class: 'transfer-actions' }, actions) : null,
  );
}
