// The operator's page at /admin, in headless Chromium, against a server with an API key: a
// wrong secret is refused with the server's message and the key logs in; the nodes table
// shows this node and its connections, the channels table the room of two real clients;
// the channel panel shows who is there, publishes what the clients then receive, and says in
// place when a namespace keeps no presence or history; the disconnect form closes a user's
// connections with the code given; a reload keeps the session, logging out ends it, and an
// ended session brings the login form back. Outside the browser: the API under /admin/api/
// wants the session cookie and the CSRF token, and without an API key there is no /admin.
// Over two nodes sharing a Redis, the page on one shows both and reaches the other's clients.
// With $SHOTS_DIR set, leaves screenshots there: admin-1280.png, admin-375.png and
// admin-login-375.png.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Switchboard } from '../switchboard.js';
import {
  channel,
  chromiumSkip as skip,
  launchChromium,
  mintToken,
  redisSkip,
  startRedis,
  startServer,
  stateReached,
  waitFor,
} from '../test-support/harness.js';

const KEY = 'an-admin-test-api-key-0123456789';
const SECRET = 'a-test-secret-of-at-least-32-bytes!';
const shots = process.env.SHOTS_DIR;

/** A token of `user` for the `chat` namespace, with `info` shown in presence. */
function tokenOf(user) {
  const now = Math.floor(Date.now() / 1000);
  return mintToken(SECRET, {
    sub: user,
    exp: now + 3600,
    channels: ['chat:*'],
    publish: ['chat:*'],
    info: { name: user.toUpperCase() },
  });
}

