// DOM helpers. Text from the API only ever goes into text nodes and attributes.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const main = () => document.getElementById('main');

// banner shows an error (an APIError, an Error or a string) or, with kind
// 'info', a notice, above the page.
export function banner(msg, kind = 'error') {
  const b = document.getElementById('banner');
  if (!msg) { b.hidden = true; b.replaceChildren(); return; }
  let text = msg;
  if (msg instanceof Error) {
    text = msg.status ? `${msg.message}` : msg.message;
    if (msg.status) text += ` (${msg.status} ${msg.type})`;
  }
  b.className = `banner ${kind === 'info' ? 'info' : ''}`;
  mount(b, h('span', { class: 'msg', 'data-testid': 'banner' }, text), h('button', { 'aria-label': 'Dismiss', onclick: () => banner(null) }, '×'));
  b.hidden = false;
}

export const badge = (s) => h('span', { class: `badge ${s}` }, String(s).replace('_', ' '));

export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined) return '—';
  sec = Math.round(sec);
  const m = Math.floor(sec / 60), s = sec % 60;
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
}

export const num = (v, digits = 0) => (v === null || v === undefined ? '—' : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits }));

// busy disables a button while fn runs and shows errors in the banner.
export async function busy(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (e) {
    banner(e);
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

// needs is the panel shown when the signed-in key cannot use a page.
export function needs(what, err) {
  const detail = err ? err.message : '';
  return h('div', { class: 'panel empty', 'data-testid': 'needs-key' },
    h('p', {}, `This page needs ${what}.`),
    detail ? h('p', { class: 'muted small' }, detail) : null,
    h('p', { class: 'muted small' }, 'Company keys (cxco_comp_k_…) manage users and webhooks; user keys (cxco_user_k_…) manage agents, numbers and conversations. Both read usage.'));
}

export function loading() { return h('p', { class: 'muted' }, 'Loading…'); }
