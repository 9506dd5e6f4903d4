// The demo chat shows what a backend publishes to its room, in headless Chromium: a
// publication with a `text` field as a message from its publisher, anything else as a card of
// pretty-printed JSON, never as HTML. Publishes with the real `switchboard publish`, over the
// HTTP API (`--api-key`) and over a WebSocket. Leaves screenshots at 1280 and 375 pixels wide
// in $SWITCHBOARD_SHOTS (default /tmp).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import {
  chromiumSkip as skip, launchChromium, serverBinary, startServer,
} from '../test-support/harness.js';

const run = promisify(execFile);
const API_KEY = 'a-test-api-key-for-the-demo';
const shots = process.env.SWITCHBOARD_SHOTS ?? '/tmp';
/** The chat's messages and cards, not its notices ("X joined"). */
const ITEMS = '#messages > li.message';

describe('publications of any shape in the demo chat', { skip }, () => {
  let server;
  let browser;
  let page;
  const errors = [];
  const room = `pub-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const channel = `chat:${room}`;

  /** `switchboard publish URL CHANNEL DATA`, over the HTTP API with `apiKey`; its ack. */
  async function publish(data, { apiKey } = {}) {
    const args = ['publish', `ws://127.0.0.1:${server.port}`, channel, data];
    if (apiKey) args.push('--api-key', apiKey);
    const { stdout } = await run(serverBinary, args, { timeout: 10000 });
    return JSON.parse(stdout);
  }

  /** What the chat shows, item by item: class, sender, and text or JSON. */
  function shown() {
    return page.evaluate((items) => [...document.querySelectorAll(items)].map((li) => ({
      className: li.className,
      who: li.querySelector('.who')?.textContent,
      text: li.querySelector('.text')?.textContent,
      json: li.querySelector('.json')?.textContent,
    })), ITEMS);
  }

  /** Resolves once the chat shows `count` messages and cards. */
  function showing(count) {
    return page.waitForFunction(
      ([items, n]) => document.querySelectorAll(items).length === n, [ITEMS, count]);
  }

  before(async () => {
    server = await startServer({ args: ['--api-key', API_KEY] });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.setDefaultTimeout(10000);
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`http://localhost:${server.port}/#${room}`);
    await connected(page);
    // Subscribed: the window's own hello is on the channel (offset 1), so what follows is live.
    await page.waitForFunction(() => document.querySelectorAll('#people li').length === 1);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('text, JSON and plain strings from a backend are all shown', async () => {
    assert.ok((await publish('{"text":"hi"}', { apiKey: API_KEY })).offset > 0);
    await publish('{"price": 3}', { apiKey: API_KEY });
    await publish('the build is green', { apiKey: API_KEY });
    // Over a WebSocket: an anonymous connection, with `info` but no user.
    await publish('{"text":"from a script"}');
    await showing(4);

    const [text, price, plain, script] = await shown();
    assert.deepEqual(text, { className: 'message', who: 'server', text: 'hi', json: undefined });
    assert.deepEqual(price,
      { className: 'message card', who: 'server', text: undefined, json: '{\n  "price": 3\n}' });
    assert.deepEqual(plain,
      { className: 'message card', who: 'server', text: undefined, json: '"the build is green"' });
    assert.equal(script.className, 'message');
    assert.equal(script.text, 'from a script');
    assert.match(script.who, /^guest [0-9a-z]{4}$/);
  });

  test('markup in published data stays text', async () => {
    await publish('{"text":"<img src=x onerror=window.pwned=1>"}', { apiKey: API_KEY });
    await publish('{"html":"<b id=bold>bold</b>"}', { apiKey: API_KEY });
    await showing(6);
    const items = await shown();
    assert.equal(items[4].text, '<img src=x onerror=window.pwned=1>');
    assert.equal(items[5].json, '{\n  "html": "<b id=bold>bold</b>"\n}');
    assert.equal(await page.locator('#messages img, #bold').count(), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
  });

  test('a reload shows them again from history, and they read at 1280 and 375 px', async () => {
    const before = await shown();
    await page.reload();
    await connected(page);
    await showing(before.length);
    assert.deepEqual(await shown(), before);

    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, 'demo-publications-1280.png') });
    await page.setViewportSize({ width: 375, height: 812 });
    await page.locator('#messages').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(shots, 'demo-publications-375.png'), fullPage: true });
    // Nothing wider than the phone's screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 375, `the page is ${overflow} px wide`);
    assert.deepEqual(errors, []);
  });
});

/** Resolves once the page's banner says it is connected. */
async function connected(page) {
  await page.waitForFunction(() => document.getElementById('banner').textContent
    === 'Connected over WebSocket');
}
