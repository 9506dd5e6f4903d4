// Switchboard client for browsers and Node: protocol v1 over JSON (docs/protocol.md), carried
// by a WebSocket, Server-Sent Events or HTTP long-polling (docs/transports.md), or over
// MessagePack on a WebSocket (`format: 'msgpack'`).
//
// One ES module, no dependencies, no build step. Reconnects with backoff and full jitter,
// falls back to the next transport when one does not work and returns to the first later,
// follows the close-code advice of protocol.md §8, resubscribes with `since` and delivers
// missed publications before live ones (§5), probes liveness with the `ping` command (§9),
// queues publishes while disconnected and refreshes JWTs before they expire (§3 `refresh`).

/** The client library's version, sent in `connect`. */
export const VERSION = '0.1.0';

/** The JSON wire format's subprotocol (protocol.md §1), the default. */
export const SUBPROTOCOL = 'switchboard.v1.json';

/** The MessagePack wire format's subprotocol (protocol.md §1), with `format: 'msgpack'`. */
export const MSGPACK_SUBPROTOCOL = 'switchboard.v1.msgpack';

/** Prefix of the subprotocol entry that carries a token in the upgrade (security.md §4). */
export const BEARER_PREFIX = 'switchboard.bearer.';

/** Defaults of every option, see `switchboard.d.ts` for their meaning. */
export const DEFAULTS = Object.freeze({
  format: 'json',
  minReconnectDelay: 500,
  maxReconnectDelay: 30000,
  stableAfter: 10000,
  queueSize: 1000,
  ackTimeout: 10000,
  connectTimeout: 10000,
  heartbeatMargin: 10000,
  bearerProtocol: true,
  autoConnect: true,
  name: 'switchboard-js',
  transports: Object.freeze(['websocket', 'sse', 'longpoll']),
  upgradeInterval: 60000,
});

/** The transports this client speaks, in its default order of preference. */
export const TRANSPORTS = DEFAULTS.transports;

/** An error reply from the server, or a failure of the client to get one. */
export class SwitchboardError extends Error {
  /**
   * @param {string} code a protocol error code (protocol.md §7) or a client code:
   *   `timeout`, `disconnected`, `closed`, `queue_full`
   * @param {string} message for humans
   * @param {boolean} temporary whether the same command may succeed later
   */
  constructor(code, message, temporary = false) {
    super(message);
    this.name = 'SwitchboardError';
    this.code = code;
    this.temporary = temporary;
  }
}

/**
 * What a client should do after a close with `code` (protocol.md §8): `reconnect`,
 * `backoff`, `refresh_token` or `stop`.
 * @param {number} code
 * @returns {'reconnect' | 'backoff' | 'refresh_token' | 'stop'}
 */
export function adviceFor(code) {
  if (code === 1001 || code === 1012 || (code >= 4000 && code <= 4099)) return 'reconnect';
  if (code >= 4200 && code <= 4299) return 'refresh_token';
  if (code >= 4400 && code <= 4499) return 'stop';
  return 'backoff';
}

/**
 * The delay before reconnection attempt number `attempt` (0 for the first after a stable
 * connection): "full jitter", uniform between 0 and min(max, min · 2^attempt), so that a
 * fleet of clients cut off together does not come back in step. `reconnect` advice after a
 * stable connection waits at most 1 s, as protocol.md §8 recommends.
 * @param {'reconnect' | 'backoff' | 'refresh_token'} advice
 * @param {number} attempt
 * @param {{minReconnectDelay: number, maxReconnectDelay: number}} options
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function reconnectDelay(advice, attempt, options, random = Math.random) {
  const { minReconnectDelay: min, maxReconnectDelay: max } = options;
  let bound = Math.min(max, min * 2 ** Math.min(attempt, 30));
  if (advice !== 'backoff' && attempt === 0) bound = Math.min(RECONNECT_JITTER, max);
  return Math.floor(random() * bound);
}

/**
 * The `exp` claim of a JWT, in seconds since the Unix epoch, or `undefined` for anything
 * else (a ticket, an opaque token). The signature is not checked: the server does that.
 * @param {string} token
 * @returns {number | undefined}
 */
export function tokenExpiry(token) {
  const part = typeof token === 'string' ? token.split('.')[1] : undefined;
  if (!part) return undefined;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims?.exp === 'number' ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}

