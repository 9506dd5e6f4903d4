// The demo the server serves at `/`, in headless Chromium: two windows chat with each other,
// the ticker table moves, a reload shows the conversation again from history, and on a
// phone the message box is on the first screen. Leaves screenshots of the demo (wide and
// 375 pixels wide) and the status page in /tmp.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { chromiumSkip as skip, launchChromium, startServer } from '../test-support/harness.js';

const demoShot = process.env.SWITCHBOARD_DEMO_SCREENSHOT ?? '/tmp/switchboard-demo.png';
const phoneShot = process.env.SWITCHBOARD_PHONE_SCREENSHOT ?? '/tmp/switchboard-demo-375.png';
const statusShot = process.env.SWITCHBOARD_STATUS_SCREENSHOT ?? '/tmp/switchboard-status.png';


describe('the demo in Chromium', { skip }, () => {
  let server;
  let browser;
  let one;
  let two;
  const errors = [];
  // A room of its own, in case the server is shared.
  const room = `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const text = `hello from window one ${Math.random().toString(36).slice(2, 8)}`;

  /** Opens the demo in a new window and waits until it is connected. */
  async function open() {
    const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
    page.setDefaultTimeout(10000);
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`http://localhost:${server.port}/#${room}`);
    await connected(page);
    return page;
  }

  before(async () => {
    server = await startServer();
    browser = await launchChromium();
    one = await open();
    two = await open();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('two windows see each other in the room', async () => {
    for (const page of [one, two]) {
      assert.equal(await page.textContent('#room-title'), `#${room}`);
      await page.waitForFunction(() => document.querySelectorAll('#people li').length === 2);
    }
    // Each window has its own name.
    const names = await Promise.all([one, two].map((page) => page.inputValue('#name')));
    assert.notEqual(names[0], names[1]);
    assert.ok(await two.textContent('#people').then((people) => people.includes(names[0])));

    await two.fill('#text', 'typing');
    await one.waitForFunction((name) => text('#typing') === `${name} is typing…`, names[1]);

    await one.fill('#text', text);
    await one.press('#text', 'Enter');
    await two.waitForFunction((expected) => messages().includes(expected), text);
    assert.equal(await one.inputValue('#text'), '');
    // Typing events never show up as messages.
    assert.ok(!(await two.evaluate(() => messages().some((m) => m === 'typing'))));
    assert.equal(await two.textContent('#typing'), '');
    await one.waitForFunction((expected) => messages().includes(expected), text);
  });

  test('the ticker table updates', async () => {
    const table = () => two.textContent('#quotes');
    const first = await table();
    assert.match(first, /ACME\s*[\d,]+\.\d\d/);
    await two.waitForFunction((before) => text('#quotes') !== before, first);
    assert.match(await two.textContent('#chart-price'), /^[\d,]+\.\d\d$/);
  });

  test('a reload shows the conversation again', async () => {
    await one.reload();
    await connected(one);
    await one.waitForFunction((expected) => messages().includes(expected), text);
    assert.equal(await one.textContent('#room-title'), `#${room}`);
    await one.screenshot({ path: demoShot });
  });

  test('on a phone, the message box is on the first screen', async () => {
    const phone = await browser.newPage({ viewport: { width: 375, height: 667 } });
    phone.on('pageerror', (error) => errors.push(error.message));
    await phone.goto(`http://localhost:${server.port}/#${room}`);
    await connected(phone);
    await phone.waitForFunction((expected) => messages().includes(expected), text);
    const layout = await phone.evaluate(() => {
      const box = document.getElementById('text').getBoundingClientRect();
      const send = document.querySelector('#send button').getBoundingClientRect();
      return {
        scrolled: scrollY,
        scrollsSideways: document.documentElement.scrollWidth > innerWidth,
        textInView: box.top >= 0 && box.bottom <= innerHeight && box.width > 150,
        sendInView: send.right <= innerWidth && send.bottom <= innerHeight,
      };
    });
    await phone.screenshot({ path: phoneShot });
    assert.deepEqual(layout,
      { scrolled: 0, scrollsSideways: false, textInView: true, sendInView: true });
    await phone.close();
  });

  test('the status page shows live counts', async () => {
    const status = await browser.newPage({ viewport: { width: 1360, height: 860 } });
    status.on('pageerror', (error) => errors.push(error.message));
    await status.goto(`http://localhost:${server.port}/status`);
    const shown = (id) => status.textContent(`#${id}`);
    const ready = (id) => document.getElementById(id).textContent !== '—';
    await status.waitForFunction(ready, 'connections');
    assert.ok(Number(await shown('connections')) >= 2);
    // Rates need two samples, a second apart.
    await status.waitForFunction(ready, 'messages-rate');
    assert.match(await shown('messages-rate'), /^\d+(\.\d)?$/);
    assert.match(await shown('memory'), /\d+(\.\d)? (KiB|MiB|GiB)/);
    await status.screenshot({ path: statusShot });
    await status.close();
    assert.deepEqual(errors, []);
  });
});

/** Resolves once the page's banner says it is connected. */
async function connected(page) {
  await page.waitForFunction(() => document.getElementById('banner').textContent
    === 'Connected over WebSocket');
  // Helpers in the page, for the tests' `waitForFunction` calls.
  await page.evaluate(() => {
    window.text = (selector) => document.querySelector(selector).textContent;
    window.messages = () => [...document.querySelectorAll('#messages .message .text')]
      .map((m) => m.textContent);
  });
}
