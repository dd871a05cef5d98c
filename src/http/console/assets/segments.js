// Segments: profile search with the contract's filters, facet counts to
// click on, and the segment as a CSV download (built in the browser from
// the paged profile list, the columns of `interests-receiver export`).
import { api, h, query, allPages, sandboxBadge, when } from './api.js';
import { label } from './profile.js';

const FILTERS = ['interest', 'category', 'brand', 'archetype', 'industry', 'email', 'phone', 'social_media_url'];
const FACETS = ['category', 'interest', 'brand', 'archetype', 'industry'];

function filtersOf(params) {
  return Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || '']).filter(([, v]) => v));
}

function go(filters) { location.hash = `#/segments${query(filters)}`; }

/** The searchable values of a profile, as the export CSV lists them. */
function extract(result) {
  const r = result || {};
  const graph = r.interest_graph && typeof r.interest_graph === 'object' ? r.interest_graph : {};
  return {
    archetypes: (r.core_profile && r.core_profile.archetypes) || [],
    categories: Object.keys(graph),
    interests: Object.values(graph).flatMap((c) => ((c && c.interests) || []).map(label)),
    brands: (Array.isArray(r.brand_affinities) ? r.brand_affinities : []).flatMap((a) => a.brands || []),
    industries: ((r.professional_ecosystem && r.professional_ecosystem.industry_focus) || []).map(label),
  };
}

/** A CSV field a spreadsheet shows and never runs: text starting like a
 * formula (=, +, -, @, tab, CR) gets a leading ' (OWASP, CSV injection), as
 * `interests-receiver export` does. */
function csvField(value) {
  const raw = value == null ? '' : String(value);
  const s = /^[=+\-@\t\r]/.test(raw) ? `'${raw}` : raw;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function segmentCsv(profiles) {
  const header = ['id', 'lookup_id', 'email', 'phone', 'social_media_url', 'name', 'company', 'completed_on',
    'archetypes', 'categories', 'interests', 'brands', 'industries'];
  const lines = [header.join(',')];
  for (const p of profiles) {
    const s = p.subject || {};
    const x = extract(p.result);
    lines.push([p.id, p.lookup_id, s.email, s.phone, s.social_media_url, s.name, s.company, p.completed_on,
      x.archetypes.join('; '), x.categories.join('; '), x.interests.join('; '), x.brands.join('; '), x.industries.join('; ')]
      .map(csvField).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

export async function segmentsPage(params) {
  const filters = filtersOf(params);
  const [page, ...facets] = await Promise.all([
    api(`/v1/profiles${query({ ...filters, limit: 50 })}`),
    ...FACETS.map((field) => api(`/v1/facets${query({ ...filters, field, limit: 15 })}`).catch((err) => ({ field, error: err }))),
  ]);

  const inputs = Object.fromEntries(FILTERS.map((f) => [f, h('input', { name: f, id: `filter-${f}`, value: filters[f] || '', size: 14 })]));
  const form = h('form', { class: 'inline', id: 'segment-form', onsubmit: (e) => {
    e.preventDefault();
    go(Object.fromEntries(FILTERS.map((f) => [f, inputs[f].value.trim()])));
  } }, FILTERS.map((f) => h('label', {}, f.replace(/_/g, ' '), inputs[f])), h('button', { type: 'submit' }, 'Search'),
  h('button', { type: 'button', class: 'secondary', onclick: () => go({}) }, 'Clear'));

  const facetCards = facets.map((f) => h('section', { class: 'card', 'data-facet': f.field },
    h('h3', {}, f.field),
    f.error ? h('p', { class: 'error' }, String(f.error.message))
      : (f.values.length === 0 ? h('p', { class: 'muted' }, 'none')
        : h('div', {}, f.values.map((v) => h('button', { type: 'button', class: 'chip', 'data-facet-value': v.value,
          onclick: () => go({ ...filters, [f.field]: v.value }) }, v.value, h('span', { class: 'count' }, String(v.count))))))));

  const status = h('span', { id: 'download-status', class: 'muted' });
  const download = h('button', { type: 'button', id: 'download-csv', onclick: async () => {
    status.textContent = 'collecting…';
    const profiles = await allPages('/v1/profiles', filters);
    const url = URL.createObjectURL(new Blob([segmentCsv(profiles)], { type: 'text/csv' }));
    const a = h('a', { href: url, download: 'segment.csv' });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = `${profiles.length} profiles in segment.csv`;
    status.dataset.count = String(profiles.length);
  } }, 'Download CSV');

  const active = Object.entries(filters);
  return h('div', {},
    h('h1', {}, 'Segments'),
    h('section', { class: 'card' }, form,
      active.length ? h('p', { id: 'active-filters' }, 'Filters: ', active.map(([k, v]) => h('span', { class: 'badge', 'data-filter': k }, `${k} = ${v}`))) : null),
    h('div', { class: 'grid' }, facetCards),
    h('section', { class: 'card' },
      h('h3', {}, `Profiles${page.next_cursor ? ' (first 50)' : ` (${page.items.length})`} `, download, ' ', status),
      h('table', { id: 'profile-rows' }, h('tr', {}, ['person', 'archetypes', 'brands', 'completed'].map((t) => h('th', {}, t))),
        page.items.map((p) => {
          const s = p.subject || {};
          const x = extract(p.result);
          return h('tr', { 'data-profile-id': p.id },
            h('td', {}, h('a', { href: `#/lookup/${p.lookup_id}` }, s.email || s.phone || s.social_media_url || s.name || p.id), ' ', sandboxBadge(p)),
            h('td', {}, x.archetypes.join(', ')), h('td', {}, x.brands.join(', ')), h('td', {}, when(p.completed_on)));
        }))));
}
