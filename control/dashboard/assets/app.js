// The dashboard: sign-in, navigation and the hash router. Pages live in pages/.
import { session, identify, whenUnauthorized, APIError, get } from './api.js';
import { h, mount, main, banner } from './ui.js';
import * as agents from './pages/agents.js';
import * as conversations from './pages/conversations.js';
import * as usage from './pages/usage.js';
import * as webhooks from './pages/webhooks.js';
import * as numbers from './pages/numbers.js';

// Pages, and the key each needs: user keys manage agents, numbers and
// conversations; company keys manage webhooks; both read usage.
const pages = [
  { path: 'agents', title: 'Agents', kinds: ['user'], page: agents },
  { path: 'conversations', title: 'Conversations', kinds: ['user'], page: conversations },
  { path: 'usage', title: 'Usage', kinds: ['user', 'company'], page: usage },
  { path: 'webhooks', title: 'Webhooks', kinds: ['company'], page: webhooks },
  { path: 'numbers', title: 'Phone numbers', kinds: ['user'], page: numbers },
];

let me = null;
let renderSeq = 0;

function available() {
  return pages.filter((p) => p.kinds.includes(session.kind));
}

function nav(current) {
  const el = document.getElementById('nav');
  if (!session.key) { mount(el); return; }
  mount(el, available().map((p) => h('a', { href: `#/${p.path}`, class: p.path === current ? 'active' : '', 'data-nav': p.path }, p.title)));
  const who = document.getElementById('who');
  const label = session.kind === 'user'
    ? `User key${me ? ` · ${me.name || me.email}` : ''}`
    : 'Company key';
  mount(who, h('span', { 'data-testid': 'who' }, label), h('button', { onclick: signOut, 'data-testid': 'sign-out' }, 'Sign out'));
}

function signOut() {
  session.clear();
  me = null;
  mount(document.getElementById('who'));
  location.hash = '#/signin';
}

function signIn() {
  nav('');
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'cxco_user_k_… or cxco_comp_k_…', required: true });
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
        location.hash = who.kind === 'user' ? '#/agents' : '#/usage';
      } catch (e) {
        banner(e instanceof APIError && e.status === 401 ? new APIError(401, 'That API key is not valid. Check it and try again.', e.type) : e);
      } finally {
        btn.disabled = false;
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'Use a user key to manage agents, phone numbers and conversations, or a company key for webhooks and usage. The key stays in this browser tab (session storage) and is sent as X-API-Key.'),
  h('label', { for: 'api-key' }, 'API key'), input, btn);
  mount(main(), form);
  input.focus();
}

async function route() {
  const seq = ++renderSeq;
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
  try {
    await p.page.render(el, parts.slice(1), { kind: session.kind, me, stale: () => seq !== renderSeq });
  } catch (e) {
    if (seq !== renderSeq) return;
    banner(e);
  }
}

whenUnauthorized(() => {
  session.clear();
  me = null;
  location.hash = '#/signin';
  setTimeout(() => banner('Your API key is no longer valid (it may have been rotated or deleted). Sign in again.'), 0);
});

window.addEventListener('hashchange', route);
route();
