// Companies (agency key): the list, creating one (its key shown once),
// suspending and re-activating, plan and rate limit, rotating the key; and one
// company's users: create (key shown once), change role, delete.
import { get, post, put, del, qs, APIError } from '../api.js';
import { h, mount, banner, badge, busy, fmtTime, needs, loading, secretOnce } from '../ui.js';

const plans = ['starter', 'growth', 'enterprise'];
const roles = ['owner', 'admin', 'member', 'viewer'];

export async function render(el, parts, ctx) {
  if (parts[0]) return company(el, parts[0], ctx);
  return list(el, ctx);
}

async function list(el, ctx) {
  mount(el, h('h1', {}, 'Companies'), loading());
  let page;
  try {
    page = await get(`/api/agency/companies${qs({ limit: 100 })}`);
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Companies'), needs('the agency key', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const refresh = () => list(el, ctx);
  const body = h('tbody');
  const addRows = (items) => items.forEach((c) => body.append(row(c, refresh)));
  addRows(page.items);
  let cursor = page.next_cursor;
  const more = h('button', {
    hidden: !page.has_more,
    onclick: (ev) => busy(ev.target, async () => {
      const p = await get(`/api/agency/companies${qs({ limit: 100, cursor })}`);
      addRows(p.items); cursor = p.next_cursor; ev.target.hidden = !p.has_more;
    }),
  }, 'Load more');

  const name = h('input', { id: 'co-name', name: 'name', required: true, maxlength: 200, placeholder: 'Acme Support' });
  const plan = h('select', { id: 'co-plan', name: 'plan' }, plans.map((p) => h('option', { value: p }, p)));
  const limit = h('input', { id: 'co-limit', name: 'rate_limit_per_minute', type: 'number', min: 1, max: 1000000, placeholder: 'enterprise only' });
  const submit = h('button', { class: 'primary', type: 'submit', 'data-testid': 'create-company' }, 'Create company');
  const form = h('form', {
    class: 'panel grid', 'data-testid': 'company-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(submit, async () => {
        const b = { name: name.value.trim(), plan: plan.value };
        if (limit.value) b.rate_limit_per_minute = Number(limit.value);
        const c = await post('/api/agency/companies', b);
        secretOnce(`Company ${c.name} created`, `This is ${c.name}'s company key: it creates the company's users and webhooks.`, c.api_key);
        refresh();
      });
    },
  }, h('label', { for: 'co-name' }, 'Name'), name, h('label', { for: 'co-plan' }, 'Plan'), plan,
  h('label', { for: 'co-limit' }, 'Requests per minute'), limit, h('div', { class: 'full actions' }, submit));

  mount(el, h('h1', {}, 'Companies'),
    page.items.length
      ? h('table', { 'data-testid': 'companies' }, h('thead', {}, h('tr', {}, ['Company', 'Status', 'Plan', 'Requests/min', 'Created', ''].map((t) => h('th', {}, t)))), body)
      : h('div', { class: 'panel empty' }, 'No companies yet: create the first one below.'),
    h('div', { class: 'pager' }, more),
    h('h2', {}, 'New company'), form);
}

function row(c, refresh) {
  const suspended = c.status === 'suspended';
  return h('tr', { 'data-company': c.id, 'data-status': c.status },
    h('td', {}, h('a', { href: `#/companies/${c.id}` }, h('strong', {}, c.name)), h('div', { class: 'muted small' }, `#${c.id}`)),
    h('td', {}, badge(c.status)),
    h('td', {}, c.plan),
    h('td', { class: 'num' }, c.rate_limit_per_minute),
    h('td', { class: 'small' }, fmtTime(c.created_at)),
    h('td', {}, h('div', { class: 'actions' },
      h('a', { class: 'button', href: `#/companies/${c.id}`, 'data-action': 'open' }, 'Users and settings'),
      h('button', {
        class: suspended ? 'primary' : 'danger', 'data-action': suspended ? 'activate' : 'suspend',
        onclick: (ev) => busy(ev.target, async () => {
          await put(`/api/agency/companies/${c.id}`, { status: suspended ? 'active' : 'suspended' });
          banner(suspended ? `${c.name} is active again.` : `${c.name} is suspended: its keys get 403 and calls to its numbers are refused.`, 'info');
          refresh();
        }),
      }, suspended ? 'Activate' : 'Suspend'))));
}