/** A connection to a Switchboard server that keeps itself connected. */
export class Switchboard {
  #url;
  #options;
  #WebSocket;
  #EventSource;
  #fetch;
  /** The transports to use, in order: those of `transports` that this environment has. */
  #transports;
  /** Index in `#transports` of the transport that connections use now. */
  #current = 0;
  /** The transport of the current connection or attempt. */
  #active;
  /** Transports that reached `connected` once: a failure to open them is no verdict yet. */
  #proven = new Set();
  /** Failures to open the current transport in a row. */
  #transportFailures = 0;
  /** Abnormal closes of the current transport in a row, each soon after it opened. */
  #youngDeaths = 0;
  #openedAt = 0;
  /** The connection trying the first transport again while on a fallback, or null. */
  #probe = null;
  /** Probes that failed (or switches back that did not last) in a row: probes slow down. */
  #probeFailures = 0;
  /** The last switch went back to the first transport; not yet seen to last. */
  #switchedBack = false;
  /** A probe succeeded: the index to switch to once no reply is awaited, or null. */
  #switchTo = null;
  #listeners = new Map();
  #state = 'closed';
  /** Bumped by `close()` and each new attempt: stale callbacks compare and bail out. */
  #generation = 0;
  #ws = null;
  /** The socket opened (the upgrade succeeded). */
  #opened = false;
  /** The `connect` reply came: commands go out instead of into the queue. */
  #ready = false;
  #nextId = 1;
  #pending = new Map();
  #queue = [];
  #subs = new Map();
  #attempt = 0;
  #openFailures = 0;
  #authRefusals = 0;
  #token;
  #needToken = false;
  #lastError;
  #lastStatus;
  #disconnectPush = null;
  #lastReceived = 0;
  #probing = false;
  #session = null;
  #timers = {
    reconnect: null,
    connect: null,
    stable: null,
    heartbeat: null,
    refresh: null,
    upgrade: null,
    switch: null,
  };

  /**
   * @param {string} url the server's `/ws` endpoint: `wss://host/ws`; `https://` and
   *   `http://` are mapped to `wss://` and `ws://`, and in a page a relative URL resolves
   *   against it
   * @param {object} [options] see `Options` in switchboard.d.ts
   */
  constructor(url, options = {}) {
    this.#options = { ...DEFAULTS, ...options };
    const format = this.#options.format;
    if (format !== 'json' && format !== 'msgpack') {
      throw new TypeError(`unsupported format ${JSON.stringify(format)}: use json or msgpack`);
    }
    for (const name of ['WebSocket', 'EventSource', 'fetch']) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        throw new TypeError(`the \`${name}\` option must be a class or function`);
      }
    }
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#EventSource = options.EventSource ?? globalThis.EventSource;
    this.#fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    // MessagePack travels in binary frames, which only the WebSocket carries (protocol.md §1).
    const binary = format === 'msgpack';
    this.#transports = availableTransports(binary ? ['websocket'] : this.#options.transports, {
      websocket: typeof this.#WebSocket === 'function',
      sse: !binary && typeof this.#EventSource === 'function' && typeof this.#fetch === 'function',
      longpoll: !binary && typeof this.#fetch === 'function',
    });
    this.#active = this.#transports[0];
    this.#url = wsUrl(url);
    this.#token = options.token;
    if (this.#options.autoConnect) {
      // Connecting from the start, so that commands issued right away are queued; the first
      // attempt waits a microtask, so that listeners added after `new` see it.
      this.#state = 'connecting';
      queueMicrotask(() => {
        if (this.#generation !== 0) return; // close() came first.
        this.#open('connecting', { previous: 'closed', reason: 'connect' });
      });
    }
  }

  /** `connecting`, `connected`, `disconnected`, `reconnecting` or `closed`. */
  get state() {
    return this.#state;
  }

  /** The `connect` result of the current connection (client id, user, limits), or null. */
  get session() {
    return this.#session;
  }

  /**
   * The transport of the current connection, or of the attempt under way: `websocket`, `sse`
   * or `longpoll`.
   */
  get transport() {
    return this.#active;
  }

  /**
   * Calls `fn` on `event`: `state` (every change, with `{state, previous, code, reason,
   * …}`), the name of a state (the same object), or `error` (failures that reject no
   * promise: a refused refresh, a failed `getToken`, an undecodable message).
   * @returns {() => void} removes the listener
   */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /** Removes a listener added with `on`. */
  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /** Starts connecting; only needed with `autoConnect: false` or after `closed`. */
  connect() {
    if (this.#state !== 'closed') return;
    this.#attempt = 0;
    this.#openFailures = 0;
    this.#authRefusals = 0;
    this.#useTransport(0);
    this.#proven.clear();
    this.#probeFailures = 0;
    this.#open('connecting', { reason: 'connect' });
  }

  /**
   * Closes the connection for good: no reconnection, pending and queued commands are
   * rejected with `closed`. Subscriptions are kept for a later `connect()`.
   */
  close() {
    if (this.#state === 'closed') return;
    this.#generation += 1;
    const ws = this.#ws;
    this.#ws = null;
    this.#teardown(new SwitchboardError('closed', 'the client was closed'));
    this.#clearTimer('reconnect');
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, 'client closed');
      } catch {
        // A socket still connecting may refuse to close in some implementations.
      }
    }
    this.#rejectQueue(new SwitchboardError('closed', 'the client was closed'));
    this.#setState('closed', { code: 1000, reason: 'client closed' });
  }

  /**
   * Subscribes to `channel`, now or as soon as the client is connected, and again after each
   * reconnection, recovering what was missed.
   * @param {string} channel
   * @param {object} [handlers] callbacks and `since`, see `SubscribeOptions` in switchboard.d.ts
   * @returns {Subscription}
   */
  subscribe(channel, handlers = {}) {
    if (typeof channel !== 'string' || channel === '') {
      throw new TypeError('channel must be a non-empty string');
    }
    if (this.#subs.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const rec = {
      channel,
      handlers,
      position: handlers.since ? { ...handlers.since } : null,
      status: 'pending',
      buffer: [],
      retries: 0,
      retryTimer: null,
      settle: null,
    };
    const ready = new Promise((resolve, reject) => {
      rec.settle = { resolve, reject };
    });
    // Nobody need wait for `ready`: a failure is also reported to `unsubscribed`.
    ready.catch(() => {});
    rec.subscription = new Subscription(this, rec, ready, () => this.#unsubscribe(rec));
    this.#subs.set(channel, rec);
    if (this.#ready) this.#sendSubscribe(rec);
    return rec.subscription;
  }

  /**
   * Publishes `data` (any JSON value) to `channel`. Resolves with the acknowledgement
   * `{offset, epoch}`; while disconnected the publication waits in the queue.
   * @returns {Promise<{offset: number, epoch: string}>}
   */
  publish(channel, data) {
    return this.#request('publish', { channel, data: data === undefined ? null : data });
  }

  /**
   * The connections subscribed to `channel`.
   * @returns {Promise<Array<{client: string, user?: string, info?: unknown}>>}
   */
  async presence(channel) {
    const result = await this.#request('presence', { channel });
    return result.clients;
  }

  /**
   * How many connections are subscribed to `channel`, without listing them.
   * @returns {Promise<number>}
   */
  async presenceCount(channel) {
    const result = await this.#request('presence_count', { channel });
    return result.count;
  }

  /**
   * `channel`'s history: the newest `limit` publications, or those after `since`.
   *
   * A history larger than one reply comes from the server in pages (protocol.md, `history`):
   * this reads them all and resolves with one result. Should the stream lose what the next
   * page needed in between (trimmed, or a new epoch), the result holds the pages read so far
   * with `complete: false`.
   * @param {string} channel
   * @param {{limit?: number, since?: {offset: number, epoch: string}}} [options]
   * @returns {Promise<{epoch: string, offset: number, publications: object[], complete?: boolean}>}
   */
  async history(channel, { limit, since } = {}) {
    const result = await this.#request('history', { channel, limit, since });
    const wanted = limit ?? Infinity;
    const tag = (page) =>
      (page.publications ?? []).map((p) => ({ channel, epoch: page.epoch, ...p }));
    result.publications = tag(result);
    while (result.more && result.next) {
      // Without a limit: a limit would refuse the page outright once newer publications
      // pushed the gap past it. What arrived since the first page is cut off below instead.
      const page = await this.#request('history', { channel, since: result.next });
      const lost = page.complete === false && !page.more;
      result.publications.push(...tag(page));
      Object.assign(result, { offset: page.offset, epoch: page.epoch, more: page.more });
      result.next = page.next;
      if (lost) {
        result.complete = false;
        break;
      }
      if (since) result.complete = true;
      else delete result.complete;
      if (result.publications.length >= wanted) {
        result.publications.length = wanted;
        result.more = false;
        delete result.next;
      }
    }
    if (!result.more) {
      delete result.more;
      delete result.next;
    }
    return result;
  }

  /**
   * Calls `method` of the application's backend with `data` (any JSON value; `null` when left
   * out) through the server (protocol.md `rpc`, hooks.md). Resolves with the backend's answer,
   * any JSON value; rejects with the backend's refusal (its code and message), `unavailable`
   * (temporary) when the backend failed, or `bad_request` from a server without `rpc_proxy`.
   * While disconnected the call waits in the queue, like every command.
   * @param {string} method
   * @param {unknown} [data]
   * @returns {Promise<unknown>}
   */
  async rpc(method, data) {
    const result = await this.#request('rpc', { method, data: data === undefined ? null : data });
    return result.data;
  }

  /** A round trip to the server. */
  async ping() {
    await this.#request('ping', {});
  }

  // Connection lifecycle ---------------------------------------------------------------------

  async #open(state, detail) {
    const generation = ++this.#generation;
    const name = this.#transports[this.#current];
    this.#active = name;
    this.#setState(state, detail);
    const { getToken } = this.#options;
    const expiry = tokenExpiry(this.#token);
    if (getToken && (this.#token === undefined || this.#needToken || isPast(expiry))) {
      let token;
      try {
        token = await getToken();
      } catch (error) {
        if (generation !== this.#generation) return;
        this.#emit('error', error);
        this.#scheduleReconnect({ code: 0, reason: 'getToken failed' }, 'backoff');
        return;
      }
      if (generation !== this.#generation) return;
      if (!token) {
        this.#stop({ reason: 'getToken gave no token', advice: 'stop' });
        return;
      }
      this.#token = token;
      this.#needToken = false;
    }
    // A one-time ticket (no dots, docs/api.md) is redeemed by the opening request, as
    // `?ticket=`: a second redemption in `connect` would be refused.
    const ticket = isTicket(this.#token) ? this.#token : undefined;
    let ws;
    try {
      ws = this.#createTransport(name, this.#token);
    } catch (error) {
      // A malformed URL: retrying cannot help.
      this.#stop({ code: 0, reason: `cannot open ${this.#url}: ${error.message}`, advice: 'stop' });
      return;
    }
    this.#ws = ws;
    this.#opened = false;
    this.#ready = false;
    this.#lastError = undefined;
    this.#lastStatus = undefined;
    this.#disconnectPush = null;
    this.#nextId = 1;
    this.#setTimer('connect', this.#options.connectTimeout, () => {
      this.#abandon(ws, 'connect timeout');
    });
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      this.#opened = true;
      this.#openFailures = 0;
      this.#transportFailures = 0;
      this.#openedAt = Date.now();
      this.#lastReceived = this.#openedAt;
      const token = ticket ? undefined : this.#token;
      const fields = { token, name: this.#options.name, version: VERSION };
      // Spent: the next connection needs a new ticket.
      if (ticket) this.#needToken = true;
      this.#dispatch('connect', fields, {
        reply: (msg) => this.#onConnected(ws, msg),
        fail: () => {},
      });
    };
    ws.onmessage = (event) => {
      if (ws === this.#ws) this.#onMessage(event.data, event.parsed);
    };
    ws.onerror = (event) => {
      if (ws !== this.#ws) return;
      this.#lastError = event?.message ?? event?.error?.message;
      this.#lastStatus = event?.status;
    };
    ws.onclose = (event) => {
      if (ws === this.#ws) this.#onClose(event.code, event.reason);
    };
  }

  /**
   * A connection over transport `name`: a WebSocket, or an object that behaves like one
   * (`SseTransport`, `PollTransport`). `token` goes where the transport can carry it at the
   * door: the bearer subprotocol entry, `Authorization: Bearer` (long-polling), `?ticket=`.
   */
  #createTransport(name, token) {
    const ticket = isTicket(token) ? token : undefined;
    const bearer = token && !ticket && this.#options.bearerProtocol ? token : undefined;
    if (name === 'websocket') {
      const binary = this.#options.format === 'msgpack';
      const protocols = [binary ? MSGPACK_SUBPROTOCOL : SUBPROTOCOL];
      if (bearer) protocols.push(BEARER_PREFIX + bearer);
      const ws = new this.#WebSocket(ticket ? withTicket(this.#url, ticket) : this.#url, protocols);
      if (binary) ws.binaryType = 'arraybuffer';
      return ws;
    }
    const endpoint = (path, query) => httpEndpoint(this.#url, path, query ? ticket : null);
    if (name === 'sse') {
      return new SseTransport(endpoint('sse', true), endpoint('session'), {
        EventSource: this.#EventSource,
        fetch: this.#fetch,
      });
    }
    return new PollTransport(endpoint('poll', true), endpoint('poll'), endpoint('session'), {
      fetch: this.#fetch,
      authorization: bearer ? `Bearer ${bearer}` : undefined,
    });
  }

  #onConnected(ws, msg) {
    if (msg.error) return; // The server closes next, with the code to act on (4401, 4200).
    this.#clearTimer('connect');
    this.#ready = true;
    this.#authRefusals = 0;
    this.#session = msg.result;
    this.#proven.add(this.#active);
    const maxBody = msg.result.limits?.max_message_size;
    if (maxBody > 0 && (ws instanceof SseTransport || ws instanceof PollTransport)) {
      ws.maxBody = maxBody;
    }
    this.#setTimer('stable', this.#options.stableAfter, () => {
      this.#attempt = 0;
      if (this.#current === 0) {
        // Back on the first transport for good.
        this.#probeFailures = 0;
        this.#switchedBack = false;
      }
    });
    this.#scheduleProbe();
    this.#startHeartbeat(ws, msg.result.ping_interval);
    this.#scheduleRefresh();
    for (const rec of this.#subs.values()) {
      if (rec.status === 'pending') this.#sendSubscribe(rec);
    }
    const queued = this.#queue;
    this.#queue = [];
    for (const entry of queued) this.#dispatch(entry.type, entry.fields, entry.hooks);
    const { client, user } = msg.result;
    this.#setState('connected', { client, user, reason: `connected over ${this.#active}` });
  }

  #onClose(code, reason) {
    const opened = this.#opened;
    const push = this.#disconnectPush;
    const lastError = this.#lastError;
    const name = this.#active;
    this.#ws = null;
    this.#teardown(new SwitchboardError('disconnected', 'the connection closed before the reply: '
      + 'the command may or may not have been carried out', true));
    if (!opened) {
      this.#openFailures += 1;
      const status = this.#lastStatus ?? refusalStatus(lastError);
      const detail = { code, reason: reason || lastError || 'the connection failed', status };
      // An EventSource cannot present a JWT at the door (it goes in `connect`): a 401 there
      // says nothing about the token, only that this server wants it at the door.
      const blind = name === 'sse' && this.#token && !isTicket(this.#token);
      if ((status === 401 && !blind) || status === 403) {
        // An expired token is refused like a bad one: with `getToken`, try one fresh token.
        if (this.#options.getToken && this.#authRefusals === 0) {
          this.#authRefusals += 1;
          this.#needToken = true;
          this.#scheduleReconnect(detail, 'backoff');
        } else {
          this.#stop({ ...detail, advice: 'stop' });
        }
        return;
      }
      // A browser cannot see why an upgrade failed: after a few failures in a row, try a new
      // token in case the old one is what the server refuses.
      if (this.#options.getToken && this.#openFailures % OPEN_FAILURES_BEFORE_TOKEN === 0) {
        this.#needToken = true;
      }
      const moved = this.#afterOpenFailure(name);
      // A fallback is a different path, not a retry of the same one: at once.
      this.#scheduleReconnect(detail, 'backoff', moved === 'later' ? 0 : undefined);
      return;
    }
    // protocol.md §4: act on the close code; the push is for when that is all there is.
    if ((code === 1005 || code === 1006) && push) {
      code = push.code;
      reason = push.reason;
    }
    // A connection that opens and then dies, twice in a row, soon and without a close code
    // (a proxy that lets the upgrade through and then drops the socket, or buffers it to
    // death): this transport does not work here.
    if ((code === 1005 || code === 1006) && Date.now() - this.#openedAt < SHORT_LIVED) {
      this.#youngDeaths += 1;
      if (this.#youngDeaths >= YOUNG_DEATHS_BEFORE_FALLBACK && this.#transports.length > 1) {
        this.#advance();
      }
    } else {
      this.#youngDeaths = 0;
    }
    const advice = adviceFor(code);
    const detail = { code, reason: reason || 'connection closed', advice };
    if (advice === 'stop') {
      this.#stop(detail);
    } else if (advice === 'refresh_token') {
      if (!this.#options.getToken) {
        this.#stop({ ...detail, advice: 'stop' });
        return;
      }
      this.#needToken = true;
      this.#scheduleReconnect(detail, advice);
    } else {
      this.#scheduleReconnect(detail, advice);
    }
  }

  /** Gives up on `ws` without waiting for its close event (a dead or hung connection). */
  #abandon(ws, reason) {
    if (ws !== this.#ws) return;
    detach(ws);
    try {
      // The `ws` package waits up to 30 s for a close handshake; `terminate` does not.
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(4000, reason);
    } catch {
      // Already closing.
    }
    this.#onClose(1006, reason);
  }

  /**
   * After a failure to open transport `name`: move on to the next transport, unless `name`
   * has worked before and failed fewer than `OPEN_FAILURES_BEFORE_FALLBACK` times in a row
   * (a server restarting, not a path that refuses it). After the last transport, the first
   * again. Returns `later` (moved down the list), `wrapped` (back to the first) or null.
   */
  #afterOpenFailure(name) {
    this.#transportFailures += 1;
    if (this.#transports.length === 1) return null;
    const proven = this.#proven.has(name);
    if (proven && this.#transportFailures < OPEN_FAILURES_BEFORE_FALLBACK) return null;
    return this.#advance();
  }

  /** Moves to the next transport in the list, or back to the first after the last. */
  #advance() {
    const from = this.#current;
    if (from === 0 && this.#switchedBack) {
      // The switch back did not last: wait longer before the next probe.
      this.#probeFailures += 1;
    }
    this.#switchedBack = false;
    this.#useTransport((from + 1) % this.#transports.length);
    return this.#current > from ? 'later' : 'wrapped';
  }

  #useTransport(index) {
    this.#current = index;
    this.#transportFailures = 0;
    this.#youngDeaths = 0;
  }

  /**
   * `disconnected`, then a new attempt after the backoff delay, or after `delayOverride` ms:
   * 0 for a move to the next transport, which does not count as an attempt, so that the
   * backoff grows once per round of the transports, not once per transport.
   */
  #scheduleReconnect(detail, advice, delayOverride) {
    const delay = delayOverride ?? reconnectDelay(advice, this.#attempt, this.#options);
    if (delayOverride === undefined) this.#attempt += 1;
    const attempt = this.#attempt;
    this.#setState('disconnected', {
      ...detail,
      advice: detail.advice ?? advice,
      delay,
      attempt,
      nextTransport: this.#transports[this.#current],
    });
    this.#setTimer('reconnect', delay, () => {
      this.#open('reconnecting', { reason: 'reconnecting', attempt });
    });
  }

  #stop(detail) {
    this.#generation += 1;
    this.#rejectQueue(new SwitchboardError('closed', `the client stopped: ${detail.reason}`));
    this.#setState('closed', detail);
  }

  /** Forgets the current connection: timers, pending commands, subscription states. */
  #teardown(error) {
    this.#ready = false;
    this.#session = null;
    this.#probing = false;
    this.#switchTo = null;
    this.#endProbe();
    for (const name of ['connect', 'stable', 'heartbeat', 'refresh', 'upgrade', 'switch']) {
      this.#clearTimer(name);
    }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.hooks.fail(error);
    }
    for (const rec of this.#subs.values()) {
      if (rec.status === 'subscribing' || rec.status === 'subscribed') {
        rec.status = 'pending';
        rec.buffer = [];
        // A recovery read in pages starts again from the stored position.
        rec.paging = null;
      }
    }
  }

  // Keepalive and tokens ---------------------------------------------------------------------

  /**
   * protocol.md §9: a browser sees neither the server's pings nor its own pongs, so any
   * message counts as a sign of life and a `ping` command probes an idle connection every
   * half interval; nothing for `ping_interval` + `heartbeatMargin` means the connection is
   * dead.
   */
  #startHeartbeat(ws, pingInterval) {
    const interval = pingInterval > 0 ? pingInterval * 1000 : DEFAULT_PING_INTERVAL;
    const margin = this.#options.heartbeatMargin;
    const probeAfter = interval / 2;
    const deadAfter = interval + margin;
    const tick = Math.max(50, Math.min(probeAfter, margin) / 2);
    this.#timers.heartbeat = setInterval(() => {
      const idle = Date.now() - this.#lastReceived;
      if (idle >= deadAfter) {
        this.#abandon(ws, 'heartbeat timeout');
      } else if (idle >= probeAfter && !this.#probing) {
        this.#probing = true;
        const done = () => {
          this.#probing = false;
        };
        this.#dispatch('ping', {}, { reply: done, fail: done });
      }
    }, tick);
  }

  /** Refreshes a JWT with `getToken` and `refresh` before it expires. */
  #scheduleRefresh() {
    const expiry = tokenExpiry(this.#token);
    if (!this.#options.getToken || expiry === undefined) return;
    const remaining = expiry * 1000 - Date.now();
    const lead = Math.min(REFRESH_LEAD, Math.max(0, remaining) / 3);
    const delay = Math.max(0, remaining - lead);
    if (delay > MAX_TIMER) {
      // Timers fire at once past 2^31 - 1 ms: look again later.
      this.#setTimer('refresh', MAX_TIMER, () => this.#scheduleRefresh());
      return;
    }
    const generation = this.#generation;
    this.#setTimer('refresh', delay, () => this.#refresh(generation));
  }

  async #refresh(generation) {
    let token;
    try {
      token = await this.#options.getToken();
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#emit('error', error);
      // Try again while the token lasts; past it the server closes with 4200.
      this.#setTimer('refresh', REFRESH_RETRY, () => this.#refresh(generation));
      return;
    }
    if (!token) return;
    if (generation !== this.#generation || !this.#ready) {
      this.#token = token;
      return;
    }
    this.#dispatch('refresh', { token }, {
      reply: (msg) => {
        if (msg.error) {
          this.#emit('error', replyError(msg.error));
          return;
        }
        this.#token = token;
        this.#scheduleRefresh();
      },
      fail: () => {
        this.#token = token;
      },
    });
  }

  // Back to the first transport -------------------------------------------------------------

  /**
   * While connected over a fallback, tries the first transport again every `upgradeInterval`
   * ms (doubling after each probe that fails, up to `PROBE_BACKOFF_MAX` doublings): a second
   * connection that opens and sends `connect`. Only when its `connect` succeeds does the
   * client close the probe and move over (`#switch`); a probe that fails changes nothing.
   */
  #scheduleProbe() {
    const interval = this.#options.upgradeInterval;
    if (this.#current === 0 || !(interval > 0)) return;
    const delay = Math.min(MAX_TIMER, interval * 2 ** Math.min(this.#probeFailures,
      PROBE_BACKOFF_MAX));
    this.#setTimer('upgrade', delay, () => this.#startProbe(this.#generation));
  }

  async #startProbe(generation) {
    let token = this.#token;
    if (isTicket(token)) {
      // The ticket was spent by the current connection; the probe needs its own.
      if (!this.#options.getToken) return;
      try {
        token = await this.#options.getToken();
      } catch (error) {
        if (generation !== this.#generation) return;
        this.#emit('error', error);
        this.#probeFailed();
        return;
      }
      if (generation !== this.#generation || !token) return;
    }
    let probe;
    try {
      probe = this.#createTransport(this.#transports[0], token);
    } catch {
      return;
    }
    const timer = setTimeout(() => finish(false), this.#options.connectTimeout);
    const finish = (ok) => {
      if (this.#probe?.connection !== probe) return;
      this.#endProbe();
      if (generation !== this.#generation || !this.#ready) return;
      if (ok) this.#switchWhenIdle(0);
      else this.#probeFailed();
    };
    this.#probe = { connection: probe, timer };
    probe.onopen = () => {
      const fields = { token: isTicket(token) ? undefined : token, name: this.#options.name };
      probe.send(this.#encode({ id: 1, type: 'connect', ...fields, version: VERSION }));
    };
    probe.onmessage = (event) => {
      let msg = event.parsed;
      try {
        msg ??= this.#decode(event.data);
      } catch {
        return;
      }
      if (msg?.id === 1) finish(Boolean(msg.result));
    };
    probe.onerror = noop;
    probe.onclose = () => finish(false);
  }

  #probeFailed() {
    this.#probeFailures += 1;
    this.#scheduleProbe();
  }

  #endProbe() {
    const probe = this.#probe;
    if (!probe) return;
    this.#probe = null;
    clearTimeout(probe.timer);
    detach(probe.connection);
    try {
      probe.connection.close(1000, 'probe done');
    } catch {
      // Still connecting, in implementations that refuse to close then.
    }
  }

  /**
   * Moves the connection to transport `index` once no reply is awaited (or after
   * `ackTimeout` at most), so that no command in flight is cut off: the old session ends, a
   * new connection opens at once and resubscribes with `since`, as after any reconnection.
   */
  #switchWhenIdle(index) {
    this.#switchTo = index;
    this.#setTimer('switch', this.#options.ackTimeout, () => this.#switch());
    if (this.#pending.size === 0) this.#switch();
  }

  #switch() {
    const index = this.#switchTo;
    if (index === null || !this.#ready) return;
    const ws = this.#ws;
    const from = this.#active;
    this.#ws = null;
    detach(ws);
    try {
      ws.close(1000, 'switching transport');
    } catch {
      // Closing already.
    }
    this.#teardown(new SwitchboardError('disconnected', 'the connection moved to another '
      + 'transport before the reply', true));
    this.#useTransport(index);
    this.#switchedBack = index === 0;
    const to = this.#transports[index];
    const reason = `switching to ${to}`;
    this.#setState('disconnected', {
      code: 1000,
      reason,
      advice: 'reconnect',
      delay: 0,
      attempt: this.#attempt,
      nextTransport: to,
      transport: from,
      switching: true,
    });
    this.#open('reconnecting', { reason, attempt: this.#attempt, switching: true });
  }

  // Commands ---------------------------------------------------------------------------------

  #request(type, fields) {
    return new Promise((resolve, reject) => {
      const hooks = {
        reply: (msg) => (msg.error ? reject(replyError(msg.error)) : resolve(msg.result)),
        fail: reject,
        timeout: true,
      };
      if (this.#ready) {
        this.#dispatch(type, fields, hooks);
      } else if (this.#state === 'closed') {
        reject(new SwitchboardError('closed', 'the client is closed'));
      } else if (this.#options.queueSize === 0) {
        reject(new SwitchboardError('disconnected', 'not connected', true));
      } else if (this.#queue.length >= this.#options.queueSize) {
        reject(new SwitchboardError('queue_full', `${this.#queue.length} commands queued`, true));
      } else {
        this.#queue.push({ type, fields, hooks });
      }
    });
  }

  /** Sends a command on the current connection; `hooks.reply` gets the whole reply. */
  #dispatch(type, fields, hooks) {
    const id = this.#nextId++;
    const entry = { hooks, timer: null };
    this.#pending.set(id, entry);
    if (hooks.timeout) {
      entry.timer = setTimeout(() => {
        if (this.#pending.get(id) !== entry) return;
        this.#pending.delete(id);
        const message = `no reply to ${type} in ${this.#options.ackTimeout} ms`;
        hooks.fail(new SwitchboardError('timeout', message, true));
      }, this.#options.ackTimeout);
    }
    try {
      this.#ws.send(this.#encode({ id, type, ...fields }));
    } catch (error) {
      // The socket is closing: its close event fails every pending command.
      this.#lastError = error.message;
    }
  }

  /** A command in the connection's format: JSON text, or MessagePack bytes. */
  #encode(message) {
    return this.#options.format === 'msgpack' ? encodeMsgpack(message) : JSON.stringify(message);
  }

  /** A server message in the connection's format. */
  #decode(data) {
    if (this.#options.format === 'msgpack') return decodeMsgpack(data);
    return JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
  }

  /**
   * One message from the server: its text (or MessagePack bytes), or (long-polling) the
   * message already parsed.
   */
  #onMessage(data, parsed) {
    this.#lastReceived = Date.now();
    let msg = parsed;
    if (msg === undefined && this.#options.format === 'msgpack') {
      try {
        msg = decodeMsgpack(data);
      } catch (error) {
        this.#emit('error', new SwitchboardError('bad_message', `undecodable message: ${error.message}`));
        return;
      }
    }
    if (msg === undefined) {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
      try {
        msg = JSON.parse(text);
      } catch (error) {
        // A publication whose data cannot be parsed must not stall its subscription: read
        // what surrounds it, and let it take its place in the stream as undecodable.
        msg = salvage(text);
        if (msg === null) {
          const message = `undecodable message: ${error.message}`;
          this.#emit('error', new SwitchboardError('bad_message', message));
          return;
        }
      }
    }
    if (msg === null || typeof msg !== 'object') return;
    if ('push' in msg) {
      this.#onPush(msg);
      return;
    }
    const entry = this.#pending.get(msg.id);
    if (!entry) return;
    this.#pending.delete(msg.id);
    clearTimeout(entry.timer);
    entry.hooks.reply(msg);
    if (this.#switchTo !== null && this.#pending.size === 0) this.#switch();
  }

  #onPush(push) {
    switch (push.push) {
      case 'publication': {
        const rec = this.#subs.get(push.channel);
        if (rec) this.#onPublication(rec, push);
        break;
      }
      case 'join':
      case 'leave': {
        const rec = this.#subs.get(push.channel);
        if (rec?.status === 'subscribed') {
          call(rec.handlers[push.push], { channel: push.channel, client: push.client });
        }
        break;
      }
      case 'presence_count': {
        const rec = this.#subs.get(push.channel);
        if (rec?.status === 'subscribed') {
          const { channel, count, joined, left } = push;
          call(rec.handlers.presenceCount, { channel, count, joined, left });
        }
        break;
      }
      case 'unsubscribe': {
        const rec = this.#subs.get(push.channel);
        if (rec) this.#subscriptionFailed(rec, push.code, push.reason);
        break;
      }
      case 'disconnect':
        this.#disconnectPush = { code: push.code, reason: push.reason, advice: push.advice };
        break;
      default:
        // protocol.md §2: pushes of unknown kinds are ignored.
        break;
    }
  }

  // Subscriptions ----------------------------------------------------------------------------

  #sendSubscribe(rec) {
    rec.status = 'subscribing';
    rec.buffer = [];
    rec.paging = null;
    const position = rec.position;
    const since = position ? { offset: position.offset, epoch: position.epoch } : undefined;
    this.#dispatch('subscribe', { channel: rec.channel, since }, {
      reply: (msg) => this.#onSubscribed(rec, msg, since),
      fail: () => {},
    });
  }

  #onSubscribed(rec, msg, since) {
    if (this.#subs.get(rec.channel) !== rec) return; // Unsubscribed meanwhile.
    if (msg.error) {
      this.#subscriptionFailed(rec, msg.error.code, msg.error.message, msg.error.temporary);
      return;
    }
    const result = msg.result;
    rec.status = 'subscribed';
    rec.retries = 0;
    const paged = Boolean(since && result.more && result.epoch === since.epoch);
    if (paged) {
      // protocol.md §3, recovery in pages: read the rest with `history`, holding live
      // publications meanwhile; `recovered` is reported after the last page.
      rec.paging = {
        since,
        target: { offset: result.offset, epoch: result.epoch },
        recoverable: result.recoverable,
        last: since.offset,
        entries: [],
      };
    }
    if (paged) {
      // Nothing before the pages.
    } else if (since && result.recovered && result.epoch === since.epoch) {
      for (const publication of result.publications ?? []) {
        this.#deliver(rec, publication, result.epoch);
      }
    }
    if (!paged) rec.position = { offset: result.offset, epoch: result.epoch };
    const context = {
      channel: rec.channel,
      epoch: result.epoch,
      offset: result.offset,
      recoverable: result.recoverable,
    };
    if (rec.settle) {
      rec.settle.resolve(context);
      rec.settle = null;
    }
    call(rec.handlers.subscribed, context);
    if (paged) {
      const paging = rec.paging;
      if (this.#appendPage(paging, result.publications)) {
        this.#requestPage(rec, paging, result.next ?? since);
      } else {
        this.#endPaging(rec, false);
      }
      return;
    }
    if (since) {
      call(rec.handlers.recovered, { ...context, recovered: Boolean(result.recovered) });
    }
    const buffered = rec.buffer;
    rec.buffer = [];
    for (const push of buffered) this.#onPublication(rec, push);
  }

  /** Appends a page after what was read; false when it leaves a gap. */
  #appendPage(paging, publications = []) {
    for (const publication of publications) {
      if (publication.offset <= paging.last) continue;
      if (publication.offset !== paging.last + 1) return false;
      paging.last = publication.offset;
      paging.entries.push(publication);
    }
    return true;
  }

  #requestPage(rec, paging, since) {
    const { offset, epoch } = since;
    this.#dispatch('history', { channel: rec.channel, since: { offset, epoch } }, {
      reply: (msg) => this.#onPage(rec, paging, msg),
      // A lost connection resubscribes from the stored position; only a timeout ends here.
      fail: (error) => {
        if (rec.paging === paging && error.code === 'timeout') this.#endPaging(rec, false);
      },
      timeout: true,
    });
  }

  #onPage(rec, paging, msg) {
    if (rec.paging !== paging || this.#subs.get(rec.channel) !== rec) return;
    const page = msg.result;
    if (msg.error || !page || page.epoch !== paging.target.epoch) {
      // Refused, or the stream restarted: the gap cannot be filled.
      this.#endPaging(rec, false);
      return;
    }
    const before = paging.last;
    if (!this.#appendPage(paging, page.publications)) {
      this.#endPaging(rec, false);
    } else if (page.more && paging.last > before) {
      this.#requestPage(rec, paging, { offset: paging.last, epoch: paging.target.epoch });
    } else {
      this.#endPaging(rec, page.complete === true && paging.last >= paging.target.offset);
    }
  }

  /** Ends a recovery read in pages: delivers it when whole, reports it, then goes live. */
  #endPaging(rec, recovered) {
    const paging = rec.paging;
    rec.paging = null;
    const { since, target } = paging;
    if (recovered) {
      rec.position = { offset: since.offset, epoch: target.epoch };
      for (const entry of paging.entries) this.#deliver(rec, entry, target.epoch);
    } else {
      rec.position = { ...target };
    }
    call(rec.handlers.recovered, {
      channel: rec.channel,
      epoch: target.epoch,
      offset: target.offset,
      recoverable: paging.recoverable,
      recovered,
    });
    const buffered = rec.buffer;
    rec.buffer = [];
    for (const push of buffered) this.#onPublication(rec, push);
  }

  #onPublication(rec, push) {
    if (rec.status === 'subscribing' || rec.paging) {
      rec.buffer.push(push);
      return;
    }
    if (rec.status !== 'subscribed') return;
    const position = rec.position;
    if (push.offset <= position.offset) return; // A duplicate.
    if (push.offset > position.offset + 1) {
      // protocol.md §5: a gap is treated like a lost connection: resubscribe with `since`.
      this.#dispatch('unsubscribe', { channel: rec.channel }, { reply: () => {}, fail: () => {} });
      this.#sendSubscribe(rec);
      rec.buffer.push(push);
      return;
    }
    this.#deliver(rec, push, position.epoch);
  }

  /** Hands a publication to the application unless it is a duplicate, and advances. */
  #deliver(rec, publication, epoch) {
    if (rec.position && publication.offset <= rec.position.offset && rec.position.epoch === epoch) {
      return;
    }
    rec.position = { offset: publication.offset, epoch };
    if (publication.undecodable !== undefined) {
      call(rec.handlers.undecodable, {
        channel: rec.channel,
        offset: publication.offset,
        epoch,
        reason: publication.undecodable,
      });
      return;
    }
    call(rec.handlers.publication, {
      channel: rec.channel,
      offset: publication.offset,
      epoch,
      data: publication.data,
      info: publication.info,
    });
  }

  /** A refused `subscribe` or a server `unsubscribe` push: retry if temporary, else end. */
  #subscriptionFailed(rec, code, reason, temporary = TEMPORARY_CODES.has(code)) {
    rec.paging = null;
    if (temporary) {
      rec.status = 'retrying';
      rec.buffer = [];
      const delay = reconnectDelay('backoff', rec.retries, this.#options);
      rec.retries += 1;
      rec.retryTimer = setTimeout(() => {
        rec.retryTimer = null;
        if (this.#subs.get(rec.channel) !== rec) return;
        if (this.#ready) this.#sendSubscribe(rec);
        else rec.status = 'pending';
      }, delay);
      return;
    }
    this.#subs.delete(rec.channel);
    this.#endSubscription(rec, code, reason);
  }

  #unsubscribe(rec) {
    if (this.#subs.get(rec.channel) !== rec) return;
    this.#subs.delete(rec.channel);
    if (this.#ready && (rec.status === 'subscribing' || rec.status === 'subscribed')) {
      this.#dispatch('unsubscribe', { channel: rec.channel }, { reply: () => {}, fail: () => {} });
    }
    this.#endSubscription(rec, 'client', 'unsubscribe() was called');
  }

  #endSubscription(rec, code, reason) {
    rec.status = 'unsubscribed';
    clearTimeout(rec.retryTimer);
    if (rec.settle) {
      rec.settle.reject(new SwitchboardError(code, reason));
      rec.settle = null;
    }
    call(rec.handlers.unsubscribed, { channel: rec.channel, code, reason });
  }

  // Plumbing ---------------------------------------------------------------------------------

  #rejectQueue(error) {
    const queued = this.#queue;
    this.#queue = [];
    for (const entry of queued) entry.hooks.fail(error);
  }

  #setState(state, detail = {}) {
    const previous = this.#state;
    this.#state = state;
    const event = { state, previous, transport: this.#active, ...detail };
    this.#emit('state', event);
    this.#emit(state, event);
  }

  #emit(event, value) {
    const listeners = this.#listeners.get(event);
    if (!listeners) return;
    for (const fn of [...listeners]) call(fn, value);
  }

  #setTimer(name, delay, fn) {
    this.#clearTimer(name);
    this.#timers[name] = setTimeout(() => {
      this.#timers[name] = null;
      fn();
    }, delay);
  }

  #clearTimer(name) {
    // clearTimeout also clears an interval (HTML timers, Node's Timeout objects).
    clearTimeout(this.#timers[name]);
    this.#timers[name] = null;
  }
}

