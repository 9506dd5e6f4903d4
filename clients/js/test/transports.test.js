// The same client scenario over each transport (docs/transports.md) against the real server,
// through a proxy that cuts connections; then the fallback from one transport to the next and
// the way back, with a proxy that breaks WebSockets the way real ones do.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';

import { Switchboard, TRANSPORTS } from '../switchboard.js';
import {
  channel,
  freePort,
  mintToken,
  startProxy,
  startServer,
  stateReached,
  waitFor,
} from '../test-support/harness.js';

/** Node 20 has neither a global WebSocket nor an EventSource: the packages stand in. */
const FAST = { WebSocket, EventSource, minReconnectDelay: 100, maxReconnectDelay: 400 };

/** Resolves with the first state event that matches `predicate`, within `ms`. */
function stateWhere(client, predicate, ms = 5000, describe = 'a state event') {
  let off;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${describe}`));
    }, ms);
    off = client.on('state', (event) => {
      if (!predicate(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

for (const transport of TRANSPORTS) {
  describe(`the client over ${transport}`, () => {
    let server;
    let proxy;
    const clients = [];
    const open = (url, options = {}) => {
      const client = new Switchboard(url, { ...FAST, transports: [transport], ...options });
      clients.push(client);
      return client;
    };

    before(async () => {
      server = await startServer();
      proxy = await startProxy(server.port);
    });

    after(async () => {
      for (const client of clients) client.close();
      await proxy?.close();
      await server?.stop();
    });

    test('subscribes, publishes with an ack, reads presence and history', async () => {
      const name = channel(`basic-${transport}`);
      const client = open(proxy.url);
      const states = [];
      client.on('state', (event) => states.push(event));
      const received = [];
      const sub = client.subscribe(name, { publication: (p) => received.push(p) });
      await sub.ready;
      assert.equal(client.transport, transport);
      assert.deepEqual(states.map((e) => [e.state, e.transport]),
        [['connecting', transport], ['connected', transport]]);
      assert.equal(states[1].reason, `connected over ${transport}`);
      assert.equal(proxy.upgrades, transport === 'websocket' ? 1 : 0);

      const ack = await client.publish(name, { text: 'hello' });
      assert.equal(ack.offset, 1);
      await waitFor(() => received.length === 1, 2000, () => 'the publication');
      assert.deepEqual(received[0], {
        channel: name,
        offset: 1,
        epoch: ack.epoch,
        data: { text: 'hello' },
        info: { client: client.session.client },
      });
      // Several commands at once: one request at a time, in order, replies matched by id.
      const acks = await Promise.all([2, 3, 4, 5].map((n) => client.publish(name, n)));
      assert.deepEqual(acks.map((a) => a.offset), [2, 3, 4, 5]);

      const present = await sub.presence();
      assert.deepEqual(present.map((c) => c.client), [client.session.client]);
      const history = await sub.history({ limit: 10 });
      assert.deepEqual(history.publications.map((p) => p.data), [{ text: 'hello' }, 2, 3, 4, 5]);
      const refused = await client.publish('nope:x', 1).catch((e) => e);
      assert.equal(refused.code, 'unknown_namespace');
    });

    test('a cut loses nothing and repeats nothing', async () => {
      const name = channel(`cut-${transport}`);
      const subscriber = open(proxy.url);
      const publisher = open(server.url, { transports: ['websocket'] });
      const received = [];
      const recoveries = [];
      const states = [];
      const sub = subscriber.subscribe(name, {
        publication: (p) => received.push(p),
        recovered: (context) => recoveries.push(context),
      });
      await sub.ready;
      subscriber.on('state', (event) => states.push(event));
      await stateReached(publisher, 'connected');

      const total = 60;
      const connectionsBefore = proxy.connections;
      for (let n = 1; n <= total; n += 1) {
        await publisher.publish(name, n);
        if (n === 20) proxy.dropAll({ holdMs: 300 });
      }
      await waitFor(() => received.length === total, 8000, () => `${total} publications, got `
        + `${received.length}`);
      // Back for sure: commands of its own go through, in order.
      const acks = [await subscriber.publish(name, 'own-1'), await subscriber.publish(name, 'own-2')];
      await waitFor(() => received.length === total + 2, 3000, () => 'its own publications');
      const expected = Array.from({ length: total + 2 }, (_, i) => i + 1);
      assert.deepEqual(received.map((p) => p.offset), expected, 'in order, no gap, no duplicate');
      assert.deepEqual(received.slice(total).map((p) => p.offset), acks.map((a) => a.offset));
      assert.equal(subscriber.transport, transport);
      assert.ok(proxy.connections > connectionsBefore, 'the subscriber came back through the proxy');
      if (transport === 'websocket') {
        // A new connection, which recovered what it missed by offset.
        assert.equal(states[0].state, 'disconnected');
        assert.deepEqual(recoveries.map((r) => r.recovered), [true]);
      } else {
        // The same session carried on: the EventSource resumed with Last-Event-ID, or the
        // polls went on from their ack; the application saw nothing.
        assert.deepEqual(states.map((e) => e.state), []);
        assert.deepEqual(recoveries, []);
      }
    });

    test('after a server restart, recovered is false and delivery resumes', async () => {
      const name = channel(`restart-${transport}`);
      const client = open(proxy.url);
      const received = [];
      const recoveries = [];
      const sub = client.subscribe(name, {
        publication: (p) => received.push(p),
        recovered: (context) => recoveries.push(context),
      });
      await sub.ready;
      const first = await client.publish(name, 'before');
      await waitFor(() => received.length === 1, 2000, () => 'the first publication');

      const disconnected = stateWhere(client, (e) => e.state === 'disconnected', 8000,
        'disconnected');
      await server.stop();
      server = await startServer({ port: server.port });
      const lost = await disconnected;
      if (transport !== 'websocket') {
        // The new server does not know the session: 4002, and the client starts over.
        assert.equal(lost.code, 4002);
        assert.equal(lost.advice, 'reconnect');
      }
      await stateReached(client, 'connected', 5000);
      await waitFor(() => recoveries.length === 1, 3000, () => 'the recovered callback');
      assert.equal(recoveries[0].recovered, false);
      assert.notEqual(recoveries[0].epoch, first.epoch);

      const afterRestart = await client.publish(name, 'after');
      await waitFor(() => received.length === 2, 2000, () => 'the publication after the restart');
      assert.deepEqual(received.map((p) => p.data), ['before', 'after']);
      assert.equal(received[1].epoch, afterRestart.epoch);
      assert.equal(client.transport, transport);
    });
  });
}

describe('falling back from one transport to the next', () => {
  const clients = [];
  const open = (url, options = {}) => {
    const client = new Switchboard(url, { ...FAST, ...options });
    clients.push(client);
    return client;
  };

  after(() => {
    for (const client of clients) client.close();
  });

  for (const [disabled, expected] of [[['websocket'], 'sse'], [['websocket', 'sse'], 'longpoll']]) {
    test(`with ${disabled.join(' and ')} disabled, the client connects over ${expected}`,
      async () => {
        const args = disabled.flatMap((name) => ['--disable-transport', name]);
        const server = await startServer({ args });
        try {
          const client = open(server.url, { upgradeInterval: 0 });
          const states = [];
          client.on('state', (event) => states.push(event));
          const name = channel(`fallback-${expected}`);
          const received = [];
          await client.subscribe(name, { publication: (p) => received.push(p) }).ready;
          assert.equal(client.transport, expected);
          const tried = TRANSPORTS.slice(0, disabled.length);
          const failures = states.filter((e) => e.state === 'disconnected');
          assert.deepEqual(failures.map((e) => [e.transport, e.nextTransport, e.delay]),
            tried.map((name, i) => [name, TRANSPORTS[i + 1], 0]),
            'each failure to open moves on at once');
          assert.deepEqual(states.at(-1), {
            state: 'connected',
            previous: 'reconnecting',
            transport: expected,
            client: client.session.client,
            user: undefined,
            reason: `connected over ${expected}`,
          });
          await client.publish(name, 'over the fallback');
          await waitFor(() => received.length === 1, 2000, () => 'the publication');
        } finally {
          await server.stop();
        }
      });
  }

  test('a server that is down: each transport in turn, backing off once per round', async () => {
    const dead = `ws://127.0.0.1:${await freePort()}/ws`;
    const client = open(dead, { minReconnectDelay: 20, maxReconnectDelay: 80 });
    const failures = [];
    client.on('disconnected', (event) => failures.push(event));
    await waitFor(() => failures.length >= 9, 5000, () => 'three rounds');
    client.close();
    const rounds = failures.slice(0, 9);
    assert.deepEqual(rounds.map((e) => [e.transport, e.nextTransport]),
      [0, 1, 2].flatMap(() => [['websocket', 'sse'], ['sse', 'longpoll'],
        ['longpoll', 'websocket']]));
    assert.deepEqual(rounds.map((e) => e.attempt), [0, 0, 1, 1, 1, 2, 2, 2, 3]);
    rounds.forEach((event, i) => {
      if (i % 3 < 2) assert.equal(event.delay, 0, `${i}: a move to the next transport waits not`);
      else assert.ok(event.delay < Math.min(80, 20 * 2 ** Math.floor(i / 3)), `${i}: ${event.delay}`);
    });
  });

  test('a proxy that refuses upgrades: SSE, and WebSocket again once it lets them by',
    async () => {
      const server = await startServer();
      const proxy = await startProxy(server.port);
      try {
        proxy.webSockets = 'refuse';
        const client = open(proxy.url, { upgradeInterval: 200 });
        const name = channel('upgrade');
        const received = [];
        await client.subscribe(name, { publication: (p) => received.push(p) }).ready;
        assert.equal(client.transport, 'sse');
        const publisher = open(server.url, { transports: ['websocket'] });
        await stateReached(publisher, 'connected');

        // Probes fail while the proxy refuses; the SSE connection is left alone.
        const states = [];
        client.on('state', (event) => states.push(event));
        await waitFor(() => proxy.upgrades >= 3, 5000, () => 'two failed probes');
        assert.deepEqual(states, []);
        await publisher.publish(name, 0);

        // Publications keep coming while the client moves over.
        proxy.webSockets = 'pass';
        const switched = stateWhere(client,
          (e) => e.state === 'connected' && e.transport === 'websocket', 10000,
          'connected over websocket');
        let n = 0;
        let done = false;
        switched.finally(() => {
          done = true;
        });
        while (!done) {
          n += 1;
          await publisher.publish(name, n);
        }
        await switched;
        const last = await publisher.publish(name, 'last');
        await waitFor(() => received.length === n + 2, 5000, () => `${n + 2} publications, got `
          + `${received.length}`);
        assert.deepEqual(received.map((p) => p.offset),
          Array.from({ length: n + 2 }, (_, i) => i + 1), 'in order, no gap, no duplicate');
        assert.equal(received.at(-1).offset, last.offset);
        assert.equal(client.transport, 'websocket');
        assert.deepEqual(states.map((e) => [e.state, e.transport, e.switching ?? false]), [
          ['disconnected', 'sse', true],
          ['reconnecting', 'websocket', true],
          ['connected', 'websocket', false],
        ]);
        assert.equal(states[0].code, 1000);
        assert.equal(states[0].nextTransport, 'websocket');
      } finally {
        await proxy.close();
        await server.stop();
      }
    });

  test('WebSockets that die soon after opening, twice in a row: SSE', async () => {
    const server = await startServer();
    const proxy = await startProxy(server.port);
    try {
      proxy.webSockets = 'kill';
      const client = open(proxy.url, { upgradeInterval: 0 });
      const states = [];
      client.on('state', (event) => states.push(event));
      await stateWhere(client, (e) => e.state === 'connected' && e.transport === 'sse', 8000,
        'connected over sse');
      const summary = states
        .filter((e) => e.state === 'connected' || e.state === 'disconnected')
        .map((e) => [e.state, e.transport, e.nextTransport]);
      assert.deepEqual(summary, [
        ['connected', 'websocket', undefined],
        ['disconnected', 'websocket', 'websocket'],
        ['connected', 'websocket', undefined],
        ['disconnected', 'websocket', 'sse'],
        ['connected', 'sse', undefined],
      ]);
      await client.ping();
    } finally {
      await proxy.close();
      await server.stop();
    }
  });
});