async function company(el, id, ctx) {
  mount(el, h('h1', {}, `Company #${id}`), loading());
  const [c, users] = await Promise.all([get(`/api/agency/companies/${encodeURIComponent(id)}`), get(`/api/agency/companies/${encodeURIComponent(id)}/users${qs({ limit: 100 })}`)]);
  if (ctx.stale()) return;
  const refresh = () => company(el, id, ctx);

  // Settings: name, plan, rate limit; and the key.
  const name = h('input', { id: 'cs-name', value: c.name, maxlength: 200 });
  const plan = h('select', { id: 'cs-plan' }, plans.map((p) => h('option', { value: p, selected: p === c.plan }, p)));
  const limit = h('input', { id: 'cs-limit', type: 'number', min: 1, max: 1000000, value: c.rate_limit_per_minute });
  const save = h('button', { class: 'primary', type: 'submit', 'data-testid': 'save-company' }, 'Save');
  const settings = h('form', {
    class: 'panel grid',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(save, async () => {
        const b = { name: name.value.trim(), plan: plan.value };
        if (plan.value === 'enterprise') b.rate_limit_per_minute = Number(limit.value);
        await put(`/api/agency/companies/${c.id}`, b);
        banner(`Saved ${b.name}.`, 'info');
        refresh();
      });
    },
  }, h('label', { for: 'cs-name' }, 'Name'), name, h('label', { for: 'cs-plan' }, 'Plan'), plan,
  h('label', { for: 'cs-limit' }, 'Requests per minute'), h('div', {}, limit, h('div', { class: 'muted small' }, 'Starter allows 100 a minute and growth 1,000; enterprise what you set here.')),
  h('div', { class: 'full actions' }, save,
    h('button', {
      type: 'button', class: 'danger', 'data-action': 'rotate-key',
      onclick: (ev) => {
        if (ev.target.dataset.confirm !== '1') { ev.target.dataset.confirm = '1'; ev.target.textContent = 'The old key stops working at once: rotate?'; return; }
        busy(ev.target, async () => {
          const r = await post(`/api/agency/companies/${c.id}/rotate-key`);
          secretOnce(`New key for ${c.name}`, 'This is the company\'s new key; the old one no longer works.', r.api_key);
          refresh();
        });
      },
    }, 'Rotate the company key')));

  // Users.
  const rows = users.items.map((u) => h('tr', { 'data-user': u.id },
    h('td', {}, h('strong', {}, u.name), h('div', { class: 'muted small' }, u.email)),
    h('td', {}, h('select', {
      'aria-label': 'Role', 'data-action': 'role',
      onchange: (ev) => busy(ev.target, async () => { await put(`/api/agency/companies/${c.id}/users/${u.id}`, { role: ev.target.value }); banner(`${u.name} is now ${ev.target.value}.`, 'info'); }),
    }, roles.map((r) => h('option', { value: r, selected: r === u.role }, r)))),
    h('td', {}, badge(u.status)),
    h('td', { class: 'small' }, fmtTime(u.created_at)),
    h('td', {}, h('button', {
      class: 'danger', 'data-action': 'delete-user',
      onclick: (ev) => {
        if (ev.target.dataset.confirm !== '1') { ev.target.dataset.confirm = '1'; ev.target.textContent = 'Delete and revoke the key?'; return; }
        busy(ev.target, async () => { await del(`/api/agency/companies/${c.id}/users/${u.id}`); refresh(); });
      },
    }, 'Delete'))));
  const email = h('input', { id: 'u-email', type: 'email', required: true, placeholder: 'ops@example.com' });
  const uname = h('input', { id: 'u-name', required: true, maxlength: 200 });
  const role = h('select', { id: 'u-role' }, roles.map((r) => h('option', { value: r, selected: r === 'member' }, r)));
  const add = h('button', { class: 'primary', type: 'submit', 'data-testid': 'create-user' }, 'Create user');
  const userForm = h('form', {
    class: 'panel grid', 'data-testid': 'user-form',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(add, async () => {
        const u = await post(`/api/agency/companies/${c.id}/users`, { email: email.value.trim(), name: uname.value.trim(), role: role.value });
        secretOnce(`User ${u.name} created`, `This is ${u.name}'s user key (role ${u.role}): it signs in to this dashboard and manages agents.`, u.api_key);
        refresh();
      });
    },
  }, h('label', { for: 'u-email' }, 'Email'), email, h('label', { for: 'u-name' }, 'Name'), uname,
  h('label', { for: 'u-role' }, 'Role'), h('div', {}, role, h('div', { class: 'muted small' }, 'viewer reads; member runs agents and test calls; admin also the company profile and archiving; owner as admin.')),
  h('div', { class: 'full actions' }, add));

  mount(el,
    h('h1', {}, c.name, badge(c.status), h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/companies' }, 'All companies')),
    settings,
    h('h2', {}, 'Users'),
    rows.length ? h('table', { 'data-testid': 'users' }, h('thead', {}, h('tr', {}, ['User', 'Role', 'Status', 'Created', ''].map((t) => h('th', {}, t)))), h('tbody', {}, rows))
      : h('div', { class: 'panel empty' }, 'No users yet.'),
    h('h2', {}, 'New user'), userForm);
}
