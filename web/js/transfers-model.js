// What the pages know about transfers, kept up to date by events: offers
// waiting for an answer, transfers with per-file progress, received files.
// Used by the owner's Send and Transfers views and by the guest's pages.

const FINAL = new Set(['complete', 'failed', 'cancelled', 'rejected', 'resumed']);

/** Whether moving `t` to `state` would take it out of a final state. */
const regresses = (t, state) => state !== undefined && FINAL.has(t.state) && !FINAL.has(state);

export function transfersModel() {
  const byId = new Map();
  const listeners = new Set();
  let scheduled = false;

  function changed() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      for (const l of listeners) l();
    });
  }

  function get(id) {
    let t = byId.get(id);
    if (!t) {
      t = { id, state: 'offered', done_bytes: 0, total_bytes: 0, rate: 0, files: [], created: Date.now() };
      byId.set(id, t);
    }
    return t;
  }

  function file(t, path, size) {
    let f = t.files.find((x) => x.path === path);
    if (!f) {
      f = { path, size: size || 0, done: 0, state: '' };
      t.files.push(f);
    }
    if (size !== undefined) f.size = size;
    return f;
  }

  return {
    subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn); },
    list: () => [...byId.values()].sort((a, b) => b.created - a.created),
    get: (id) => byId.get(id),
    /** Adds or updates a transfer from what a request answered. */
    put(id, patch) {
      const t = get(id);
      const files = patch.files;
      // An answer can arrive after the events it caused (a small transfer
      // ends before the request that accepted it returns): never move a
      // transfer out of a final state.
      const state = regresses(t, patch.state) ? t.state : (patch.state ?? t.state);
      Object.assign(t, { ...patch, state, files: t.files });
      if (files) for (const f of files) file(t, f.path, f.size);
      changed();
      return t;
    },
    /** Applies one event of the stream; true if it concerned a transfer. */
    apply(e) {
      if (!e.id || !['offer', 'progress', 'transfer_done', 'transfer_failed', 'transfer_cancelled', 'transfer_rejected', 'transfer_complete'].includes(e.event)) return false;
      const t = get(e.id);
      t.peer = e.peer ?? t.peer;
      switch (e.event) {
        case 'offer':
          t.direction = 'receive';
          t.offer = e;
          t.peerName = e.name;
          t.state = e.auto_accepted ? 'running' : 'offered';
          t.total_bytes = e.total_bytes;
          for (const en of e.entries) if (!en.dir) file(t, en.path, en.size);
          break;
        case 'progress':
          t.direction = e.direction;
          if (!FINAL.has(t.state)) t.state = e.paused ? 'paused' : 'running';
          t.done_bytes = e.done_bytes;
          t.total_bytes = e.total_bytes;
          t.files_total = e.files_total;
          t.rate = e.rate;
          if (e.file) {
            const f = file(t, e.file, e.file_bytes);
            if (f.state !== 'done') f.done = e.file_done;
          }
          break;
        case 'transfer_done': {
          t.direction = e.direction;
          // `path` is where the file is on this machine: match it by its end.
          const f = t.files.find((x) => e.path === x.path || e.path.endsWith(`/${x.path}`))
            || t.files.find((x) => x.path.split('/').pop() === e.path.split('/').pop() && x.state !== 'done')
            || file(t, e.path.split('/').pop(), e.bytes);
          f.state = 'done';
          f.done = f.size = e.bytes;
          f.blake3 = e.blake3;
          f.at = e.path;
          break;
        }
        case 'transfer_failed':
          if (e.path) {
            const f = t.files.find((x) => e.path.endsWith(x.path)) || file(t, e.path);
            f.state = 'failed';
          } else {
            t.state = 'failed';
            t.error = e.error;
          }
          break;
        case 'transfer_cancelled':
          t.state = 'cancelled';
          t.error = e.by_peer ? 'Cancelled by the other side' : 'Cancelled';
          break;
        case 'transfer_rejected':
          t.state = 'rejected';
          t.error = e.reason;
          break;
        case 'transfer_complete':
          t.state = e.failed ? 'failed' : 'complete';
          t.done_bytes = t.total_bytes = e.bytes || t.total_bytes;
          if (e.failed) t.error = `${e.failed} of ${e.files} files failed`;
          break;
        default:
          break;
      }
      changed();
      return true;
    },
    /** Merges the node's list (after a reconnect or a reload). */
    load(infos) {
      for (const i of infos) {
        const t = get(i.id);
        Object.assign(t, {
          peer: i.peer, direction: i.direction, state: regresses(t, i.state) ? t.state : i.state,
          total_bytes: i.total_bytes, done_bytes: i.done_bytes, files_total: i.files,
          error: i.error || t.error,
        });
        if (i.peer_name) t.peerName = i.peer_name;
        if (!byId.has(i.id)) t.created = 0;
      }
      changed();
    },
    isFinal: (t) => FINAL.has(t.state),
  };
}
