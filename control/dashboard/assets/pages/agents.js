// Agents: the list with status and number; create and edit; publish, pause,
// resume, archive; and "Talk to this agent" on active ones.
import { get, post, put, del, qs, APIError } from '../api.js';
import { h, mount, banner, badge, busy, fmtTime, fmtDuration, num, needs, loading } from '../ui.js';
import { languages, audioFormats, agentProviders, providerName } from '../meta.js';
import { startCall } from '../call.js';

export async function render(el, parts, ctx) {
  if (parts[0] === 'new') return form(el, null, ctx);
  if (parts[0]) { // #/agents/12 (and the old #/agents/12/edit)
    mount(el, loading());
    const a = await get(`/api/agents/${encodeURIComponent(parts[0])}`);
    return form(el, a, ctx);
  }
  return list(el, ctx);
}

let statusFilter = '';

async function list(el, ctx) {
  mount(el, h('h1', {}, 'Agents'), loading());
  let agents = [], cursor = null, more = false;
  try {
    const page = await get(`/api/agents${qs({ limit: 100, status: statusFilter })}`);
    agents = page.items; more = page.has_more; cursor = page.next_cursor;
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Agents'), needs('a user key', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const filter = h('select', { 'aria-label': 'Status', onchange: (ev) => { statusFilter = ev.target.value; list(el, ctx); } },
    ['', 'draft', 'active', 'paused', 'archived'].map((s) => h('option', { value: s, selected: s === statusFilter }, s || 'All statuses')));
  const body = h('tbody');
  const table = h('table', { 'data-testid': 'agents' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Agent'), h('th', {}, 'Status'), h('th', {}, 'Phone number'), h('th', {}, 'Voice'), h('th', {}, 'Updated'), h('th', {}, ''))),
    body);
  const addRows = (items) => items.forEach((a) => body.append(...row(a, () => list(el, ctx), ctx)));
  addRows(agents);
  const moreBtn = h('button', {
    hidden: !more,
    onclick: async (ev) => busy(ev.target, async () => {
      const page = await get(`/api/agents${qs({ limit: 100, status: statusFilter, cursor })}`);
      addRows(page.items); cursor = page.next_cursor; ev.target.hidden = !page.has_more;
    }),
  }, 'Load more');
  mount(el,
    h('h1', {}, 'Agents', h('span', { class: 'spacer' }), filter, ctx.can('member') ? h('a', { class: 'button primary', href: '#/agents/new', 'data-testid': 'new-agent' }, 'New agent') : null),
    agents.length ? table : h('div', { class: 'panel empty' }, statusFilter ? `No ${statusFilter} agents.` : 'No agents yet. Create one, then publish it to give it a phone number.'),
    h('div', { class: 'pager' }, moreBtn));
}

// row is an agent's table row, and the row that opens under it for publishing.
function row(a, refresh, ctx) {
  const extra = h('tr', { hidden: true }, h('td', { colspan: 6 }));
  const act = (label, fn, cls = '') => h('button', { class: cls, 'data-action': label.toLowerCase(), onclick: (ev) => busy(ev.target, fn) }, label);
  const actions = [];
  const member = ctx.can('member');
  if (a.status === 'active' && member) {
    actions.push(h('button', { class: 'talk', 'data-action': 'talk', onclick: () => startCall(a) }, 'Talk to this agent'));
    actions.push(act('Pause', async () => { await post(`/api/agents/${a.id}/pause`); refresh(); }));
  }
  if (a.status === 'draft' && member) actions.push(act('Publish', () => publishRow(a, extra, refresh), 'primary'));
  if (a.status === 'paused' && member) actions.push(act('Resume', async () => { await post(`/api/agents/${a.id}/resume`); refresh(); }, 'primary'));
  if (a.status !== 'archived') {
    actions.push(h('a', { class: 'button', href: `#/agents/${a.id}`, 'data-action': 'edit' }, 'Open'));
  }
  if (a.status !== 'archived' && ctx.can('admin')) {
    const archive = h('button', {
      class: 'danger', 'data-action': 'archive',
      onclick: (ev) => {
        if (archive.dataset.confirm !== '1') {
          archive.dataset.confirm = '1';
          archive.textContent = a.phone_number ? 'Archive and release the number?' : 'Really archive?';
          return;
        }
        busy(ev.target, async () => { await del(`/api/agents/${a.id}`); refresh(); });
      },
    }, 'Archive');
    actions.push(archive);
  }
  const number = a.phone_number ? h('span', { 'data-testid': 'agent-number' }, a.phone_number.number) : h('span', { class: 'muted' }, '—');
  return [h('tr', { 'data-agent': a.id, 'data-status': a.status },
    h('td', {}, h('a', { href: `#/agents/${a.id}` }, h('strong', {}, a.name)), h('div', { class: 'muted small' }, `#${a.id} · ${a.language}${a.provider ? ` · ${providerName(a.provider)}` : ''}`)),
    h('td', {}, badge(a.status)),
    h('td', {}, number),
    h('td', {}, (a.voice && a.voice.name) || '—'),
    h('td', { class: 'small' }, fmtTime(a.updated_at)),
    h('td', {}, h('div', { class: 'actions' }, actions))), extra];
}

// publishRow asks for the country of the number to take from the pool.
async function publishRow(a, extra, refresh) {
  const avail = await get('/api/phone-numbers/available');
  const counts = {};
  for (const n of avail) counts[n.country_code] = (counts[n.country_code] || 0) + 1;
  const cell = extra.firstChild;
  extra.hidden = false;
  const countries = Object.keys(counts).sort();
  if (!countries.length) {
    mount(cell, h('span', { class: 'muted' }, 'No phone numbers are available in the pool. Ask the platform operator to add numbers, then publish.'));
    return;
  }
  const sel = h('select', { name: 'country_code', 'aria-label': 'Country' }, countries.map((c) => h('option', { value: c }, `${c} (${counts[c]} available)`)));
  mount(cell, h('form', {
    class: 'inline',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(ev.submitter, async () => {
        const res = await post(`/api/agents/${a.id}/publish`, { country_code: sel.value });
        banner(`${res.name} is live on ${res.phone_number ? res.phone_number.number : 'its number'}.`, 'info');
        refresh();
      });
    },
  }, h('label', {}, 'Country of the number', sel), h('button', { class: 'primary', type: 'submit', 'data-action': 'confirm-publish' }, 'Publish'),
  h('button', { type: 'button', onclick: () => { extra.hidden = true; } }, 'Cancel')));
}

