// REST calls with the session cookie, and a small DOM builder.
//
// The API token is never kept here: sign-in exchanges it for an HttpOnly
// cookie. The CSRF token (a MAC of the session, not a secret that grants
// access by itself) lives only in this module's memory and is sent as
// X-CSRF-Token on every write.

let session = null;

export function setSession(value) { session = value; }
export function getSession() { return session; }
/** Read tokens see everything and get no write controls. */
export function canWrite() { return session !== null && session.access === 'read_write'; }

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf_token;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * h('tag', {attrs}, ...children): builds elements with text nodes only, so
 * values from upstream or users can never become markup.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function statusBadge(status) {
  return h('span', { class: `status status-${status}`, 'data-status': status }, status);
}

/** The visible mark of synthetic (sandbox) data. */
export function sandboxBadge(...objects) {
  return objects.some((o) => o && o.synthetic === true)
    ? h('span', { class: 'badge sandbox', 'data-synthetic': 'true' }, 'SANDBOX / synthetic data')
    : null;
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof ApiError
    ? `${err.status}: ${err.message}` : String(err));
}

/** Every page of a cursor-paged list, up to `max` items. */
export async function allPages(path, params, max = 100000) {
  const items = [];
  let cursor = null;
  do {
    const page = await api(path + query({ ...params, limit: 500, cursor }));
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

/** Pages register here what stops their timers and streams on leaving. */
let leaving = [];
export function onLeave(fn) { leaving.push(fn); }
export function runLeave() {
  for (const fn of leaving) { try { fn(); } catch { /* page already gone */ } }
  leaving = [];
}
