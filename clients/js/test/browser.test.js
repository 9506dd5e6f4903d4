// The client in a real browser: headless Chromium loads a page that imports
// `/switchboard.js` from the server itself (the copy built into the binary), connects through
// the cutting proxy over each transport in turn (the browser's own WebSocket, EventSource and
// fetch), publishes, receives, and recovers after a cut.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { Switchboard, TRANSPORTS } from '../switchboard.js';
import { channel, startProxy, startServer, stateReached } from '../test-support/harness.js';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = existsSync(chromiumPath);
/** Where the screenshot goes; outside the repository. */
const screenshotPath = process.env.SWITCHBOARD_SCREENSHOT ?? '/tmp/switchboard-browser-test.png';
const source = readFileSync(fileURLToPath(new URL('../switchboard.js', import.meta.url)), 'utf8');

/** The test page: imports the client from `server` and leaves hooks on `window`. */
function page(server) {
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Switchboard browser test</title>
<style>
  body { font: 16px system-ui, sans-serif; margin: 2em; }
  #state { font-weight: bold; }
  li { font-family: monospace; margin: 0.2em 0; }
</style>
<h1>Switchboard in the browser</h1>
<p id="state">loading</p>
<ul id="log"></ul>
<script type="module">
  import { Switchboard } from '${server}/switchboard.js';
  const log = (text) => {
    const li = document.createElement('li');
    li.textContent = text;
    document.getElementById('log').append(li);
  };
  window.start = async (url, name, transports) => {
    window.client?.close();
    document.getElementById('log').replaceChildren();
    Object.assign(window, { received: [], states: [], recoveries: [] });
    const client = new Switchboard(url, {
      transports,
      minReconnectDelay: 100,
      maxReconnectDelay: 400,
    });
    window.client = client;
    client.on('state', (event) => {
      window.states.push(event.state);
      document.getElementById('state').textContent =
        'state: ' + event.state + ' over ' + event.transport;
    });
    const sub = client.subscribe(name, {
      publication: (p) => {
        window.received.push(p);
        log('#' + p.offset + ' ' + JSON.stringify(p.data));
      },
      recovered: (context) => {
        window.recoveries.push(context);
        log('recovered: ' + context.recovered);
      },
    });
    await sub.ready;
    return client.session.client;
  };
  window.ready = true;
</script>
</html>
`;
}

describe('in Chromium', { skip: !hasChromium && !process.env.CI && `no ${chromiumPath}` }, () => {
  let server;
  let proxy;
  let pages;
  let browser;
  let tab;
  const errors = [];

  before(async () => {
    server = await startServer();
    proxy = await startProxy(server.port);
    // The page's origin is http://localhost:…, which the server admits by default.
    pages = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page(server.http));
    });
    await new Promise((resolve) => pages.listen(0, '127.0.0.1', resolve));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-quic',
        '--disable-sync',
        '--no-first-run',
      ],
      timeout: 20000,
    });
    tab = await browser.newPage();
    tab.setDefaultTimeout(10000);
    tab.on('pageerror', (error) => errors.push(error.message));
    await tab.goto(`http://localhost:${pages.address().port}/`);
    await tab.waitForFunction(() => window.ready === true);
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (pages ? pages.close(resolve) : resolve()));
    await proxy?.close();
    await server?.stop();
  });

  test('the server serves this checkout\'s client', async () => {
    const response = await fetch(`${server.http}/switchboard.js`);
    assert.equal(response.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
    const stale = 'a stale binary: rebuild with cargo build -p switchboard';
    assert.equal(await response.text(), source, stale);
  });

  for (const transport of TRANSPORTS) {
    test(`over ${transport}: subscribes, publishes with an ack, receives, loses nothing in a cut`,
      async () => {
        const name = channel(`browser-${transport}`);
        const connectionsBefore = proxy.connections;
        const id = await tab.evaluate(([url, ch, t]) => window.start(url, ch, [t]),
          [proxy.url, name, transport]);
        assert.match(id, /.+/);
        assert.equal(await tab.evaluate(() => window.client.transport), transport);
        const ack = await tab.evaluate(
          (ch) => window.client.publish(ch, { text: 'hello from the browser' }),
          name,
        );
        assert.equal(ack.offset, 1);
        await tab.waitForFunction(() => window.received.length === 1);
        const received = await tab.evaluate(() => window.received);
        assert.deepEqual(received[0].data, { text: 'hello from the browser' });
        assert.equal(received[0].info.client, id);
        if (transport === 'websocket') await tab.screenshot({ path: screenshotPath });

        // Cut the browser's connections while a Node client keeps publishing.
        const publisher = new Switchboard(server.url, { WebSocket, transports: ['websocket'] });
        const total = 30;
        try {
          await stateReached(publisher, 'connected');
          for (let n = 1; n <= total; n += 1) {
            await publisher.publish(name, n);
            if (n === 10) proxy.dropAll({ holdMs: 300 });
          }
          await tab.waitForFunction((count) => window.received.length === count, total + 1);
        } finally {
          publisher.close();
        }
        const all = await tab.evaluate(() => window.received.map((p) => [p.offset, p.data]));
        const published = Array.from({ length: total }, (_, i) => [i + 2, i + 1]);
        assert.deepEqual(all, [[1, { text: 'hello from the browser' }], ...published]);
        const states = await tab.evaluate(() => window.states);
        const recoveries = await tab.evaluate(() => window.recoveries.map((r) => r.recovered));
        if (transport === 'websocket') {
          // A new connection, which recovered by offset.
          assert.ok(states.includes('disconnected'), states.join(' '));
          assert.deepEqual(recoveries, [true]);
        } else {
          // The session carried on: the EventSource resumed with Last-Event-ID, or the
          // polls went on from their ack.
          assert.deepEqual(states, ['connecting', 'connected']);
          assert.deepEqual(recoveries, []);
        }
        assert.equal(await tab.evaluate(() => window.client.state), 'connected');
        assert.ok(proxy.connections > connectionsBefore);
        await tab.evaluate(() => window.client.close());
        assert.deepEqual(errors, []);
      });
  }
});
