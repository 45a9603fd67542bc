// Conversations: a paged list filtered by agent and channel, and one
// conversation with its transcript as a chat, summary, transfer and RTP stats.
import { get, qs, APIError } from '../api.js';
import { h, mount, badge, fmtTime, fmtDuration, num, needs, loading } from '../ui.js';

export async function render(el, parts, ctx) {
  if (parts[0]) return detail(el, parts[0], ctx);
  return list(el, ctx);
}

// The list's state survives visits to a conversation and back.
const state = { agent: '', channel: '', cursors: [null], page: 0 };
let agentNames = null;

async function names() {
  if (!agentNames) {
    agentNames = new Map();
    let cursor = null;
    for (let i = 0; i < 20; i++) { // at most 2,000 agents for the filter
      const page = await get(`/api/agents${qs({ limit: 100, cursor })}`);
      page.items.forEach((a) => agentNames.set(a.id, a.name));
      if (!page.has_more) break;
      cursor = page.next_cursor;
    }
  }
  return agentNames;
}

async function list(el, ctx) {
  mount(el, h('h1', {}, 'Conversations'), loading());
  let agents, page;
  try {
    agentNames = null;
    agents = await names();
    page = await get(`/api/conversations${qs({ limit: 25, agent_id: state.agent, channel: state.channel, cursor: state.cursors[state.page] })}`);
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Conversations'), needs('a user key', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const reload = () => list(el, ctx);
  const resetTo = (k) => (ev) => { state[k] = ev.target.value; state.cursors = [null]; state.page = 0; reload(); };
  const filters = h('div', { class: 'inline' },
    h('label', {}, 'Agent', h('select', { name: 'agent_id', onchange: resetTo('agent') },
      h('option', { value: '' }, 'All agents'),
      [...agents].map(([id, name]) => h('option', { value: id, selected: String(id) === String(state.agent) }, name)))),
    h('label', {}, 'Channel', h('select', { name: 'channel', onchange: resetTo('channel') },
      [['', 'All channels'], ['voice', 'Voice'], ['whatsapp', 'WhatsApp']].map(([v, t]) => h('option', { value: v, selected: v === state.channel }, t)))),
    h('button', { onclick: () => { state.cursors = [null]; state.page = 0; reload(); } }, 'Refresh'));
  const rows = page.items.map((c) => h('tr', { class: 'link', 'data-conversation': c.id, onclick: () => { location.hash = `#/conversations/${c.id}`; } },
    h('td', {}, h('a', { href: `#/conversations/${c.id}` }, `#${c.id}`)),
    h('td', { class: 'small' }, fmtTime(c.started_at)),
    h('td', {}, agents.get(c.agent_id) || `#${c.agent_id}`),
    h('td', {}, c.channel),
    h('td', {}, c.caller_number || '—'),
    h('td', {}, badge(c.status)),
    h('td', { class: 'num' }, fmtDuration(c.duration_seconds)),
    h('td', { class: 'small muted' }, c.end_reason || '')));
  const prev = h('button', { disabled: state.page === 0, onclick: () => { state.page--; reload(); } }, 'Previous');
  const next = h('button', {
    disabled: !page.has_more, 'data-testid': 'next-page',
    onclick: () => { state.cursors[state.page + 1] = page.next_cursor; state.page++; reload(); },
  }, 'Next');
  mount(el, h('h1', {}, 'Conversations'), h('div', { class: 'panel' }, filters),
    rows.length
      ? h('table', { 'data-testid': 'conversations' }, h('thead', {}, h('tr', {}, ['#', 'Started', 'Agent', 'Channel', 'Caller', 'Status', 'Duration', 'End reason']
        .map((t) => h('th', { class: t === 'Duration' ? 'num' : '' }, t)))), h('tbody', {}, rows))
      : h('div', { class: 'panel empty' }, 'No conversations match.'),
    h('div', { class: 'pager' }, h('span', { class: 'muted small' }, `Page ${state.page + 1}`), prev, next));
}

async function detail(el, id, ctx) {
  mount(el, h('h1', {}, `Conversation #${id}`), loading());
  let c;
  try {
    c = await get(`/api/conversations/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Conversation'), needs('a user key', e)); return; }
    throw e;
  }
  const agents = await names().catch(() => new Map());
  if (ctx.stale()) return;
  const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v === null || v === undefined || v === '' ? '—' : v)];
  const transfer = c.sip_refer_destination
    ? h('span', { 'data-testid': 'transfer' }, c.sip_refer_destination, c.sip_refer_seconds ? h('span', { class: 'muted' }, ` (${fmtDuration(c.sip_refer_seconds)} carried after the transfer)`) : null)
    : null;
  const facts = h('dl', { class: 'facts' },
    fact('Agent', h('a', { href: `#/conversations` , onclick: () => { state.agent = String(c.agent_id); state.cursors = [null]; state.page = 0; } }, agents.get(c.agent_id) || `#${c.agent_id}`)),
    fact('Status', badge(c.status)),
    fact('Channel', `${c.channel} · ${c.direction}`),
    fact('Caller', c.caller_number),
    fact('Called', c.called_number),
    fact('Started', fmtTime(c.started_at)),
    fact('Answered', c.answered_at ? fmtTime(c.answered_at) : null),
    fact('Ended', c.ended_at ? fmtTime(c.ended_at) : null),
    fact('Duration', h('span', { 'data-testid': 'duration' }, fmtDuration(c.duration_seconds))),
    fact('End reason', c.end_reason),
    fact('Transferred to', transfer),
    fact('Call successful', c.call_successful === null || c.call_successful === undefined ? null : (c.call_successful ? 'yes' : 'no')),
    fact('Provider conversation', c.external_conversation_id));
  const transcript = (c.transcript || []).map((e) => h('div', { class: `bubble ${e.role}`, 'data-role': e.role },
    h('span', { class: 'meta' }, `${e.role === 'user' ? 'Caller' : e.role === 'agent' ? 'Agent' : 'System'} · ${fmtDuration(e.timestamp)}`), e.message));
  mount(el,
    h('h1', {}, `Conversation #${c.id}`, badge(c.status), h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/conversations' }, 'All conversations')),
    h('div', { class: 'panel' }, facts),
    h('h2', {}, 'Summary'),
    h('div', { class: 'panel', 'data-testid': 'summary' }, c.transcript_summary || h('span', { class: 'muted' }, c.status === 'in_progress' ? 'The call is still going on.' : 'No summary (yet): the provider sends it shortly after the call.')),
    h('h2', {}, 'Transcript'),
    h('div', { class: 'panel chat', 'data-testid': 'transcript' }, transcript.length ? transcript : h('span', { class: 'muted' }, 'Nothing was said.')),
    rtpStats(c.metadata_ && c.metadata_.rtp));
}

const rtpRows = [
  ['packets_received', 'Packets received'], ['packets_sent', 'Packets sent'], ['expected', 'Packets expected'],
  ['lost', 'Packets lost'], ['jitter_ms', 'Jitter (ms)', 1], ['late', 'Late packets'], ['duplicates', 'Duplicates'],
  ['out_of_order', 'Out of order'], ['concealed_frames', 'Concealed frames'], ['jitter_depth_ms', 'Jitter buffer depth (ms)', 1],
  ['jitter_depth_max_ms', 'Jitter buffer max depth (ms)', 1], ['played_frames', 'Agent frames played'], ['flushed_frames', 'Frames dropped by barge-in'],
  ['queue_dropped', 'Frames dropped (queue full)'], ['dtmf_digits', 'DTMF digits'], ['remote_lost', 'Lost at the far end'], ['remote_jitter_ms', 'Jitter at the far end (ms)', 1],
];

function rtpStats(rtp) {
  if (!rtp) return [h('h2', {}, 'RTP'), h('div', { class: 'panel muted' }, 'No media statistics for this conversation.')];
  return [h('h2', {}, 'RTP'),
    h('table', { 'data-testid': 'rtp' }, h('tbody', {}, rtpRows.filter(([k]) => k in rtp).map(([k, label, d]) =>
      h('tr', {}, h('td', {}, label), h('td', { class: 'num', 'data-stat': k }, num(rtp[k], d || 0))))))];
}
