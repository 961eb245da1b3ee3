// Picking files: the file and folder pickers and drag and drop (folders
// included), as a list of {file, path} where `path` is relative with "/".

import { h, fill, icon, bytes } from './ui.js';

/** Reads every file under a dropped directory entry. */
async function walk(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    out.push({ file, path: prefix + entry.name });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    // readEntries returns at most ~100 entries a call: read until empty.
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await walk(e, `${prefix}${entry.name}/`, out);
    }
  }
}

/** The files of a drop (folders walked). */
export async function dropped(dataTransfer) {
  const out = [];
  const entries = [...dataTransfer.items]
    .filter((i) => i.kind === 'file')
    .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (entries.length && entries.every(Boolean)) {
    for (const e of entries) await walk(e, '', out);
  } else {
    for (const file of dataTransfer.files) out.push({ file, path: file.name });
  }
  return out;
}

/**
 * A picker: drop zone, "Choose files" and "Choose a folder" buttons, and the
 * list of what was picked. `onChange(list)` after each change.
 */
export function picker({ id, onChange, label = 'Drop files or folders here' }) {
  let picked = [];
  const files = h('input', { type: 'file', multiple: true, id: `${id}-files`, class: 'visually-hidden', tabindex: -1 });
  const folder = h('input', { type: 'file', id: `${id}-folder`, class: 'visually-hidden', tabindex: -1 });
  folder.webkitdirectory = true;
  const list = h('ul', { class: 'picked', 'aria-label': 'Files to send' });
  const summary = h('p', { class: 'picked-summary muted', 'aria-live': 'polite' });
  const clear = h('button', { type: 'button', class: 'link', onclick: () => set([]) }, 'Clear');

  function set(next) {
    // One entry per path: picking the same file twice keeps one.
    const byPath = new Map(next.map((f) => [f.path, f]));
    picked = [...byPath.values()];
    render();
    onChange?.(picked);
  }

  function render() {
    fill(list, picked.slice(0, 200).map((f) => h('li', {},
      icon('file'),
      h('span', { class: 'picked-path', title: f.path }, f.path),
      h('span', { class: 'muted picked-size' }, bytes(f.file.size)),
      h('button', {
        type: 'button', class: 'icon-button', 'aria-label': `Remove ${f.path}`,
        onclick: () => set(picked.filter((x) => x !== f)),
      }, icon('x')))));
    if (picked.length > 200) list.append(h('li', { class: 'muted' }, `… and ${picked.length - 200} more`));
    const total = picked.reduce((n, f) => n + f.file.size, 0);
    fill(summary, picked.length ? `${picked.length} file${picked.length > 1 ? 's' : ''} · ${bytes(total)} ` : 'Nothing picked yet.');
    if (picked.length) summary.append(clear);
  }

  const add = (items) => set([...picked, ...items]);
  files.addEventListener('change', () => {
    add([...files.files].map((file) => ({ file, path: file.name })));
    files.value = '';
  });
  folder.addEventListener('change', () => {
    add([...folder.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
    folder.value = '';
  });

  const zone = h('div', { class: 'dropzone', id: `${id}-zone` },
    icon('download', 'icon big'),
    h('p', {}, label),
    h('div', { class: 'row center' },
      h('button', { type: 'button', class: 'primary', onclick: () => files.click() }, icon('file'), 'Choose files'),
      h('button', { type: 'button', onclick: () => folder.click() }, icon('folder'), 'Choose a folder')),
    files, folder);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    add(await dropped(e.dataTransfer));
  });
  render();
  return {
    el: h('div', { class: 'picker' }, zone, summary, list),
    get: () => picked,
    clear: () => set([]),
  };
}
