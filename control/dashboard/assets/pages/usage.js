// Usage: voice minutes, conversations and transfer minutes per day for a chosen
// range, drawn as SVG bar charts, with the totals and the per-agent table.
import { get, qs } from '../api.js';
import { h, mount, num, loading } from '../ui.js';

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const iso = (d) => d.toISOString().slice(0, 10);

function defaultRange() {
  const end = new Date();
  const start = new Date(end.getTime() - 13 * 86400000);
  return { start: iso(start), end: iso(end) };
}

const range = defaultRange();

// axis picks the top of the y axis and its step: the top is 1, 2 or 5 times a
// power of ten (and a whole number for counts), cut into steps that read well.
export function axis(maxVal, integer) {
  let top = 1;
  if (maxVal > 0) {
    const p = 10 ** Math.floor(Math.log10(maxVal));
    top = [1, 2, 5, 10].map((m) => m * p).find((v) => v >= maxVal - 1e-12);
  }
  if (integer) top = Math.max(1, Math.ceil(top));
  const mant = Math.round(top / 10 ** Math.floor(Math.log10(top)));
  let n = mant === 2 ? 4 : 5;
  if (integer) n = [5, 4, 2, 1].find((k) => k <= top && Number.isInteger(top / k));
  const step = top / n;
  let digits = 0;
  while (digits < 6 && Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) > 1e-6) digits++;
  return { top, step, n, digits };
}

// barChart draws one value per day.
export function barChart(days, value, { title, unit, cls, id, digits = 0 }) {
  const W = 900, H = 200, L = 48, R = 12, T = 12, B = 36;
  const vals = days.map(value);
  const ax = axis(Math.max(...vals, 0), digits === 0);
  const max = ax.top;
  const n = Math.max(days.length, 1);
  const slot = (W - L - R) / n;
  const bw = Math.max(2, Math.min(40, slot * 0.7));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  for (let i = 0; i <= ax.n; i++) {
    const v = ax.step * i;
    svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, num(v, ax.digits)));
  }
  svg.append(s('line', { class: 'axis', x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  const every = Math.ceil(n / 12);
  days.forEach((d, i) => {
    const x = L + slot * i + (slot - bw) / 2;
    const v = vals[i];
    const bar = s('rect', { class: `bar ${cls}`, x, y: y(v), width: bw, height: Math.max(0, y(0) - y(v)), 'data-date': d.date, 'data-value': v },
      s('title', {}, `${d.date}: ${num(v, digits)} ${unit}`));
    svg.append(bar);
    if (i % every === 0) svg.append(s('text', { x: x + bw / 2, y: H - B + 16, 'text-anchor': 'middle' }, d.date.slice(5)));
  });
  return h('div', { class: 'panel chart', 'data-testid': id, dataset: { total: vals.reduce((a, b) => a + b, 0) } },
    h('h2', {}, title), svg);
}

export async function render(el, _parts, ctx) {
  mount(el, h('h1', {}, 'Usage'), loading());
  const q = { start_date: range.start, end_date: range.end };
  const [daily, sum] = await Promise.all([get(`/api/usage/daily${qs(q)}`), get(`/api/usage/summary${qs(q)}`)]);
  if (ctx.stale()) return;
  const start = h('input', { type: 'date', name: 'start_date', value: range.start, required: true });
  const end = h('input', { type: 'date', name: 'end_date', value: range.end, required: true });
  const form = h('form', {
    class: 'inline',
    onsubmit: (ev) => { ev.preventDefault(); range.start = start.value; range.end = end.value; render(el, [], ctx); },
  }, h('label', {}, 'From', start), h('label', {}, 'To', end), h('button', { class: 'primary', type: 'submit' }, 'Show'),
  h('button', { type: 'button', onclick: () => { Object.assign(range, defaultRange()); render(el, [], ctx); } }, 'Last 14 days'));
  const v = sum.voice || {};
  const stat = (k, val, id) => h('div', { class: 'stat', 'data-testid': id }, h('div', { class: 'v' }, val), h('div', { class: 'k' }, k));
  const byAgent = sum.by_agent || [];
  mount(el,
    h('h1', {}, 'Usage', h('span', { class: 'muted small' }, `${sum.period.start_date} to ${sum.period.end_date} (UTC days)`)),
    h('div', { class: 'panel' }, form),
    h('div', { class: 'stats' },
      stat('Voice minutes', num(v.total_minutes, 2), 'total-minutes'),
      stat('Voice conversations', num(v.total_conversations), 'total-conversations'),
      stat('Transfer minutes (SIP REFER)', num(v.total_sip_refer_minutes, 2), 'total-transfer'),
      stat('Average duration', `${num(v.average_duration_seconds, 1)} s`, 'average'),
      stat('Success rate', v.success_rate === null || v.success_rate === undefined ? '—' : `${num(v.success_rate * 100, 1)}%`, 'success'),
      sum.whatsapp ? stat('WhatsApp conversations', num(sum.whatsapp.total_conversations), 'whatsapp') : null),
    h('div', { class: 'charts' },
      barChart(daily, (d) => d.voice.total_minutes, { title: 'Voice minutes per day', unit: 'min', cls: '', id: 'chart-minutes', digits: 2 }),
      barChart(daily, (d) => d.voice.total_conversations, { title: 'Voice conversations per day', unit: 'conversations', cls: 'conv', id: 'chart-conversations' }),
      barChart(daily, (d) => d.voice.total_sip_refer_minutes, { title: 'Transfer minutes per day', unit: 'min', cls: 'xfer', id: 'chart-transfer', digits: 2 })),
    h('h2', {}, 'By agent'),
    byAgent.length
      ? h('table', { 'data-testid': 'by-agent' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Agent'), h('th', { class: 'num' }, 'Conversations'), h('th', { class: 'num' }, 'Voice minutes'), h('th', { class: 'num' }, 'Transfer minutes'))),
        h('tbody', {}, byAgent.map((a) => h('tr', { 'data-agent': a.agent_id },
          h('td', {}, a.agent_name || `#${a.agent_id}`), h('td', { class: 'num' }, num(a.total_conversations)),
          h('td', { class: 'num' }, num(a.voice_minutes, 2)), h('td', { class: 'num' }, num(a.sip_refer_minutes, 2))))))
      : h('div', { class: 'panel empty' }, 'No agent had conversations in this range.'));
}