/** One channel's subscription, returned by `Switchboard.subscribe`. */
export class Subscription {
  #client;
  #rec;
  #unsubscribe;

  constructor(client, rec, ready, unsubscribe) {
    this.#client = client;
    this.#rec = rec;
    this.#unsubscribe = unsubscribe;
    /** Resolves on the first successful subscribe, rejects if the subscription ends first. */
    this.ready = ready;
  }

  /** The channel. */
  get channel() {
    return this.#rec.channel;
  }

  /** `pending`, `subscribing`, `subscribed`, `retrying` or `unsubscribed`. */
  get state() {
    return this.#rec.status;
  }

  /** The position `{offset, epoch}` of the last publication delivered, or null. */
  get position() {
    return this.#rec.position ? { ...this.#rec.position } : null;
  }

  /** Leaves the channel; no handler of this subscription is called after it. */
  unsubscribe() {
    this.#unsubscribe();
  }

  /** The connections subscribed to the channel. */
  presence() {
    return this.#client.presence(this.#rec.channel);
  }

  /** How many connections are subscribed to the channel. */
  presenceCount() {
    return this.#client.presenceCount(this.#rec.channel);
  }

  /** The channel's history, see `Switchboard.history`. */
  history(options) {
    return this.#client.history(this.#rec.channel, options);
  }
}