// form creates (a null) or shows and edits an agent: its configuration as a
// form (voice, language, prompt, opening line, transfer destinations with
// their conditions, provider), its number, publishing, its recent
// conversations and usage.
async function form(el, a, ctx) {
  const member = ctx.can('member');
  if (!a && !member) {
    mount(el, h('h1', {}, 'New agent'), h('div', { class: 'panel empty' }, 'Creating agents needs a user of role member or above; this key\'s user is a viewer.'));
    return;
  }
  const [voices, langs, formats, providers] = await Promise.all([get('/api/voices'), languages(), audioFormats(), agentProviders()]);
  if (ctx.stale()) return;
  const cfg = (a && a.config) || {};
  const tr = cfg.transfer || {};
  const f = {
    name: h('input', { name: 'name', required: true, maxlength: 200, value: a ? a.name : '' }),
    personality: h('textarea', { name: 'personality', required: true, maxlength: 20000, rows: 6 }, a ? a.personality : ''),
    opening: h('textarea', { name: 'opening_line', required: true, maxlength: 2000, rows: 2 }, a ? a.opening_line : ''),
    voice: h('select', { name: 'voice_id' }, voices.map((v) => h('option', { value: v.id, selected: a && a.voice && a.voice.id === v.id },
      `${v.name}${v.gender ? ` · ${v.gender}` : ''}${v.accent ? ` · ${v.accent}` : ''} (${v.language})`))),
    language: h('select', { name: 'language' }, (langs.length ? langs : ['en']).map((l) => h('option', { value: l, selected: (a ? a.language : 'en') === l }, l))),
    provider: providers.length ? h('select', { name: 'provider' }, [h('option', { value: '', selected: !a }, 'the voice\'s provider'),
      ...providers.map((p) => h('option', { value: p, selected: !!a && a.provider === p }, providerName(p)))]) : null,
    fallbackProvider: providers.length ? h('select', { name: 'fallback_provider' }, [h('option', { value: '', selected: !a || !a.fallback_provider }, 'none'),
      ...providers.map((p) => h('option', { value: p, selected: !!a && a.fallback_provider === p }, providerName(p)))]) : null,
    maxDur: h('input', { name: 'max_call_duration_seconds', type: 'number', min: 10, max: 14400, value: cfg.max_call_duration_seconds ?? 600 }),
    format: h('select', { name: 'audio_format' }, formats.map((x) => h('option', { value: x, selected: (cfg.audio_format || 'ulaw_8000') === x }, x))),
    temperature: h('input', { name: 'temperature', type: 'number', min: 0, max: 2, step: 0.1, value: cfg.temperature ?? '', placeholder: 'provider default' }),
    mode: h('select', { name: 'transfer_mode' }, [['refer', 'REFER: the carrier connects the caller'], ['bridge', 'Bridge: the gateway calls the destination and stays in the call']]
      .map(([v, t]) => h('option', { value: v, selected: (tr.mode || 'refer') === v }, t))),
    fallback: h('input', { name: 'fallback_to_bridge', type: 'checkbox', checked: !!tr.fallback_to_bridge }),
  };
  // Transfer destinations: a row each.
  const dests = h('div', { 'data-testid': 'destinations' });
  const destRow = (d = {}) => {
    const r = h('div', { class: 'dest', 'data-dest': '' },
      h('input', { name: 'dest_number', placeholder: '+27215550100 or sip:desk@pbx.example', value: d.number || '', 'aria-label': 'Destination number', required: true }),
      h('input', { name: 'dest_condition', placeholder: 'when to transfer, in words: "the caller asks for a human"', value: d.condition || '', 'aria-label': 'Condition', required: true }),
      h('input', { name: 'dest_label', placeholder: 'label (optional)', value: d.label || '', 'aria-label': 'Label' }),
      h('button', { type: 'button', class: 'danger', 'data-action': 'remove-destination', onclick: () => r.remove() }, 'Remove'));
    dests.append(r);
    return r;
  };
  (tr.destinations || []).forEach((d) => destRow(d));
  const addDest = h('button', { type: 'button', 'data-action': 'add-destination', onclick: () => destRow().querySelector('input').focus() }, 'Add a destination');
  const known = ['max_call_duration_seconds', 'audio_format', 'temperature', 'transfer'];
  const extra = h('textarea', { name: 'config', class: 'code', rows: 3 }, JSON.stringify(Object.fromEntries(Object.entries(cfg).filter(([k]) => !known.includes(k))), null, 2));

  const submit = h('button', { class: 'primary', type: 'submit', 'data-testid': 'save-agent' }, a ? 'Save changes' : 'Create agent');
  const onsubmit = async (ev) => {
    ev.preventDefault();
    let more;
    try {
      more = extra.value.trim() ? JSON.parse(extra.value) : {};
      if (typeof more !== 'object' || Array.isArray(more) || more === null) throw new Error('not an object');
    } catch (e) {
      banner(`More config must be a JSON object (${e.message}).`);
      return;
    }
    const destinations = [...dests.querySelectorAll('[data-dest]')].map((r) => {
      const d = { number: r.querySelector('[name=dest_number]').value.trim(), condition: r.querySelector('[name=dest_condition]').value.trim() };
      const label = r.querySelector('[name=dest_label]').value.trim();
      if (label) d.label = label;
      return d;
    });
    const config = { ...more, max_call_duration_seconds: Number(f.maxDur.value), audio_format: f.format.value,
      transfer: { mode: f.mode.value, fallback_to_bridge: f.fallback.checked, destinations } };
    if (f.temperature.value !== '') config.temperature = Number(f.temperature.value);
    if (a) for (const k of Object.keys(cfg)) if (!(k in config)) config[k] = null; // removed keys
    const body = { name: f.name.value, personality: f.personality.value, opening_line: f.opening.value,
      voice_id: Number(f.voice.value), language: f.language.value, config };
    if (f.provider && f.provider.value) body.provider = f.provider.value;
    if (f.fallbackProvider) body.fallback_provider = f.fallbackProvider.value || null;
    await busy(submit, async () => {
      const saved = a ? await put(`/api/agents/${a.id}`, body) : await post('/api/agents', body);
      banner(a ? `Saved ${saved.name}.` : `Created ${saved.name} as a draft: publish it to give it a phone number.`, 'info');
      location.hash = `#/agents/${saved.id}`;
      if (a) render(el, [String(saved.id)], ctx);
    });
  };
  const label = (text, field, hint) => [h('label', { for: field.name }, text), h('div', {}, Object.assign(field, { id: field.name }), hint ? h('div', { class: 'muted small' }, hint) : null)];
  const providerField = f.provider ? [...label('Provider', f.provider, 'The voice-AI service that runs this agent. Your own bot needs "bot": {"url": "wss://…"} in More config.'),
    ...label('Fallback provider', f.fallbackProvider, 'Calls go here when the provider cannot be reached as the call comes in.')]
    : [h('label', {}, 'Provider'), h('div', { 'data-testid': 'provider' }, 'ElevenLabs Agents', a && a.external_agent_id ? h('div', { class: 'muted small' }, `agent ${a.external_agent_id} there`) : null)];
  const formEl = h('form', { class: 'panel grid', onsubmit, 'data-testid': 'agent-form' },
    label('Name', f.name),
    label('Voice', f.voice),
    label('Language', f.language),
    ...providerField,
    label('Prompt (personality)', f.personality, 'How the agent behaves: its role, tone and what it knows.'),
    label('Opening line', f.opening, 'The first thing callers hear.'),
    h('label', {}, 'Transfers'), h('div', {}, f.mode, h('div', { class: 'checks' }, h('label', {}, Object.assign(f.fallback, { id: 'fallback_to_bridge' }), 'bridge when the carrier refuses the REFER')),
      h('div', { class: 'muted small' }, 'Where the agent may hand the caller to a human, and when: it decides from the condition, in words.'), dests, addDest),
    label('Max call duration (s)', f.maxDur),
    label('Audio format', f.format, 'ulaw_8000 passes phone audio through; pcm_16000 is resampled to 16 kHz.'),
    label('Temperature', f.temperature),
    label('More config (JSON)', extra, 'Other settings, e.g. {"user_audio_chunk_ms": 100}.'),
    h('div', { class: 'full actions' }, submit, h('a', { class: 'button', href: '#/agents' }, a ? 'All agents' : 'Cancel')));
  if (!member) {
    // A viewer reads the configuration; the API would refuse a change (403).
    for (const x of formEl.querySelectorAll('input, select, textarea, button')) x.disabled = true;
    submit.remove();
    addDest.remove();
    formEl.append(h('div', { class: 'full muted small', 'data-testid': 'read-only' }, 'Read only: changing an agent needs a user of role member or above.'));
  }
  if (!a) {
    mount(el, h('h1', {}, 'New agent'), formEl);
    f.name.focus();
    return;
  }

  // The number, publishing and the rest of the life cycle.
  const lifecycle = h('div', { class: 'actions' });
  const refresh = () => render(el, [String(a.id)], ctx);
  if (a.status === 'draft' && member) {
    const avail = await get('/api/phone-numbers/available');
    const counts = {};
    for (const n of avail) counts[n.country_code] = (counts[n.country_code] || 0) + 1;
    const countries = Object.keys(counts).sort();
    if (countries.length) {
      const sel = h('select', { name: 'country_code', 'aria-label': 'Country' }, countries.map((c) => h('option', { value: c }, `${c} (${counts[c]} available)`)));
      lifecycle.append(sel, h('button', {
        class: 'primary', 'data-action': 'publish',
        onclick: (ev) => busy(ev.target, async () => {
          const res = await post(`/api/agents/${a.id}/publish`, { country_code: sel.value });
          banner(`${res.name} is live on ${res.phone_number ? res.phone_number.number : 'its number'}.`, 'info');
          refresh();
        }),
      }, 'Publish'));
    } else {
      lifecycle.append(h('span', { class: 'muted' }, 'No numbers are available in the pool: ask the platform operator to add some, then publish.'));
    }
  }
  if (a.status === 'active' && member) {
    lifecycle.append(h('button', { class: 'talk', 'data-action': 'talk', onclick: () => startCall(a) }, 'Talk to this agent'),
      h('button', { 'data-action': 'pause', onclick: (ev) => busy(ev.target, async () => { await post(`/api/agents/${a.id}/pause`); refresh(); }) }, 'Pause'));
  }
  if (a.status === 'paused' && member) {
    lifecycle.append(h('button', { class: 'primary', 'data-action': 'resume', onclick: (ev) => busy(ev.target, async () => { await post(`/api/agents/${a.id}/resume`); refresh(); }) }, 'Resume'));
  }
  const [convs, usage] = await Promise.all([
    get(`/api/agents/${a.id}/conversations${qs({ limit: 10 })}`).catch(() => ({ items: [] })),
    get(`/api/agents/${a.id}/usage`).catch(() => null)]);
  if (ctx.stale()) return;
  const recent = convs.items.map((c) => h('tr', { class: 'link', onclick: () => { location.hash = `#/conversations/${c.id}`; } },
    h('td', {}, h('a', { href: `#/conversations/${c.id}` }, `#${c.id}`)), h('td', { class: 'small' }, fmtTime(c.started_at)),
    h('td', {}, c.caller_number || '—'), h('td', {}, badge(c.status)), h('td', { class: 'num' }, fmtDuration(c.duration_seconds))));
  const u = usage && usage.voice;
  mount(el,
    h('h1', {}, a.name, badge(a.status), h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/agents' }, 'All agents')),
    h('div', { class: 'panel' }, h('dl', { class: 'facts' },
      h('dt', {}, 'Phone number'), h('dd', { 'data-testid': 'agent-number' }, a.phone_number ? a.phone_number.number : h('span', { class: 'muted' }, 'none yet: publishing takes one from the pool')),
      h('dt', {}, 'Agent'), h('dd', {}, `#${a.id} · updated ${fmtTime(a.updated_at)}`)),
    lifecycle),
    h('h2', {}, 'Configuration'), formEl,
    h('div', { class: 'two' },
      h('div', {}, h('h2', {}, 'Recent conversations'), recent.length
        ? h('table', { 'data-testid': 'agent-conversations' }, h('tbody', {}, recent)) : h('div', { class: 'panel empty' }, 'No conversations yet.')),
      h('div', {}, h('h2', {}, 'Usage this month'), h('div', { class: 'stats', 'data-testid': 'agent-usage' },
        h('div', { class: 'stat' }, h('div', { class: 'v' }, u ? u.total_conversations : '—'), h('div', { class: 'k' }, 'conversations')),
        h('div', { class: 'stat' }, h('div', { class: 'v' }, u ? num(u.total_minutes, 1) : '—'), h('div', { class: 'k' }, 'minutes with the agent')),
        h('div', { class: 'stat' }, h('div', { class: 'v' }, u ? num(u.total_sip_refer_minutes, 1) : '—'), h('div', { class: 'k' }, 'minutes transferred'))))));
}
