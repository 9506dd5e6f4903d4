// The chat: one room at a time on `chat:<room>`, with presence, "X joined / X left" lines,
// typing indicators, and the room's history loaded on entry, so a reload shows the
// conversation again.
//
// Publications are JSON objects with a `type`:
//   {type: 'message', name, text, tab, time}   shown in the list
//   {type: 'typing', name}                     "X is typing…" for a few seconds
//   {type: 'hello', name}                      sent on entering a room: "X joined"
//   {type: 'here', name}                       the answer to a hello, so newcomers learn names
// Anonymous connections carry no user name, so names travel in the data.
//
// Anything else published to the room (from a backend through the HTTP API or
// `switchboard publish`, from another program) is shown too: data with a string `text` as a
// message from its publisher (the token's user, a guest, or "server" for the HTTP API,
// whose publications carry no `info`), any other data as a card of pretty-printed JSON.
// Everything a person or a program sent is shown with textContent, never parsed as HTML.

const DEFAULT_ROOMS = ['lobby', 'random', 'help'];
/** The `chat` namespace's history size: the most a room can show after a reload. */
const HISTORY_LIMIT = 100;
/** Send "typing" at most this often, and show it this long. */
const TYPING_EVERY = 2000;
const TYPING_SHOWN = 3000;
/** The `type`s of the chat's own publications (above). */
const OWN_TYPES = new Set(['message', 'typing', 'hello', 'here']);
/** The most characters of pretty-printed JSON a card shows. */
const CARD_CHARS = 4000;
const NAME_KEY = 'switchboard-demo:name';
const ROOMS_KEY = 'switchboard-demo:rooms';
const TAB_KEY = 'switchboard-demo:tab';

/**
 * Starts the chat in the page's chat elements.
 * @param {import('/switchboard.js').Switchboard} client
 * @param {(channel: string, handlers: object) => object} subscribe `client.subscribe`, or a
 *   wrapper of it
 */