// HTTP transports ----------------------------------------------------------------------------
//
// docs/transports.md: Server-Sent Events and long-polling carry the same session as a
// WebSocket. Each is an object shaped like a WebSocket, as far as the client uses one:
// `onopen`, `onmessage({data})`, `onerror({message, status})`, `onclose({code, reason})`,
// `send(text)` and `close(code, reason)`, so that one piece of protocol logic drives all three.
// "Open" means the server gave the session id; a `disconnect` push ends the transport with its
// code, as a close frame ends a WebSocket.

/**
 * Commands of one HTTP session: `POST /session`, one command per line, one request in flight
 * at a time so that commands reach the server in the order they were sent; lines sent
 * meanwhile go together in the next request, up to `maxBody` bytes.
 */
class Uplink {
  #fetch;
  #url;
  #session;
  #fail;
  #lines = [];
  #busy = false;
  #stopped = false;
  /** The server's `max_message_size`, once the `connect` reply told it. */
  maxBody = DEFAULT_MAX_BODY;

  /**
   * @param {typeof fetch} fetchFn
   * @param {string} url the `/session` endpoint
   * @param {string} session the session id, sent in the `Switchboard-Session` header
   * @param {(code: number, reason: string) => void} fail called once when a request fails
   */
  constructor(fetchFn, url, session, fail) {
    this.#fetch = fetchFn;
    this.#url = url;
    this.#session = session;
    this.#fail = fail;
  }

