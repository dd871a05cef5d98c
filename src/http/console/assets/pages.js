// Overview, lookups (live), one lookup with its profile and deliveries,
// import, and webhooks.
import { api, ApiError, h, query, canWrite, statusBadge, sandboxBadge, when, errorBox, onLeave } from './api.js';
import { renderResult } from './profile.js';

/** Statuses only move forward; `expired` may still become `completed`
 * (the service's rule: `LookupStatus::may_become`, src/lifecycle.rs). */
const RANK = { pending: 0, queued: 1, processing: 2, expired: 3, failed: 4, completed: 4 };
const EVENT_TYPES = ['queued', 'processing', 'completed', 'failed', 'expired'].map((s) => `lookup.${s}`);

let statuses = null;
/** The lookup statuses, as the API document names them (one source: the
 * service's `LookupStatus`), fetched once. */
function lookupStatuses() {
  statuses = statuses || api('/openapi.json').then((doc) => doc.components.schemas.LookupStatus.enum);
  return statuses;
}

/** Follows /v1/events; `handler(data)` gets each lookup status change. */
function followEvents(handler) {
  const source = new EventSource('/v1/events');
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (e) => {
      try { handler(JSON.parse(e.data)); } catch { /* not JSON: ignore */ }
    });
  }
  onLeave(() => source.close());
  return source;
}

/** An endpoint's state in words: why it is disabled, or since when it fails. */
function hookState(w) {
  if (w.disabled) return w.disabled_reason === 'failing' ? 'disabled: failed for days' : 'disabled';
  return w.failing_since ? `failing since ${when(w.failing_since)}` : 'active';
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return 'none in flight';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function countTable(counts, link) {
  return h('table', {}, Object.entries(counts).map(([k, v]) => h('tr', {},
    h('td', {}, link ? h('a', { href: link(k) }, k) : k), h('td', { 'data-count': k }, String(v)))));
}

// --- overview ---------------------------------------------------------------

function creditsChart(days) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs, ...kids) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    for (const kid of kids) el.appendChild(typeof kid === 'string' ? document.createTextNode(kid) : kid);
    return el;
  };
  const width = 640; const height = 180; const pad = 24;
  const max = Math.max(5, ...days.map((d) => d.credits));
  const bar = (width - pad * 2) / days.length;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'bars', role: 'img', id: 'credits-chart',
    'aria-label': 'credits spent per day' });
  days.forEach((d, i) => {
    const barHeight = ((height - pad * 2) * d.credits) / max;
    const x = pad + i * bar;
    const rect = svg('rect', { x: x + 1, y: height - pad - barHeight, width: Math.max(1, bar - 2), height: barHeight,
      'data-date': d.date, 'data-credits': d.credits });
    rect.appendChild(svg('title', {}, `${d.date}: ${d.credits} credits, ${d.completed} completed`));
    root.appendChild(rect);
    if (i % 5 === 0 || i === days.length - 1) {
      root.appendChild(svg('text', { x, y: height - 6 }, d.date.slice(5)));
    }
  });
  root.appendChild(svg('text', { x: 2, y: pad - 8 }, `max ${max}`));
  return root;
}

export async function overviewPage() {
  const [stats, credits] = await Promise.all([api('/v1/stats'), api('/v1/stats/credits?days=30')]);
  const total = credits.days.reduce((sum, d) => sum + d.credits, 0);
  return h('div', {},
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', id: 'lookups-by-status' }, h('h3', {}, 'Lookups by status'),
        countTable(stats.lookups, (s) => `#/lookups?status=${s}`)),
      h('section', { class: 'card', id: 'deliveries-by-outcome' }, h('h3', {}, 'Callback deliveries by outcome'),
        countTable(stats.deliveries)),
      h('section', { class: 'card' }, h('h3', {}, 'Work'),
        h('div', { class: 'kv' },
          h('div', { class: 'muted' }, 'oldest unfinished job'), h('div', { id: 'oldest-unfinished' }, ago(stats.oldest_unfinished_seconds)),
          h('div', { class: 'muted' }, 'submits'), h('div', {}, String(stats.submits)),
          h('div', { class: 'muted' }, 'polls'), h('div', {}, String(stats.polls)),
          h('div', { class: 'muted' }, 'ambiguous submits'), h('div', {}, String(stats.ambiguous_submits)),
          h('div', { class: 'muted' }, 'credits today / month / total'),
          h('div', {}, `${stats.credits.today} / ${stats.credits.this_month} / ${stats.credits.total}`),
          stats.credits.daily_budget != null ? [h('div', { class: 'muted' }, 'daily budget'), h('div', {}, String(stats.credits.daily_budget))] : null))),
    h('section', { class: 'card' }, h('h3', {}, `Credits spent per day, last 30 days (${total} in all)`),
      creditsChart(credits.days)));
}

