// Trunks (agency key): the carriers' SIP trunks, the flags' default first, with
// their registration state; adding one and removing one.
import { get, post, del, APIError } from '../api.js';
import { h, mount, banner, busy, needs, loading } from '../ui.js';

export async function render(el, _parts, ctx) {
  mount(el, h('h1', {}, 'Trunks'), loading());
  let list;
  try {
    list = await get('/api/agency/trunks');
  } catch (e) {
    if (e instanceof APIError && e.noRoute) { mount(el, h('h1', {}, 'Trunks'), h('div', { class: 'panel empty' }, 'This gateway does not manage trunks through the API: they come from its flags.')); return; }
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Trunks'), needs('the agency key', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const refresh = () => render(el, [], ctx);
  const rows = list.items.map((t) => {
    const reg = (t.registrations || []).map((r) => `${r.state || r.status || ''}`).filter(Boolean).join(', ');
    return h('tr', { 'data-trunk': t.id },
      h('td', {}, h('strong', {}, t.name), h('div', { class: 'muted small' }, t.source === 'flags' ? 'from the flags (read-only)' : `#${t.id}`)),
      h('td', { class: 'small' }, (t.allow || []).join(', ') || '—'),
      h('td', { class: 'small' }, t.uri || '—'),
      h('td', { class: 'small' }, t.username ? `${t.username}${t.has_password ? ' (password set)' : ''}` : '—'),
      h('td', { class: 'small' }, reg || '—'),
      h('td', {}, t.source === 'flags' ? null : h('button', {
        class: 'danger', 'data-action': 'remove-trunk',
        onclick: (ev) => busy(ev.target, async () => { await del(`/api/agency/trunks/${t.id}`); banner(`Removed trunk ${t.name}.`, 'info'); refresh(); }),
      }, 'Remove')));
  });
  const f = {
    name: h('input', { id: 't-name', required: true, placeholder: 'carrier-a' }),
    allow: h('input', { id: 't-allow', placeholder: '203.0.113.0/24, 198.51.100.7' }),
    uri: h('input', { id: 't-uri', placeholder: 'sip:sbc.carrier.example:5060' }),
    username: h('input', { id: 't-user', autocomplete: 'off' }),
    password: h('input', { id: 't-pass', type: 'password', autocomplete: 'new-password' }),
  };
  const add = h('button', { class: 'primary', type: 'submit' }, 'Add trunk');
  const form = h('form', {
    class: 'panel grid',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(add, async () => {
        const b = { name: f.name.value.trim() };
        const allow = f.allow.value.split(',').map((s) => s.trim()).filter(Boolean);
        if (allow.length) b.allow = allow;
        if (f.uri.value.trim()) b.uri = f.uri.value.trim();
        if (f.username.value.trim()) b.username = f.username.value.trim();
        if (f.password.value) b.password = f.password.value;
        const t = await post('/api/agency/trunks', b);
        banner(`Added trunk ${t.name}.`, 'info');
        refresh();
      });
    },
  }, h('label', { for: 't-name' }, 'Name'), f.name,
  h('label', { for: 't-allow' }, 'Allowed sources'), h('div', {}, f.allow, h('div', { class: 'muted small' }, 'addresses or CIDRs the carrier sends SIP from, comma-separated')),
  h('label', { for: 't-uri' }, 'URI'), h('div', {}, f.uri, h('div', { class: 'muted small' }, 'where outbound calls (bridged transfers) go')),
  h('label', { for: 't-user' }, 'Digest user'), f.username, h('label', { for: 't-pass' }, 'Digest password'), f.password,
  h('div', { class: 'full actions' }, add));
  mount(el, h('h1', {}, 'Trunks'),
    h('table', { 'data-testid': 'trunks' }, h('thead', {}, h('tr', {}, ['Trunk', 'Allowed sources', 'URI', 'Digest user', 'Registration', ''].map((x) => h('th', {}, x)))), h('tbody', {}, rows)),
    h('h2', {}, 'Add a trunk'), form);
}