  send(line) {
    if (this.#stopped) return;
    this.#lines.push(line);
    if (!this.#busy) this.#flush();
  }

  /** Sends nothing more; with `end`, also ends the session on the server (best effort). */
  stop(end) {
    this.#stopped = true;
    this.#lines = [];
    if (!end) return;
    this.#fetch(this.#url, {
      method: 'DELETE',
      headers: { [SESSION_HEADER]: this.#session },
      credentials: 'include',
      // Let the request outlive the page, so that leaving it ends the session at once.
      keepalive: true,
    }).then((response) => response.body?.cancel(), noop);
  }

  async #flush() {
    this.#busy = true;
    while (this.#lines.length > 0 && !this.#stopped) {
      const body = this.#take();
      let response;
      try {
        response = await this.#fetch(this.#url, {
          method: 'POST',
          headers: { [SESSION_HEADER]: this.#session, 'Content-Type': 'text/plain' },
          body,
          credentials: 'include',
        });
        await response.body?.cancel();
      } catch (error) {
        // The commands may or may not have arrived: the connection is lost, as a WebSocket's
        // would be.
        this.#failOnce(1006, `POST /session failed: ${error.message}`);
        return;
      }
      if (response.status === 404) {
        this.#failOnce(4002, 'session not found');
        return;
      }
      if (!response.ok) {
        // 413: a command larger than `max_message_size`, as a WebSocket closes with 1009.
        const code = response.status === 413 ? 1009 : 1006;
        this.#failOnce(code, `POST /session answered ${response.status}`);
        return;
      }
    }
    this.#busy = false;
  }

  /** The lines of the next request: as many as fit in `maxBody`, at least one. */
  #take() {
    const encoder = new TextEncoder();
    let size = 0;
    let count = 0;
    for (const line of this.#lines) {
      const length = encoder.encode(line).length + (count > 0 ? 1 : 0);
      if (count > 0 && size + length > this.maxBody) break;
      size += length;
      count += 1;
    }
    return this.#lines.splice(0, count).join('\n');
  }

  #failOnce(code, reason) {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#lines = [];
    this.#fail(code, reason);
  }
}

