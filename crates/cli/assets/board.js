// The whiteboard at /board: a canvas everyone on the page draws on together, with each
// person's pointer shown live to the others and a list of who is there.
//
// Two channels per board (`#name` in the address, `main` without one), on two connections:
//   board:<name>   the drawing, kept in history (the `board` namespace keeps 1,000 for an
//                  hour), so a late joiner sees it and a cut is recovered; with presence.
//                  JSON, on a connection that falls back to SSE or long-polling if need be.
//   cursor:<name>  pointers and names, not kept (the `cursor` namespace has no history).
//                  MessagePack, on a second connection (a WebSocket: MessagePack needs
//                  binary frames), for the busiest stream: smaller frames, no text to parse.
//
// Publications are JSON objects with a `type`:
//   board:   {type: 'draw', stroke, color, size, points: [x0, y0, x1, y1, …]}
//            {type: 'clear'}
//   cursor:  {type: 'cursor', x, y}   where this page's pointer is
//            {type: 'away'}           the pointer left the board
//            {type: 'hello', name, color, id} on arriving, on a change of name or pen,
//                                             and on each new board connection
//            {type: 'here', name, color, id}  the answer to a hello, so newcomers learn names
// `id` is the sender's board connection's client id: it ties the pointer (sent from the
// other connection) to the entry of who is there (from the board channel's presence).
// Coordinates are integers on a board of `WIDTH` × `HEIGHT` units, whatever the size of the
// canvas showing it. A stroke's points are sent once per animation frame (at most about 60
// publications a second while drawing), each batch starting at the previous batch's last
// point so that the pieces join; the pointer at most `CURSOR_RATE` times a second.
//
// Everything from the network is checked before use: a publication of another shape, a
// coordinate outside the board, a colour outside `PALETTE` or a size out of range is
// ignored, and names are shown with textContent, never parsed as HTML.

import { Switchboard } from '/switchboard.js';
import { startBanner } from './banner.js';

/** The board's size in its own units; the canvas scales it to fit. */
const WIDTH = 1600;
const HEIGHT = 1000;
/** The pens: the only colours drawn or shown, whoever sent them. */
const PALETTE = ['#1d2130', '#e11d48', '#f59e0b', '#16a34a', '#2563eb', '#9333ea', '#0891b2'];
const MIN_SIZE = 1;
const MAX_SIZE = 24;
/** Most points in one `draw` publication; a longer frame's batch is split. */
const MAX_POINTS = 64;
/** The `board` namespace's history size: the most a page loads. */
const HISTORY_LIMIT = 1000;
/** Pointer updates sent per second, at most. */
const CURSOR_RATE = 30;
/** A pointer not heard of for this long is hidden. */
const CURSOR_STALE = 5000;
/** Segments kept to redraw the canvas when it is resized. */
const MAX_SEGMENTS = 20000;
const MAX_NAME = 24;
const NAME_KEY = 'switchboard-demo:name';
const COLOR_KEY = 'switchboard-demo:pen';

const $ = (id) => document.getElementById(id);
const ui = {
  name: $('board-name'),
  palette: $('palette'),
  size: $('pen-size'),
  clear: $('clear'),
  surface: $('surface'),
  canvas: $('canvas'),
  cursors: $('cursors'),
  artists: $('artists'),
  artistsCount: $('artists-count'),
  title: $('board-title'),
};
const context = ui.canvas.getContext('2d');

const board = boardName(decode(location.hash.slice(1))) || 'main';
const strokesChannel = `board:${board}`;
const cursorsChannel = `cursor:${board}`;
addEventListener('hashchange', () => location.reload());
ui.title.textContent = board === 'main' ? 'Whiteboard' : `Whiteboard #${board}`;
$('strokes-channel').textContent = strokesChannel;
$('cursors-channel').textContent = cursorsChannel;

const client = new Switchboard('/ws');
const subscribe = startBanner(client, $('banner'));
const pointers = new Switchboard('/ws', { format: 'msgpack' });

