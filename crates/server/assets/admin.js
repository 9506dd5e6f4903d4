// The operator's page at /admin: log in with the admin secret, then watch every node and the
// busiest channels, look into one channel (presence, recent publications), publish to it and
// disconnect users or connections.
//
// The session is an HttpOnly cookie set by POST /admin/login; every call under /admin/api/
// also carries the CSRF token that came with it, in X-CSRF-Token. The endpoints under
// /admin/api/ are those of /api/ (docs/api.md), with the session instead of the API key.
// Channel names, presence info and publications are what strangers typed: everything is
// shown with textContent, never parsed as HTML.

/** Refresh period of the nodes, the channels and the open channel, in milliseconds. */
const INTERVAL = 2000;
/** Channels listed, busiest first. */
const CHANNEL_LIMIT = 100;
/** Publications shown for the open channel, newest first. */
const HISTORY_LIMIT = 20;
/** The most characters of compact JSON shown for one value. */
const JSON_CHARS = 2000;

const $ = (id) => document.getElementById(id);
const ui = {
  banner: $('banner'),
  logout: $('logout'),
  login: $('login'),
  loginForm: $('login-form'),
  secret: $('secret'),
  loginButton: $('login-button'),
  loginError: $('login-error'),
  console: $('console'),
  foot: $('foot'),
  nodes: $('nodes'),
  nodesSummary: $('nodes-summary'),
  totals: $('totals'),
  channels: $('channels'),
  channelsSummary: $('channels-summary'),
  channelsEmpty: $('channels-empty'),
  channelForm: $('channel-form'),
  channelInput: $('channel-input'),
  channelTitle: $('channel-title'),
  channelPosition: $('channel-position'),
  channelError: $('channel-error'),
  channelBody: $('channel-body'),
  presenceCount: $('presence-count'),
  presenceNote: $('presence-note'),
  presenceTable: $('presence-table'),
  presence: $('presence'),
  publishForm: $('publish-form'),
  publishData: $('publish-data'),
  publishButton: $('publish-button'),
  publishResult: $('publish-result'),
  historyNote: $('history-note'),
  history: $('history'),
  disconnectForm: $('disconnect-form'),
  disconnectBy: $('disconnect-by'),
  disconnectTarget: $('disconnect-target'),
  disconnectTargetLabel: $('disconnect-target-label'),
  disconnectCode: $('disconnect-code'),
  disconnectReason: $('disconnect-reason'),
  disconnectButton: $('disconnect-button'),
  disconnectResult: $('disconnect-result'),
};

/** The CSRF token of the session, or null when logged out. */
let csrf = null;
/** Bumped on every login and logout: answers to an older session are dropped. */
let generation = 0;
/** The channel open in the panel, or null. */
let openChannel = null;
let timer = null;
/** Bumped by each refresh: only the latest one schedules the next. */
let refreshes = 0;

/** A refusal from the server, with the `error` object of its body (docs/api.md, Errors). */
class ApiError extends Error {
  constructor(status, error, retryAfter) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? 'http';
    this.retryAfter = retryAfter;
  }
}

/** The session ended under us (401 from /admin/api/): back to the login form. */
class SessionExpired extends Error {}

/** No answer: the server is down, or the network between. */
class Unreachable extends Error {}

ui.loginForm.addEventListener('submit', (event) => {
  event.preventDefault();
  login();
});
ui.logout.addEventListener('click', logout);
ui.channelForm.addEventListener('submit', (event) => {
  event.preventDefault();
  open(ui.channelInput.value.trim());
});
ui.publishForm.addEventListener('submit', (event) => {
  event.preventDefault();
  publish();
});
ui.publishData.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    ui.publishForm.requestSubmit();
  }
});
ui.disconnectForm.addEventListener('submit', (event) => {
  event.preventDefault();
  disconnect();
});
for (const input of [ui.disconnectBy, ui.disconnectTarget]) {
  input.addEventListener('input', labelDisconnect);
}
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && csrf) refresh();
});
addEventListener('hashchange', () => {
  const channel = channelFromHash();
  if (channel && channel !== openChannel) open(channel);
});

labelDisconnect();
resume();

// Session ------------------------------------------------------------------------------------

/** On load: an existing session skips the login form. */
async function resume() {
  let response;
  try {
    response = await fetch('/admin/session', { credentials: 'same-origin', cache: 'no-store' });
  } catch {
    banner('Server unreachable, retrying', 'bad');
    setTimeout(resume, INTERVAL);
    return;
  }
  if (response.ok) {
    const body = await response.json();
    start(body.csrf);
  } else if (response.status === 401) {
    showLogin();
  } else {
    const error = await errorOf(response);
    showLogin(error.message);
  }
}