// --- lookups ----------------------------------------------------------------

function lookupRow(l) {
  const s = l.subject || {};
  const who = s.email || s.phone || s.social_media_url || [s.name, s.company].filter(Boolean).join(' · ') || '—';
  return h('tr', { 'data-lookup-id': l.id },
    h('td', {}, h('a', { href: `#/lookup/${l.id}` }, who), ' ', sandboxBadge(l)),
    h('td', { class: 'status-cell' }, statusBadge(l.status)),
    h('td', {}, when(l.created_at)),
    h('td', {}, String(l.credits_charged ?? 0)));
}

function newLookupForm(onCreated) {
  const fields = ['email', 'phone', 'social_media_url', 'name', 'company'];
  const inputs = Object.fromEntries(fields.map((f) => [f, h('input', { name: f, id: `new-${f}`, size: f === 'social_media_url' ? 28 : 18 })]));
  const refresh = h('input', { type: 'checkbox', name: 'refresh' });
  const message = h('p', { role: 'status' });
  const form = h('form', { id: 'new-lookup-form', class: 'inline', 'data-write': 'true' },
    fields.map((f) => h('label', {}, f.replace(/_/g, ' '), inputs[f])),
    h('label', {}, 'refresh', refresh),
    h('button', { type: 'submit', id: 'new-lookup-submit' }, 'Look up'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {};
    for (const f of fields) if (inputs[f].value.trim()) body[f] = inputs[f].value.trim();
    if (refresh.checked) body.refresh = true;
    try {
      const lookup = await api('/v1/lookups', { method: 'POST', body });
      message.className = '';
      message.textContent = `Lookup ${lookup.id}: ${lookup.status}.`;
      for (const f of fields) inputs[f].value = '';
      onCreated(lookup);
    } catch (err) {
      message.className = 'error';
      message.textContent = err instanceof ApiError && err.problem && err.problem.errors
        ? err.problem.errors.map((e) => `${e.field}: ${e.message}`).join('; ') : String(err.message);
    }
  });
  return h('section', { class: 'card' }, h('h3', {}, 'New lookup'), form, message);
}

