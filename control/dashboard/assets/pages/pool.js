// The number pool (agency key): every number with its status and company,
// filtered by status and country; adding numbers (or an echo test line) and
// removing those not assigned.
import { get, post, put, del, qs, APIError } from '../api.js';
import { h, mount, banner, badge, busy, fmtTime, needs, loading } from '../ui.js';

const filter = { status: '', country_code: '' };

export async function render(el, _parts, ctx) {
  mount(el, h('h1', {}, 'Number pool'), loading());
  let page;
  try {
    page = await get(`/api/agency/phone-numbers${qs({ limit: 100, ...filter })}`);
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Number pool'), needs('the agency key', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const refresh = () => render(el, [], ctx);
  const body = h('tbody');
  const addRows = (items) => items.forEach((n) => body.append(h('tr', { 'data-number': n.number, 'data-status': n.status },
    h('td', {}, h('strong', {}, n.number), h('div', { class: 'muted small' }, `#${n.id} · ${n.provider_slug}`)),
    h('td', {}, n.country_code),
    h('td', {}, badge(n.status)),
    h('td', {}, n.company_id ? `company #${n.company_id}` : h('span', { class: 'muted' }, '—'), n.agent_id ? h('div', { class: 'muted small' }, `agent #${n.agent_id}`) : null),
    h('td', { class: 'small' }, fmtTime(n.created_at)),
    h('td', {}, h('div', { class: 'actions' },
      n.status !== 'assigned' ? h('button', {
        'data-action': 'echo',
        onclick: (ev) => busy(ev.target, async () => { await put(`/api/agency/phone-numbers/${n.id}`, { echo_line: n.status !== 'echo' }); refresh(); }),
      }, n.status === 'echo' ? 'Make it a normal number' : 'Make it an echo test line') : null,
      n.status !== 'assigned' ? h('button', {
        class: 'danger', 'data-action': 'remove',
        onclick: (ev) => busy(ev.target, async () => { await del(`/api/agency/phone-numbers/${n.id}`); banner(`Removed ${n.number} from the pool.`, 'info'); refresh(); }),
      }, 'Remove') : null)))));
  addRows(page.items);
  let cursor = page.next_cursor;
  const more = h('button', {
    hidden: !page.has_more,
    onclick: (ev) => busy(ev.target, async () => {
      const p = await get(`/api/agency/phone-numbers${qs({ limit: 100, cursor, ...filter })}`);
      addRows(p.items); cursor = p.next_cursor; ev.target.hidden = !p.has_more;
    }),
  }, 'Load more');
  const set = (k) => (ev) => { filter[k] = ev.target.value.trim().toUpperCase() === '' ? '' : (k === 'status' ? ev.target.value : ev.target.value.trim().toUpperCase()); refresh(); };
  const filters = h('div', { class: 'panel inline' },
    h('label', {}, 'Status', h('select', { name: 'status', onchange: set('status') },
      [['', 'Any status'], ['available', 'Available'], ['assigned', 'Assigned'], ['echo', 'Echo test line']].map(([v, t]) => h('option', { value: v, selected: v === filter.status }, t)))),
    h('label', {}, 'Country', h('input', { name: 'country_code', maxlength: 2, size: 4, value: filter.country_code, placeholder: 'ZA', onchange: set('country_code') })));

  const number = h('input', { id: 'pn-number', required: true, placeholder: '+27211234567' });
  const cc = h('input', { id: 'pn-country', required: true, maxlength: 2, placeholder: 'ZA' });
  const echo = h('input', { id: 'pn-echo', type: 'checkbox' });
  const add = h('button', { class: 'primary', type: 'submit', 'data-testid': 'add-number' }, 'Add to the pool');
  const form = h('form', {
    class: 'panel grid', 'data-testid': 'number-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(add, async () => {
        const n = await post('/api/agency/phone-numbers', { number: number.value.trim(), country_code: cc.value.trim().toUpperCase(), echo_line: echo.checked });
        banner(`${n.number} is in the pool${n.status === 'echo' ? ' as an echo test line' : ': publishing an agent in ' + n.country_code + ' can take it'}.`, 'info');
        refresh();
      });
    },
  }, h('label', { for: 'pn-number' }, 'Number (E.164)'), number, h('label', { for: 'pn-country' }, 'Country'), cc,
  h('label', { for: 'pn-echo' }, 'Echo test line'), h('div', { class: 'checks' }, h('label', {}, echo, 'answers every call with the caller\'s own audio')),
  h('div', { class: 'full actions' }, add));
  mount(el, h('h1', {}, 'Number pool'), filters,
    page.items.length
      ? h('table', { 'data-testid': 'pool' }, h('thead', {}, h('tr', {}, ['Number', 'Country', 'Status', 'Company', 'Added', ''].map((t) => h('th', {}, t)))), body)
      : h('div', { class: 'panel empty' }, filter.status || filter.country_code ? 'No numbers match.' : 'The pool is empty: add the numbers your trunk routes to this gateway.'),
    h('div', { class: 'pager' }, more),
    h('h2', {}, 'Add a number'), form);
}
