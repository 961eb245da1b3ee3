// The REST API and the WebSocket event stream (see docs/api.md).

/** An API failure: HTTP status and the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'the node cannot be reached');
  }
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});
export const put = (path, body) => call('PUT', path, body);

/**
 * Uploads `files` (an array of {file, path}) as multipart/form-data to `url`,
 * reporting bytes sent through `onProgress(sent, total)`. Resolves with the
 * JSON answer. `signal` (an AbortSignal) cancels it.
 */
export function upload(url, files, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const { file, path } of files) form.append('file', file, path);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.responseType = 'text';
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress?.(e.loaded, e.total); };
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, (data && data.error) || xhr.statusText || 'upload failed'));
    };
    xhr.onerror = () => reject(new ApiError(0, 'the upload was interrupted'));
    xhr.onabort = () => reject(new ApiError(0, 'the upload was cancelled'));
    if (signal) signal.addEventListener('abort', () => xhr.abort());
    xhr.send(form);
  });
}

/**
 * Opens the event stream and keeps it open: `onEvent(event)` for each event,
 * `onState(open)` when it connects (the caller refetches its lists then) or
 * drops. Returns a function that closes it for good.
 */
export function events(onEvent, onState) {
  let ws = null;
  let closed = false;
  let delay = 500;
  let timer = null;
  const connect = () => {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${proto}//${location.host}/api/events`);
    ws.onopen = () => { delay = 500; onState(true); };
    ws.onmessage = (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      onEvent(e);
    };
    ws.onclose = () => {
      onState(false);
      if (closed) return;
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  connect();
  return () => { closed = true; clearTimeout(timer); ws?.close(); };
}