export function startChat(client, subscribe) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    title: $('room-title'),
    name: $('name'),
    rooms: $('rooms'),
    joinRoom: $('join-room'),
    roomInput: $('room-input'),
    people: $('people'),
    peopleCount: $('people-count'),
    messages: $('messages'),
    typing: $('typing'),
    send: $('send'),
    text: $('text'),
  };
  // A window keeps its name across reloads (sessionStorage), so two windows start with two
  // names; a name the person types is remembered for every window (localStorage).
  let me = sessionStorage.getItem(NAME_KEY) ?? localStorage.getItem(NAME_KEY) ?? randomName();
  sessionStorage.setItem(NAME_KEY, me);
  const tab = sessionStorage.getItem(TAB_KEY) ?? Math.random().toString(36).slice(2, 10);
  sessionStorage.setItem(TAB_KEY, tab);
  const rooms = [...new Set([...DEFAULT_ROOMS, ...storedRooms()])];
  /** Names by client id, learnt from publications. */
  const names = new Map();
  let room = null;
  let lastTyping = 0;
  let typingTimer = null;

  ui.name.value = me;
  ui.name.addEventListener('change', () => {
    const name = ui.name.value.trim().slice(0, 24);
    if (!name || name === me) {
      ui.name.value = me;
      return;
    }
    me = name;
    ui.name.value = name;
    localStorage.setItem(NAME_KEY, name);
    sessionStorage.setItem(NAME_KEY, name);
    if (room) publish(room, { type: 'hello', name: me });
  });

  ui.joinRoom.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = roomName(ui.roomInput.value);
    ui.roomInput.value = '';
    if (!name) return;
    if (!rooms.includes(name)) {
      rooms.push(name);
      const added = rooms.filter((r) => !DEFAULT_ROOMS.includes(r));
      localStorage.setItem(ROOMS_KEY, JSON.stringify(added));
    }
    enter(name);
  });

  ui.send.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text || !room) return;
    ui.text.value = '';
    lastTyping = 0;
    publish(room, { type: 'message', name: me, text, tab, time: Date.now() });
  });

  ui.text.addEventListener('input', () => {
    const now = Date.now();
    if (!room || !ui.text.value.trim() || client.state !== 'connected') return;
    if (now - lastTyping < TYPING_EVERY) return;
    lastTyping = now;
    publish(room, { type: 'typing', name: me });
  });

  const roomFromHash = () => roomName(decode(location.hash.slice(1))) || DEFAULT_ROOMS[0];
  addEventListener('hashchange', () => enter(roomFromHash()));
  enter(roomFromHash());

  /** Leaves the current room and enters `name`: history first, then live from there on. */
  async function enter(name) {
    if (room?.name === name) return;
    room?.sub?.unsubscribe();
    if (!rooms.includes(name)) rooms.push(name);
    const state = {
      name,
      channel: `chat:${name}`,
      sub: null,
      people: new Set(),
      typers: new Map(),
      /** Messages on screen: `{epoch, offset, item}`. */
      shown: [],
    };
    room = state;
    history.replaceState(null, '', `#${name}`);
    ui.title.textContent = `#${name}`;
    ui.text.placeholder = `Message #${name}`;
    ui.messages.replaceChildren();
    renderRooms();
    renderPeople();
    renderTyping();

    const loaded = await loadHistory(state);
    if (room !== state) return;
    // From the position the history ended at: nothing between the two is lost or repeated.
    const since = loaded ? { offset: loaded.offset, epoch: loaded.epoch } : undefined;
    state.sub = subscribe(state.channel, {
      since,
      publication: (publication) => receive(state, publication, true),
      join: ({ client: joined }) => {
        state.people.add(joined.client);
        renderPeople();
      },
      leave: ({ client: left }) => {
        if (!state.people.delete(left.client)) return;
        state.typers.delete(left.client);
        // A reconnected window comes back with a new id before the old one is gone.
        const name = nameOf(left.client);
        if (!isPresent(state, name)) notice(state, `${name} left`);
        renderPeople();
        renderTyping();
      },
      subscribed: async () => {
        publish(state, { type: 'hello', name: me });
        try {
          const clients = await state.sub.presence();
          if (room !== state) return;
          state.people = new Set(clients.map((c) => c.client));
          renderPeople();
        } catch {
          // Presence is a nicety; joins and leaves keep the list going.
        }
      },
      recovered: ({ recovered }) => {
        if (!recovered) reload(state);
      },
      unsubscribed: ({ code, reason }) => {
        if (code !== 'client' && room === state) notice(state, `Left #${name}: ${reason}`);
      },
    });
  }

  /** Shows the room's recent history; returns it (or nothing, when it failed). */
  async function loadHistory(state) {
    try {
      const result = await client.history(state.channel, { limit: HISTORY_LIMIT });
      if (room !== state) return undefined;
      for (const publication of result.publications) receive(state, publication, false);
      return result;
    } catch (error) {
      if (room === state) notice(state, `Could not load history: ${error.message}`);
      return undefined;
    }
  }

  /** After a failed recovery: the history again, then whatever came live since. */
  async function reload(state) {
    let result;
    try {
      result = await state.sub.history({ limit: HISTORY_LIMIT });
    } catch (error) {
      notice(state, `Could not reload history: ${error.message}`);
      return;
    }
    if (room !== state) return;
    const live = state.shown.filter((m) => m.epoch === result.epoch && m.offset > result.offset);
    state.shown = [];
    ui.messages.replaceChildren();
    for (const publication of result.publications) receive(state, publication, false);
    for (const message of live) {
      state.shown.push(message);
      ui.messages.append(message.item);
    }
    scrollToEnd(true);
  }

  function receive(state, publication, live) {
    const { data, info, offset, epoch } = publication;
    if (room !== state) return;
    if (!OWN_TYPES.has(data?.type)) {
      receiveOther(state, publication);
      return;
    }
    const id = info?.client;
    const name = typeof data.name === 'string' && data.name ? data.name.slice(0, 24) : null;
    const previous = id ? names.get(id) : undefined;
    if (id && name) names.set(id, name);
    const mine = id !== undefined && id === client.session?.client;
    switch (data.type) {
      case 'message':
        if (typeof data.text !== 'string') return;
        if (id) state.typers.delete(id);
        showMessage(state, {
          name: name ?? 'someone',
          text: data.text,
          time: data.time,
          epoch,
          offset,
          mine: data.tab === tab,
        });
        renderTyping();
        break;
      case 'typing':
        if (!live || mine || !id) return;
        state.typers.set(id, { name: name ?? 'someone', until: Date.now() + TYPING_SHOWN });
        renderTyping();
        break;
      case 'hello':
        if (!live || !id || !name) return;
        state.people.add(id);
        if (previous && previous !== name) {
          notice(state, `${previous} is now ${name}`);
        } else if (!mine && !isPresent(state, name, id)) {
          notice(state, `${name} joined`);
        }
        if (!mine && !previous) {
          // Let the newcomer learn this window's name; spread out so answers do not collide.
          const answer = () => room === state && publish(state, { type: 'here', name: me });
          setTimeout(answer, Math.random() * 500);
        }
        renderPeople();
        break;
      case 'here':
        renderPeople();
        break;
      default:
        break;
    }
  }

  /**
   * A publication not in the chat's own shape: a message when its data has a string
   * `text`, else a JSON card. The sender is the token's user, else the connection's name
   * as far as this window knows it, else "server" (the HTTP API's publications have no
   * `info`).
   */
  function receiveOther(state, { data, info, offset, epoch }) {
    const id = info?.client;
    const from = info?.user ?? (id ? nameOf(id) : 'server');
    const mine = id !== undefined && id === client.session?.client;
    if (id) state.typers.delete(id);
    if (typeof data?.text === 'string') {
      showMessage(state, { name: from, text: data.text, epoch, offset, mine });
    } else {
      showCard(state, { name: from, data, epoch, offset, mine });
    }
    renderTyping();
  }

  function publish(state, data) {
    client.publish(state.channel, data).catch((error) => {
      if (data.type === 'message') notice(state, `Not sent: ${error.message}`);
    });
  }

  function showMessage(state, { name, text, time, epoch, offset, mine }) {
    const atEnd = isAtEnd();
    const item = element('li', mine ? 'message mine' : 'message');
    const meta = element('div', 'meta');
    meta.append(element('span', 'who', name));
    if (typeof time === 'number') {
      const when = new Date(time);
      const clock = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      const stamp = element('time', '', clock);
      stamp.dateTime = when.toISOString();
      meta.append(stamp);
    }
    item.append(meta, element('p', 'text', text));
    state.shown.push({ epoch, offset, item });
    ui.messages.append(item);
    scrollToEnd(atEnd);
  }

  /** Any JSON value, pretty-printed as text (never HTML), cut at `CARD_CHARS`. */
  function showCard(state, { name, data, epoch, offset, mine }) {
    const atEnd = isAtEnd();
    const item = element('li', mine ? 'message card mine' : 'message card');
    const meta = element('div', 'meta');
    meta.append(element('span', 'who', name), element('span', 'kind', 'JSON'));
    let json = JSON.stringify(data, null, 2) ?? 'null';
    if (json.length > CARD_CHARS) json = `${json.slice(0, CARD_CHARS)}\n…`;
    item.append(meta, element('pre', 'json', json));
    state.shown.push({ epoch, offset, item });
    ui.messages.append(item);
    scrollToEnd(atEnd);
  }

  function notice(state, text) {
    if (room !== state) return;
    const atEnd = isAtEnd();
    ui.messages.append(element('li', 'notice', text));
    scrollToEnd(atEnd);
  }

  function renderRooms() {
    ui.rooms.replaceChildren(...rooms.map((name) => {
      const button = element('button', 'room', `#${name}`);
      button.type = 'button';
      if (room?.name === name) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => enter(name));
      const item = element('li');
      item.append(button);
      return item;
    }));
  }

  function renderPeople() {
    const self = client.session?.client;
    const people = [...(room?.people ?? [])]
      .map((id) => ({ id, name: nameOf(id), self: id === self }))
      .sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name));
    ui.people.replaceChildren(...people.map(({ name, self: isSelf }) => {
      const item = element('li', 'person');
      item.append(element('span', 'who', name));
      if (isSelf) item.append(element('span', 'you', '(you)'));
      item.title = name;
      return item;
    }));
    ui.peopleCount.textContent = people.length ? String(people.length) : '';
  }

  function renderTyping() {
    clearTimeout(typingTimer);
    const now = Date.now();
    const typers = room?.typers ?? new Map();
    for (const [id, typer] of typers) if (typer.until <= now) typers.delete(id);
    const who = [...new Set([...typers.values()].map((t) => t.name))];
    ui.typing.textContent =
      who.length === 0 ? ''
        : who.length === 1 ? `${who[0]} is typing…`
          : who.length === 2 ? `${who[0]} and ${who[1]} are typing…`
            : 'Several people are typing…';
    if (typers.size > 0) {
      const next = Math.min(...[...typers.values()].map((t) => t.until));
      typingTimer = setTimeout(renderTyping, next - now + 20);
    }
  }

  function nameOf(id) {
    if (id === client.session?.client) return me;
    return names.get(id) ?? `guest ${id.slice(-4)}`;
  }

  /** Whether someone called `name` is in the room, other than connection `except`. */
  function isPresent(state, name, except) {
    return [...state.people].some((id) => id !== except && names.get(id) === name);
  }

  function isAtEnd() {
    const list = ui.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function scrollToEnd(atEnd) {
    if (atEnd) ui.messages.scrollTop = ui.messages.scrollHeight;
  }
}

/** A valid room name from what someone typed: lowercase letters, digits, `-` and `_`. */
function roomName(text) {
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

function storedRooms() {
  try {
    const rooms = JSON.parse(localStorage.getItem(ROOMS_KEY) ?? '[]');
    return Array.isArray(rooms) ? rooms.map(roomName).filter(Boolean).slice(0, 12) : [];
  } catch {
    return [];
  }
}

function randomName() {
  const pick = (words) => words[Math.floor(Math.random() * words.length)];
  return `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;
}

/** An element with a class and text (never HTML). */
function element(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

const ADJECTIVES = ['Amber', 'Brisk', 'Calm', 'Dapper', 'Eager', 'Fuzzy', 'Gentle', 'Happy',
  'Jolly', 'Lucky', 'Mellow', 'Nimble', 'Quiet', 'Rapid', 'Sunny', 'Witty'];
const ANIMALS = ['Otter', 'Badger', 'Heron', 'Lynx', 'Marmot', 'Newt', 'Owl', 'Panda',
  'Puffin', 'Quokka', 'Raven', 'Seal', 'Tapir', 'Walrus', 'Wombat', 'Yak'];