async function login() {
  ui.loginButton.disabled = true;
  ui.loginError.textContent = '';
  try {
    const response = await fetch('/admin/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ secret: ui.secret.value }),
    });
    if (!response.ok) {
      // The server's message, not the status: 401 says the secret is wrong, 429 to wait.
      const error = await errorOf(response);
      const wait = error.retryAfter ? ` Try again in ${duration(error.retryAfter)}.` : '';
      ui.loginError.textContent = `${sentence(error.message)}${wait}`;
      ui.secret.select();
      return;
    }
    const body = await response.json();
    ui.secret.value = '';
    start(body.csrf);
  } catch {
    ui.loginError.textContent = 'Server unreachable: try again.';
  } finally {
    ui.loginButton.disabled = false;
  }
}

async function logout() {
  const token = csrf;
  ui.logout.disabled = true;
  try {
    const response = await fetch('/admin/logout', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': token },
    });
    // 401: the session had already ended, which is what was asked.
    if (!response.ok && response.status !== 401) {
      banner(sentence((await errorOf(response)).message), 'bad');
      return;
    }
    showLogin('Logged out.', 'ok');
  } catch {
    banner('Server unreachable, retrying', 'bad');
  } finally {
    ui.logout.disabled = false;
  }
}

/** Logged in with `token`: shows the console and starts refreshing it. */
function start(token) {
  csrf = token;
  generation += 1;
  ui.login.hidden = true;
  ui.logout.hidden = false;
  ui.console.hidden = false;
  ui.foot.hidden = false;
  banner('Loading…', 'idle');
  const channel = channelFromHash();
  if (channel) open(channel);
  refresh();
}

/** Logged out (or expired): the login form, with `message` under it. */
function showLogin(message = '', tone = 'bad') {
  csrf = null;
  generation += 1;
  clearTimeout(timer);
  ui.console.hidden = true;
  ui.foot.hidden = true;
  ui.logout.hidden = true;
  ui.login.hidden = false;
  ui.loginError.textContent = message;
  ui.loginError.dataset.tone = tone;
  // Nothing of the last session stays in the page (the open channel does, in the address).
  for (const list of [ui.nodes, ui.channels, ui.presence, ui.history]) list.replaceChildren();
  for (const result of [ui.publishResult, ui.disconnectResult]) result.textContent = '';
  banner('Not logged in', 'idle');
  ui.secret.focus();
}

// The API ------------------------------------------------------------------------------------

/**
 * Calls `/admin/api/<endpoint>`: `GET` with `query`, or `POST` with `body`. Resolves to the
 * answer's JSON; rejects with an `ApiError` for a refusal, a `SessionExpired` for 401 (after
 * showing the login form), or `Unreachable` when the server cannot be reached.
 */
