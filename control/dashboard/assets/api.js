// The API client: every call sends the signed-in key as X-API-Key and turns the
// API's {detail, error_type} errors into APIError.

const KEY = 'cxco.key';
const KIND = 'cxco.kind';

export class APIError extends Error {
  constructor(status, detail, type) {
    super(detail);
    this.status = status;
    this.type = type;
  }
  // A route the gateway does not serve (as opposed to a resource it does not have).
  get noRoute() { return this.status === 404 && /no such route/i.test(this.message); }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ''; },
  get kind() { return sessionStorage.getItem(KIND) || ''; },
  set(key, kind) { sessionStorage.setItem(KEY, key); sessionStorage.setItem(KIND, kind); },
  clear() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(KIND); },
};

let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function api(method, path, body, key = session.key) {
  const headers = { 'X-API-Key': key, 'Accept': 'application/json' };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new APIError(0, `Cannot reach the gateway (${e.message}).`, 'network');
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const detail = (data && data.detail) || `${res.status} ${res.statusText}`;
    const err = new APIError(res.status, detail, (data && data.error_type) || 'error');
    if (res.status === 401 && key === session.key && session.key) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

// qs builds a query string from the non-empty values of params.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.set(k, v);
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

// Which key is this? The agency key reads /api/agency; a user key reads
// /api/users/me; a company key is refused there (403) but reads usage.
export async function identify(key) {
  if (key.startsWith('cxco_agcy_k_')) {
    const agency = await api('GET', '/api/agency', undefined, key);
    return { kind: 'agency', me: agency };
  }
  try {
    const me = await api('GET', '/api/users/me', undefined, key);
    return { kind: 'user', me };
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  await api('GET', '/api/usage/summary', undefined, key);
  return { kind: 'company', me: null };
}

// stream reads a server-sent events stream with the signed-in key (EventSource
// cannot send one) and calls onEvent(name, data) for each event until signal
// aborts it. It resolves when the stream ends.
export async function stream(path, onEvent, signal) {
  const res = await fetch(path, { headers: { 'X-API-Key': session.key, 'Accept': 'text/event-stream' }, signal });
  if (!res.ok) {
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    const err = new APIError(res.status, (data && data.detail) || `${res.status} ${res.statusText}`, (data && data.error_type) || 'error');
    if (res.status === 401) onUnauthorized(err);
    throw err;
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}
