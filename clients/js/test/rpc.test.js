// `rpc` (docs/protocol.md, docs/hooks.md) against the real server, which forwards each call to
// an application backend: a real HTTP server in this process, named by a configuration file.
// Over each transport, since commands travel differently on each.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';

import { Switchboard, SwitchboardError } from '../switchboard.js';
import { mintToken, startServer, stateReached } from '../test-support/harness.js';

/** Node 20 has neither a global WebSocket nor an EventSource: the packages stand in. */
const FAST = { WebSocket, EventSource, minReconnectDelay: 100, maxReconnectDelay: 400 };
const SECRET = 'a-test-secret-of-at-least-32-bytes!';
const TOKEN = mintToken(SECRET, { sub: 'ann', exp: Math.floor(Date.now() / 1000) + 3600 });

/**
 * The application's backend, answering `POST /rpc` as docs/hooks.md describes: `echo` returns
 * what it was called with, `nothing` answers `{"result": {}}`, `members.only` refuses, `crash`
 * answers 500. Every call is kept in `calls`, with its request's method, path and headers.
 */
async function startBackend() {
  const calls = [];
  const server = createServer(async (req, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    const body = JSON.parse(text);
    calls.push({ method: req.method, url: req.url, headers: req.headers, body });
    const answer = (status, value) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (req.url !== '/rpc') return answer(404, {});
    switch (body.method) {
      case 'echo':
        return answer(200, { result: { data: { method: body.method, data: body.data, user: body.user } } });
      case 'nothing':
        return answer(200, { result: {} });
      case 'members.only':
        return answer(200, { error: { code: 'permission_denied', message: 'members only' } });
      case 'crash':
        return answer(500, { oops: true });
      default:
        return answer(200, { error: { code: 'bad_request', message: `no method ${body.method}` } });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    calls,
    url: `http://127.0.0.1:${server.address().port}/rpc`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe('rpc', () => {
  let backend;
  let dir;
  let server;
  let plain;
  const clients = [];
  const open = (url, options = {}) => {
    const client = new Switchboard(url, { ...FAST, token: TOKEN, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    backend = await startBackend();
    dir = await mkdtemp(path.join(tmpdir(), 'switchboard-rpc-'));
    const config = path.join(dir, 'switchboard.toml');
    await writeFile(config, [
      'rpc_proxy = "rpc"',
      '',
      '[proxies.rpc]',
      `url = "${backend.url}"`,
      'timeout = "5s"',
      '',
    ].join('\n'));
    server = await startServer({ args: ['--config', config, '--jwt-secret', SECRET] });
    plain = await startServer({ args: ['--jwt-secret', SECRET] });
  });

  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
    await plain?.stop();
    await backend?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const transport of ['websocket', 'sse', 'longpoll']) {
    describe(`over ${transport}`, () => {
      const openOver = (url, options = {}) => open(url, { transports: [transport], ...options });

      test('resolves with the backend\'s data, the call naming the connection', async () => {
        const client = openOver(server.url);
        // Issued while still connecting: queued, then sent once connected.
        assert.equal(client.state, 'connecting');
        const calls = backend.calls.length;
        const answer = await client.rpc('echo', { order: 1042, items: [1, 'two', null] });
        assert.equal(client.transport, transport);
        assert.deepEqual(answer, {
          method: 'echo',
          data: { order: 1042, items: [1, 'two', null] },
          user: 'ann',
        });
        assert.equal(backend.calls.length, calls + 1);
        const call = backend.calls.at(-1);
        assert.equal(call.method, 'POST');
        assert.equal(call.url, '/rpc');
        assert.match(call.headers['content-type'], /^application\/json/);
        assert.deepEqual(call.body, {
          client: client.session.client,
          user: 'ann',
          method: 'echo',
          data: { order: 1042, items: [1, 'two', null] },
        });

        // Without data the backend gets null; an answer without data is null.
        assert.deepEqual(await client.rpc('echo'), { method: 'echo', data: null, user: 'ann' });
        assert.equal(backend.calls.at(-1).body.data, null);
        assert.equal(await client.rpc('nothing', 'x'), null);
        // Several calls at once: replies matched to their calls.
        const answers = await Promise.all([1, 2, 3].map((n) => client.rpc('echo', n)));
        assert.deepEqual(answers.map((a) => a.data), [1, 2, 3]);
      });

      test('a refusal rejects with the backend\'s code and message', async () => {
        const client = openOver(server.url);
        const error = await client.rpc('members.only', {}).catch((e) => e);
        assert.ok(error instanceof SwitchboardError, String(error));
        assert.equal(error.code, 'permission_denied');
        assert.equal(error.message, 'members only');
        assert.equal(error.temporary, false);
        assert.equal(backend.calls.at(-1).body.method, 'members.only');
        // The connection goes on.
        assert.equal(client.state, 'connected');
        assert.equal((await client.rpc('echo', 1)).data, 1);
      });

      test('a backend answering 500 rejects with unavailable, temporary', async () => {
        const client = openOver(server.url);
        const error = await client.rpc('crash').catch((e) => e);
        assert.ok(error instanceof SwitchboardError, String(error));
        assert.equal(error.code, 'unavailable');
        assert.equal(error.temporary, true);
        assert.match(error.message, /500/);
        assert.equal(backend.calls.at(-1).body.method, 'crash');
        assert.equal((await client.rpc('echo', 2)).data, 2);
      });

      test('a server without rpc_proxy rejects with bad_request', async () => {
        const client = openOver(plain.url);
        const calls = backend.calls.length;
        const error = await client.rpc('echo', 1).catch((e) => e);
        assert.ok(error instanceof SwitchboardError, String(error));
        assert.equal(error.code, 'bad_request');
        assert.equal(error.temporary, false);
        assert.equal(client.transport, transport);
        assert.equal(backend.calls.length, calls);
      });
    });
  }

  test('over MessagePack, the data comes back as sent', async () => {
    const client = open(server.url, { format: 'msgpack' });
    const data = { n: 1.5, big: 2 ** 40, list: [true, false, null], text: 'é' };
    assert.deepEqual(await client.rpc('echo', data), { method: 'echo', data, user: 'ann' });
    assert.deepEqual(backend.calls.at(-1).body.data, data);
  });

  test('while disconnected: rejects at once without a queue, or with closed', async () => {
    const calls = backend.calls.length;
    const unqueued = open(server.url, { queueSize: 0 });
    assert.equal(unqueued.state, 'connecting');
    const error = await unqueued.rpc('echo', 1).catch((e) => e);
    assert.equal(error.code, 'disconnected');
    assert.equal(error.temporary, true);
    await stateReached(unqueued, 'connected');
    assert.equal((await unqueued.rpc('echo', 3)).data, 3);

    const closed = open(server.url, { autoConnect: false });
    const refused = await closed.rpc('echo', 1).catch((e) => e);
    assert.equal(refused.code, 'closed');
    assert.equal(backend.calls.length, calls + 1);
  });
});
