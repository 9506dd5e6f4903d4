// examples/backend: the example application backend and its Switchboard configuration, run
// as the example says: a cookie login names the user at the connect hook, the publish hook
// hides words, `rpc` answers.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { Switchboard } from '../switchboard.js';
import { channel, freePort, repoRoot, startServer, stateReached } from '../test-support/harness.js';

const example = path.join(repoRoot, 'examples/backend');
let backend;
let server;
let dir;

before(async () => {
  const port = await freePort();
  backend = spawn(process.execPath, [path.join(example, 'server.mjs')], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = await once(backend.stdout, 'data');
  assert.match(String(line), /backend on http:\/\/127\.0\.0\.1:\d+/);
  dir = mkdtempSync(path.join(tmpdir(), 'switchboard-example-'));
  const config = readFileSync(path.join(example, 'switchboard.toml'), 'utf8')
    .replaceAll('127.0.0.1:3000', `127.0.0.1:${port}`);
  writeFileSync(path.join(dir, 'switchboard.toml'), config);
  // The command the example's comment gives.
  const run = 'switchboard serve --config examples/backend/switchboard.toml '
    + '--namespace chat:publish_proxy=publish';
  assert.ok(config.includes(run), 'the file says how to run it');
  server = await startServer({
    args: ['--config', path.join(dir, 'switchboard.toml'), '--namespace', 'chat:publish_proxy=publish'],
  });
  backend.port = port;
});

after(async () => {
  await server?.stop();
  backend?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Logs in at the backend as `user`: the session cookie. */
async function logIn(user) {
  const response = await fetch(`http://127.0.0.1:${backend.port}/login`, {
    method: 'POST',
    body: new URLSearchParams({ user }),
    redirect: 'manual',
  });
  assert.equal(response.status, 303);
  const cookie = response.headers.get('set-cookie');
  assert.match(cookie, /^session=[^;]+; Path=\/; HttpOnly/);
  return cookie.split(';')[0];
}

/** A client whose WebSocket sends `cookie`, as a browser on the same host would. */
function client(cookie) {
  class WithCookie extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, cookie ? { headers: { cookie } } : {});
    }
  }
  return new Switchboard(server.url, { WebSocket: WithCookie, transports: ['websocket'] });
}

test('a logged-in user is known by the cookie, and words are hidden', async () => {
  const cookie = await logIn('ann');
  const ann = client(cookie);
  try {
    await stateReached(ann, 'connected');
    assert.deepEqual(await ann.rpc('whoami'), { user: 'ann' });
    const room = channel('room');
    let sub;
    const received = new Promise((resolve) => {
      sub = ann.subscribe(room, { publication: resolve });
    });
    await sub.ready;
    const ack = await ann.publish(room, { text: 'darn it, heck' });
    assert.equal(ack.offset, 1);
    const publication = await received;
    assert.deepEqual(publication.data, { text: '**** it, ****' });
    assert.equal(publication.info?.user, 'ann');
  } finally {
    ann.close();
  }
});

test('without the cookie a connection is a guest', async () => {
  const guest = client(null);
  try {
    await stateReached(guest, 'connected');
    assert.deepEqual(await guest.rpc('whoami'), { user: null });
    await assert.rejects(guest.rpc('nope'), { code: 'bad_request', message: 'no method nope' });
  } finally {
    guest.close();
  }
});
