// Types of switchboard.js: the Switchboard client for browsers and Node (protocol v1, JSON or
// MessagePack).

/** The client library's version, sent in `connect`. */
export const VERSION: string;
/** `switchboard.v1.json`: the JSON wire format, the default. */
export const SUBPROTOCOL: 'switchboard.v1.json';
/** `switchboard.v1.msgpack`: the MessagePack wire format, with `format: 'msgpack'`. */
export const MSGPACK_SUBPROTOCOL: 'switchboard.v1.msgpack';
/** `switchboard.bearer.`: the subprotocol entry that carries a token in the upgrade. */
export const BEARER_PREFIX: 'switchboard.bearer.';
/** The defaults of `Options`. */
export const DEFAULTS: Readonly<
  Required<Omit<Options, 'token' | 'getToken' | 'WebSocket' | 'EventSource' | 'fetch'>>
>;
/** The transports this client speaks, in its default order of preference. */
export const TRANSPORTS: readonly Transport[];

/**
 * How messages travel (docs/transports.md): `websocket` (`/ws`), `sse` (Server-Sent Events,
 * `/sse` down and `POST /session` up) or `longpoll` (`/poll` down, `POST /session` up).
 */
export type Transport = 'websocket' | 'sse' | 'longpoll';

/** What to do after a close (protocol.md §8). */
export type Advice = 'reconnect' | 'backoff' | 'refresh_token' | 'stop';

export type State = 'connecting' | 'connected' | 'disconnected' | 'reconnecting' | 'closed';

/** A position in a channel's stream: the last publication seen in an epoch. */
export interface Position {
  offset: number;
  epoch: string;
}

/** A connection, as seen in presence, joins, leaves and publications. */
export interface ClientInfo {
  client: string;
  user?: string;
  info?: unknown;
}

export interface Publication<T = unknown> {
  channel: string;
  offset: number;
  epoch: string;
  data: T;
  /** The publishing connection; absent when the server published. */
  info?: ClientInfo;
}

/** The `connect` result. */
export interface Session {
  client: string;
  user?: string;
  version: string;
  /** Seconds between the server's WebSocket pings; 0: none. */
  ping_interval: number;
  limits: { max_message_size: number; max_subscriptions: number };
}

/** The argument of `state` listeners (and of listeners named after a state). */
export interface StateEvent {
  state: State;
  previous: State;
  /**
   * The transport of the attempt (`connecting`, `reconnecting`), of the connection
   * (`connected`), or of the connection or attempt that just ended (`disconnected`, `closed`).
   */
  transport: Transport;
  /** `disconnected`: the transport the next attempt uses. */
  nextTransport?: Transport;
  /**
   * `disconnected`, `reconnecting`: not a loss but a move from a fallback back to the first
   * transport, which a probe found working again.
   */
  switching?: boolean;
  /** Why: a close reason, `heartbeat timeout`, `connect timeout`, `client closed`, … */
  reason?: string;
  /** The close code (1006 for a connection that failed or was abandoned). */
  code?: number;
  /** The HTTP status of a refused upgrade, when the WebSocket implementation shows it. */
  status?: number;
  advice?: Advice;
  /** `disconnected`: milliseconds until the next attempt. */
  delay?: number;
  /** `disconnected`, `reconnecting`: the attempt's number since the last stable connection. */
  attempt?: number;
  /** `connected`: this connection's id and user. */
  client?: string;
  user?: string;
}