export async function lookupsPage(params) {
  const status = params.get('status') || '';
  const tbody = h('tbody', { id: 'lookup-rows' });
  const rows = new Map();
  const shown = new Map();
  const upsert = (lookup, atTop) => {
    // Answers can arrive out of order (a POST answer after the completion
    // event): never move a row back to an earlier status.
    if (RANK[shown.get(lookup.id)] > RANK[lookup.status]) return;
    shown.set(lookup.id, lookup.status);
    if (status && lookup.status !== status) {
      const old = rows.get(lookup.id);
      if (old) { old.remove(); rows.delete(lookup.id); }
      return;
    }
    const row = lookupRow(lookup);
    const old = rows.get(lookup.id);
    if (old) old.replaceWith(row);
    else if (atTop) tbody.prepend(row);
    else tbody.append(row);
    rows.set(lookup.id, row);
  };
  const live = h('span', { id: 'live-state', class: 'muted' }, 'connecting…');
  // Subscribe before listing, so no change between the two is missed.
  const source = followEvents(async (event) => {
    if (!event.lookup_id) return;
    const known = rows.get(event.lookup_id);
    if (known && event.status && RANK[event.status] >= RANK[shown.get(event.lookup_id)]) {
      const cell = known.querySelector('.status-cell');
      cell.replaceChildren(statusBadge(event.status));
    }
    try { upsert(await api(`/v1/lookups/${event.lookup_id}`), !known); } catch { /* erased meanwhile */ }
  });
  source.addEventListener('open', () => { live.textContent = 'live'; live.dataset.live = 'true'; });
  source.addEventListener('error', () => { live.textContent = 'reconnecting…'; live.dataset.live = 'false'; });

  const page = await api(`/v1/lookups${query({ status, limit: 100 })}`);
  for (const lookup of page.items) upsert(lookup, false);
  const allStatuses = await lookupStatuses();

  const filter = h('select', { id: 'status-filter' }, h('option', { value: '' }, 'any status'),
    allStatuses.map((s) => h('option', { value: s, selected: s === status }, s)));
  filter.addEventListener('change', () => { location.hash = `#/lookups${query({ status: filter.value })}`; });
  return h('div', {},
    h('h1', {}, 'Lookups ', live),
    canWrite() ? newLookupForm((lookup) => upsert(lookup, true)) : null,
    h('section', { class: 'card' },
      h('label', {}, 'status', filter),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'person'), h('th', {}, 'status'), h('th', {}, 'created'), h('th', {}, 'credits'))), tbody),
      page.next_cursor ? h('p', { class: 'muted' }, 'Showing the newest 100.') : null));
}

// --- one lookup -------------------------------------------------------------

export async function lookupPage(id) {
  const lookup = await api(`/v1/lookups/${id}`);
  let deliveries = null;
  let deliveriesError = null;
  try { deliveries = await api(`/v1/deliveries${query({ lookup_id: id, limit: 100 })}`); } catch (err) { deliveriesError = err; }
  const s = lookup.subject || {};
  const head = h('section', { class: 'card' },
    h('h1', {}, 'Lookup ', statusBadge(lookup.status), ' ', sandboxBadge(lookup, lookup.profile)),
    h('div', { class: 'kv' },
      Object.entries(s).filter(([, v]) => v).map(([k, v]) => [h('div', { class: 'muted' }, k), h('div', {}, v)]),
      h('div', { class: 'muted' }, 'id'), h('div', { id: 'lookup-id' }, lookup.id),
      h('div', { class: 'muted' }, 'request id'), h('div', {}, lookup.request_id || '—'),
      h('div', { class: 'muted' }, 'created'), h('div', {}, when(lookup.created_at)),
      h('div', { class: 'muted' }, 'completed'), h('div', {}, when(lookup.completed_at)),
      h('div', { class: 'muted' }, 'credits'), h('div', {}, String(lookup.credits_charged)),
      h('div', { class: 'muted' }, 'match basis'), h('div', {}, lookup.match_basis || '—'),
      (lookup.warnings || []).length ? [h('div', { class: 'muted' }, 'warnings'), h('div', { class: 'error' }, lookup.warnings.join('; '))] : null,
      lookup.error ? [h('div', { class: 'muted' }, 'error'), h('div', { class: 'error' }, String(lookup.error))] : null,
      Object.keys(lookup.metadata || {}).length ? [h('div', { class: 'muted' }, 'metadata'), h('pre', {}, JSON.stringify(lookup.metadata, null, 2))] : null));
  const profile = lookup.profile
    ? h('div', {}, h('h2', {}, 'Profile ', h('span', { class: 'muted' }, `received via ${lookup.profile.received_via}, completed ${when(lookup.profile.completed_on)}`)),
      renderResult(lookup.profile.result))
    : h('p', { class: 'muted' }, 'No profile yet.');
  const deliveryTable = deliveriesError ? errorBox(deliveriesError) : (deliveries.items.length === 0
    ? h('p', { class: 'muted' }, 'No callback deliveries (a poll may have fetched the result).')
    : h('table', { id: 'delivery-rows' }, h('tr', {}, ['received', 'request id', 'payload status', 'outcome', 'reason'].map((t) => h('th', {}, t))),
      deliveries.items.map((d) => h('tr', {}, h('td', {}, when(d.received_at)), h('td', {}, d.request_id || '—'),
        h('td', {}, d.payload_status || '—'), h('td', {}, d.outcome), h('td', {}, d.reason || '')))));
  const history = lookup.profile ? await profileHistory(lookup.profile.id) : null;
  if (!['completed', 'failed', 'expired'].includes(lookup.status)) {
    followEvents((event) => { if (event.lookup_id === id) window.dispatchEvent(new HashChangeEvent('hashchange')); });
  }
  return h('div', {}, head, profile, history, h('section', { class: 'card' }, h('h3', {}, 'Delivery history'), deliveryTable));
}