describe('credentials over the HTTP transports', { concurrency: true }, () => {
  const SECRET = 'a-test-secret-of-at-least-32-bytes!';
  const API_KEY = 'a-test-api-key';
  let server;
  let firstMessage;
  const clients = [];
  const open = (url, options = {}) => {
    const client = new Switchboard(url, { ...FAST, upgradeInterval: 0, ...options });
    clients.push(client);
    return client;
  };
  const jwt = (secret = SECRET) => mintToken(secret, {
    sub: 'ann',
    exp: Math.floor(Date.now() / 1000) + 3600,
    channels: ['chat:*'],
    publish: ['chat:*'],
  });
  const ticket = async () => {
    const response = await fetch(`${server.http}/api/ticket`, {
      method: 'POST',
      headers: { authorization: `apikey ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'bob', channels: ['chat:*'], publish: ['chat:*'] }),
    });
    assert.equal(response.status, 200);
    return (await response.json()).ticket;
  };

  before(async () => {
    server = await startServer({
      args: ['--require-auth', '--jwt-secret', SECRET],
      env: { SWITCHBOARD_API_KEY: API_KEY },
    });
    firstMessage = await startServer({ args: ['--first-message-auth', '--jwt-secret', SECRET] });
  });

  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
    await firstMessage?.stop();
  });

  test('long-polling sends a JWT as Authorization: Bearer', async () => {
    const client = open(server.url, { transports: ['longpoll'], token: jwt() });
    await stateReached(client, 'connected', 3000);
    assert.equal(client.session.user, 'ann');
    await client.publish(channel('poll-jwt'), 1);
  });

  test('long-polling with a refused JWT: closed with 401, no loop', async () => {
    const client = open(server.url, { transports: ['longpoll'], token: jwt('x'.repeat(32)) });
    const closed = await stateReached(client, 'closed', 3000);
    assert.equal(closed.status, 401);
    assert.equal(closed.transport, 'longpoll');
  });

  for (const transport of ['sse', 'longpoll']) {
    test(`${transport} redeems a one-time ticket on its opening request`, async () => {
      let tickets = 0;
      const client = open(server.url, {
        transports: [transport],
        getToken: async () => {
          tickets += 1;
          return ticket();
        },
      });
      await stateReached(client, 'connected', 3000);
      assert.equal(client.session.user, 'bob');
      assert.equal(tickets, 1);
      await client.publish(channel(`${transport}-ticket`), 1);
    });
  }

  test('SSE cannot present a JWT at the door: the client moves on to long-polling',
    async () => {
      const client = open(server.url, { transports: ['sse', 'longpoll'], token: jwt() });
      const states = [];
      client.on('state', (event) => states.push(event));
      await stateReached(client, 'connected', 5000);
      assert.equal(client.transport, 'longpoll');
      assert.equal(client.session.user, 'ann');
      assert.equal(states[1].state, 'disconnected');
      assert.equal(states[1].status, 401);
      assert.equal(states[1].nextTransport, 'longpoll');
    });

  test('SSE with first-message authentication: the JWT goes in connect', async () => {
    const client = open(firstMessage.url, {
      transports: ['sse'],
      token: jwt(),
      bearerProtocol: false,
    });
    await stateReached(client, 'connected', 3000);
    assert.equal(client.session.user, 'ann');
  });
});