// The chat's name, so that a person is called the same on both pages.
let me = sessionStorage.getItem(NAME_KEY) ?? localStorage.getItem(NAME_KEY) ?? randomName();
sessionStorage.setItem(NAME_KEY, me);
let pen = validColor(localStorage.getItem(COLOR_KEY)) ?? PALETTE[randomIndex(PALETTE.length)];
/** This page's stroke ids start with it: its own strokes coming back are not drawn twice. */
const tab = Math.random().toString(36).slice(2, 10);
let strokeCount = 0;
/**
 * Segments on the canvas, oldest first: `{color, size, points, epoch, offset}`, without a
 * position for this page's own until the server accepted them.
 */
let segments = [];
/** Who is on the board (client ids, from presence) and what they are called. */
const people = new Set();
/** Name and pen by board connection id, from `hello` and `here`. */
const names = new Map();
/** The board connection id of each pointer connection, from `hello` and `here`. */
const owners = new Map();
/** Pointer elements by pointer connection id: `{element, x, y, seen}`. */
const cursors = new Map();
let strokesSub = null;
let cursorsSub = null;

setUpControls();
setUpDrawing();
setUpCursor();
new ResizeObserver(resize).observe(ui.surface);
setInterval(hideStaleCursors, 1000);
start();

/** History first, then live from the position it ended at; pointers meanwhile. */
async function start() {
  cursorsSub = pointers.subscribe(cursorsChannel, {
    publication: receiveCursor,
    subscribed: () => sendHello('hello'),
  });
  let since;
  try {
    const result = await client.history(strokesChannel, { limit: HISTORY_LIMIT });
    for (const publication of result.publications) receiveStroke(publication, true);
    since = { offset: result.offset, epoch: result.epoch };
  } catch {
    // Live strokes are drawn anyway; the history comes back with a failed recovery.
  }
  strokesSub = subscribe(strokesChannel, {
    since,
    publication: (publication) => receiveStroke(publication),
    join: ({ client: joined }) => {
      people.add(joined.client);
      renderPeople();
    },
    leave: ({ client: left }) => {
      people.delete(left.client);
      for (const [id, owner] of owners) {
        if (owner !== left.client) continue;
        removeCursor(id);
        owners.delete(id);
      }
      renderPeople();
    },
    subscribed: async () => {
      // A new board connection has a new id: tell the others.
      sendHello('hello');
      try {
        const clients = await strokesSub.presence();
        people.clear();
        for (const c of clients) people.add(c.client);
        renderPeople();
      } catch {
        // Presence is a nicety; joins and leaves keep the list going.
      }
    },
    recovered: ({ recovered }) => {
      if (!recovered) reload();
    },
  });
}

/** After a failed recovery: the history again, then what came live since it. */
async function reload() {
  let result;
  try {
    result = await strokesSub.history({ limit: HISTORY_LIMIT });
  } catch {
    return;
  }
  // Kept: this page's strokes not yet accepted, and what came live after the history.
  const live = segments.filter((s) => s.offset === undefined
    || (s.epoch === result.epoch && s.offset > result.offset));
  segments = [];
  for (const publication of result.publications) receiveStroke(publication, true);
  segments.push(...live);
  redraw();
}

// --- Drawing -------------------------------------------------------------------------------