const FACETS = ['interest', 'category', 'brand', 'archetype', 'industry'];

/** The person's earlier versions and what each refresh changed, newest first. */
async function profileHistory(profileId) {
  let changes;
  try { changes = await api(`/v1/profiles/${profileId}/changes`); } catch (err) { return errorBox(err); }
  if (changes.items.length === 0) {
    return h('section', { class: 'card' }, h('h3', {}, 'History'), h('p', { class: 'muted' }, 'No earlier version of this person.'));
  }
  const list = (values) => values.length ? values.join(', ') : '—';
  const rows = changes.items.flatMap((c) => FACETS
    .filter((f) => c.added[f].length || c.removed[f].length)
    .map((f) => h('tr', {}, h('td', {}, when(c.at)), h('td', {}, f), h('td', {}, list(c.added[f])), h('td', {}, list(c.removed[f]))))
    .concat([h('tr', {}, h('td', {}, when(c.at)), h('td', {}, 'following'),
      h('td', { colspan: '2' }, `${c.following_count.before ?? '—'} → ${c.following_count.after ?? '—'}`)),
    ]));
  return h('section', { class: 'card' }, h('h3', {}, `History (${changes.items.length + 1} versions)`),
    h('table', { id: 'history-rows' }, h('tr', {}, ['at', 'facet', 'added', 'removed'].map((t) => h('th', {}, t))), rows));
}

// --- import -----------------------------------------------------------------

/** RFC 4180 CSV: quoted fields, doubled quotes, CRLF or LF. Returns rows with their line numbers. */
export function parseCsv(text) {
  const rows = [];
  let row = []; let field = ''; let quoted = false; let line = 1; let rowLine = 1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (c === '"') quoted = false;
      else { if (c === '\n') line += 1; field += c; }
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      row.push(field); field = '';
      if (row.some((v) => v !== '')) rows.push({ line: rowLine, values: row });
      row = []; line += 1; rowLine = line;
    } else field += c;
  }
  row.push(field);
  if (row.some((v) => v !== '')) rows.push({ line: rowLine, values: row });
  return rows;
}

const IDENTIFIERS = ['email', 'phone', 'social_media_url', 'name', 'company'];

