// Tokens: refused credentials end in `closed` without a reconnection loop; tokens are
// refreshed before they expire.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { BEARER_PREFIX, SUBPROTOCOL, Switchboard } from '../switchboard.js';
import {
  channel,
  mintToken,
  sleep,
  startProxy,
  startServer,
  stateReached,
  waitFor,
} from '../test-support/harness.js';

const SECRET = 'a-test-secret-of-at-least-32-bytes!';
const API_KEY = 'a-test-api-key';
const FAST = { WebSocket, minReconnectDelay: 100, maxReconnectDelay: 400 };
// A client that would try again does so within `maxReconnectDelay`; nothing outside it
// shows that it never will, so the no-loop checks wait out more than twice that.
const NO_RETRY_WINDOW = 1000;

function token(secret, { user = 'ann', ttl = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const grants = { channels: ['chat:*'], publish: ['chat:*'] };
  return mintToken(secret, { sub: user, exp: now + ttl, ...grants });
}

// The tests wait on timers, not on each other: run them side by side.
describe('credentials', { concurrency: true }, () => {
  let server;
  const clients = [];
  const open = (url, options) => {
    const client = new Switchboard(url, { ...FAST, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startServer({
      args: ['--require-auth', '--jwt-secret', SECRET],
      env: { SWITCHBOARD_API_KEY: API_KEY },
    });
  });

  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('a refused token ends in closed after one attempt', async () => {
    const proxy = await startProxy(server.port);
    try {
      const client = open(proxy.url, { token: token('not-the-secret-but-32-bytes-long!!') });
      const closed = await stateReached(client, 'closed', 3000);
      assert.equal(closed.status, 401);
      assert.equal(closed.advice, 'stop');
      await sleep(NO_RETRY_WINDOW);
      assert.equal(proxy.connections, 1, 'no reconnection loop');
      assert.equal(client.state, 'closed');
    } finally {
      await proxy.close();
    }
  });

  test('no credentials on a server that requires them: closed, no loop', async () => {
    const proxy = await startProxy(server.port);
    try {
      const client = open(proxy.url);
      await stateReached(client, 'closed', 3000);
      await sleep(NO_RETRY_WINDOW);
      assert.equal(proxy.connections, 1);
    } finally {
      await proxy.close();
    }
  });

  test('with getToken, a refused token gets one fresh try, then closed', async () => {
    const proxy = await startProxy(server.port);
    let calls = 0;
    try {
      const client = open(proxy.url, {
        getToken: async () => {
          calls += 1;
          return token('still-not-the-secret-32-bytes-long!');
        },
      });
      await stateReached(client, 'closed', 3000);
      await sleep(NO_RETRY_WINDOW);
      assert.equal(calls, 2);
      assert.equal(proxy.connections, 2);
    } finally {
      await proxy.close();
    }
  });

  test('the token goes in the subprotocol entry and in connect', async () => {
    const good = token(SECRET);
    const client = open(server.url, { token: good });
    await stateReached(client, 'connected', 3000);
    assert.equal(client.session.user, 'ann');
    // The server chose the real subprotocol, never the bearer entry.
    const raw = new WebSocket(server.url, [SUBPROTOCOL, BEARER_PREFIX + good]);
    await new Promise((resolve, reject) => {
      raw.once('open', resolve);
      raw.once('error', reject);
    });
    assert.equal(raw.protocol, SUBPROTOCOL);
    raw.terminate();
  });

  test('one-time tickets: redeemed by the upgrade, a new one for each connection', async () => {
    const proxy = await startProxy(server.port);
    let tickets = 0;
    try {
      const client = open(proxy.url, {
        getToken: async () => {
          tickets += 1;
          const response = await fetch(`${server.http}/api/ticket`, {
            method: 'POST',
            headers: { authorization: `apikey ${API_KEY}`, 'content-type': 'application/json' },
            body: JSON.stringify({ user: 'bob', channels: ['chat:*'], publish: ['chat:*'] }),
          });
          assert.equal(response.status, 200);
          return (await response.json()).ticket;
        },
      });
      await stateReached(client, 'connected', 3000);
      assert.equal(client.session.user, 'bob');
      proxy.dropAll();
      await stateReached(client, 'disconnected', 2000);
      await stateReached(client, 'connected', 3000);
      assert.equal(tickets, 2);
      assert.equal(client.session.user, 'bob');
      assert.equal(proxy.connections, 2);
    } finally {
      await proxy.close();
    }
  });

  test('getToken supplies the first token and refreshes it before it expires', async () => {
    const proxy = await startProxy(server.port);
    const issued = [];
    let firstExpiry;
    try {
      const client = open(proxy.url, {
        // One second of life: the server would close at exp + its 5 s leeway without a refresh.
        getToken: async () => {
          if (issued.length === 0) firstExpiry = (Math.floor(Date.now() / 1000) + 1 + 5) * 1000;
          const fresh = token(SECRET, { ttl: issued.length === 0 ? 1 : 3600 });
          issued.push(fresh);
          return fresh;
        },
      });
      const name = channel('refresh');
      const received = [];
      await client.subscribe(name, { publication: (p) => received.push(p) }).ready;
      const changes = [];
      const errors = [];
      client.on('state', (event) => changes.push(event));
      client.on('error', (error) => errors.push(error));
      await waitFor(() => issued.length === 2, 3000, () => 'the refresh');
      // The moment the server would close the connection for the first token (its `exp`,
      // in whole seconds, plus the leeway), then a round trip: a close would come first.
      await waitFor(() => Date.now() >= firstExpiry, 10000, () => 'the first expiry');
      await client.ping();
      assert.deepEqual(changes, [], 'still on the first connection');
      assert.deepEqual(errors, [], 'the refresh was accepted');
      assert.equal(proxy.connections, 1);
      await client.publish(name, 'still here');
      await waitFor(() => received.length === 1, 2000, () => 'the publication');
    } finally {
      await proxy.close();
    }
  });
});

// First-message mode: the token travels only in `connect`, so refusals come as close codes,
// which browsers do see.
describe('credentials in connect only', { concurrency: true }, () => {
  let server;
  const clients = [];
  const open = (url, options) => {
    const client = new Switchboard(url, { ...FAST, bearerProtocol: false, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startServer({ args: ['--first-message-auth', '--jwt-secret', SECRET] });
  });

  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('a refused token is closed with 4401: closed, no loop', async () => {
    const proxy = await startProxy(server.port);
    try {
      const client = open(proxy.url, { token: token('not-the-secret-but-32-bytes-long!!') });
      const closed = await stateReached(client, 'closed', 3000);
      assert.equal(closed.code, 4401);
      assert.equal(closed.advice, 'stop');
      await sleep(NO_RETRY_WINDOW);
      assert.equal(proxy.connections, 1);
    } finally {
      await proxy.close();
    }
  });

  test('an expired token is closed with 4200: getToken, then reconnect', async () => {
    const proxy = await startProxy(server.port);
    let calls = 0;
    try {
      const client = open(proxy.url, {
        getToken: async () => {
          calls += 1;
          // The first is long expired (past the server's leeway too).
          return token(SECRET, { ttl: calls === 1 ? -60 : 3600 });
        },
      });
      const states = [];
      client.on('state', (event) => states.push(event));
      await stateReached(client, 'connected', 3000);
      assert.equal(calls, 2);
      assert.equal(client.session.user, 'ann');
      const disconnected = states.find((e) => e.state === 'disconnected');
      assert.equal(disconnected.code, 4200);
      assert.equal(disconnected.advice, 'refresh_token');
      assert.equal(proxy.connections, 2);
    } finally {
      await proxy.close();
    }
  });
});