export interface Options {
  /** A JWT or ticket, sent in the upgrade (see `bearerProtocol`) and in `connect`. */
  token?: string;
  /**
   * Returns a token: before the first connection when there is no `token`, before one whose
   * JWT has expired, after a close with 4200, after a refused upgrade (once), after three
   * failed attempts in a row, and to `refresh` a JWT before its `exp`. A falsy result closes
   * the client; a rejection is reported on `error` and retried with backoff.
   */
  getToken?: () => Promise<string | null | undefined>;
  /**
   * Wire format: `json`, or `msgpack` (binary frames, so over a WebSocket only: `transports`
   * is then `['websocket']` whatever it says). Default `json`.
   */
  format?: 'json' | 'msgpack';
  /** First backoff bound in ms; doubles per failed attempt. Default 500. */
  minReconnectDelay?: number;
  /** Largest backoff bound in ms. Default 30000. */
  maxReconnectDelay?: number;
  /** A connection up this long (ms) resets the backoff. Default 10000. */
  stableAfter?: number;
  /** Commands held while disconnected; beyond, `queue_full`. 0: reject at once. Default 1000. */
  queueSize?: number;
  /** Ms to wait for a command's reply once sent; then it fails with `timeout`. Default 10000. */
  ackTimeout?: number;
  /** Ms from opening the socket to the `connect` reply before giving up. Default 10000. */
  connectTimeout?: number;
  /** Ms of silence beyond the ping interval before the connection counts as dead. Default 10000. */
  heartbeatMargin?: number;
  /**
   * Offer the token as a `switchboard.bearer.<token>` subprotocol entry. Turn off for a server
   * in first-message mode, so that a refused token is a 4401 close a browser can see.
   * Default true.
   */
  bearerProtocol?: boolean;
  /** Connect on construction (in a microtask). Default true. */
  autoConnect?: boolean;
  /** The library name sent in `connect`. Default `switchboard-js`. */
  name?: string;
  /** A WebSocket class (the `ws` package in Node 20); default `globalThis.WebSocket`. */
  WebSocket?: unknown;
  /**
   * The transports to try, in order of preference; those this environment lacks (no
   * `EventSource` in Node 20) are left out. Default `['websocket', 'sse', 'longpoll']`.
   */
  transports?: Transport[];
  /**
   * While connected over a fallback, try the first transport again after this many ms
   * (doubling after each failed try); 0 never. Default 60000.
   */
  upgradeInterval?: number;
  /** An EventSource class (the `eventsource` package in Node 20); default the global one. */
  EventSource?: unknown;
  /** A `fetch` function for the HTTP transports; default the global one. */
  fetch?: unknown;
}

export interface SubscribeContext {
  channel: string;
  epoch: string;
  offset: number;
  /** Whether the namespace keeps history, so that recovery is possible. */
  recoverable: boolean;
}

export interface RecoveredContext extends SubscribeContext {
  /** true: every missed publication was delivered; false: resynchronise by other means. */
  recovered: boolean;
}

export interface UndecodableEvent {
  channel: string;
  offset: number;
  epoch: string;
  /** Why its data could not be parsed. */
  reason: string;
}

export interface UnsubscribedContext {
  channel: string;
  /** An error code (protocol.md §7), or `client` after `unsubscribe()`. */
  code: string;
  reason: string;
}

export interface SubscribeOptions<T = unknown> {
  /** Each publication once, in offset order: recovered ones before live ones. */
  publication?: (publication: Publication<T>) => void;
  join?: (event: { channel: string; client: ClientInfo }) => void;
  leave?: (event: { channel: string; client: ClientInfo }) => void;
  /**
   * Instead of `join` and `leave` on a channel with more subscribers on the server than its
   * namespace's `join_leave_limit` (protocol.md §4): the changes since the last announcement,
   * summed, and the channel's presence count (absent when the server could not read it).
   */
  presenceCount?: (event: { channel: string; count?: number; joined: number; left: number }) => void;
  /** After each successful subscribe, the first and every resubscription. */
  subscribed?: (context: SubscribeContext) => void;
  /**
   * After each resubscription with `since`, once the missed publications were delivered (a
   * recovery too large for one reply is read in pages first, protocol.md §3).
   */
  recovered?: (context: RecoveredContext) => void;
  /**
   * A publication whose data this client cannot parse: it takes its place in the stream
   * (the position moves past it) instead of stalling the subscription.
   */
  undecodable?: (event: UndecodableEvent) => void;
  /** The subscription ended: refused, ended by the server, or `unsubscribe()`. */
  unsubscribed?: (context: UnsubscribedContext) => void;
  /** Recover from a stored position on the first subscribe too. */
  since?: Position;
}