/**
 * Server-Sent Events: `GET /sse` with an `EventSource` downstream, `POST /session` upstream.
 * An `EventSource` whose stream breaks reconnects on its own with `Last-Event-ID`, and the
 * server carries on with the same session: the transport stays open meanwhile. It ends when
 * the server says so (a `disconnect` push: 4002 when the session cannot be resumed), when the
 * `EventSource` gives up, or when a command cannot be delivered.
 */
class SseTransport {
  #es;
  #fetch;
  #sessionUrl;
  #uplink = null;
  #session = null;
  #closed = false;
  onopen = noop;
  onmessage = noop;
  onerror = noop;
  onclose = noop;

  /**
   * @param {string} url the `/sse` endpoint, with `?ticket=` when there is one
   * @param {string} sessionUrl the `/session` endpoint
   * @param {{EventSource: typeof EventSource, fetch: typeof fetch}} env
   */
  constructor(url, sessionUrl, { EventSource, fetch }) {
    this.#fetch = fetch;
    this.#sessionUrl = sessionUrl;
    // With credentials: a token cookie goes along to a server on another origin too.
    const es = new EventSource(url, { withCredentials: true });
    this.#es = es;
    es.addEventListener('session', (event) => this.#onSession(event));
    es.onmessage = (event) => this.#receive(event.data);
    es.onerror = (event) => this.#onError(event);
  }

  set maxBody(bytes) {
    if (this.#uplink) this.#uplink.maxBody = bytes;
  }

  send(text) {
    if (!this.#uplink) throw new Error('the event stream is not open');
    this.#uplink.send(text);
  }

  close(code = 1000, reason = '') {
    this.#end(code, reason, true);
  }

  #onSession(event) {
    if (this.#closed) return;
    let session;
    try {
      session = JSON.parse(event.data).session;
    } catch {
      session = undefined;
    }
    if (typeof session !== 'string' || session === '') {
      this.#end(1002, 'the session event carries no session id', false);
      return;
    }
    if (this.#session !== null) {
      // A resumed stream carries on without a new `session` event; a new one means the old
      // session is gone.
      if (session !== this.#session) this.#end(4002, 'the server started a new session', true);
      return;
    }
    this.#session = session;
    this.#uplink = new Uplink(this.#fetch, this.#sessionUrl, session, (code, reason) => {
      this.#end(code, reason, code !== 4002);
    });
    this.onopen({ type: 'open' });
  }

  #receive(text) {
    if (this.#closed || this.#session === null) return;
    this.onmessage({ data: text });
    const push = disconnectPush(text);
    // protocol.md §4: the push stands for the close frame; the server ends the stream next.
    if (push) this.#end(push.code, push.reason ?? '', false);
  }

  #onError(event) {
    if (this.#closed) return;
    // An EventSource reconnecting by itself is CONNECTING (0); one that gave up (an answer
    // other than a 200 event stream) is CLOSED (2).
    if (this.#session !== null && this.#es.readyState !== 2) return;
    const status = typeof event?.code === 'number' ? event.code : undefined;
    const message = event?.message ?? (status ? `GET /sse answered ${status}` : undefined);
    this.onerror({ type: 'error', message, status });
    this.#end(1006, message ?? 'the event stream failed', this.#session !== null);
  }

  /** Ends the transport: no more events but the close; `end` also ends the session. */
  #end(code, reason, end) {
    if (this.#closed) return;
    this.#closed = true;
    this.#es.close();
    this.#uplink?.stop(end);
    // Asynchronously, as a WebSocket reports its close.
    setTimeout(() => this.onclose({ type: 'close', code, reason, wasClean: code !== 1006 }));
  }
}

/**
 * HTTP long-polling: `POST /poll` opens a session, each `GET /poll?ack=n` brings the next
 * batch of messages, `POST /session` carries commands. A poll that fails is sent again (the
 * server keeps what was not acknowledged), and messages numbered at or below what arrived
 * already are dropped.
 */
class PollTransport {
  #fetch;
  #pollUrl;
  #sessionUrl;
  #uplink = null;
  #session = null;
  /** The number of the last message received. */
  #have = 0;
  #pollTimeout = DEFAULT_POLL_TIMEOUT;
  #controller = null;
  #closed = false;
  onopen = noop;
  onmessage = noop;
  onerror = noop;
  onclose = noop;

  /**
   * @param {string} url the `/poll` endpoint to open with, with `?ticket=` when there is one
   * @param {string} pollUrl the `/poll` endpoint to poll
   * @param {string} sessionUrl the `/session` endpoint
   * @param {{fetch: typeof fetch, authorization?: string}} env
   */
  constructor(url, pollUrl, sessionUrl, { fetch, authorization }) {
    this.#fetch = fetch;
    this.#pollUrl = pollUrl;
    this.#sessionUrl = sessionUrl;
    this.#start(url, authorization);
  }

  set maxBody(bytes) {
    if (this.#uplink) this.#uplink.maxBody = bytes;
  }

  send(text) {
    if (!this.#uplink) throw new Error('the long-poll session is not open');
    this.#uplink.send(text);
  }

  close(code = 1000, reason = '') {
    this.#end(code, reason, true);
  }

  async #start(url, authorization) {
    const controller = new AbortController();
    this.#controller = controller;
    let opened;
    try {
      const response = await this.#fetch(url, {
        method: 'POST',
        headers: authorization ? { Authorization: authorization } : {},
        credentials: 'include',
        cache: 'no-store',
        signal: controller.signal,
      });
      if (!response.ok) {
        const message = await refusalMessage(response, 'POST /poll');
        if (this.#closed) return;
        this.onerror({ type: 'error', message, status: response.status });
        this.#end(1006, message, false);
        return;
      }
      opened = await response.json();
    } catch (error) {
      if (this.#closed) return;
      this.onerror({ type: 'error', message: `POST /poll failed: ${error.message}` });
      this.#end(1006, `POST /poll failed: ${error.message}`, false);
      return;
    }
    const session = opened?.session;
    if (this.#closed) {
      // Closed while opening: end the session the server just made.
      if (typeof session === 'string') {
        new Uplink(this.#fetch, this.#sessionUrl, session, noop).stop(true);
      }
      return;
    }
    if (typeof session !== 'string' || session === '') {
      this.#end(1002, 'POST /poll gave no session id', false);
      return;
    }
    if (opened.poll_timeout > 0) this.#pollTimeout = opened.poll_timeout * 1000;
    this.#session = session;
    this.#uplink = new Uplink(this.#fetch, this.#sessionUrl, session, (code, reason) => {
      this.#end(code, reason, code !== 4002);
    });
    this.onopen({ type: 'open' });
    this.#poll();
  }

  async #poll() {
    let retry = POLL_RETRY_MIN;
    while (!this.#closed) {
      const controller = new AbortController();
      this.#controller = controller;
      // A proxy may hold a poll forever: give up on it a while after the server would answer.
      const timer = setTimeout(() => controller.abort(), this.#pollTimeout + POLL_MARGIN);
      let status;
      let text;
      try {
        const response = await this.#fetch(`${this.#pollUrl}?ack=${this.#have}`, {
          headers: { [SESSION_HEADER]: this.#session },
          credentials: 'include',
          cache: 'no-store',
          signal: controller.signal,
        });
        status = response.status;
        text = await response.text();
      } catch {
        status = 0;
      } finally {
        clearTimeout(timer);
      }
      if (this.#closed) return;
      if (status === 200) {
        retry = POLL_RETRY_MIN;
        this.#receive(text);
        continue;
      }
      if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        // Not something a retry mends (the door changed its mind, a proxy refuses).
        this.#end(1006, `GET /poll answered ${status}`, true);
        return;
      }
      // Lost on the way, or a proxy's 5xx: the server keeps the messages until acknowledged,
      // so poll again. The heartbeat gives up on a session that stays unreachable.
      await new Promise((resolve) => setTimeout(resolve, retry));
      retry = Math.min(retry * 2, POLL_RETRY_MAX);
    }
  }

  /** Delivers a batch `{seq, messages}`: each message numbered `seq`, `seq + 1`, …, once. */
  #receive(text) {
    let seq;
    let messages;
    try {
      const batch = JSON.parse(text);
      seq = batch.seq;
      messages = batch.messages.map((parsed) => ({ parsed }));
    } catch {
      // A message JSON cannot read would take the whole batch with it: split the batch by
      // hand, and let the client read (or salvage) each message on its own.
      try {
        const fields = members(text);
        seq = JSON.parse(fields.get('seq'));
        messages = elements(fields.get('messages')).map((data) => ({ data }));
      } catch {
        this.#end(1002, 'GET /poll answered an unreadable batch', true);
        return;
      }
    }
    if (!Number.isSafeInteger(seq) || seq < 1) {
      this.#end(1002, 'GET /poll answered a batch without seq', true);
      return;
    }
    for (const [i, message] of messages.entries()) {
      const number = seq + i;
      if (number <= this.#have) continue; // Sent again: it arrived before.
      if (number > this.#have + 1) {
        this.#end(1006, `GET /poll skipped messages ${this.#have + 1} to ${number - 1}`, true);
        return;
      }
      this.#have = number;
      this.onmessage(message);
      if (this.#closed) return;
      const push = message.parsed ?? disconnectPush(message.data);
      if (push?.push === 'disconnect') {
        this.#end(push.code, push.reason ?? '', false);
        return;
      }
    }
  }

  #end(code, reason, end) {
    if (this.#closed) return;
    this.#closed = true;
    this.#controller?.abort();
    this.#uplink?.stop(end);
    setTimeout(() => this.onclose({ type: 'close', code, reason, wasClean: code !== 1006 }));
  }
}

/** The `disconnect` push in `text`, or null. */
function disconnectPush(text) {
  if (typeof text !== 'string' || !text.includes('"disconnect"')) return null;
  try {
    const msg = JSON.parse(text);
    return msg?.push === 'disconnect' ? msg : null;
  } catch {
    return null;
  }
}

/** What a refused HTTP request says: its JSON error's message, or its status. */
async function refusalMessage(response, what) {
  let detail = '';
  try {
    const body = JSON.parse(await response.text());
    detail = body?.error?.message ?? body?.error?.code ?? '';
  } catch {
    // Not JSON: the status says enough.
  }
  return `${what} answered ${response.status}${detail ? `: ${detail}` : ''}`;
}

// Helpers ------------------------------------------------------------------------------------

function wsUrl(url) {
  const base = globalThis.location?.href;
  const parsed = base ? new URL(url, base) : new URL(url);
  if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
  if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
  return parsed.toString();
}

function detach(ws) {
  // No-ops rather than null: the `ws` package throws an unhandled 'error' without a listener.
  ws.onopen = noop;
  ws.onmessage = noop;
  ws.onerror = noop;
  ws.onclose = noop;
}

function noop() {}

/**
 * What can be read of a server message that `JSON.parse` refused: the envelope of a
 * publication push or of a reply, with each publication's `data` parsed on its own. A
 * publication whose data cannot be parsed keeps its offset and gets `undecodable` (the
 * reason) instead of `data`. Null when not even the envelope can be read.
 */
export function salvage(text) {
  try {
    const top = members(text);
    const field = (fields, key) => (fields.has(key) ? JSON.parse(fields.get(key)) : undefined);
    if (top.has('push')) {
      if (field(top, 'push') !== 'publication') return null;
      const publication = salvagePublication(top);
      if (publication.undecodable === undefined) return null;
      return { push: 'publication', channel: field(top, 'channel'), ...publication };
    }
    if (!top.has('id')) return null;
    const msg = { id: field(top, 'id') };
    if (top.has('error')) msg.error = field(top, 'error');
    if (top.has('result')) {
      msg.result = {};
      for (const [key, raw] of members(top.get('result'))) {
        msg.result[key] = key === 'publications'
          ? elements(raw).map((element) => salvagePublication(members(element)))
          : JSON.parse(raw);
      }
    }
    return msg;
  } catch {
    return null;
  }
}

function salvagePublication(fields) {
  const publication = { offset: JSON.parse(fields.get('offset')) };
  if (fields.has('info')) publication.info = JSON.parse(fields.get('info'));
  try {
    publication.data = JSON.parse(fields.get('data'));
  } catch (error) {
    publication.undecodable = error.message;
  }
  return publication;
}

/** The members of the JSON object `text`, as a Map from key to the value's source text. */
function members(text) {
  const fields = new Map();
  let i = expect(text, skipSpace(text, 0), '{');
  i = skipSpace(text, i);
  if (text[i] === '}') return fields;
  for (;;) {
    const keyEnd = skipString(text, expect(text, i, '"') - 1);
    const key = JSON.parse(text.slice(i, keyEnd));
    const start = expect(text, skipSpace(text, keyEnd), ':');
    const end = valueEnd(text, start);
    fields.set(key, text.slice(start, end));
    i = skipSpace(text, end);
    if (text[i] === '}') return fields;
    i = skipSpace(text, expect(text, i, ','));
  }
}

/** The elements of the JSON array `text`, as their source texts. */
function elements(text) {
  const list = [];
  let i = skipSpace(text, expect(text, skipSpace(text, 0), '['));
  if (text[i] === ']') return list;
  for (;;) {
    const end = valueEnd(text, i);
    list.push(text.slice(i, end));
    i = skipSpace(text, end);
    if (text[i] === ']') return list;
    i = expect(text, i, ',');
  }
}

/** Where the value starting at `i` ends: nesting is counted, never recursed into. */
function valueEnd(text, i) {
  let depth = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      i = skipString(text, i);
      if (depth === 0) return i;
      continue;
    }
    if (c === '[' || c === '{') {
      depth += 1;
    } else if (c === ']' || c === '}') {
      if (depth === 0) return i;
      depth -= 1;
      if (depth === 0) return i + 1;
    } else if (c === ',' && depth === 0) {
      return i;
    }
    i += 1;
  }
  if (depth === 0) return i;
  throw new SyntaxError('unterminated value');
}

function skipString(text, i) {
  for (i += 1; i < text.length; i += 1) {
    if (text[i] === '\\') i += 1;
    else if (text[i] === '"') return i + 1;
  }
  throw new SyntaxError('unterminated string');
}

function skipSpace(text, i) {
  while (i < text.length && ' \t\n\r'.includes(text[i])) i += 1;
  return i;
}

function expect(text, i, c) {
  if (text[i] !== c) throw new SyntaxError(`expected ${c} at ${i}`);
  return i + 1;
}

/**
 * The HTTP status of a refused upgrade, when the WebSocket implementation reveals it (the
 * `ws` package: "Unexpected server response: 401"); browsers never do.
 */
function refusalStatus(message) {
  const match = /Unexpected server response: (\d{3})/.exec(message ?? '');
  return match ? Number(match[1]) : undefined;
}

/**
 * `value` as MessagePack (the format of `switchboard.v1.msgpack`), holding what JSON can
 * express (protocol.md, MessagePack): `null` and `undefined` as nil, booleans, integers in the
 * safe range as the smallest integer type, other finite numbers as float 64 (NaN and
 * infinities as nil, as `JSON.stringify` writes null), strings, arrays, and other objects as
 * maps of their own enumerable string keys (those whose value is `undefined` left out).
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function encodeMsgpack(value) {
  const out = new MsgpackWriter();
  out.value(value, 0);
  return out.bytes();
}

/**
 * The value of one MessagePack message (an `ArrayBuffer` or a typed array): maps become
 * plain objects, bin a `Uint8Array`, 64-bit integers numbers. Throws on truncated input,
 * trailing bytes, ext types (the server sends none) and nesting past `MAX_DEPTH`.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {unknown}
 */
export function decodeMsgpack(data) {
  const bytes = data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const reader = new MsgpackReader(bytes);
  const value = reader.value(0);
  if (reader.at !== bytes.length) throw new Error('trailing bytes after a MessagePack value');
  return value;
}

/** Deepest nesting `encodeMsgpack` and `decodeMsgpack` accept. */
const MAX_DEPTH = 128;

class MsgpackWriter {
  #buffer = new Uint8Array(256);
  #view = new DataView(this.#buffer.buffer);
  #length = 0;

