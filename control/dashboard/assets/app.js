// The dashboard: sign-in, navigation and the hash router. Pages live in pages/.
import { session, identify, whenUnauthorized, APIError, get } from './api.js';
import { h, mount, main, banner } from './ui.js';
import * as agents from './pages/agents.js';
import * as conversations from './pages/conversations.js';
import * as usage from './pages/usage.js';
import * as webhooks from './pages/webhooks.js';
import * as numbers from './pages/numbers.js';
import * as live from './pages/live.js';
import * as companies from './pages/companies.js';
import * as pool from './pages/pool.js';
import * as voices from './pages/voices.js';
import * as trunks from './pages/trunks.js';

// Pages, and the key each needs: user keys manage agents, numbers and
// conversations; company keys manage webhooks; both read usage; the agency key
// runs the platform (companies, their users, the number pool, voices, trunks).
// Everyone sees the calls in progress they may see.
const pages = [
  { path: 'live', title: 'Live calls', kinds: ['agency', 'user', 'company'], page: live },
  { path: 'companies', title: 'Companies', kinds: ['agency'], page: companies },
  { path: 'pool', title: 'Number pool', kinds: ['agency'], page: pool },
  { path: 'voices', title: 'Voices', kinds: ['agency'], page: voices },
  { path: 'trunks', title: 'Trunks', kinds: ['agency'], page: trunks },
  { path: 'agents', title: 'Agents', kinds: ['user'], page: agents },
  { path: 'conversations', title: 'Conversations', kinds: ['user'], page: conversations },
  { path: 'usage', title: 'Usage', kinds: ['user', 'company'], page: usage },
  { path: 'webhooks', title: 'Webhooks', kinds: ['company'], page: webhooks },
  { path: 'numbers', title: 'Phone numbers', kinds: ['user'], page: numbers },
];
const landing = { agency: 'companies', user: 'agents', company: 'usage' };

let me = null;
let renderSeq = 0;
let shown = null; // the page on screen: told to leave (stop its streams) before the next renders

// A user key's role bounds what it may change (each route names the least role it
// needs: x-cxco-role in /api/openapi.json); company and agency keys hold owner on
// the routes their kind opens. Pages offer only what the key may do.
const rank = { viewer: 0, member: 1, admin: 2, owner: 3 };
function can(role) {
  return session.kind !== 'user' || !me || (rank[me.role] ?? -1) >= rank[role];
}

function available() {
  return pages.filter((p) => p.kinds.includes(session.kind));
}

function nav(current) {
  const el = document.getElementById('nav');
  if (!session.key) { mount(el); return; }
  mount(el, available().map((p) => h('a', { href: `#/${p.path}`, class: p.path === current ? 'active' : '', 'data-nav': p.path }, p.title)));
  const who = document.getElementById('who');
  const label = session.kind === 'user'
    ? `User key${me ? ` · ${me.name || me.email}${me.role === 'viewer' ? ' · viewer (reads only)' : ''}` : ''}`
    : session.kind === 'agency' ? `Agency key${me && me.name ? ` · ${me.name}` : ''}` : 'Company key';
  mount(who, h('span', { 'data-testid': 'who' }, label), h('button', { onclick: signOut, 'data-testid': 'sign-out' }, 'Sign out'));
}

function signOut() {
  leave();
  session.clear();
  me = null;
  mount(document.getElementById('who'));
  location.hash = '#/signin';
}

function signIn() {
  nav('');
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'cxco_agcy_k_…, cxco_user_k_… or cxco_comp_k_…', required: true });
  const btn = h('button', { class: 'primary', type: 'submit', 'data-testid': 'sign-in' }, 'Sign in');
  const form = h('form', {
    class: 'panel signin',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      btn.disabled = true;
      try {
        const who = await identify(key);
        session.set(key, who.kind);
        me = who.me;
        banner(null);
        location.hash = `#/${landing[who.kind]}`;
      } catch (e) {
        banner(e instanceof APIError && e.status === 401 ? new APIError(401, 'That API key is not valid. Check it and try again.', e.type) : e);
      } finally {
        btn.disabled = false;
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'Use the agency key (printed when the gateway first started) to run the platform: companies and their users, the number pool, voices, trunks and every live call. A user key manages agents, phone numbers and conversations; a company key webhooks and usage. The key stays in this browser tab (session storage) and is sent as X-API-Key.'),
  h('label', { for: 'api-key' }, 'API key'), input, btn);
  mount(main(), form);
  input.focus();
}

function leave() {
  if (shown && shown.leave) shown.leave();
  shown = null;
}

async function route() {
  const seq = ++renderSeq;
  leave();
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (!session.key || parts[0] === 'signin') {
    if (session.key && parts[0] === 'signin') { location.hash = '#/'; return; }
    signIn();
    return;
  }
  if (session.kind === 'user' && !me) {
    try { me = await get('/api/users/me'); } catch { me = null; }
  }
  const avail = available();
  const p = pages.find((x) => x.path === parts[0]);
  if (!p) { location.hash = `#/${avail[0].path}`; return; }
  nav(p.path);
  banner(null);
  document.title = `${p.title} · CXCo`;
  const el = main();
  shown = p.page;
  try {
    await p.page.render(el, parts.slice(1), { kind: session.kind, me, can, stale: () => seq !== renderSeq });
  } catch (e) {
    if (seq !== renderSeq) return;
    banner(e);
  }
}

whenUnauthorized(() => {
  leave();
  session.clear();
  me = null;
  location.hash = '#/signin';
  setTimeout(() => banner('Your API key is no longer valid (it may have been rotated or deleted). Sign in again.'), 0);
});

window.addEventListener('hashchange', route);
route();
