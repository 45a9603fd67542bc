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
    h('p', { class: 'muted small' }, 'The agency key (cxco_agcy_k_…) manages companies, the number pool, voices and trunks; company keys (cxco_comp_k_…) users and webhooks; user keys (cxco_user_k_…) agents, numbers and conversations. Company and user keys read usage.'));
}

export function loading() { return h('p', { class: 'muted' }, 'Loading…'); }

// modal shows content over the page until closed; it returns the close function.
export function modal(title, ...content) {
  const close = () => box.remove();
  const box = h('div', { class: 'modal', role: 'dialog', 'aria-modal': 'true', 'data-testid': 'modal' },
    h('div', { class: 'modal-box' }, h('h2', {}, title), ...content,
      h('div', { class: 'actions' }, h('button', { class: 'primary', 'data-testid': 'modal-close', onclick: close }, 'Done'))));
  document.body.append(box);
  return close;
}

// secretOnce shows a key that is shown only once, with a copy button.
export function secretOnce(title, what, key) {
  const input = h('input', { readonly: true, value: key, class: 'code', 'data-testid': 'new-key' });
  modal(title, h('p', {}, `${what} It is shown only now: copy it somewhere safe.`), input,
    h('button', { onclick: async (ev) => { try { await navigator.clipboard.writeText(key); ev.target.textContent = 'Copied'; } catch { input.select(); } } }, 'Copy'));
  input.select();
}