describe('the admin page in Chromium', { skip }, () => {
  let server;
  let browser;
  let context;
  let page;
  const errors = [];
  const clients = [];
  /** What each user's client received: publications on the room, and its state events. */
  const seen = { ann: [], bob: [] };
  const states = { ann: [], bob: [] };
  const room = channel('admin');

  /** A client of `user` subscribed to the room, connected and subscribed. */
  async function member(user) {
    const client = new Switchboard(server.url, { WebSocket, token: tokenOf(user) });
    clients.push(client);
    client.on('state', (event) => states[user].push(event));
    const subscription = client.subscribe(room, {
      publication: (publication) => seen[user].push(publication),
    });
    await stateReached(client, 'connected');
    await subscription.ready;
    return client;
  }

  /** The text of the element at `selector` in the page, or null. */
  const text = (selector) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null,
    selector);

  /** Waits until the login form or the console (`which`) is the one shown. */
  const showing = (which) => page.waitForSelector(`#${which}:not([hidden])`);

  async function logIn(secret = KEY) {
    await showing('login');
    await page.fill('#secret', secret);
    await page.click('#login-button');
  }

  before(async () => {
    if (shots) mkdirSync(shots, { recursive: true });
    server = await startServer({ args: ['--api-key', KEY, '--jwt-secret', SECRET] });
    await member('ann');
    await member('bob');
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('pageerror', (error) => errors.push(error.message));
  });

  after(async () => {
    for (const client of clients) client.close();
    await browser?.close();
    await server?.stop();
  });

  test('a wrong secret is refused with a message; the right one opens the console', async () => {
    await page.goto(`${server.http}/admin`);
    await logIn('not-the-secret');
    await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
    assert.equal(await page.isHidden('#console'), true);
    const message = await text('#login-error');
    assert.doesNotMatch(message, /HTTP 401/, 'the message is the server\'s, not the status');

    await logIn();
    await showing('console');
    assert.equal(await page.inputValue('#secret'), '', 'the secret does not stay in the form');
    assert.equal(await page.isVisible('#logout'), true);
  });

  test('the nodes table shows this node and its two connections', async () => {
    await page.waitForFunction(() => document.querySelector(
      '#nodes tr[data-current="true"] [data-field="connections"]')?.textContent === '2');
    const row = '#nodes tr[data-current="true"]';
    assert.match(await text(`${row} th`), /this node/);
    assert.match(await text(`${row} th .sub`), /^0\.\d+\.\d+( · (memory|redis))?$/);
    assert.match(await text(`${row} [data-field="age"]`), /^(now|\d+ s ago)$/);
    assert.equal(await text('#totals [data-field="connections"]'), '2');
    await page.waitForFunction(() => /^Live/.test(document.getElementById('banner').textContent));
  });

  test('the channels table lists the room with its subscribers; a click opens it', async () => {
    const row = `#channels tr[data-channel="${room}"]`;
    await page.waitForFunction((s) => document.querySelector(`${s} [data-field="subscribers"]`)
      ?.textContent === '2', row);
    await page.click(`${row} button`);
    await page.waitForFunction(() => document.querySelectorAll('#presence tr').length === 2);
    assert.equal(await page.inputValue('#channel-input'), room);
    assert.equal(await text('#channel-title'), room);
    const users = await page.$$eval('#presence tr', (rows) => rows.map((r) => r.cells[1]
      .textContent).sort());
    assert.deepEqual(users, ['ann', 'bob']);
    assert.match(await text('#presence'), /\{"name":"ANN"\}/, 'the connection info, as JSON');
    await page.waitForFunction(() => document.getElementById('presence-count').textContent
      === '2');
    assert.equal(await text('#channel-error'), '');
  });

  test('what the form publishes reaches the subscribers as is and shows in history',
    async () => {
      const data = { text: 'maintenance at <b>18:00</b>', from: 'ops' };
      await page.fill('#publish-data', JSON.stringify(data));
      await page.click('#publish-button');
      await page.waitForFunction(() => /^published at offset \d+$/
        .test(document.getElementById('publish-result').textContent));
      const offset = Number((await text('#publish-result')).split(' ').pop());
      await waitFor(() => seen.ann.length === 1 && seen.bob.length === 1, 5000,
        () => 'the publication at both clients');
      assert.deepEqual(seen.ann[0].data, data);
      assert.equal(seen.ann[0].offset, offset);
      await page.waitForFunction((o) => document.querySelector('#history li')?.dataset.offset
        === String(o), offset);
      // The text is shown as text (no element made of it), the rest as JSON.
      assert.equal(await text('#history li .text'), data.text);
      assert.equal(await page.$$eval('#history li b', (b) => b.length), 0);
      assert.equal(await text('#history li .json'), '{"from":"ops"}');

      // What is not JSON goes out as `{"text": …}`, and shows newest first.
      await page.fill('#publish-data', 'back at 18:30');
      await page.click('#publish-button');
      await page.waitForFunction((o) => document.getElementById('publish-result').textContent
        === `published at offset ${o + 1}`, offset);
      await waitFor(() => seen.bob.length === 2, 5000, () => 'the second publication');
      assert.deepEqual(seen.bob[1].data, { text: 'back at 18:30' });
      await page.waitForFunction((o) => document.querySelector('#history li')?.dataset.offset
        === String(o + 1), offset);
      const offsets = await page.$$eval('#history li', (items) => items.map((li) => li.dataset
        .offset));
      assert.deepEqual(offsets.slice(0, 2), [String(offset + 1), String(offset)]);
    });

  test('a namespace without presence or history says so in place', async () => {
    // The built-in `cursor` namespace keeps neither.
    await page.fill('#channel-input', 'cursor:admin-test');
    await page.click('#channel-form button');
    await page.waitForFunction(() => !document.getElementById('channel-body').hidden
      && document.getElementById('channel-title').textContent === 'cursor:admin-test');
    assert.equal(await text('#presence-note'), "presence is off for this channel's namespace");
    assert.equal(await text('#history-note'), "history is off for this channel's namespace");
    assert.equal(await text('#channel-error'), '');
    // An unknown namespace is refused with the server's message.
    await page.fill('#channel-input', 'nope:x');
    await page.click('#channel-form button');
    await page.waitForFunction(() => /nope/.test(document.getElementById('channel-error')
      .textContent));
    assert.equal(await page.isHidden('#channel-body'), true);
    assert.match(await text('#banner'), /^Live/, 'not a page error');
  });

  test('disconnecting a user closes its connections with the code and reason', async () => {
    await page.click(`#channels tr[data-channel="${room}"] button`);
    await page.waitForFunction(() => document.querySelectorAll('#presence tr').length === 2);
    // Ann's row in presence fills the form in; the button says what it will do.
    await page.click('#presence tr:has(td:text-is("ann")) button');
    assert.equal(await page.inputValue('#disconnect-by'), 'user');
    assert.equal(await page.inputValue('#disconnect-target'), 'ann');
    await page.fill('#disconnect-code', '4403');
    await page.fill('#disconnect-reason', 'banned for the test');
    assert.equal(await text('#disconnect-button'), 'Disconnect user ann');
    await page.click('#disconnect-button');
    await page.waitForFunction(() => document.getElementById('disconnect-result').textContent
      === 'disconnected 1 connection');
    // 4403 advises the client to stop: it closes for good with the code and the reason.
    await waitFor(() => states.ann.some((e) => e.state === 'closed'), 5000,
      () => 'ann\'s client to close');
    const closed = states.ann.find((e) => e.state === 'closed');
    assert.equal(closed.code, 4403);
    assert.equal(closed.reason, 'banned for the test');
    assert.equal(closed.advice, 'stop');
    assert.equal(clients[1].state, 'connected', 'bob stays');
    // Ann leaves the room's presence; bob is still there.
    await page.waitForFunction(() => document.querySelectorAll('#presence tr').length === 1);
    assert.equal(await text('#presence tr td:nth-child(2)'), 'bob');
  });

  test('screenshots at 1280 and 375 pixels wide', { skip: !shots && 'no $SHOTS_DIR' },
    async () => {
      await page.waitForSelector('#history li');
      await page.screenshot({ path: path.join(shots, 'admin-1280.png'), fullPage: true });
      const phone = await context.newPage();
      phone.on('pageerror', (error) => errors.push(error.message));
      await phone.setViewportSize({ width: 375, height: 812 });
      await phone.goto(`${server.http}/admin#${room}`);
      await phone.waitForSelector('#history li');
      await phone.waitForSelector('#nodes tr');
      await phone.waitForSelector('#channels tr');
      assert.equal(await phone.evaluate(() => document.documentElement.scrollWidth), 375,
        'nothing wider than the screen');
      await phone.screenshot({ path: path.join(shots, 'admin-375.png'), fullPage: true });
      await phone.close();
      const outsider = await browser.newPage({ viewport: { width: 375, height: 812 } });
      await outsider.goto(`${server.http}/admin`);
      await outsider.waitForSelector('#login:not([hidden])');
      await outsider.screenshot({ path: path.join(shots, 'admin-login-375.png') });
      await outsider.close();
    });

  test('a reload keeps the session and the open channel', async () => {
    await page.reload();
    await showing('console');
    assert.equal(await page.isHidden('#login'), true);
    await page.waitForFunction((c) => document.getElementById('channel-title').textContent === c
      && document.querySelectorAll('#history li').length >= 2, room);
  });

  test('the API wants the session cookie and the CSRF token', async () => {
    const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`)
      .join('; ');
    assert.notEqual(cookie, '', 'the login set a cookie');
    const session = await fetch(`${server.http}/admin/session`, { headers: { cookie } });
    assert.equal(session.status, 200);
    const { csrf } = await session.json();
    const publish = (headers) => fetch(`${server.http}/admin/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ channel: room, data: { text: 'from outside' } }),
    });
    const refused = await publish({ cookie });
    assert.equal(refused.status, 403);
    assert.equal(typeof (await refused.json()).error.message, 'string');
    const wrong = await publish({ cookie, 'x-csrf-token': `${csrf}x` });
    assert.equal(wrong.status, 403);
    const accepted = await publish({ cookie, 'x-csrf-token': csrf });
    assert.equal(accepted.status, 200);
    assert.equal(typeof (await accepted.json()).offset, 'number');

    const anonymous = await fetch(`${server.http}/admin/api/nodes`, {
      headers: { 'x-csrf-token': csrf },
    });
    assert.equal(anonymous.status, 401);
    const withSession = await fetch(`${server.http}/admin/api/nodes`, {
      headers: { cookie, 'x-csrf-token': csrf },
    });
    assert.equal(withSession.status, 200);
  });

  test('logging out shows the login form and drops the cookie', async () => {
    await page.click('#logout');
    await showing('login');
    assert.equal(await page.isHidden('#console'), true);
    assert.equal(await page.isHidden('#logout'), true);
    assert.deepEqual(await context.cookies(), [], 'the browser holds no session');
    await page.reload();
    await showing('login');
  });

  test('a session that ends under the page brings the login form back', async () => {
    await logIn();
    await showing('console');
    await page.waitForSelector('#nodes tr');
    await context.clearCookies();
    await showing('login');
    assert.match(await text('#login-error'), /expired/);
  });

  test('a server that goes away: the data stays, the banner says so', async () => {
    await logIn();
    await showing('console');
    await page.waitForSelector('#nodes tr');
    await server.stop();
    await page.waitForFunction(() => document.getElementById('banner').textContent
      === 'Server unreachable, retrying');
    assert.equal(await page.$$eval('#nodes tr', (rows) => rows.length), 1);
    assert.equal(await page.isVisible('#console'), true);
    assert.deepEqual(errors, []);
  });
});