  bytes() {
    return this.#buffer.slice(0, this.#length);
  }

  value(value, depth) {
    if (depth > MAX_DEPTH) throw new TypeError('value nested too deeply for MessagePack');
    if (value === null || value === undefined) this.#byte(0xc0);
    else if (value === false) this.#byte(0xc2);
    else if (value === true) this.#byte(0xc3);
    else if (typeof value === 'number') this.#number(value);
    else if (typeof value === 'string') this.#string(value);
    else if (Array.isArray(value)) {
      this.#header(value.length, 0x90, 15, 0xdc);
      for (const item of value) this.value(item, depth + 1);
    } else if (typeof value === 'object') {
      const entries = Object.entries(value).filter(([, v]) => v !== undefined);
      this.#header(entries.length, 0x80, 15, 0xde);
      for (const [key, item] of entries) {
        this.#string(key);
        this.value(item, depth + 1);
      }
    } else {
      throw new TypeError(`cannot encode a ${typeof value} as MessagePack`);
    }
  }

  #number(n) {
    if (Number.isSafeInteger(n)) {
      if (n >= 0 && n < 0x80) this.#byte(n);
      else if (n < 0 && n >= -32) this.#byte(n & 0xff);
      else if (n >= 0) {
        if (n <= 0xff) this.#fixed(0xcc, 1, (v, at) => v.setUint8(at, n));
        else if (n <= 0xffff) this.#fixed(0xcd, 2, (v, at) => v.setUint16(at, n));
        else if (n <= 0xffffffff) this.#fixed(0xce, 4, (v, at) => v.setUint32(at, n));
        else this.#fixed(0xcf, 8, (v, at) => v.setBigUint64(at, BigInt(n)));
      } else if (n >= -0x80) this.#fixed(0xd0, 1, (v, at) => v.setInt8(at, n));
      else if (n >= -0x8000) this.#fixed(0xd1, 2, (v, at) => v.setInt16(at, n));
      else if (n >= -0x80000000) this.#fixed(0xd2, 4, (v, at) => v.setInt32(at, n));
      else this.#fixed(0xd3, 8, (v, at) => v.setBigInt64(at, BigInt(n)));
      return;
    }
    if (!Number.isFinite(n)) {
      this.#byte(0xc0);
      return;
    }
    this.#fixed(0xcb, 8, (v, at) => v.setFloat64(at, n));
  }

