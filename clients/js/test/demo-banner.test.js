// The demo's connection banner in headless Chromium, with the page (and so its WebSocket)
// served through a proxy that cuts connections: a cut shows the reconnect countdown, then
// exactly how many messages were recovered; a server restart loses history, and the banner
// says so. Leaves screenshots in target/screenshots/.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Switchboard } from '../switchboard.js';
import {
  chromiumSkip as skip,
  launchChromium,
  repoRoot,
  startProxy,
  startServer,
  stateReached,
  waitFor,
} from '../test-support/harness.js';

const shots = path.join(repoRoot, 'target', 'screenshots');

// Only the `chat` namespace: without `ticker` the server runs no price feed, so every
// publication the page recovers is one of the test's (the banner counts all channels).
const config = `[namespaces."chat"]
history_size = 100
anonymous = "publish"
`;

describe('the demo banner across cuts and restarts', { skip }, () => {
  let server;
  let proxy;
  let browser;
  let cut;
  let direct;
  let publisher;
  let args;
  const room = `banner-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const channel = `chat:${room}`;

  const banner = (page) => page.textContent('#banner');
  const bannerIs = (page, pattern) => page.waitForFunction(
    (source) => new RegExp(source).test(document.getElementById('banner').textContent),
    pattern.source,
    { timeout: 15000 },
  );
  const shot = (page, name) => page.screenshot({ path: path.join(shots, `${name}.png`) });

  async function open(port) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(10000);
    await page.goto(`http://localhost:${port}/#${room}`);
    await bannerIs(page, /^Connected over WebSocket$/);
    return page;
  }

  /** Publishes `count` chat messages from outside the pages; resolves with their texts. */
  async function publish(count, label) {
    const texts = Array.from({ length: count }, (_, i) => `${label} ${i + 1}`);
    for (const text of texts) {
      await publisher.publish(channel, { type: 'message', name: 'robot', text, time: Date.now() });
    }
    return texts;
  }

  before(async () => {
    mkdirSync(shots, { recursive: true });
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'switchboard-banner-')), 'sb.toml');
    writeFileSync(file, config);
    args = ['--config', file];
    server = await startServer({ args });
    proxy = await startProxy(server.port);
    browser = await launchChromium();
    // One window through the proxy, the other straight to the server: only the first is
    // cut, so nothing the second sends on its own reconnection lands in the first's count.
    cut = await open(proxy.port);
    direct = await open(server.port);
    publisher = new Switchboard(server.url, { WebSocket, minReconnectDelay: 100 });
    await stateReached(publisher, 'connected');
  });

  after(async () => {
    publisher?.close();
    await browser?.close();
    await proxy?.close();
    await server?.stop();
  });

  test('two windows chat and see each other', async () => {
    for (const page of [cut, direct]) {
      await page.waitForFunction(() => document.querySelectorAll('#people li').length === 2);
    }
    await cut.fill('#text', 'hello through the proxy');
    await cut.press('#text', 'Enter');
    await direct.waitForSelector('#messages .message .text:text("hello through the proxy")');
    // The greetings settle before the cut: the first window answers the second's hello
    // within 500 ms, and that answer is the last message either window sends on its own.
    await waitFor(async () => {
      const { publications } = await publisher.history(channel, { limit: 100 });
      return publications.some((p) => p.data?.type === 'here');
    }, 5000, () => "the first window's answer to the second's hello");
  });

  test('a cut shows the countdown, then the number of recovered messages', async () => {
    proxy.dropAll({ holdMs: 1500 });
    await bannerIs(cut, /^Connection lost — reconnecting in \d+ s…$/);
    await shot(cut, 'banner-reconnecting');
    const texts = await publish(5, 'missed while cut');
    await bannerIs(cut, /^Recovered \d+ missed messages?$/);
    assert.equal(await banner(cut), 'Recovered 5 missed messages');
    await cut.waitForSelector(`#messages .message .text:text("${texts[4]}")`);
    await shot(cut, 'banner-recovered');
  });

  test('a restarted server cannot recover, and the banner says so', async () => {
    await server.stop();
    await bannerIs(cut, /^Connection lost/);
    server = await startServer({ port: server.port, args });
    await bannerIs(cut, /^Could not recover: reloaded history$/);
    await shot(cut, 'banner-not-recovered');
  });
});
