// The client's pure rules: close-code advice, backoff with full jitter, token expiry.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Switchboard, adviceFor, reconnectDelay, tokenExpiry } from '../switchboard.js';
import { mintToken, waitFor } from '../test-support/harness.js';

test('close codes map to the advice of protocol.md §8', () => {
  for (const code of [1001, 1012, 4000, 4001, 4002, 4003, 4099]) {
    assert.equal(adviceFor(code), 'reconnect', `${code}`);
  }
  for (const code of [1000, 1002, 1005, 1006, 1007, 1008, 1009, 1011, 1013, 4100, 4101, 4102,
    4103, 4300, 4500, 3000]) {
    assert.equal(adviceFor(code), 'backoff', `${code}`);
  }
  assert.equal(adviceFor(4200), 'refresh_token');
  for (const code of [4400, 4401, 4403, 4499]) assert.equal(adviceFor(code), 'stop', `${code}`);
});

test('backoff doubles from the minimum up to the maximum, with full jitter', () => {
  const options = { minReconnectDelay: 500, maxReconnectDelay: 30000 };
  const top = () => 0.999999;
  const attempts = [0, 1, 2, 3, 4, 5, 6, 7, 100];
  const bounds = attempts.map((n) => reconnectDelay('backoff', n, options, top));
  assert.deepEqual(bounds, [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  assert.equal(reconnectDelay('backoff', 3, options, () => 0), 0);
  const samples = Array.from({ length: 1000 }, () => reconnectDelay('backoff', 2, options));
  assert.ok(samples.every((d) => d >= 0 && d < 2000));
  // Full jitter: spread over the whole range, not bunched near the bound.
  assert.ok(samples.some((d) => d < 500) && samples.some((d) => d > 1500));
});

test('reconnect advice after a stable connection waits at most a second', () => {
  const options = { minReconnectDelay: 500, maxReconnectDelay: 30000 };
  const top = () => 0.999999;
  assert.equal(reconnectDelay('reconnect', 0, options, top), 999);
  // Repeated in a row, it backs off like any failure.
  assert.equal(reconnectDelay('reconnect', 3, options, top), 3999);
  assert.equal(reconnectDelay('reconnect', 0, { minReconnectDelay: 10, maxReconnectDelay: 50 },
    top), 49);
});

test('a JWT expiry is read from its payload; anything else has none', () => {
  const token = mintToken('s'.repeat(32), { sub: 'ann', exp: 1795000000, name: 'Ännchen ✓' });
  assert.equal(tokenExpiry(token), 1795000000);
  assert.equal(tokenExpiry('a-ticket-without-dots'), undefined);
  assert.equal(tokenExpiry('x.bm90IGpzb24.y'), undefined);
  assert.equal(tokenExpiry(undefined), undefined);
});

test('the constructor refuses what it cannot speak', () => {
  assert.throws(() => new Switchboard('ws://127.0.0.1:1/ws', { format: 'cbor' }), TypeError);
  assert.throws(() => new Switchboard('ws://127.0.0.1:1/ws', { WebSocket: {} }), TypeError);
});

test('the constructor refuses unknown transports and keeps the ones it has', () => {
  const url = 'ws://127.0.0.1:1/ws';
  const options = { autoConnect: false };
  assert.throws(() => new Switchboard(url, { ...options, transports: ['carrier-pigeon'] }),
    TypeError);
  assert.throws(() => new Switchboard(url, { ...options, transports: [] }), TypeError);
  assert.throws(() => new Switchboard(url, { ...options, EventSource: 'no' }), TypeError);
  // Node 20: no global WebSocket, no EventSource; fetch makes long-polling possible.
  const client = new Switchboard(url, { ...options, WebSocket: class {} });
  assert.equal(client.transport, 'websocket');
  const polling = new Switchboard(url, { ...options, transports: ['sse', 'longpoll'] });
  assert.equal(polling.transport, 'longpoll');
  assert.throws(() => new Switchboard(url, { ...options, transports: ['sse'] }), TypeError);
});

/**
 * A long-polling server in a `fetch` function: `POST /poll` opens, `POST /session` takes
 * commands (`onCommand` may queue answers), each `GET /poll` takes the next scripted batch
 * text, waiting for one to be queued.
 */
function fakePollServer(onCommand) {
  const batches = [];
  const waiting = [];
  const server = {
    requests: [],
    queue(text) {
      batches.push(text);
      waiting.shift()?.();
    },
    fetch: async (url, init = {}) => {
      const { pathname, search } = new URL(url);
      const method = init.method ?? 'GET';
      server.requests.push(`${method} ${pathname}${search}`);
      if (method === 'POST' && pathname === '/poll') {
        return Response.json({ session: 'n1-secret', transport: 'longpoll', poll_timeout: 25 });
      }
      if (method === 'POST' && pathname === '/session') {
        assert.equal(init.headers['Switchboard-Session'], 'n1-secret');
        for (const line of init.body.split('\n')) onCommand(JSON.parse(line), server);
        return new Response(null, { status: 204 });
      }
      if (method === 'DELETE') return new Response(null, { status: 204 });
      assert.equal(init.headers['Switchboard-Session'], 'n1-secret');
      while (batches.length === 0) {
        await new Promise((resolve) => {
          waiting.push(resolve);
          init.signal?.addEventListener('abort', resolve);
        });
        if (init.signal?.aborted) throw new DOMException('aborted', 'AbortError');
      }
      return new Response(batches.shift(), { status: 200 });
    },
  };
  return server;
}

test('long-polling: acks by seq, drops what it has, salvages a batch JSON cannot read',
  async () => {
    const epoch = 'e1';
    const publication = (offset, data = offset) =>
      ({ push: 'publication', channel: 'chat:x', offset, epoch, data });
    const server = fakePollServer((command, self) => {
      if (command.type === 'connect') {
        const reply = { id: command.id, result: { client: 'c1', version: '0', ping_interval: 25 } };
        self.queue(JSON.stringify({ seq: 1, messages: [reply] }));
      }
      if (command.type === 'subscribe') {
        const reply = { id: command.id, result: { epoch, offset: 0, recoverable: true } };
        self.queue(JSON.stringify({ seq: 2, messages: [reply] }));
        // Sent again from 2 (as if the last answer was lost): 2 is dropped, 3 and 4 kept.
        self.queue(JSON.stringify({ seq: 2, messages: [reply, publication(1), publication(2)] }));
        self.queue(JSON.stringify({ seq: 3, messages: [publication(1), publication(2),
          publication(3)] }));
        // Not JSON as a whole: each message is read on its own, the bad one undecodable.
        self.queue(`{"seq":6,"messages":[{"push":"publication","channel":"chat:x","offset":4,`
          + `"epoch":"${epoch}","data":nonsense},${JSON.stringify(publication(5))}]}`);
        self.queue(JSON.stringify({ seq: 8, messages: [
          { push: 'disconnect', code: 4003, reason: 'draining', advice: 'reconnect' }] }));
      }
    });
    const client = new Switchboard('ws://sb.test/ws', {
      transports: ['longpoll'],
      fetch: server.fetch,
      minReconnectDelay: 60000,
    });
    const received = [];
    const undecodable = [];
    const states = [];
    client.on('state', (event) => states.push(event));
    client.subscribe('chat:x', {
      publication: (p) => received.push(p.offset),
      undecodable: (u) => undecodable.push(u.offset),
    });
    try {
      await waitFor(() => states.some((e) => e.state === 'disconnected'), 2000,
        () => 'the disconnect push');
      assert.deepEqual(received, [1, 2, 3, 5]);
      assert.deepEqual(undecodable, [4]);
      const polls = server.requests.filter((r) => r.startsWith('GET'));
      // The disconnect push (message 8) ends the transport: no poll after it.
      assert.deepEqual(polls, ['GET /poll?ack=0', 'GET /poll?ack=1', 'GET /poll?ack=2',
        'GET /poll?ack=4', 'GET /poll?ack=5', 'GET /poll?ack=7']);
      const lost = states.find((e) => e.state === 'disconnected');
      assert.equal(lost.code, 4003);
      assert.equal(lost.transport, 'longpoll');
      // Ended by the server: no DELETE.
      assert.ok(!server.requests.some((r) => r.startsWith('DELETE')));
    } finally {
      client.close();
    }
  });