async function api(endpoint, { query, body } = {}) {
  const session = generation;
  const path = `/admin/api/${endpoint}`;
  const url = query ? `${path}?${new URLSearchParams(query)}` : path;
  const init = {
    method: body === undefined ? 'GET' : 'POST',
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { 'X-CSRF-Token': csrf },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new Unreachable(error.message);
  }
  if (session !== generation) throw new SessionExpired();
  if (response.status === 401) {
    showLogin('Your session has expired: log in again.');
    throw new SessionExpired();
  }
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** The `ApiError` of a refused response, from its body when it has the usual shape. */
async function errorOf(response) {
  let error;
  try {
    error = (await response.json()).error;
  } catch {
    // Not JSON (a proxy's page, say): the status says enough.
  }
  const retryAfter = Number(response.headers.get('Retry-After')) || 0;
  return new ApiError(response.status, error, retryAfter);
}

// Refreshing ---------------------------------------------------------------------------------

/** Reloads the nodes, the channels and the open channel, then again in `INTERVAL`. */
async function refresh() {
  clearTimeout(timer);
  if (!csrf) return;
  refreshes += 1;
  const mine = refreshes;
  const session = generation;
  const results = await Promise.allSettled([loadNodes(), loadChannels(), loadChannel()]);
  if (session !== generation || mine !== refreshes) return;
  const failures = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
  if (failures.some((e) => e instanceof SessionExpired)) return;
  const unreachable = failures.find((e) => e instanceof Unreachable);
  const refused = failures.find((e) => e instanceof ApiError);
  const broken = failures.find((e) => !(e instanceof Unreachable || e instanceof ApiError));
  if (unreachable) {
    banner('Server unreachable, retrying', 'bad');
  } else if (refused) {
    banner(sentence(refused.message), 'bad');
  } else if (broken) {
    // An answer of a shape this page does not know (a newer or older server).
    console.error(broken);
    banner(`Unexpected answer: ${broken.message}`, 'bad');
  } else {
    banner(`Live · updated ${new Date().toLocaleTimeString()}`, 'ok');
  }
  if (!document.hidden) timer = setTimeout(refresh, INTERVAL);
}

async function loadNodes() {
  const { nodes } = await api('nodes');
  const rows = nodes.map((node) => {
    const name = el('div', 'node-name');
    name.append(el('span', 'node-id', node.name));
    if (node.current) name.append(el('span', 'tag', 'this node'));
    const cell = el('th');
    cell.scope = 'row';
    const about = [node.version, node.broker].filter((part) => typeof part === 'string');
    cell.append(name, el('div', 'sub', about.join(' · ')));
    const row = el('tr');
    if (node.current) row.dataset.current = 'true';
    row.append(
      cell,
      num(count(node.connections), 'connections'),
      num(count(node.subscriptions), 'subscriptions'),
      num(count(node.channels), 'channels'),
      num(bytes(node.memory_bytes), 'memory'),
      num(count(node.publications), 'publications'),
      num(duration(node.uptime_seconds), 'uptime'),
      num(age(node.age_ms), 'age'),
    );
    return row;
  });
  ui.nodes.replaceChildren(...rows);
  const sum = (field) => nodes.reduce((total, node) => total + (node[field] ?? 0), 0);
  const totals = {
    connections: count(sum('connections')),
    subscriptions: count(sum('subscriptions')),
    channels: count(sum('channels')),
    memory: nodes.some((n) => n.memory_bytes) ? bytes(sum('memory_bytes')) : '—',
    publications: count(sum('publications')),
  };
  for (const cell of ui.totals.querySelectorAll('[data-field]')) {
    cell.textContent = totals[cell.dataset.field];
    cell.className = 'num';
  }
  ui.nodesSummary.textContent = `${plural(nodes.length, 'node')} · `
    + `${plural(sum('connections'), 'connection')}`;
}

async function loadChannels() {
  const { channels, truncated } = await api('channels', { query: { limit: CHANNEL_LIMIT } });
  const rows = channels.map(({ channel, subscribers }) => {
    const button = el('button', 'link', channel);
    button.type = 'button';
    button.title = `Open ${channel}`;
    button.addEventListener('click', () => open(channel));
    if (channel === openChannel) button.setAttribute('aria-current', 'true');
    const cell = el('th');
    cell.scope = 'row';
    cell.append(button);
    const row = el('tr');
    row.dataset.channel = channel;
    row.append(cell, num(count(subscribers), 'subscribers'));
    return row;
  });
  ui.channels.replaceChildren(...rows);
  ui.channelsEmpty.hidden = channels.length > 0;
  ui.channels.closest('.table-scroll').hidden = channels.length === 0;
  ui.channelsSummary.textContent = truncated
    ? `the ${channels.length} busiest`
    : plural(channels.length, 'channel');
}

// The channel panel --------------------------------------------------------------------------

/** Opens `channel` in the panel (and in the address, so that a reload keeps it). */
function open(channel) {
  if (!channel) return;
  openChannel = channel;
  ui.channelInput.value = channel;
  ui.channelTitle.textContent = channel;
  ui.channelPosition.textContent = '';
  ui.channelError.textContent = '';
  ui.publishResult.textContent = '';
  ui.channelBody.hidden = true;
  ui.presence.replaceChildren();
  ui.history.replaceChildren();
  history.replaceState(null, '', `#${encodeURIComponent(channel).replaceAll('%3A', ':')}`);
  for (const button of ui.channels.querySelectorAll('button')) {
    button.toggleAttribute('aria-current', button.textContent === channel);
  }
  if (csrf) {
    loadChannel().catch((error) => {
      if (error instanceof Unreachable) banner('Server unreachable, retrying', 'bad');
    });
  }
}

function channelFromHash() {
  try {
    return decodeURIComponent(location.hash.slice(1)).trim();
  } catch {
    return '';
  }
}

/**
 * Loads presence, its count and history of the open channel. A namespace without presence or
 * history says so in place; a channel the server refuses altogether (a bad name, an unknown
 * namespace) says why above the panel. Rejects only when the server cannot be reached or
 * the session is over.
 */
async function loadChannel() {
  const channel = openChannel;
  if (!channel) return;
  const query = { channel };
  const [presence, presenceCount, recent] = await Promise.allSettled([
    api('presence', { query }),
    api('presence_count', { query }),
    api('history', { query: { channel, limit: HISTORY_LIMIT } }),
  ]);
  if (channel !== openChannel) return;
  for (const result of [presence, presenceCount, recent]) {
    if (result.status === 'rejected' && !(result.reason instanceof ApiError)) throw result.reason;
  }
  const denied = (result) => result.status === 'rejected'
    && result.reason.code === 'permission_denied';
  const refusal = [presence, presenceCount, recent]
    .find((r) => r.status === 'rejected' && !denied(r));
  if (refusal) {
    ui.channelError.textContent = sentence(refusal.reason.message);
    ui.channelBody.hidden = true;
    return;
  }
  ui.channelError.textContent = '';
  ui.channelBody.hidden = false;

  if (denied(presence)) {
    showNote(ui.presenceNote, "presence is off for this channel's namespace");
    ui.presenceTable.hidden = true;
  } else {
    showPresence(presence.value.clients);
  }
  ui.presenceCount.textContent = presenceCount.status === 'fulfilled'
    ? count(presenceCount.value.count)
    : '';

  if (denied(recent)) {
    showNote(ui.historyNote, "history is off for this channel's namespace");
    ui.history.replaceChildren();
    ui.channelPosition.textContent = '';
  } else {
    showHistory(recent.value);
  }
}

function showPresence(clients) {
  const sorted = [...clients].sort((a, b) => (a.user ?? '\uffff').localeCompare(b.user ?? '\uffff')
    || a.client.localeCompare(b.client));
  const rows = sorted.map((c) => {
    const row = el('tr');
    row.dataset.client = c.client;
    const id = el('td');
    id.append(el('code', '', c.client));
    const user = el('td', c.user === undefined ? 'muted' : '', c.user ?? 'anonymous');
    const info = el('td', 'info');
    if (c.info !== undefined) info.append(el('code', '', compact(c.info)));
    const actions = el('td', 'actions-cell');
    const kick = el('button', 'secondary small', 'Disconnect…');
    kick.type = 'button';
    kick.title = `Fill in the disconnect form for client ${c.client}`;
    kick.addEventListener('click', () => prefillDisconnect(c));
    actions.append(kick);
    row.append(id, user, info, actions);
    return row;
  });
  ui.presence.replaceChildren(...rows);
  ui.presenceTable.hidden = clients.length === 0;
  if (clients.length === 0) showNote(ui.presenceNote, 'No one is subscribed.');
  else ui.presenceNote.hidden = true;
}

function showHistory({ epoch, offset, publications }) {
  ui.channelPosition.textContent = `offset ${count(offset)} · epoch ${epoch}`;
  const items = [...publications].reverse().map((publication) => {
    const item = el('li');
    item.dataset.offset = publication.offset;
    const meta = el('div', 'meta');
    meta.append(el('span', 'offset', `#${publication.offset}`));
    const by = publication.info?.user ?? publication.info?.client;
    meta.append(el('span', 'by', by ? `by ${by}` : 'no publisher'));
    item.append(meta);
    const data = publication.data;
    const isText = data !== null && typeof data === 'object' && !Array.isArray(data)
      && typeof data.text === 'string';
    if (isText) {
      item.append(el('p', 'text', data.text));
      const { text: _, ...rest } = data;
      if (Object.keys(rest).length) item.append(el('code', 'json', compact(rest)));
    } else {
      item.append(el('code', 'json', compact(data)));
    }
    return item;
  });
  ui.history.replaceChildren(...items);
  if (publications.length === 0) showNote(ui.historyNote, 'No publications in history.');
  else ui.historyNote.hidden = true;
}

function showNote(note, text) {
  note.textContent = text;
  note.hidden = false;
}

// Forms --------------------------------------------------------------------------------------

/** Publishes the textarea's JSON as is, or its text as `{"text": …}`. */
async function publish() {
  const channel = openChannel;
  const typed = ui.publishData.value;
  if (!channel || !typed.trim()) return;
  let data;
  try {
    data = JSON.parse(typed);
  } catch {
    data = { text: typed };
  }
  ui.publishButton.disabled = true;
  ui.publishResult.dataset.tone = '';
  try {
    const { offset } = await api('publish', { body: { channel, data } });
    ui.publishResult.textContent = `published at offset ${offset}`;
    ui.publishResult.dataset.tone = 'ok';
    ui.publishData.value = '';
    refreshChannel();
  } catch (error) {
    showFailure(ui.publishResult, error);
  } finally {
    ui.publishButton.disabled = false;
  }
}

async function disconnect() {
  const by = ui.disconnectBy.value;
  const target = ui.disconnectTarget.value.trim();
  const code = Number(ui.disconnectCode.value);
  const reason = ui.disconnectReason.value;
  if (!target) return;
  const body = { [by]: target, code };
  if (reason) body.reason = reason;
  ui.disconnectButton.disabled = true;
  ui.disconnectResult.dataset.tone = '';
  try {
    const answer = await api('disconnect', { body });
    const done = `disconnected ${plural(answer.disconnected, 'connection')}`;
    if (answer.complete === false) {
      // Some node did not confirm: its connections of this user may still be open.
      const which = answer.unreachable?.length ? ` (${answer.unreachable.join(', ')})` : '';
      ui.disconnectResult.textContent = `${done}; not every node answered${which}, so some `
        + 'may still be connected: try again';
      ui.disconnectResult.dataset.tone = 'bad';
    } else {
      ui.disconnectResult.textContent = done;
      ui.disconnectResult.dataset.tone = 'ok';
    }
    refreshChannel();
  } catch (error) {
    showFailure(ui.disconnectResult, error);
  } finally {
    labelDisconnect();
  }
}

/** The disconnect button says what it does: "Disconnect user ann". */
function labelDisconnect() {
  const by = ui.disconnectBy.value;
  const target = ui.disconnectTarget.value.trim();
  ui.disconnectTargetLabel.textContent = by === 'user' ? 'User id' : 'Client id';
  ui.disconnectButton.textContent = target ? `Disconnect ${by} ${target}` : 'Disconnect';
  ui.disconnectButton.disabled = !target;
}

function prefillDisconnect(c) {
  ui.disconnectBy.value = c.user === undefined ? 'client' : 'user';
  ui.disconnectTarget.value = c.user ?? c.client;
  ui.disconnectResult.textContent = '';
  labelDisconnect();
  ui.disconnectTarget.focus();
  ui.disconnectTarget.scrollIntoView({ block: 'nearest' });
}

/** After an action: the open channel at once, the rest at the next refresh. */
function refreshChannel() {
  loadChannel().catch(() => {
    // The next refresh reports it.
  });
}

function showFailure(result, error) {
  if (error instanceof SessionExpired) return;
  if (error instanceof ApiError) {
    result.textContent = sentence(error.message);
  } else if (error instanceof Unreachable) {
    result.textContent = 'No answer from the server: check whether it was done before trying '
      + 'again.';
  } else {
    result.textContent = `Unexpected answer: ${error.message}`;
  }
  result.dataset.tone = 'bad';
}

// Formatting ---------------------------------------------------------------------------------

function banner(text, tone) {
  ui.banner.textContent = text;
  ui.banner.dataset.tone = tone;
}

/** An element with `className` and text. */
function el(tag, className = '', text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A right-aligned number cell. */
function num(text, field) {
  const cell = el('td', 'num', text);
  cell.dataset.field = field;
  return cell;
}

/** A server message as a sentence (the API's start lowercase and end without a period). */
function sentence(message) {
  if (!message) return message;
  const stop = /[.!?]$/.test(message) ? '' : '.';
  return `${message[0].toUpperCase()}${message.slice(1)}${stop}`;
}

function compact(value) {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > JSON_CHARS ? `${text.slice(0, JSON_CHARS)}…` : text;
}

function count(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '—';
}

function plural(n, noun) {
  return `${count(n)} ${noun}${n === 1 ? '' : 's'}`;
}

function bytes(n) {
  if (!n) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const power = Math.min(units.length - 1, Math.floor(Math.log2(n) / 10));
  return `${(n / 2 ** (10 * power)).toFixed(power ? 1 : 0)} ${units[power]}`;
}

function duration(seconds) {
  if (typeof seconds !== 'number') return '—';
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

/** How long ago a node reported: "now" within the refresh period's rounding. */
function age(ms) {
  if (typeof ms !== 'number') return '—';
  if (ms < 1000) return 'now';
  return `${duration(Math.round(ms / 1000))} ago`;
}
