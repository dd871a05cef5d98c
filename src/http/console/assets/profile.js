// A profile's result, section by section, for a person to read. Sections
// and fields are shown as received: unknown ones fall back to a generic
// rendering instead of being dropped.
import { h } from './api.js';

const TITLES = {
  core_profile: 'Core profile',
  interest_graph: 'Interests',
  brand_affinities: 'Brands',
  professional_ecosystem: 'Industries',
  location_intelligence: 'Location',
  cultural_dna: 'Culture',
  psychographics: 'Psychographics',
  social_graph_clusters: 'Social clusters',
};
const ORDER = Object.keys(TITLES);

function accounts(list) {
  if (!Array.isArray(list) || list.length === 0) return null;
  return h('div', { class: 'accounts' }, 'supporting accounts: ', list.map(String).join(', '));
}

function badges(values, kind) {
  return h('div', {}, (values || []).map((v) => h('span', { class: 'badge', 'data-kind': kind }, typeof v === 'string' ? v : label(v))));
}

/** The label of an interest entry: its first string field other than supporting_accounts. */
export function label(entry) {
  if (typeof entry === 'string') return entry;
  if (!entry || typeof entry !== 'object') return String(entry);
  for (const [k, v] of Object.entries(entry)) {
    if (k !== 'supporting_accounts' && typeof v === 'string') return v;
  }
  return JSON.stringify(entry);
}

function human(key) { return key.replace(/_/g, ' '); }

function generic(value) {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, '—');
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== 'object' || v === null)) return badges(value);
    return h('ul', {}, value.map((v) => h('li', {}, generic(v))));
  }
  if (typeof value === 'object') {
    const rows = [];
    for (const [k, v] of Object.entries(value)) {
      if (k === 'supporting_accounts') continue;
      rows.push(h('div', { class: 'muted' }, human(k)), h('div', {}, generic(v)));
    }
    return h('div', {}, h('div', { class: 'kv' }, rows), accounts(value.supporting_accounts));
  }
  return h('span', {}, String(value));
}

const RENDER = {
  core_profile(s) {
    return h('div', {}, h('h4', {}, 'Archetypes'), badges(s.archetypes, 'archetype'), accounts(s.supporting_accounts),
      generic(Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'archetypes' && k !== 'supporting_accounts'))));
  },
  interest_graph(s) {
    return h('div', { class: 'grid' }, Object.entries(s || {}).map(([category, body]) => h('div', { 'data-category': category },
      h('h4', {}, human(category)),
      h('ul', {}, ((body && body.interests) || []).map((entry) => h('li', {},
        h('span', { 'data-kind': 'interest' }, label(entry)), accounts(entry && entry.supporting_accounts)))))));
  },
  brand_affinities(s) {
    return h('table', {}, h('tr', {}, h('th', {}, 'category'), h('th', {}, 'brands')),
      (Array.isArray(s) ? s : []).map((a) => h('tr', {}, h('td', {}, String(a.category ?? '')),
        h('td', {}, badges(a.brands, 'brand'), accounts(a.supporting_accounts)))));
  },
  professional_ecosystem(s) {
    return h('div', {}, badges((s.industry_focus || []).map(label), 'industry'), accounts(s.supporting_accounts),
      generic(Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'industry_focus' && k !== 'supporting_accounts'))));
  },
};

export function renderResult(result) {
  const keys = Object.keys(result || {});
  if (keys.length === 0) return h('p', { class: 'muted' }, 'No signals: upstream found no match (no credits charged).');
  const sections = keys.filter((k) => result[k] !== null && typeof result[k] === 'object')
    .sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
  const scalars = keys.filter((k) => !sections.includes(k));
  return h('div', { id: 'profile' },
    scalars.length ? h('p', {}, scalars.map((k) => h('span', { class: 'badge' }, `${human(k)}: ${result[k]}`))) : null,
    sections.map((key) => h('section', { class: 'card', 'data-section': key },
      h('h3', {}, TITLES[key] || human(key)),
      (RENDER[key] || generic)(result[key]))));
}