function setUpDrawing() {
  /** The stroke being drawn: its id, the points not yet sent, the last point sent. */
  let stroke = null;
  let frame = 0;

  ui.canvas.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    ui.canvas.setPointerCapture(event.pointerId);
    strokeCount += 1;
    const point = boardPoint(event);
    stroke = { id: `${tab}-${strokeCount}`, pending: [point], last: null, pointer: event.pointerId };
    drawSegment({ color: pen, size: penSize(), points: point });
    schedule();
  });
  ui.canvas.addEventListener('pointermove', (event) => {
    if (!stroke || event.pointerId !== stroke.pointer) return;
    const events = event.getCoalescedEvents?.() ?? [];
    for (const e of events.length ? events : [event]) {
      const point = boardPoint(e);
      const previous = stroke.pending.at(-1) ?? stroke.last;
      if (previous && previous[0] === point[0] && previous[1] === point[1]) continue;
      if (previous) drawSegment({ color: pen, size: penSize(), points: [...previous, ...point] });
      stroke.pending.push(point);
    }
    schedule();
  });
  const end = (event) => {
    if (!stroke || event.pointerId !== stroke.pointer) return;
    flush();
    stroke = null;
  };
  ui.canvas.addEventListener('pointerup', end);
  ui.canvas.addEventListener('pointercancel', end);

  function schedule() {
    if (!frame) frame = requestAnimationFrame(flush);
  }

  /** Publishes the points gathered since the last frame, as one or more segments. */
  function flush() {
    cancelAnimationFrame(frame);
    frame = 0;
    if (!stroke || stroke.pending.length === 0) return;
    let points = stroke.last ? [stroke.last, ...stroke.pending] : stroke.pending;
    stroke.pending = [];
    while (points.length > 0) {
      const batch = points.slice(0, MAX_POINTS);
      publishSegment(stroke.id, batch);
      // The next batch starts where this one ended, so that the line has no gap.
      points = points.length > MAX_POINTS ? points.slice(MAX_POINTS - 1) : [];
    }
  }

  function publishSegment(id, batch) {
    const data = { type: 'draw', stroke: id, color: pen, size: penSize(), points: batch.flat() };
    const segment = { color: data.color, size: data.size, points: data.points };
    remember(segment);
    stroke.last = batch.at(-1);
    client.publish(strokesChannel, data).then(({ offset, epoch }) => {
      Object.assign(segment, { offset, epoch });
    }, () => {
      // Not accepted (a limit, a refusal): it stays on this canvas only.
    });
  }
}

/**
 * A publication on the board's channel: a segment to draw, a clear, or ignored. Live, this
 * page's own strokes are skipped (drawn as they were made); `fromHistory`, they are drawn.
 */
function receiveStroke({ data, offset, epoch }, fromHistory = false) {
  if (data?.type === 'clear') {
    segments = [];
    redraw();
    return;
  }
  const segment = validSegment(data);
  if (!segment) return;
  // This page's own strokes were drawn as they were made.
  if (!fromHistory && data.stroke.startsWith(`${tab}-`)) return;
  Object.assign(segment, { offset, epoch });
  remember(segment);
  drawSegment(segment);
}

/** A `draw` publication's segment, or null when it is not one this page draws. */
function validSegment(data) {
  if (data?.type !== 'draw' || typeof data.stroke !== 'string' || data.stroke.length > 32) {
    return null;
  }
  const color = PALETTE.includes(data.color) ? data.color : null;
  const size = data.size;
  const points = data.points;
  if (!color || !Number.isInteger(size) || size < MIN_SIZE || size > MAX_SIZE) return null;
  if (!Array.isArray(points) || points.length < 2 || points.length > 2 * MAX_POINTS) return null;
  if (points.length % 2 !== 0) return null;
  for (let i = 0; i < points.length; i += 2) {
    if (!onBoard(points[i], points[i + 1])) return null;
  }
  return { color, size, points };
}

function remember(segment) {
  segments.push(segment);
  if (segments.length > MAX_SEGMENTS) segments.splice(0, segments.length - MAX_SEGMENTS);
}