describe('too many login attempts', { skip }, () => {
  let server;
  let browser;

  before(async () => {
    // Loopback addresses are exempt from the per-address allowance unless told otherwise.
    server = await startServer({
      args: ['--api-key', KEY, '--limit-loopback', '--api-rate', '1:2'],
    });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the page says so and when to try again', async () => {
    const page = await browser.newPage();
    page.setDefaultTimeout(10000);
    await page.goto(`${server.http}/admin`);
    await page.waitForSelector('#login:not([hidden])');
    // A burst of 2, then one a second: the third attempt in a row is refused.
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      await page.fill('#secret', `guess ${attempt}`);
      await page.click('#login-button');
      await page.waitForFunction(() => !document.getElementById('login-button').disabled
        && document.getElementById('login-error').textContent !== '');
    }
    // The server's message, then when to try again, from `Retry-After`.
    const message = await page.textContent('#login-error');
    assert.match(message, /^\S.*\. Try again in \d+ s\.$/);
    assert.doesNotMatch(message, /HTTP 429|wrong/i);
    assert.equal(await page.isHidden('#console'), true);
  });
});

// Two nodes sharing a Redis: the page on one node shows both, and what it does reaches the
// clients of the other.
describe('the admin page over two nodes', { skip: skip || redisSkip }, () => {
  let redis;
  let one;
  let two;
  let browser;
  let page;
  let ann;
  let bob;
  const room = channel('admin-cluster');
  const annSaw = [];
  const annStates = [];

  before(async () => {
    redis = await startRedis();
    const args = ['--api-key', KEY, '--jwt-secret', SECRET, '--broker', redis.url];
    one = await startServer({ args });
    two = await startServer({ args });
    // Ann on the second node, bob on the first; the page on the first.
    ann = new Switchboard(two.url, { WebSocket, token: tokenOf('ann') });
    ann.on('state', (event) => annStates.push(event));
    bob = new Switchboard(one.url, { WebSocket, token: tokenOf('bob') });
    const subscribed = [
      ann.subscribe(room, { publication: (publication) => annSaw.push(publication) }),
      bob.subscribe(room),
    ];
    await Promise.all(subscribed.map((subscription) => subscription.ready));
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(10000);
    await page.goto(`${one.http}/admin`);
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#secret', KEY);
    await page.click('#login-button');
    await page.waitForSelector('#console:not([hidden])');
  });

  after(async () => {
    ann?.close();
    bob?.close();
    await browser?.close();
    await one?.stop();
    await two?.stop();
    await redis?.stop();
  });

  test('both nodes are listed, this one marked, with a connection each', async () => {
    // Each node reports itself every few seconds: wait for the reports with both clients.
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#nodes [data-field="connections"]')];
      return cells.length === 2 && cells.every((cell) => cell.textContent === '1');
    }, undefined, { timeout: 20000 });
    assert.equal(await page.$$eval('#nodes tr[data-current="true"]', (rows) => rows.length), 1);
    assert.equal(await page.textContent('#totals [data-field="connections"]'), '2');
    assert.match(await page.textContent('#nodes-summary'), /^2 nodes · 2 connections$/);
  });

  test('the room counts the subscribers of both nodes; presence lists both', async () => {
    const row = `#channels tr[data-channel="${room}"]`;
    await page.waitForFunction((s) => document.querySelector(`${s} [data-field="subscribers"]`)
      ?.textContent === '2', row, { timeout: 20000 });
    await page.click(`${row} button`);
    await page.waitForFunction(() => document.querySelectorAll('#presence tr').length === 2);
  });

  test('a publication and a disconnect reach a client of the other node', async () => {
    await page.fill('#publish-data', 'to both nodes');
    await page.click('#publish-button');
    await waitFor(() => annSaw.length === 1, 5000, () => 'the publication on the other node');
    assert.deepEqual(annSaw[0].data, { text: 'to both nodes' });

    await page.selectOption('#disconnect-by', 'user');
    await page.fill('#disconnect-target', 'ann');
    await page.fill('#disconnect-code', '4401');
    await page.click('#disconnect-button');
    await page.waitForFunction(() => document.getElementById('disconnect-result').textContent
      === 'disconnected 1 connection');
    await waitFor(() => annStates.some((e) => e.state === 'closed'), 5000,
      () => 'ann\'s client on the other node to close');
    assert.equal(annStates.find((e) => e.state === 'closed').code, 4401);
    assert.equal(bob.state, 'connected');
  });
});

test('no /admin on a server without an API key or admin secret', async () => {
  const server = await startServer();
  try {
    const response = await fetch(`${server.http}/admin`);
    assert.equal(response.status, 404);
    assert.equal((await response.json()).error.code, 'bad_request');
  } finally {
    await server.stop();
  }
});