export function importPage() {
  if (!canWrite()) {
    return h('div', {}, h('h1', {}, 'Import'), h('p', { class: 'muted' }, 'Importing needs a read-write token; this session is read-only.'));
  }
  const file = h('input', { type: 'file', id: 'import-file', accept: '.csv,text/csv' });
  const progress = h('progress', { id: 'import-progress', max: 1, value: 0 });
  const counts = h('p', { id: 'import-counts' });
  const problems = h('ul', { id: 'import-problems', class: 'error' });
  const state = { rows: 0, sent: 0, accepted: 0, bad: 0, done: 0, completed: 0, failed: 0 };
  const pending = new Set();
  const show = () => {
    counts.textContent = `${state.rows} rows · sent ${state.sent} · accepted ${state.accepted} · bad ${state.bad} · completed ${state.completed} · failed/expired ${state.failed} · in flight ${pending.size}`;
    progress.max = Math.max(1, state.rows);
    progress.value = state.bad + state.completed + state.failed;
  };
  const finish = (id, status) => {
    if (!pending.has(id)) return;
    if (status === 'completed') state.completed += 1;
    else if (status === 'failed' || status === 'expired') state.failed += 1;
    else return;
    pending.delete(id);
    show();
  };
  const go = h('button', { type: 'button', id: 'import-start', 'data-write': 'true' }, 'Import');
  go.addEventListener('click', async () => {
    if (!file.files[0]) return;
    const rows = parseCsv(await file.files[0].text());
    if (rows.length < 2) { problems.replaceChildren(h('li', {}, 'The file needs a header row and at least one person.')); return; }
    const header = rows[0].values.map((v) => v.trim());
    const people = rows.slice(1);
    state.rows = people.length; show();
    followEvents((event) => finish(event.lookup_id, event.status));
    for (let start = 0; start < people.length; start += 500) {
      const chunk = people.slice(start, start + 500);
      const items = chunk.map(({ values }) => {
        const item = {}; const metadata = {};
        header.forEach((name, i) => {
          const value = (values[i] ?? '').trim();
          if (!value) return;
          if (IDENTIFIERS.includes(name.toLowerCase())) item[name.toLowerCase()] = value; else metadata[name] = value;
        });
        if (Object.keys(metadata).length) item.metadata = metadata;
        return item;
      });
      let answer;
      try {
        answer = await api('/v1/lookups/batch', { method: 'POST', body: { items } });
      } catch (err) { problems.append(h('li', {}, `rows ${chunk[0].line}–${chunk[chunk.length - 1].line}: ${err.message}`)); state.bad += chunk.length; show(); continue; }
      state.sent += chunk.length;
      for (const item of answer.items) {
        const line = chunk[item.index].line;
        if (item.lookup) {
          state.accepted += 1;
          pending.add(item.lookup.id);
          finish(item.lookup.id, item.lookup.status);
        } else {
          state.bad += 1;
          const p = item.problem || {};
          const fields = (p.errors || []).map((e) => `${e.field}: ${e.message}`).join('; ');
          problems.append(h('li', {}, `line ${line}: ${fields || p.detail || item.status}`));
        }
      }
      show();
    }
    // Catch up on lookups that finished before the stream saw them.
    for (const id of [...pending]) {
      try { const l = await api(`/v1/lookups/${id}`); finish(id, l.status); } catch { /* ignore */ }
    }
  });
  return h('div', {}, h('h1', {}, 'Import'),
    h('section', { class: 'card' },
      h('p', { class: 'muted' }, 'A CSV with a header row: email, phone, social_media_url, name, company are identifiers (any case); other columns become metadata. Rows already looked up are not paid twice.'),
      h('p', {}, file, ' ', go), progress, counts, problems));
}

// --- webhooks ---------------------------------------------------------------

export async function webhooksPage() {
  const list = await api('/v1/webhooks');
  const table = h('table', { id: 'webhook-rows' },
    h('tr', {}, ['url', 'events', 'description', 'state', 'created'].map((t) => h('th', {}, t))),
    list.items.map((w) => h('tr', { 'data-webhook-id': w.id },
      h('td', {}, h('a', { href: `#/webhook/${w.id}` }, w.url)),
      h('td', {}, (w.events || []).join(', ')), h('td', {}, w.description || ''),
      h('td', {}, hookState(w)), h('td', {}, when(w.created_at)))));
  let form = null;
  if (canWrite()) {
    const url = h('input', { name: 'url', id: 'webhook-url', size: 40, required: true });
    const description = h('input', { name: 'description', size: 24 });
    const message = h('div', { role: 'status' });
    form = h('section', { class: 'card' }, h('h3', {}, 'New endpoint'),
      h('form', { class: 'inline', id: 'webhook-form', 'data-write': 'true', onsubmit: async (e) => {
        e.preventDefault();
        try {
          const created = await api('/v1/webhooks', { method: 'POST', body: { url: url.value.trim(), description: description.value.trim() || undefined } });
          message.replaceChildren(h('p', {}, 'Created. Its signing secret is shown once: '), h('pre', { id: 'webhook-secret' }, created.secret),
            h('p', {}, h('a', { href: `#/webhook/${created.id}`, 'data-new-webhook': created.id }, 'Open the endpoint')));
          url.value = '';
          description.value = '';
        } catch (err) { message.replaceChildren(errorBox(err)); }
      } }, h('label', {}, 'url', url), h('label', {}, 'description', description), h('button', { type: 'submit' }, 'Add')),
      message);
  }
  return h('div', {}, h('h1', {}, 'Webhooks'), form, h('section', { class: 'card' }, list.items.length ? table : h('p', { class: 'muted' }, 'No endpoints yet.')));
}