export type SubscriptionState =
  | 'pending'
  | 'subscribing'
  | 'subscribed'
  | 'retrying'
  | 'unsubscribed';

export class Subscription<T = unknown> {
  readonly channel: string;
  readonly state: SubscriptionState;
  /** The position of the last publication delivered, or null. */
  readonly position: Position | null;
  /** Resolves on the first successful subscribe; rejects if the subscription ends first. */
  readonly ready: Promise<SubscribeContext>;
  unsubscribe(): void;
  presence(): Promise<ClientInfo[]>;
  /** How many connections are subscribed to the channel, without listing them. */
  presenceCount(): Promise<number>;
  history(options?: HistoryOptions): Promise<HistoryResult<T>>;
}

export interface HistoryOptions {
  limit?: number;
  since?: Position;
}

export interface HistoryResult<T = unknown> {
  epoch: string;
  offset: number;
  /**
   * Oldest first. One whose data cannot be parsed has `undecodable` (the reason) and no
   * `data`.
   */
  publications: (Publication<T> & { undecodable?: string })[];
  /** With `since`: whether `publications` are every publication after it; false with `more`. */
  complete?: boolean;
  /** More pages follow: ask again with `since: next` (protocol.md §3 `history`). */
  more?: boolean;
  /** With `more`: the `since` of the next page. */
  next?: Position;
}

/** An error reply (`code` from protocol.md §7) or a client failure. */
export class SwitchboardError extends Error {
  constructor(code: string, message: string, temporary?: boolean);
  /** A protocol error code, or `timeout`, `disconnected`, `closed`, `queue_full`. */
  readonly code: string;
  readonly temporary: boolean;
}

export class Switchboard {
  constructor(url: string, options?: Options);
  readonly state: State;
  /** The current connection's `connect` result, or null. */
  readonly session: Session | null;
  /** The transport of the current connection, or of the attempt under way. */
  readonly transport: Transport;
  on(event: 'state' | State, listener: (event: StateEvent) => void): () => void;
  on(event: 'error', listener: (error: Error) => void): () => void;
  off(event: string, listener: (...args: never[]) => void): void;
  connect(): void;
  close(): void;
  subscribe<T = unknown>(channel: string, options?: SubscribeOptions<T>): Subscription<T>;
  publish(channel: string, data: unknown): Promise<Position>;
  presence(channel: string): Promise<ClientInfo[]>;
  /** How many connections are subscribed to `channel`, without listing them. */
  presenceCount(channel: string): Promise<number>;
  history<T = unknown>(channel: string, options?: HistoryOptions): Promise<HistoryResult<T>>;
  /**
   * Calls `method` of the application's backend with `data` (`null` when left out), through
   * the server's `rpc_proxy` (docs/hooks.md). Resolves with the backend's answer; rejects with
   * its refusal (its code and message), `unavailable` (temporary) when it failed, or
   * `bad_request` from a server without `rpc_proxy`. Queued while disconnected.
   */
  rpc<T = unknown>(method: string, data?: unknown): Promise<T>;
  ping(): Promise<void>;
}

/** The advice for a close code (protocol.md §8). */
export function adviceFor(code: number): Advice;
/**
 * What can be read of a server message `JSON.parse` refused: a publication push or a reply
 * whose publications' data are parsed one by one; null when not even that can be read.
 */
export function salvage(text: string): object | null;
/** `value` as MessagePack, holding what JSON can express (NaN and infinities as nil). */
export function encodeMsgpack(value: unknown): Uint8Array;
/** One MessagePack value; throws on truncated input, trailing bytes and ext types. */
export function decodeMsgpack(data: ArrayBuffer | ArrayBufferView): unknown;
/** The full-jitter delay before reconnection attempt `attempt`, in ms. */
export function reconnectDelay(
  advice: Exclude<Advice, 'stop'>,
  attempt: number,
  options: { minReconnectDelay: number; maxReconnectDelay: number },
  random?: () => number,
): number;
/** A JWT's `exp` (seconds since the epoch), unverified; undefined for anything else. */
export function tokenExpiry(token: string | undefined): number | undefined;
