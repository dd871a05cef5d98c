// Console shell: sign-in, navigation, and the page router (hash based, so
// every page is a plain GET of /console/ and needs no server routes).
import { api, ApiError, h, setSession, getSession, errorBox, runLeave } from './api.js';
import { overviewPage, lookupsPage, lookupPage, importPage, webhooksPage, webhookPage } from './pages.js';
import { segmentsPage } from './segments.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');

const routes = [
  [/^#\/overview$/, () => overviewPage()],
  [/^#\/lookups(?:\?(.*))?$/, (m) => lookupsPage(new URLSearchParams(m[1] || ''))],
  [/^#\/lookup\/([0-9a-f-]+)$/, (m) => lookupPage(m[1])],
  [/^#\/segments(?:\?(.*))?$/, (m) => segmentsPage(new URLSearchParams(m[1] || ''))],
  [/^#\/import$/, () => importPage()],
  [/^#\/webhooks$/, () => webhooksPage()],
  [/^#\/webhook\/([0-9a-f-]+)$/, (m) => webhookPage(m[1])],
];

async function route() {
  runLeave();
  if (!getSession()) return;
  const hash = location.hash || '#/overview';
  for (const a of nav.querySelectorAll('a')) {
    a.classList.toggle('active', hash.startsWith(a.getAttribute('href').split('?')[0]));
  }
  const match = routes.map(([re, page]) => [hash.match(re), page]).find(([m]) => m);
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  delete main.dataset.route;
  try {
    const page = match ? await match[1](match[0]) : h('p', {}, 'No such page.');
    if ((location.hash || '#/overview') !== hash) return; // the user moved on
    main.replaceChildren(page);
    main.dataset.route = hash;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { showSignIn('Your session has ended; sign in again.'); return; }
    main.replaceChildren(errorBox(err));
  }
}

function signedIn(session) {
  setSession(session);
  nav.hidden = false;
  signOut.hidden = false;
  who.replaceChildren(`${session.name} · ${session.access === 'read_write' ? 'read-write' : 'read-only'}`);
  who.dataset.access = session.access;
  route();
}

function showSignIn(message) {
  setSession(null);
  nav.hidden = true;
  signOut.hidden = true;
  who.replaceChildren();
  const token = h('input', { id: 'signin-token', type: 'password', autocomplete: 'off', required: true, size: 40 });
  const status = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { id: 'signin-form', class: 'card' },
    h('h2', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste an API token (API_TOKENS, or API_READ_TOKENS for read-only). It is exchanged for a session cookie and not kept in this browser.'),
    h('label', {}, 'API token', token),
    h('p', {}, h('button', { id: 'signin-submit', type: 'submit' }, 'Sign in')),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const session = await api('/console/session', { method: 'POST', body: { token: token.value } });
      token.value = '';
      if (!location.hash) location.hash = '#/overview';
      signedIn(session);
    } catch (err) {
      status.textContent = err instanceof ApiError && err.status === 401
        ? 'That token is not accepted.' : String(err.message || err);
    }
  });
  main.replaceChildren(h('section', { class: 'signin' }, form));
}

signOut.addEventListener('click', async () => {
  try { await api('/console/session', { method: 'DELETE' }); } catch { /* cookie cleared anyway below */ }
  runLeave();
  showSignIn('Signed out.');
});

window.addEventListener('hashchange', route);

try {
  signedIn(await api('/console/session'));
} catch (err) {
  showSignIn(err instanceof ApiError && err.status === 401 ? '' : String(err.message || err));
}
