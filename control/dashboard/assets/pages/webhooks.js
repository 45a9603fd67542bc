// Webhooks (company key): the list, registering one, enabling/disabling,
// deleting, a test event, and each webhook's deliveries.
import { get, post, put, del, qs, APIError } from '../api.js';
import { h, mount, banner, badge, busy, fmtTime, needs, loading } from '../ui.js';
import { eventTypes } from '../meta.js';

export async function render(el, parts, ctx) {
  if (parts[0] && parts[1] === 'deliveries') return deliveries(el, parts[0], ctx);
  return list(el, ctx);
}

async function list(el, ctx) {
  mount(el, h('h1', {}, 'Webhooks'), loading());
  let hooks;
  try {
    hooks = await get('/api/webhooks');
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Webhooks'), needs('a company key', e)); return; }
    throw e;
  }
  const events = await eventTypes();
  if (ctx.stale()) return;
  const refresh = () => list(el, ctx);
  const rows = hooks.map((w) => h('tr', { 'data-webhook': w.id },
    h('td', {}, h('div', {}, w.url), h('div', { class: 'muted small' }, `#${w.id}${w.has_secret ? ' · signed' : ' · unsigned'}`)),
    h('td', { class: 'small' }, w.events.join(', ')),
    h('td', {}, badge(w.status), w.disabled_reason ? h('div', { class: 'muted small' }, w.disabled_reason) : null),
    h('td', { class: 'small' }, fmtTime(w.created_at)),
    h('td', {}, h('div', { class: 'actions' },
      h('a', { class: 'button', href: `#/webhooks/${w.id}/deliveries`, 'data-action': 'deliveries' }, 'Deliveries'),
      h('button', { onclick: (ev) => busy(ev.target, async () => { await post(`/api/webhooks/${w.id}/test`); banner(`A webhook.test event is on its way to ${w.url}.`, 'info'); }) }, 'Send test'),
      h('button', { onclick: (ev) => busy(ev.target, async () => { await put(`/api/webhooks/${w.id}`, { status: w.status === 'active' ? 'disabled' : 'active' }); refresh(); }) },
        w.status === 'active' ? 'Disable' : 'Enable'),
      h('button', { class: 'danger', onclick: (ev) => busy(ev.target, async () => { await del(`/api/webhooks/${w.id}`); refresh(); }) }, 'Delete')))));

  const url = h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://example.com/cxco-events' });
  const secret = h('input', { name: 'secret', type: 'text', autocomplete: 'off', placeholder: 'optional, at least 8 characters: signs each delivery (X-CXCO-Signature)' });
  const checks = events.map((ev) => h('label', {}, h('input', { type: 'checkbox', name: 'events', value: ev, checked: true }), ev));
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Register webhook');
  const form = h('form', {
    class: 'panel grid',
    onsubmit: (ev) => {
      ev.preventDefault();
      const chosen = checks.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
      busy(submit, async () => {
        const body = { url: url.value.trim(), events: chosen };
        if (secret.value.trim()) body.secret = secret.value.trim();
        const w = await post('/api/webhooks', body);
        banner(`Registered webhook #${w.id}.`, 'info');
        refresh();
      });
    },
  }, h('label', { for: 'wh-url' }, 'URL'), Object.assign(url, { id: 'wh-url' }),
  h('label', {}, 'Events'), h('div', { class: 'checks' }, checks),
  h('label', { for: 'wh-secret' }, 'Secret'), Object.assign(secret, { id: 'wh-secret' }),
  h('div', { class: 'full actions' }, submit));
  mount(el, h('h1', {}, 'Webhooks'),
    rows.length
      ? h('table', { 'data-testid': 'webhooks' }, h('thead', {}, h('tr', {}, ['URL', 'Events', 'Status', 'Created', ''].map((t) => h('th', {}, t)))), h('tbody', {}, rows))
      : h('div', { class: 'panel empty' }, 'No webhooks yet.'),
    h('h2', {}, 'Register a webhook'), form);
}

async function deliveries(el, id, ctx) {
  mount(el, h('h1', {}, `Deliveries of webhook #${id}`), loading());
  const head = h('h1', {}, `Deliveries of webhook #${id}`, h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/webhooks' }, 'All webhooks'));
  const show = async (cursor) => {
    let page;
    try {
      page = await get(`/api/webhooks/${encodeURIComponent(id)}/deliveries${qs({ limit: 50, cursor })}`);
    } catch (e) {
      if (e instanceof APIError && e.noRoute) {
        mount(el, head, h('div', { class: 'panel empty', 'data-testid': 'no-deliveries-api' },
          'Delivery history is not available on this gateway yet (it does not serve GET /api/webhooks/{id}/deliveries). Webhooks are still delivered.'));
        return;
      }
      if (e instanceof APIError && e.status === 403) { mount(el, head, needs('a company key', e)); return; }
      throw e;
    }
    if (ctx.stale()) return;
    const rows = page.items.map((d) => h('tr', { 'data-delivery': d.id },
      h('td', {}, `#${d.id}`), h('td', {}, d.event_type, h('div', { class: 'muted small' }, d.event_id)),
      h('td', {}, badge(d.status)), h('td', { class: 'num' }, d.attempts),
      h('td', {}, d.last_status_code ?? '—', d.last_error ? h('div', { class: 'muted small' }, d.last_error) : null),
      h('td', { class: 'small' }, fmtTime(d.last_attempt_at)), h('td', { class: 'small' }, d.next_attempt_at ? fmtTime(d.next_attempt_at) : '—'),
      h('td', {}, h('button', {
        onclick: (ev) => busy(ev.target, async () => { await post(`/api/webhooks/${id}/deliveries/${d.id}/redeliver`); show(cursor); }),
      }, 'Redeliver'))));
    mount(el, head,
      rows.length
        ? h('table', { 'data-testid': 'deliveries' }, h('thead', {}, h('tr', {}, ['#', 'Event', 'Status', 'Attempts', 'Last response', 'Last attempt', 'Next attempt', '']
          .map((t) => h('th', {}, t)))), h('tbody', {}, rows))
        : h('div', { class: 'panel empty' }, 'No deliveries yet.'),
      h('div', { class: 'pager' }, page.has_more ? h('button', { onclick: () => show(page.next_cursor) }, 'Older') : null));
  };
  await show(null);
}
