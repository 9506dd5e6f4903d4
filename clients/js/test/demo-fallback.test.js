// The demo in headless Chromium on a server whose WebSocket transport is turned off (as when a
// proxy on the way refuses upgrades): the client falls back by itself, two windows still chat,
// and the banner says which transport carries the connection. Leaves a screenshot in /tmp.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { chromiumSkip as skip, launchChromium, startServer } from '../test-support/harness.js';


const cases = [
  { disabled: ['websocket'], banner: 'Connected over SSE', shot: 'sse' },
  { disabled: ['websocket', 'sse'], banner: 'Connected over long-polling', shot: 'longpoll' },
];

for (const { disabled, banner, shot } of cases) {
  describe(`the demo with ${disabled.join(' and ')} disabled`, { skip }, () => {
    let server;
    let browser;
    const pages = [];
    const errors = [];
    const room = `fallback-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const screenshot = `/tmp/switchboard-demo-${shot}.png`;

    before(async () => {
      server = await startServer({
        args: disabled.flatMap((name) => ['--disable-transport', name]),
      });
      browser = await launchChromium();
      for (let i = 0; i < 2; i += 1) {
        const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
        page.setDefaultTimeout(15000);
        page.on('pageerror', (error) => errors.push(error.message));
        await page.goto(`http://localhost:${server.port}/#${room}`);
        pages.push(page);
      }
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
    });

    test(`two windows chat, and the banner says "${banner}"`, async () => {
      for (const page of pages) {
        await page.waitForFunction(
          (expected) => document.getElementById('banner').textContent === expected,
          banner,
        );
        await page.waitForFunction(() => document.querySelectorAll('#people li').length === 2);
      }
      const [one, two] = pages;
      const text = `hello over ${shot} ${Math.random().toString(36).slice(2, 8)}`;
      await one.fill('#text', text);
      await one.press('#text', 'Enter');
      await two.waitForSelector(`#messages .message .text:text("${text}")`);
      const answer = `and back over ${shot}`;
      await two.fill('#text', answer);
      await two.press('#text', 'Enter');
      await one.waitForSelector(`#messages .message .text:text("${answer}")`);
      assert.equal(await one.evaluate(() => document.getElementById('banner').dataset.tone), 'ok');
      await one.screenshot({ path: screenshot });
      assert.deepEqual(errors, []);
    });
  });
}