  #string(text) {
    const bytes = new TextEncoder().encode(text);
    if (bytes.length < 32) this.#byte(0xa0 | bytes.length);
    else this.#length32(bytes.length, 0xd9);
    this.#raw(bytes);
  }

  /** An array or map header: fix form up to `fixMax`, else 16 or 32 bits. */
  #header(length, fix, fixMax, code16) {
    if (length <= fixMax) this.#byte(fix | length);
    else if (length <= 0xffff) this.#fixed(code16, 2, (v, at) => v.setUint16(at, length));
    else this.#fixed(code16 + 1, 4, (v, at) => v.setUint32(at, length));
  }

  /** A str length: 8, 16 or 32 bits after `code8`, `code8 + 1`, `code8 + 2`. */
  #length32(length, code8) {
    if (length <= 0xff) this.#fixed(code8, 1, (v, at) => v.setUint8(at, length));
    else if (length <= 0xffff) this.#fixed(code8 + 1, 2, (v, at) => v.setUint16(at, length));
    else this.#fixed(code8 + 2, 4, (v, at) => v.setUint32(at, length));
  }

  #fixed(code, size, write) {
    this.#byte(code);
    this.#reserve(size);
    write(this.#view, this.#length);
    this.#length += size;
  }

  #byte(b) {
    this.#reserve(1);
    this.#buffer[this.#length++] = b;
  }

  #raw(bytes) {
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  #reserve(n) {
    if (this.#length + n <= this.#buffer.length) return;
    const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + n));
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
    this.#view = new DataView(grown.buffer);
  }
}

class MsgpackReader {
  at = 0;
  #bytes;
  #view;

  constructor(bytes) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw new Error('MessagePack nested too deeply');
    const b = this.#u(1);
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b < 0xc0) return this.#string(b & 0x1f);
    if (b >= 0x90 && b < 0xa0) return this.#array(b & 0x0f, depth);
    if (b >= 0x80 && b < 0x90) return this.#map(b & 0x0f, depth);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.#take(this.#u(1)).slice();
      case 0xc5: return this.#take(this.#u(2)).slice();
      case 0xc6: return this.#take(this.#u(4)).slice();
      case 0xca: return this.#read(4, (v, at) => v.getFloat32(at));
      case 0xcb: return this.#read(8, (v, at) => v.getFloat64(at));
      case 0xcc: return this.#u(1);
      case 0xcd: return this.#u(2);
      case 0xce: return this.#u(4);
      case 0xcf: return Number(this.#read(8, (v, at) => v.getBigUint64(at)));
      case 0xd0: return this.#read(1, (v, at) => v.getInt8(at));
      case 0xd1: return this.#read(2, (v, at) => v.getInt16(at));
      case 0xd2: return this.#read(4, (v, at) => v.getInt32(at));
      case 0xd3: return Number(this.#read(8, (v, at) => v.getBigInt64(at)));
      case 0xd9: return this.#string(this.#u(1));
      case 0xda: return this.#string(this.#u(2));
      case 0xdb: return this.#string(this.#u(4));
      case 0xdc: return this.#array(this.#u(2), depth);
      case 0xdd: return this.#array(this.#u(4), depth);
      case 0xde: return this.#map(this.#u(2), depth);
      case 0xdf: return this.#map(this.#u(4), depth);
      default: throw new Error(`unsupported MessagePack type 0x${b.toString(16)}`);
    }
  }

  #array(length, depth) {
    const items = [];
    for (let i = 0; i < length; i += 1) items.push(this.value(depth + 1));
    return items;
  }

  #map(length, depth) {
    const object = {};
    for (let i = 0; i < length; i += 1) {
      const key = this.value(depth + 1);
      if (typeof key !== 'string') throw new Error('MessagePack map key is not a string');
      // Defined as an own property, so that a key such as `__proto__` is only data.
      Object.defineProperty(object, key, {
        value: this.value(depth + 1), enumerable: true, writable: true, configurable: true,
      });
    }
    return object;
  }

  #string(length) {
    return new TextDecoder('utf-8', { fatal: true }).decode(this.#take(length));
  }

  #u(size) {
    if (size === 1) return this.#read(1, (v, at) => v.getUint8(at));
    if (size === 2) return this.#read(2, (v, at) => v.getUint16(at));
    return this.#read(4, (v, at) => v.getUint32(at));
  }

  #read(size, get) {
    if (this.at + size > this.#bytes.length) throw new Error('truncated MessagePack');
    const value = get(this.#view, this.at);
    this.at += size;
    return value;
  }

  #take(length) {
    if (this.at + length > this.#bytes.length) throw new Error('truncated MessagePack');
    const bytes = this.#bytes.subarray(this.at, this.at + length);
    this.at += length;
    return bytes;
  }
}

/**
 * The transports of `wanted` that this environment has, in order. Unknown names are a
 * mistake; a missing implementation (no EventSource in Node 20) just drops that transport.
 */
function availableTransports(wanted, has) {
  if (!Array.isArray(wanted) || wanted.length === 0) {
    throw new TypeError('transports must be a non-empty array');
  }
  for (const name of wanted) {
    if (!TRANSPORTS.includes(name)) {
      throw new TypeError(`unknown transport ${JSON.stringify(name)}: use ${TRANSPORTS.join(', ')}`);
    }
  }
  const usable = [...new Set(wanted)].filter((name) => has[name]);
  if (usable.length === 0) {
    throw new TypeError(`none of the transports ${wanted.join(', ')} is available here: pass `
      + 'a `WebSocket`, `EventSource` or `fetch` implementation');
  }
  return usable;
}

/**
 * The HTTP endpoint `path` (`sse`, `poll`, `session`) next to the WebSocket endpoint `url`:
 * its last path segment replaced (`wss://host/rt/ws` → `https://host/rt/sse`). Only opening
 * requests keep the URL's query, with `ticket` added when there is one.
 */
function httpEndpoint(url, path, ticket) {
  const parsed = new URL(url);
  parsed.protocol = parsed.protocol === 'wss:' ? 'https:' : 'http:';
  parsed.pathname = parsed.pathname.replace(/[^/]*$/, path);
  parsed.hash = '';
  if (ticket === null) parsed.search = '';
  else if (ticket) parsed.searchParams.set('ticket', ticket);
  return parsed.toString();
}

function isTicket(token) {
  return typeof token === 'string' && token !== '' && !token.includes('.');
}

function withTicket(url, ticket) {
  const parsed = new URL(url);
  parsed.searchParams.set('ticket', ticket);
  return parsed.toString();
}

function isPast(expiry) {
  return expiry !== undefined && expiry * 1000 <= Date.now();
}

function replyError(error) {
  return new SwitchboardError(error.code, error.message, Boolean(error.temporary));
}

/** Calls an application callback; its exceptions surface as uncaught, not in the client. */
function call(fn, value) {
  if (typeof fn !== 'function') return;
  try {
    fn(value);
  } catch (error) {
    setTimeout(() => {
      throw error;
    });
  }
}

/** Error codes whose `temporary` flag is set (protocol.md §7). */
const TEMPORARY_CODES = new Set(['unavailable', 'internal', 'rate_limited']);
/** protocol.md §8: `reconnect` advice waits a random delay of at most 1 s. */
const RECONNECT_JITTER = 1000;
/** protocol.md §3 `connect`: the server's default ping interval. */
const DEFAULT_PING_INTERVAL = 25000;
/** Refresh a token this long before it expires at most (a third of its life at least). */
const REFRESH_LEAD = 30000;
/** After a failed `getToken` for a refresh, try again this much later. */
const REFRESH_RETRY = 5000;
/** The longest delay timers honour (HTML and Node: a signed 32-bit count of ms). */
const MAX_TIMER = 2 ** 31 - 1;
/** Consecutive failures to open after which `getToken` is asked for a new token. */
const OPEN_FAILURES_BEFORE_TOKEN = 3;
/** Failures to open a transport that has worked before, in a row, before the next one. */
const OPEN_FAILURES_BEFORE_FALLBACK = 3;
/** A connection that closes abnormally within this many ms of opening died young. */
const SHORT_LIVED = 10000;
/** Connections of one transport that died young in a row before the next transport. */
const YOUNG_DEATHS_BEFORE_FALLBACK = 2;
/** The probe interval doubles at most this many times (64 min with the default minute). */
const PROBE_BACKOFF_MAX = 6;
/** docs/transports.md: the header that names an HTTP session. */
const SESSION_HEADER = 'Switchboard-Session';
/** Largest `POST /session` body until the `connect` reply gives `max_message_size`. */
const DEFAULT_MAX_BODY = 65536;
/** docs/transports.md: how long the server holds a poll, until it says otherwise. */
const DEFAULT_POLL_TIMEOUT = 25000;
/** A poll unanswered this long past the server's `poll_timeout` is given up and sent again. */
const POLL_MARGIN = 10000;
/** A failed poll is sent again after this delay, doubling up to `POLL_RETRY_MAX`. */
const POLL_RETRY_MIN = 250;
const POLL_RETRY_MAX = 4000;
