// Conversations: a paged list filtered by agent and channel, and one
// conversation with its transcript as a chat, summary, transfer and RTP stats.
import { get, qs, APIError } from '../api.js';
import { h, mount, badge, fmtTime, fmtDuration, num, needs, loading } from '../ui.js';
import { providerName } from '../meta.js';

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
  const rows = page.items.map((c) => h('tr', { class: `link${c.audio_quality && c.audio_quality.poor ? ' poor-call' : ''}`, 'data-conversation': c.id, onclick: () => { location.hash = `#/conversations/${c.id}`; } },
    h('td', {}, h('a', { href: `#/conversations/${c.id}` }, `#${c.id}`)),
    h('td', { class: 'small' }, fmtTime(c.started_at)),
    h('td', {}, agents.get(c.agent_id) || `#${c.agent_id}`),
    h('td', {}, c.channel),
    h('td', {}, c.caller_number || '—'),
    h('td', {}, badge(c.status)),
    h('td', {}, qualityBadge(c.audio_quality)),
    h('td', { class: 'num' }, fmtDuration(c.duration_seconds)),
    h('td', { class: 'small muted' }, c.end_reason || '')));
  const prev = h('button', { disabled: state.page === 0, onclick: () => { state.page--; reload(); } }, 'Previous');
  const next = h('button', {
    disabled: !page.has_more, 'data-testid': 'next-page',
    onclick: () => { state.cursors[state.page + 1] = page.next_cursor; state.page++; reload(); },
  }, 'Next');
  mount(el, h('h1', {}, 'Conversations'), h('div', { class: 'panel' }, filters),
    rows.length
      ? h('table', { 'data-testid': 'conversations' }, h('thead', {}, h('tr', {}, ['#', 'Started', 'Agent', 'Channel', 'Caller', 'Status', 'Audio', 'Duration', 'End reason']
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
    fact('Audio quality', qualityFact(c.audio_quality)),
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
    fact('Provider', h('span', { 'data-testid': 'provider' }, providerName(c.source),
      c.metadata_ && c.metadata_.provider_failover ? h('span', { class: 'muted small' }, ` (failover from ${providerName(c.metadata_.provider_failover.from)})`) : null)),
    fact('Provider conversation', c.external_conversation_id));
  const ladderPanel = h('div', { class: 'panel', 'data-testid': 'sip-ladder-panel' }, loading());
  const transcript = (c.transcript || []).map((e) => h('div', { class: `bubble ${e.role}`, 'data-role': e.role },
    h('span', { class: 'meta' }, `${e.role === 'user' ? 'Caller' : e.role === 'agent' ? 'Agent' : 'System'} · ${fmtDuration(e.timestamp)}`), e.message));
  mount(el,
    h('h1', {}, `Conversation #${c.id}`, badge(c.status), h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/conversations' }, 'All conversations')),
    h('div', { class: 'panel' }, facts),
    h('h2', {}, 'Summary'),
    h('div', { class: 'panel', 'data-testid': 'summary' }, c.transcript_summary || h('span', { class: 'muted' }, c.status === 'in_progress' ? 'The call is still going on.' : 'No summary (yet): the provider sends it shortly after the call.')),
    h('h2', {}, 'Transcript'),
    h('div', { class: 'panel chat', 'data-testid': 'transcript' }, transcript.length ? transcript : h('span', { class: 'muted' }, 'Nothing was said.')),
    rtpStats(c.metadata_ && c.metadata_.rtp),
    h('h2', {}, 'SIP ladder'), ladderPanel);
  await sipLadder(ladderPanel, c, ctx);
}

// sipLadder shows the call's SIP messages in order (GET .../sip-trace): who
// sent what when, the full message (secrets redacted) under each row.
async function sipLadder(panel, c, ctx) {
  let tr;
  try {
    tr = await get(`/api/conversations/${c.id}/sip-trace`);
  } catch (e) {
    if (ctx.stale()) return;
    mount(panel, h('span', { class: 'muted' }, e instanceof APIError && e.noRoute
      ? 'This gateway does not keep SIP traces.' : `The SIP trace could not be read: ${e.message}`));
    return;
  }
  if (ctx.stale()) return;
  if (!tr.items.length) {
    mount(panel, h('span', { class: 'muted', 'data-testid': 'sip-ladder-empty' }, c.channel !== 'voice' || c.caller_number === 'webrtc'
      ? 'Not a SIP call.' : 'No SIP trace: it has expired, or the gateway keeps none (--sip-trace-keep 0).'));
    return;
  }
  const t0 = Date.parse(tr.items[0].at);
  const remote = tr.items[0].remote;
  const rows = tr.items.map((m, i) => {
    const f = m.first_line.split(' ');
    const isResponse = f[0].startsWith('SIP/');
    const label = isResponse ? f.slice(1).join(' ') : f[0];
    const cls = isResponse ? (Number(f[1]) >= 300 ? 'bad' : Number(f[1]) >= 200 ? 'ok' : 'prov') : 'req';
    const leg = m.sip_call_id !== tr.sip_call_id;
    const msg = h('tr', { class: 'sip-msg', hidden: true }, h('td', { colspan: 5 }, h('pre', { class: 'code' }, m.message)));
    const row = h('tr', { class: 'link', 'data-sip': i, 'data-dir': m.direction, onclick: () => { msg.hidden = !msg.hidden; } },
      h('td', { class: 'num small' }, `+${((Date.parse(m.at) - t0) / 1000).toFixed(3)} s`),
      h('td', { class: 'small' }, leg ? `${m.remote} (transfer)` : m.remote),
      h('td', { class: `arrow ${m.direction}` }, h('span', { class: `sip-label ${cls}` }, label), h('span', { class: 'line' })),
      h('td', { class: 'small muted' }, m.cseq),
      h('td', { class: 'small muted' }, m.transport));
    return [row, msg];
  });
  mount(panel,
    h('p', { class: 'muted small' }, `${tr.items.length} messages between the gateway and ${remote}; click one to read it whole (credentials and SDP keys are redacted).`,
      tr.kept_until ? ` Kept until ${fmtTime(tr.kept_until)}.` : ''),
    h('table', { class: 'ladder', 'data-testid': 'sip-ladder' },
      h('thead', {}, h('tr', {}, ['Time', 'Far end', 'Carrier → gateway / ← gateway', 'CSeq', ''].map((x) => h('th', {}, x)))),
      h('tbody', {}, rows)));
}

// The caller's audio quality at a glance: the E-model's MOS (audio_quality,
// ITU-T G.107), coloured by G.109's category: good (R 80 and up: satisfied),
// fair (70-80: some users dissatisfied), poor (below 70: many dissatisfied;
// such calls are flagged in the list).
const qualityClass = (q) => (q.poor ? 'poor' : q.r_factor >= 80 ? 'good' : 'fair');
const ratingWords = { best: 'very satisfied', high: 'satisfied', medium: 'some users dissatisfied', low: 'many users dissatisfied', poor: 'nearly all users dissatisfied' };

function qualityBadge(q) {
  if (!q) return h('span', { class: 'muted small' }, '—');
  return h('span', { class: `badge ${qualityClass(q)}`, 'data-quality': qualityClass(q), title: `R ${num(q.r_factor, 1)}: ${ratingWords[q.rating] || q.rating}` },
    `MOS ${num(q.mos, 2)}`);
}

function qualityFact(q) {
  if (!q) return null;
  return h('span', { 'data-testid': 'audio-quality' }, qualityBadge(q),
    h('span', { class: 'muted' }, ` R ${num(q.r_factor, 1)} — ${q.rating}: ${ratingWords[q.rating] || ''}`));
}

// The call's media statistics (metadata_.rtp), in words an operator uses:
// what came from the caller, what went to them, and the hold time. Frame
// counts are 20 ms frames and are shown as time too.
const frames = (n) => (n === null || n === undefined ? '—' : `${num(n * 0.02, 2)} s (${num(n)} frames)`);
const pctOf = (part, whole) => (whole > 0 ? ` (${num((100 * part) / whole, 2)}%)` : '');
const rtpGroups = [
  ['From the caller', [
    ['packets_received', 'Packets received'],
    ['expected', 'Packets the caller sent (by sequence number)'],
    ['lost', 'Packets lost on the way', (v, r) => `${num(v)}${pctOf(v, r.expected)}`],
    ['late', 'Packets too late to play', (v, r) => `${num(v)}${pctOf(v, r.expected)}`],
    ['concealed_frames', 'Caller audio lost and concealed', frames],
    ['jitter_ms', 'Jitter (ms)', (v) => num(v, 1)],
    ['jitter_depth_avg_ms', 'Jitter buffer delay, on average (ms)', (v) => num(v, 1)],
    ['jitter_depth_max_ms', 'Jitter buffer delay, largest (ms)', (v) => num(v, 1)],
    ['concealed_ms', 'Audio concealed (lost or late), ms', (v) => num(v, 0)],
    ['late_ms', 'Audio that came too late to play, ms', (v) => num(v, 0)],
    ['mos', 'Quality (E-model MOS, 1 to 4.5)', (v) => num(v, 2)],
    ['r_factor', 'E-model rating R (0 to 100)', (v) => num(v, 1)],
    ['out_of_order', 'Packets out of order'],
    ['duplicates', 'Duplicate packets'],
    ['dtmf_digits', 'Keypad digits (DTMF)'],
  ]],
  ['To the caller', [
    ['packets_sent', 'Packets sent'],
    ['played_frames', 'Agent audio played', frames],
    ['flushed_frames', 'Agent audio cut off when the caller spoke (barge-in)', frames],
    ['discarded_frames', 'Ringback cut off when the transfer answered', frames],
    ['queue_dropped', 'Agent audio dropped (sent faster than real time)', frames],
    ['underruns', 'Gaps in the agent\'s speech (its audio came late)', (v, r) => `${num(v)}${r.underrun_ms ? ` (${num(r.underrun_ms / 1000, 2)} s of silence)` : ''}`],
    ['remote_lost', 'Packets lost on the way (the caller\'s RTCP reports)'],
    ['remote_jitter_ms', 'Jitter at the caller (ms)', (v) => num(v, 1)],
  ]],
  ['Call', [
    ['hold_seconds', 'Time on hold', (v) => `${num(v, 1)} s`],
  ]],
];

function rtpStats(rtp) {
  if (!rtp) return [h('h2', {}, 'Media'), h('div', { class: 'panel muted' }, 'No media statistics for this conversation.')];
  const out = [h('h2', {}, 'Media')];
  for (const [title, rows] of rtpGroups) {
    const present = rows.filter(([k]) => k in rtp);
    if (!present.length) continue;
    out.push(h('table', { 'data-testid': 'rtp', class: 'stats-table' },
      h('thead', {}, h('tr', {}, h('th', { colspan: 2 }, title))),
      h('tbody', {}, present.map(([k, label, fmt]) =>
        h('tr', {}, h('td', {}, label), h('td', { class: 'num', 'data-stat': k, 'data-value': rtp[k] }, fmt ? fmt(rtp[k], rtp) : num(rtp[k])))))));
  }
  return out;
}