/** Draws one segment: a polyline, or a dot for a single point. */
function drawSegment({ color, size, points }) {
  context.strokeStyle = color;
  context.fillStyle = color;
  context.lineWidth = size;
  context.lineCap = 'round';
  context.lineJoin = 'round';
  if (points.length === 2) {
    context.beginPath();
    context.arc(points[0], points[1], size / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.beginPath();
  context.moveTo(points[0], points[1]);
  for (let i = 2; i < points.length; i += 2) context.lineTo(points[i], points[i + 1]);
  context.stroke();
}

/** Sizes the canvas to its box at the screen's pixel density, and draws everything again. */
function resize() {
  const ratio = devicePixelRatio || 1;
  const width = Math.max(Math.round(ui.surface.clientWidth * ratio), 1);
  const height = Math.max(Math.round(ui.surface.clientHeight * ratio), 1);
  if (ui.canvas.width !== width || ui.canvas.height !== height) {
    ui.canvas.width = width;
    ui.canvas.height = height;
  }
  redraw();
  for (const [id, cursor] of cursors) placeCursor(id, cursor);
}

function redraw() {
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = '#ffffff';
  context.fillRect(0, 0, ui.canvas.width, ui.canvas.height);
  context.setTransform(ui.canvas.width / WIDTH, 0, 0, ui.canvas.height / HEIGHT, 0, 0);
  for (const segment of segments) drawSegment(segment);
}

/** Where a pointer event is, in board units. */
function boardPoint(event) {
  const box = ui.canvas.getBoundingClientRect();
  const x = Math.round(((event.clientX - box.left) / box.width) * WIDTH);
  const y = Math.round(((event.clientY - box.top) / box.height) * HEIGHT);
  return [clamp(x, 0, WIDTH), clamp(y, 0, HEIGHT)];
}

// --- Controls ------------------------------------------------------------------------------

function setUpControls() {
  ui.name.value = me;
  ui.name.addEventListener('change', () => {
    const name = ui.name.value.trim().slice(0, MAX_NAME);
    if (!name || name === me) {
      ui.name.value = me;
      return;
    }
    me = name;
    ui.name.value = name;
    localStorage.setItem(NAME_KEY, name);
    sessionStorage.setItem(NAME_KEY, name);
    sendHello('hello');
    renderPeople();
  });
  ui.palette.replaceChildren(...PALETTE.map((color) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'swatch';
    button.style.setProperty('--swatch', color);
    button.setAttribute('aria-label', `Pen ${color}`);
    button.addEventListener('click', () => {
      pen = color;
      localStorage.setItem(COLOR_KEY, color);
      renderPalette();
      sendHello('hello');
      renderPeople();
    });
    return button;
  }));
  renderPalette();
  ui.clear.addEventListener('click', () => {
    segments = [];
    redraw();
    client.publish(strokesChannel, { type: 'clear' }).catch(() => {});
  });
}

function renderPalette() {
  for (const button of ui.palette.children) {
    const selected = button.style.getPropertyValue('--swatch') === pen;
    button.setAttribute('aria-pressed', String(selected));
  }
}

function penSize() {
  return clamp(Math.round(Number(ui.size.value)) || 4, MIN_SIZE, MAX_SIZE);
}

// --- Pointers and people -------------------------------------------------------------------

function setUpCursor() {
  let last = 0;
  let timer = null;
  let position = null;
  const send = () => {
    timer = null;
    last = performance.now();
    // Pointers are worth nothing late: none is queued while disconnected.
    if (pointers.state !== 'connected') return;
    const data = position ? { type: 'cursor', x: position[0], y: position[1] } : { type: 'away' };
    pointers.publish(cursorsChannel, data).catch(() => {});
  };
  const update = (point) => {
    position = point;
    if (timer) return;
    const wait = last + 1000 / CURSOR_RATE - performance.now();
    if (wait <= 0) send();
    else timer = setTimeout(send, wait);
  };
  ui.canvas.addEventListener('pointermove', (event) => update(boardPoint(event)));
  ui.canvas.addEventListener('pointerleave', () => update(null));
}

/** A publication on the pointers' channel. */
function receiveCursor({ data, info }) {
  const id = info?.client;
  if (!id || id === pointers.session?.client) return;
  switch (data?.type) {
    case 'cursor': {
      if (!onBoard(data.x, data.y)) return;
      let cursor = cursors.get(id);
      if (!cursor) {
        cursor = { element: newCursor(), x: 0, y: 0, seen: 0 };
        cursors.set(id, cursor);
        ui.cursors.append(cursor.element);
      }
      Object.assign(cursor, { x: data.x, y: data.y, seen: Date.now() });
      styleCursor(id, cursor);
      placeCursor(id, cursor);
      break;
    }
    case 'away':
      removeCursor(id);
      break;
    case 'hello':
    case 'here': {
      const name = typeof data.name === 'string' ? data.name.trim().slice(0, MAX_NAME) : '';
      const color = validColor(data.color);
      const owner = typeof data.id === 'string' && data.id.length <= 64 ? data.id : null;
      if (!name || !color || !owner) return;
      const known = owners.get(id) === owner;
      names.set(owner, { name, color });
      owners.set(id, owner);
      if (data.type === 'hello' && !known) {
        // Let the newcomer learn this page's name; spread out so answers do not collide.
        setTimeout(() => sendHello('here'), Math.random() * 500);
      }
      const cursor = cursors.get(id);
      if (cursor) styleCursor(id, cursor);
      renderPeople();
      break;
    }
    default:
      break;
  }
}

/**
 * Says who this page is, once the board connection has its id and the pointers' channel is
 * subscribed (so that the answers arrive); each of the two calls it when it gets there.
 */
function sendHello(type) {
  const id = client.session?.client;
  if (!id || cursorsSub?.state !== 'subscribed') return;
  pointers.publish(cursorsChannel, { type, name: me, color: pen, id }).catch(() => {});
}

function newCursor() {
  const element = document.createElement('div');
  element.className = 'cursor';
  const label = document.createElement('span');
  label.className = 'cursor-name';
  element.append(label);
  return element;
}

function styleCursor(id, { element }) {
  const owner = owners.get(id);
  const { name, color } = names.get(owner) ?? { name: guestName(owner ?? id), color: PALETTE[0] };
  element.style.setProperty('--cursor', color);
  element.firstChild.textContent = name;
  element.dataset.client = id;
}

function placeCursor(_id, { element, x, y }) {
  const left = (x / WIDTH) * ui.surface.clientWidth;
  const top = (y / HEIGHT) * ui.surface.clientHeight;
  element.style.transform = `translate(${left}px, ${top}px)`;
}

function removeCursor(id) {
  cursors.get(id)?.element.remove();
  cursors.delete(id);
}

function hideStaleCursors() {
  const now = Date.now();
  for (const [id, cursor] of cursors) if (now - cursor.seen > CURSOR_STALE) removeCursor(id);
}

function renderPeople() {
  const self = client.session?.client;
  const list = [...people]
    .map((id) => {
      const isSelf = id === self;
      const known = isSelf ? { name: me, color: pen } : names.get(id);
      return { id, isSelf, name: known?.name ?? guestName(id), color: known?.color };
    })
    .sort((a, b) => Number(b.isSelf) - Number(a.isSelf) || a.name.localeCompare(b.name));
  ui.artists.replaceChildren(...list.map(({ id, isSelf, name, color }) => {
    const item = document.createElement('li');
    item.className = 'person artist';
    item.dataset.client = id;
    if (color) item.style.setProperty('--pen', color);
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = name;
    item.append(who);
    if (isSelf) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = '(you)';
      item.append(you);
    }
    item.title = name;
    return item;
  }));
  ui.artistsCount.textContent = list.length ? String(list.length) : '';
}

// --- Helpers -------------------------------------------------------------------------------

function onBoard(x, y) {
  return Number.isInteger(x) && Number.isInteger(y) && x >= 0 && x <= WIDTH && y >= 0
    && y <= HEIGHT;
}

/** `color` when it is one of the pens, else null. */
function validColor(color) {
  return PALETTE.includes(color) ? color : null;
}

function clamp(value, min, max) {
  return Math.min(Math.max(value, min), max);
}

function guestName(id) {
  return `guest ${id.slice(-4)}`;
}

/** A valid board name from the address: lowercase letters, digits, `-` and `_`. */
function boardName(text) {
  return text.trim().toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 32);
}

function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}

function randomIndex(length) {
  return Math.floor(Math.random() * length);
}

function randomName() {
  const adjectives = ['Amber', 'Brisk', 'Calm', 'Dapper', 'Eager', 'Fuzzy', 'Gentle', 'Happy'];
  const animals = ['Otter', 'Badger', 'Heron', 'Lynx', 'Marmot', 'Newt', 'Owl', 'Panda'];
  return `${adjectives[randomIndex(adjectives.length)]} ${animals[randomIndex(animals.length)]}`;
}
