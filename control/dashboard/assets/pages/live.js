// Live calls: the calls in progress on every node, pushed by the gateway
// (server-sent events of GET /api/calls/live/events: a snapshot, then calls new
// or changed every couple of seconds, then their end), with a hang-up button
// (DELETE /api/calls/live/{id}). The agency key sees every company's calls.
import { del, stream, APIError } from '../api.js';
import { h, mount, banner, badge, busy, fmtDuration, needs } from '../ui.js';

let abort = null; // the stream of the page on screen
let ticker = null;

export function leave() {
  if (abort) abort.abort();
  if (ticker) clearInterval(ticker);
  abort = null;
  ticker = null;
}

export async function render(el, _parts, ctx) {
  leave();
  const calls = new Map();
  const agency = ctx.kind === 'agency';
  const dot = h('span', { class: 'live-dot', 'data-testid': 'live-state' });
  const status = h('span', { class: 'muted small' }, 'Connecting…');
  const body = h('tbody');
  const empty = h('div', { class: 'panel empty', 'data-testid': 'no-live-calls', hidden: true }, 'No calls in progress.');
  const table = h('table', { 'data-testid': 'live-calls', hidden: true },
    h('thead', {}, h('tr', {}, [agency ? 'Company' : null, 'Agent', 'Caller', 'Called', 'State', 'Duration', 'Codec', 'Provider', 'Quality', 'Node', '']
      .filter((x) => x !== null).map((t) => h('th', {}, t)))),
    body);
  mount(el, h('h1', {}, 'Live calls', h('span', { class: 'spacer' }), h('span', {}, dot, status)),
    h('p', { class: 'muted small' }, 'Calls in progress on every gateway node, updated as they happen. Quality is that of the caller\'s audio over the last few seconds: packets lost or too late, jitter, and the loss the caller reports of ours.'),
    table, empty);

  const row = (c) => {
    const q = c.quality;
    const quality = q
      ? h('span', { 'data-testid': 'quality', title: `jitter buffer ${q.buffer_ms} ms${q.remote_loss_percent != null ? `, the caller reports ${q.remote_loss_percent}% of ours lost` : ''}` },
        badge(q.rating), ` ${q.loss_percent}% lost · ${q.jitter_ms} ms jitter`, q.mos ? ` · MOS ${q.mos}` : '')
      : h('span', { class: 'muted' }, '—');
    const hang = h('button', {
      class: 'danger', 'data-action': 'hangup',
      onclick: (ev) => {
        if (hang.dataset.confirm !== '1') {
          hang.dataset.confirm = '1';
          hang.textContent = 'Really hang up?';
          return;
        }
        busy(ev.target, async () => {
          hang.textContent = 'Hanging up…';
          await del(`/api/calls/live/${c.conversation_id}`);
        });
      },
    }, 'Hang up');
    return h('tr', { 'data-call': c.conversation_id, 'data-state': c.state },
      agency ? h('td', {}, c.company_name || `#${c.company_id}`) : null,
      h('td', {}, c.agent_name || `#${c.agent_id}`),
      h('td', {}, c.caller || '—'),
      h('td', {}, c.called || '—'),
      h('td', {}, badge(c.state)),
      h('td', { class: 'num', 'data-since': c.answered_at || c.started_at }, fmtDuration((Date.now() - Date.parse(c.answered_at || c.started_at)) / 1000)),
      h('td', {}, c.codec || '—'),
      h('td', {}, c.provider || '—'),
      h('td', { class: 'small' }, quality),
      h('td', { class: 'small muted' }, c.node),
      h('td', {}, h('div', { class: 'actions' }, c.answered_at && ctx.kind !== 'company' ? h('a', { class: 'button', href: `#/conversations/${c.conversation_id}` }, 'Details') : null,
        ctx.can('member') ? hang : null)));
  };
  const draw = () => {
    const sorted = [...calls.values()].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
    // Rows are replaced whole, except one asking to confirm a hang-up.
    const keep = new Map([...body.querySelectorAll('tr[data-call]')].filter((r) => r.querySelector('[data-confirm="1"]')).map((r) => [r.dataset.call, r]));
    mount(body, sorted.map((c) => keep.get(String(c.conversation_id)) || row(c)));
    table.hidden = sorted.length === 0;
    empty.hidden = sorted.length > 0;
  };
  ticker = setInterval(() => {
    for (const td of body.querySelectorAll('td[data-since]')) td.textContent = fmtDuration((Date.now() - Date.parse(td.dataset.since)) / 1000);
  }, 1000);

  const controller = new AbortController();
  abort = controller;
  const connect = async () => {
    while (!controller.signal.aborted) {
      try {
        await stream('/api/calls/live/events', (name, data) => {
          if (name === 'snapshot') {
            calls.clear();
            data.items.forEach((c) => calls.set(c.conversation_id, c));
            dot.className = 'live-dot on';
            status.textContent = 'Live';
          } else if (name === 'upsert') {
            data.items.forEach((c) => calls.set(c.conversation_id, c));
          } else if (name === 'end') {
            data.conversation_ids.forEach((id) => calls.delete(id));
          }
          draw();
        }, controller.signal);
      } catch (e) {
        if (controller.signal.aborted || ctx.stale()) return;
        if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Live calls'), needs('a key', e)); return; }
        if (e instanceof APIError && e.status !== 0 && e.status !== 503) { banner(e); return; }
      }
      if (controller.signal.aborted || ctx.stale()) return;
      dot.className = 'live-dot';
      status.textContent = 'Reconnecting…';
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  connect();
}
