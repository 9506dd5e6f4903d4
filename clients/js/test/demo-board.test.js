// The demo's whiteboard at /board, in headless Chromium: one window draws with pointer
// events, another sees the stroke on its canvas, the first window's pointer and its name in
// the list of who is drawing; a window opened later sees the drawing from history; a window
// behind a proxy that cuts its connection recovers what was drawn meanwhile, and the
// banner counts it; what does not have the board's shapes is not drawn, and names are text.
// Leaves screenshots of the board at 1280 and 375 pixels wide in /work/shots (or
// $SWITCHBOARD_SHOTS).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Switchboard } from '../switchboard.js';
import {
  chromiumSkip as skip,
  launchChromium,
  startProxy,
  startServer,
  stateReached,
} from '../test-support/harness.js';

const shots = process.env.SWITCHBOARD_SHOTS ?? '/work/shots';

describe('the whiteboard in Chromium', { skip }, () => {
  let server;
  let browser;
  let one;
  let two;
  let proxy;
  let publisher;
  const errors = [];
  /** WebSocket frames each window sent: `{text, binary}`. */
  const sent = new Map();
  // A board of its own, in case the server is shared.
  const board = `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  /** The stroke window one draws, in fractions of the canvas: a diagonal line. */
  const stroke = [[0.2, 0.3], [0.35, 0.45], [0.5, 0.6], [0.65, 0.75]];

  /** Opens the board in a new window and waits until it is connected. */
  async function open(width = 1280, height = 860, port = server.port) {
    const page = await browser.newPage({ viewport: { width, height } });
    page.setDefaultTimeout(10000);
    page.on('pageerror', (error) => errors.push(error.message));
    const frames = { text: 0, binary: 0 };
    sent.set(page, frames);
    page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string') frames.text += 1;
      else frames.binary += 1;
    }));
    await page.goto(`http://localhost:${port}/board#${board}`);
    await page.waitForFunction(() => document.getElementById('banner').textContent
      === 'Connected over WebSocket');
    // Helpers in the page, for the tests' `waitForFunction` calls: an element's text, and
    // the colour `[r, g, b]` of the canvas at `[x, y]` (fractions of it).
    await page.evaluate(() => {
      window.text = (selector) => document.querySelector(selector).textContent;
      window.boardPixel = ([x, y]) => {
        const canvas = document.getElementById('canvas');
        const context = canvas.getContext('2d');
        const data = context.getImageData(Math.round(x * canvas.width),
          Math.round(y * canvas.height), 1, 1).data;
        return [data[0], data[1], data[2]];
      };
    });
    return page;
  }

  before(async () => {
    mkdirSync(shots, { recursive: true });
    server = await startServer();
    browser = await launchChromium();
    one = await open();
    two = await open();
  });

  after(async () => {
    await browser?.close();
    await proxy?.close();
    publisher?.close();
    await server?.stop();
  });

  test('both windows list each other, by name', async () => {
    const names = await Promise.all([one, two].map((page) => page.inputValue('#board-name')));
    for (const page of [one, two]) {
      await page.waitForFunction(() => document.querySelectorAll('#artists li').length === 2);
    }
    await two.waitForFunction(
      (name) => [...document.querySelectorAll('#artists .who')].some((w) => w.textContent === name),
      names[0],
    );
  });

  test('a stroke drawn in one window shows in the other, with its pointer', async () => {
    // The first point on the canvas is still white everywhere.
    assert.deepEqual(await pixel(two, stroke[1]), [255, 255, 255]);
    // The widest pen, so that the points looked at are well inside the line at any scale.
    await one.fill('#pen-size', '24');
    await draw(one, stroke);
    const drawn = await pixel(one, stroke[1]);
    assert.notDeepEqual(drawn, [255, 255, 255], 'the drawing window shows its own stroke');
    // The other window draws the same colour at the same place once the stroke arrives.
    await two.waitForFunction(
      ([at, colour]) => window.boardPixel(at).join() === colour.join(),
      [stroke[1], drawn],
    );
    assert.deepEqual(await pixel(two, stroke[2]), drawn);
    // Off the stroke, nothing.
    assert.deepEqual(await pixel(two, [0.8, 0.2]), [255, 255, 255]);

    // Window one's pointer, labelled with its name, near where it stopped.
    const name = await one.inputValue('#board-name');
    await two.waitForFunction(
      (expected) => [...document.querySelectorAll('#cursors .cursor-name')]
        .some((label) => label.textContent === expected),
      name,
    );
    // The pointer's updates are throttled, the last one sent after a pause: it ends where
    // the stroke ended.
    await two.waitForFunction(([lastX, lastY]) => {
      const cursor = document.querySelector('#cursors .cursor');
      const box = document.getElementById('surface').getBoundingClientRect();
      const at = cursor.getBoundingClientRect();
      const [x, y] = [(at.left - box.left) / box.width, (at.top - box.top) / box.height];
      return Math.abs(x - lastX) < 0.01 && Math.abs(y - lastY) < 0.01;
    }, stroke.at(-1));
    // The pointer goes in MessagePack (binary frames), the drawing in JSON (text).
    assert.ok(sent.get(one).binary > 0 && sent.get(one).text > 0, JSON.stringify(sent.get(one)));
    // A window does not show its own pointer.
    assert.equal(await one.evaluate(() => document.querySelectorAll('#cursors .cursor').length),
      0);
  });

  test('the pointer is sent at most 30 times a second', async () => {
    const before = sent.get(one).binary;
    // A pointer moving every animation frame (about 60 a second) for about a second.
    const seconds = await one.evaluate(async () => {
      const canvas = document.getElementById('canvas');
      const box = canvas.getBoundingClientRect();
      const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
      const start = performance.now();
      for (let i = 0; i < 60; i += 1) {
        await frame();
        canvas.dispatchEvent(new PointerEvent('pointermove', {
          clientX: box.left + (0.1 + i / 100) * box.width,
          clientY: box.top + 0.1 * box.height,
          pointerId: 1,
          pointerType: 'mouse',
          bubbles: true,
        }));
      }
      return (performance.now() - start) / 1000;
    });
    const last = [0.69, 0.1];
    await two.waitForFunction(([x, y]) => {
      const cursor = document.querySelector('#cursors .cursor');
      const box = document.getElementById('surface').getBoundingClientRect();
      const at = cursor?.getBoundingClientRect();
      return at && Math.abs((at.left - box.left) / box.width - x) < 0.01
        && Math.abs((at.top - box.top) / box.height - y) < 0.01;
    }, last);
    const updates = sent.get(one).binary - before;
    // The trailing update after the last move is sent once the 33 ms have passed.
    assert.ok(updates <= Math.ceil(seconds * 30) + 2, `${updates} updates in ${seconds} s`);
    assert.ok(updates >= Math.floor(seconds * 10), `${updates} updates in ${seconds} s`);
  });

  test('a window opened later sees the drawing from history', async () => {
    const drawn = await pixel(one, stroke[1]);
    const late = await open();
    await late.waitForFunction(
      ([at, colour]) => window.boardPixel(at).join() === colour.join(),
      [stroke[1], drawn],
    );
    assert.deepEqual(await pixel(late, stroke[3]), drawn);
    await late.waitForFunction(() => document.querySelectorAll('#artists li').length === 3);
    await late.close();
  });

  test('the board fits a 1280 and a 375 pixel wide window', async () => {
    // Window two, which shows window one's pointer where the stroke ended.
    await two.screenshot({ path: path.join(shots, 'board-1280.png') });
    const narrow = await open(375, 667);
    const drawn = await pixel(one, stroke[1]);
    await narrow.waitForFunction(
      ([at, colour]) => window.boardPixel(at).join() === colour.join(),
      [stroke[1], drawn],
    );
    // The others answer its hello with their names.
    await narrow.waitForFunction(() => {
      const names = [...document.querySelectorAll('#artists .who')].map((w) => w.textContent);
      return names.length === 3 && !names.some((name) => name.startsWith('guest '));
    });
    const fits = await narrow.evaluate(() => {
      const inView = (id) => {
        const box = document.getElementById(id).getBoundingClientRect();
        return box.width > 0 && box.left >= 0 && box.right <= innerWidth && box.top >= 0
          && box.bottom <= innerHeight;
      };
      return {
        scrollsSideways: document.documentElement.scrollWidth > innerWidth,
        canvas: inView('canvas'),
        palette: inView('palette'),
        size: inView('pen-size'),
        clear: inView('clear'),
      };
    });
    assert.deepEqual(fits, {
      scrollsSideways: false, canvas: true, palette: true, size: true, clear: true,
    });
    await narrow.screenshot({ path: path.join(shots, 'board-375.png') });
    await narrow.close();
    assert.deepEqual(errors, []);
  });

  test('a cut window recovers what was drawn meanwhile, and only the board\'s shapes', async () => {
    proxy = await startProxy(server.port);
    const cut = await open(1280, 860, proxy.port);
    publisher = new Switchboard(server.url, { WebSocket, minReconnectDelay: 100 });
    await stateReached(publisher, 'connected');
    const channel = `board:${board}`;
    // Board units: the board is 1600 × 1000 (board.js).
    const line = (x0, y0, x1, y1, color) =>
      ({ type: 'draw', stroke: 'test-1', color, size: 24, points: [x0, y0, x1, y1] });

    proxy.dropAll({ holdMs: 1500 });
    await cut.waitForFunction(() => /^Connection lost/.test(text('#banner')));
    // Two segments of one stroke along y = 800, from another program; then publications
    // the page must not draw: a colour outside its pens, a point off the board, no type.
    await publisher.publish(channel, line(100, 800, 400, 800, '#2563eb'));
    await publisher.publish(channel, line(400, 800, 700, 800, '#2563eb'));
    await publisher.publish(channel, line(100, 900, 700, 900, '#ff0000'));
    await publisher.publish(channel, line(100, 950, 1700, 950, '#2563eb'));
    await publisher.publish(channel, { points: [0, 0, 1600, 1000] });
    await cut.waitForFunction(() => /^Recovered/.test(text('#banner')), null, { timeout: 15000 });
    assert.equal(await cut.textContent('#banner'), 'Recovered 5 missed messages');
    const blue = [0x25, 0x63, 0xeb];
    assert.deepEqual(await pixel(cut, [250 / 1600, 0.8]), blue);
    assert.deepEqual(await pixel(cut, [550 / 1600, 0.8]), blue);
    for (const at of [[400 / 1600, 0.9], [400 / 1600, 0.95], [0.5, 0.5]]) {
      assert.deepEqual(await pixel(cut, at), [255, 255, 255], `at ${at}`);
    }
    // The windows that were not cut drew it live.
    assert.deepEqual(await pixel(two, [550 / 1600, 0.8]), blue);
    await cut.close();
  });

  test('names and pointers from the network are shown as text', async () => {
    // Within the 24 characters a name may have.
    const name = '<img src=x onerror=1>';
    const channel = `cursor:${board}`;
    // `id` ties the pointer to an entry of who is there; this one has none on the board.
    const id = publisher.session.client;
    await publisher.publish(channel, { type: 'hello', name, color: '#9333ea', id });
    await publisher.publish(channel, { type: 'cursor', x: 800, y: 500 });
    // Off the board, or of no known type: ignored.
    await publisher.publish(channel, { type: 'cursor', x: -5, y: 500 });
    await publisher.publish(channel, { type: 'cursor', x: '800', y: 500 });
    await two.waitForFunction(
      (expected) => [...document.querySelectorAll('#cursors .cursor-name')]
        .some((label) => label.textContent === expected),
      name,
    );
    assert.equal(await two.evaluate(() => document.querySelectorAll('#cursors img').length), 0);
    const colour = await two.evaluate((client) => document
      .querySelector(`#cursors .cursor[data-client="${client}"]`).style
      .getPropertyValue('--cursor'), id);
    assert.equal(colour, '#9333ea');
    assert.deepEqual(errors, []);
  });
});

/**
 * Draws `points` (fractions of the canvas) with a pressed mouse, as pointer events, one
 * animation frame apart so that the page sends them in several batches.
 */
async function draw(page, points) {
  await page.evaluate(async (fractions) => {
    const canvas = document.getElementById('canvas');
    const box = canvas.getBoundingClientRect();
    const at = ([x, y]) => ({
      clientX: box.left + x * box.width,
      clientY: box.top + y * box.height,
      pointerId: 1,
      pointerType: 'mouse',
      isPrimary: true,
      bubbles: true,
      button: 0,
      buttons: 1,
    });
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    canvas.dispatchEvent(new PointerEvent('pointerdown', at(fractions[0])));
    for (const point of fractions.slice(1)) {
      await frame();
      // Intermediate points, as a real mouse would report them.
      canvas.dispatchEvent(new PointerEvent('pointermove', at(point)));
    }
    canvas.dispatchEvent(new PointerEvent('pointerup', { ...at(fractions.at(-1)), buttons: 0 }));
  }, points);
}

/** The colour `[r, g, b]` of the canvas at `[x, y]` (fractions of it). */
function pixel(page, at) {
  return page.evaluate((point) => window.boardPixel(point), at);
}