function attemptsTable(attempts) {
  return attempts.items.length === 0 ? h('p', { class: 'muted' }, 'No attempts yet.')
    : h('table', { id: 'attempt-rows' }, h('tr', {}, ['at', 'event', 'type', 'attempt', 'status', 'error', 'ms'].map((t) => h('th', {}, t))),
      attempts.items.map((a) => h('tr', { 'data-status-code': a.status_code ?? '' }, h('td', {}, when(a.at)), h('td', {}, String(a.event_id)), h('td', {}, a.type),
        h('td', {}, String(a.attempt)), h('td', {}, a.status_code == null ? '—' : String(a.status_code)),
        h('td', {}, a.error || ''), h('td', {}, String(a.duration_ms)))));
}

export async function webhookPage(id) {
  const [hook, attempts] = await Promise.all([api(`/v1/webhooks/${id}`), api(`/v1/webhooks/${id}/attempts?limit=100`)]);
  // Attempts refresh on their own while the page is open.
  const attemptsBox = h('div', {}, attemptsTable(attempts));
  const timer = setInterval(async () => {
    try { attemptsBox.replaceChildren(attemptsTable(await api(`/v1/webhooks/${id}/attempts?limit=100`))); } catch { /* next time */ }
  }, 2000);
  onLeave(() => clearInterval(timer));
  const controls = [];
  if (canWrite()) {
    const since = h('input', { type: 'datetime-local', id: 'replay-since' });
    const message = h('span', { role: 'status', id: 'replay-message' });
    controls.push(h('form', { class: 'inline', 'data-write': 'true', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const from = since.value ? new Date(since.value) : new Date(Date.now() - 24 * 3600 * 1000);
        const answer = await api(`/v1/webhooks/${id}/replay`, { method: 'POST', body: { since: from.toISOString() } });
        message.textContent = `${answer.queued} events queued again.`;
        message.dataset.queued = String(answer.queued);
      } catch (err) { message.replaceChildren(errorBox(err)); }
    } }, h('label', {}, 'replay events since (default: 24 h ago)', since), h('button', { type: 'submit', id: 'replay-submit' }, 'Replay'), message));
    const toggle = h('button', { type: 'button', class: 'secondary', 'data-write': 'true', onclick: async () => {
      await api(`/v1/webhooks/${id}`, { method: 'PATCH', body: { disabled: !hook.disabled } });
      window.dispatchEvent(new HashChangeEvent('hashchange'));
    } }, hook.disabled ? 'Enable' : 'Disable');
    const remove = h('button', { type: 'button', class: 'secondary', 'data-write': 'true', onclick: async () => {
      if (!window.confirm('Delete this endpoint?')) return;
      await api(`/v1/webhooks/${id}`, { method: 'DELETE' });
      location.hash = '#/webhooks';
    } }, 'Delete');
    controls.push(h('p', {}, toggle, ' ', remove));
  }
  return h('div', {},
    h('section', { class: 'card' }, h('h1', {}, hook.url),
      h('p', {}, `events: ${(hook.events || []).join(', ')} · ${hookState(hook)}`),
      hook.description ? h('p', {}, hook.description) : null, controls),
    h('section', { class: 'card' }, h('h3', {}, 'Attempts'), attemptsBox));
}
