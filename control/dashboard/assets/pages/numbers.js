// Phone numbers (user key): the company's numbers with their agent and WhatsApp
// status, enabling WhatsApp, and what the pool has available.
import { get, post, qs, APIError } from '../api.js';
import { h, mount, banner, badge, busy, needs, loading } from '../ui.js';

export async function render(el, _parts, ctx) {
  mount(el, h('h1', {}, 'Phone numbers'), loading());
  let mine, avail, agents;
  try {
    [mine, avail, agents] = await Promise.all([get('/api/phone-numbers'), get('/api/phone-numbers/available'), get(`/api/agents${qs({ limit: 100 })}`)]);
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Phone numbers'), needs('a user key', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const names = new Map(agents.items.map((a) => [a.id, a.name]));
  const refresh = () => render(el, [], ctx);
  const rows = mine.map((n) => {
    const actions = [];
    if ((n.whatsapp_status === 'none' || n.whatsapp_status === 'failed') && ctx.can('member')) {
      actions.push(h('button', {
        'data-action': 'enable-whatsapp',
        onclick: (ev) => busy(ev.target, async () => { await post(`/api/phone-numbers/${n.id}/enable-whatsapp`); banner(`WhatsApp verification started for ${n.number}.`, 'info'); refresh(); }),
      }, 'Enable WhatsApp'));
    }
    if (n.whatsapp_status === 'pending') {
      actions.push(h('button', {
        'data-action': 'check-whatsapp',
        onclick: (ev) => busy(ev.target, async () => {
          const st = await get(`/api/phone-numbers/${n.id}/whatsapp-status`);
          if (st.whatsapp_status !== n.whatsapp_status) refresh();
          else banner(`${n.number}: WhatsApp is still ${st.whatsapp_status}.`, 'info');
        }),
      }, 'Check status'));
    }
    return h('tr', { 'data-number': n.number },
      h('td', {}, h('strong', {}, n.number)), h('td', {}, n.country_code), h('td', {}, badge(n.status)),
      h('td', {}, n.agent_id ? (names.get(n.agent_id) || `#${n.agent_id}`) : h('span', { class: 'muted' }, '—')),
      h('td', { 'data-testid': 'whatsapp' }, badge(n.whatsapp_status)), h('td', {}, h('div', { class: 'actions' }, actions)));
  });
  const counts = {};
  for (const n of avail) counts[n.country_code] = (counts[n.country_code] || 0) + 1;
  mount(el, h('h1', {}, 'Phone numbers'),
    rows.length
      ? h('table', { 'data-testid': 'numbers' }, h('thead', {}, h('tr', {}, ['Number', 'Country', 'Status', 'Agent', 'WhatsApp', ''].map((t) => h('th', {}, t)))), h('tbody', {}, rows))
      : h('div', { class: 'panel empty' }, 'No numbers yet: publishing an agent takes one from the pool.'),
    h('h2', {}, 'Available in the pool'),
    h('div', { class: 'panel' }, Object.keys(counts).length
      ? h('div', { class: 'stats' }, Object.keys(counts).sort().map((c) => h('div', { class: 'stat' }, h('div', { class: 'v' }, counts[c]), h('div', { class: 'k' }, c))))
      : h('span', { class: 'muted' }, 'None: ask the platform operator to add numbers to the pool.')));
}
