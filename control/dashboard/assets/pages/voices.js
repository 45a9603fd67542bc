// Voices (agency key): the catalogue agents choose from; adding a voice and
// retiring one (agents that use it keep it).
import { get, post, del, APIError } from '../api.js';
import { h, mount, banner, badge, busy, needs, loading } from '../ui.js';
import { languages } from '../meta.js';

export async function render(el, _parts, ctx) {
  mount(el, h('h1', {}, 'Voices'), loading());
  let voices, langs;
  try {
    [voices, langs] = await Promise.all([get('/api/voices'), languages()]);
  } catch (e) {
    if (e instanceof APIError && e.status === 403) { mount(el, h('h1', {}, 'Voices'), needs('a key that reads the catalogue', e)); return; }
    throw e;
  }
  if (ctx.stale()) return;
  const refresh = () => render(el, [], ctx);
  const rows = voices.map((v) => h('tr', { 'data-voice': v.id },
    h('td', {}, h('strong', {}, v.name), h('div', { class: 'muted small' }, `#${v.id} · ${v.external_voice_id}`)),
    h('td', {}, v.language), h('td', {}, v.gender || '—'), h('td', {}, v.accent || '—'), h('td', {}, badge(v.status)),
    h('td', {}, h('button', {
      class: 'danger', 'data-action': 'retire',
      onclick: (ev) => busy(ev.target, async () => { await del(`/api/agency/voices/${v.id}`); banner(`${v.name} is retired; agents using it keep it.`, 'info'); refresh(); }),
    }, 'Retire'))));
  const f = {
    name: h('input', { id: 'v-name', required: true }),
    ext: h('input', { id: 'v-ext', required: true, placeholder: 'the provider\'s voice id' }),
    language: h('select', { id: 'v-lang' }, (langs.length ? langs : ['en']).map((l) => h('option', { value: l }, l))),
    gender: h('input', { id: 'v-gender', placeholder: 'optional' }),
    accent: h('input', { id: 'v-accent', placeholder: 'optional' }),
  };
  const add = h('button', { class: 'primary', type: 'submit' }, 'Add voice');
  const form = h('form', {
    class: 'panel grid',
    onsubmit: (ev) => {
      ev.preventDefault();
      busy(add, async () => {
        const b = { name: f.name.value.trim(), external_voice_id: f.ext.value.trim(), language: f.language.value };
        if (f.gender.value.trim()) b.gender = f.gender.value.trim();
        if (f.accent.value.trim()) b.accent = f.accent.value.trim();
        const v = await post('/api/agency/voices', b);
        banner(`Added ${v.name}.`, 'info');
        refresh();
      });
    },
  }, h('label', { for: 'v-name' }, 'Name'), f.name, h('label', { for: 'v-ext' }, 'Provider voice id'), f.ext,
  h('label', { for: 'v-lang' }, 'Language'), f.language, h('label', { for: 'v-gender' }, 'Gender'), f.gender,
  h('label', { for: 'v-accent' }, 'Accent'), f.accent, h('div', { class: 'full actions' }, add));
  mount(el, h('h1', {}, 'Voices'),
    h('table', { 'data-testid': 'voices' }, h('thead', {}, h('tr', {}, ['Voice', 'Language', 'Gender', 'Accent', 'Status', ''].map((t) => h('th', {}, t)))), h('tbody', {}, rows)),
    h('h2', {}, 'Add a voice'), form);
}
