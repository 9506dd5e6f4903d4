// The client in a real browser: headless Chromium loads a page that imports
// `/switchboard.js` from the server itself (the copy built into the binary), connects through
// the cutting proxy over each transport in turn (the browser's own WebSocket, EventSource and
// fetch), publishes, receives, and recovers after a cut; reads presence and history; and
// comes back by itself after the server restarts, reporting the lost history.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { Switchboard, TRANSPORTS } from '../switchboard.js';
import {
  channel,
  chromiumSkip,
  launchChromium,
  startProxy,
  startServer,
  stateReached,
} from '../test-support/harness.js';

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
    Object.assign(window, {
      received: [], states: [], events: [], subscribes: [], recoveries: [], joins: [], leaves: [],
    });
    const client = new Switchboard(url, {
      transports,
      minReconnectDelay: 100,
      maxReconnectDelay: 400,
    });
    window.client = client;
    client.on('state', (event) => {
      window.states.push(event.state);
      const { state, transport, code, advice, reason } = event;
      window.events.push({ state, transport, code, advice, reason });
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
      subscribed: (context) => window.subscribes.push(context),
      join: (event) => window.joins.push(event.client.client),
      leave: (event) => window.leaves.push(event.client.client),
    });
    window.sub = sub;
    await sub.ready;
    return client.session.client;
  };
  window.ready = true;
</script>
</html>
`;
}

describe('in Chromium', { skip: chromiumSkip }, () => {
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
    browser = await launchChromium([
      '--disable-component-update',
      '--disable-quic',
      '--disable-sync',
      '--no-first-run',
    ]);
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

  for (const transport of TRANSPORTS) {
    test(`over ${transport}: presence lists the browser and another client; history has the `
      + 'offsets', { timeout: 30000 }, async () => {
      const name = channel(`browser-presence-${transport}`);
      const id = await tab.evaluate(([url, ch, t]) => window.start(url, ch, [t]),
        [proxy.url, name, transport]);
      assert.equal(await tab.evaluate(() => window.client.transport), transport);
      const other = new Switchboard(server.url, { WebSocket, transports: ['websocket'] });
      try {
        await other.subscribe(name).ready;
        const otherId = other.session.client;
        assert.notEqual(otherId, id);
        await tab.waitForFunction((who) => window.joins.includes(who), otherId);

        const present = await tab.evaluate(() => window.sub.presence());
        assert.deepEqual(present.map((c) => c.client).sort(), [id, otherId].sort());
        // The other client sees the browser there too.
        const seen = await other.presence(name);
        assert.deepEqual(seen.map((c) => c.client).sort(), [id, otherId].sort());

        // Three publications from the browser, two from the other client.
        const acks = [];
        for (const text of ['one', 'two', 'three']) {
          acks.push(await tab.evaluate(([ch, data]) => window.client.publish(ch, data),
            [name, text]));
        }
        for (const n of [4, 5]) acks.push(await other.publish(name, n));
        assert.deepEqual(acks.map((a) => a.offset), [1, 2, 3, 4, 5]);
        const { epoch } = acks[0];
        assert.ok(acks.every((a) => a.epoch === epoch), 'one epoch');
        await tab.waitForFunction(() => window.received.length === 5);

        const history = await tab.evaluate(() => window.sub.history({ limit: 10 }));
        assert.equal(history.epoch, epoch);
        assert.equal(history.offset, 5);
        assert.deepEqual(
          history.publications.map((p) => [p.channel, p.offset, p.epoch, p.data, p.info.client]),
          [
            [name, 1, epoch, 'one', id],
            [name, 2, epoch, 'two', id],
            [name, 3, epoch, 'three', id],
            [name, 4, epoch, 4, otherId],
            [name, 5, epoch, 5, otherId],
          ],
        );
        // The newest `limit`, and those after a position.
        const newest = await tab.evaluate(() => window.sub.history({ limit: 2 }));
        assert.deepEqual(newest.publications.map((p) => [p.offset, p.data]), [[4, 4], [5, 5]]);
        const since = await tab.evaluate(
          (e) => window.sub.history({ since: { offset: 3, epoch: e } }), epoch);
        assert.deepEqual(since.publications.map((p) => [p.offset, p.data]), [[4, 4], [5, 5]]);
        assert.equal(since.complete, true);

        // The other client leaves: presence lists the browser alone.
        other.close();
        await tab.waitForFunction((who) => window.leaves.includes(who), otherId);
        const alone = await tab.evaluate(() => window.sub.presence());
        assert.deepEqual(alone.map((c) => c.client), [id]);
      } finally {
        other.close();
      }
      assert.equal(await tab.evaluate(() => window.client.transport), transport);
      await tab.evaluate(() => window.client.close());
      assert.deepEqual(errors, []);
    });
  }

  for (const transport of TRANSPORTS) {
    test(`over ${transport}: after a server restart, comes back by itself with recovered: false`,
      { timeout: 30000 }, async () => {
        const name = channel(`browser-restart-${transport}`);
        const idBefore = await tab.evaluate(([url, ch, t]) => window.start(url, ch, [t]),
          [proxy.url, name, transport]);
        const first = await tab.evaluate((ch) => window.client.publish(ch, 'before'), name);
        await tab.waitForFunction(() => window.received.length === 1);
        const eventsBefore = await tab.evaluate(() => window.events.length);

        // The same port, a new process: the memory broker's history is gone.
        const { port, pid } = server;
        await server.stop();
        server = await startServer({ port });
        assert.notEqual(server.pid, pid);

        // Back by itself: disconnected, connected again, subscribed again; and the
        // subscription reports that what it may have missed is lost.
        await tab.waitForFunction((from) => {
          const events = window.events.slice(from);
          const lost = events.findIndex((e) => e.state === 'disconnected');
          return lost >= 0 && events.slice(lost).some((e) => e.state === 'connected')
            && window.subscribes.length === 2;
        }, eventsBefore);
        const events = (await tab.evaluate(() => window.events)).slice(eventsBefore);
        const lost = events.find((e) => e.state === 'disconnected');
        if (transport === 'websocket') {
          // The connection dropped without a close frame.
          assert.equal(lost.code, 1006, JSON.stringify(lost));
        } else {
          // The new server does not know the session: 4002, and the client starts over.
          assert.equal(lost.code, 4002, JSON.stringify(lost));
          assert.equal(lost.advice, 'reconnect');
        }
        assert.ok(events.every((e) => e.transport === transport), JSON.stringify(events));
        assert.equal(await tab.evaluate(() => window.client.state), 'connected');
        const [, resubscribed] = await tab.evaluate(() => window.subscribes);
        const recoveries = await tab.evaluate(() => window.recoveries);
        assert.equal(recoveries.length, 1, 'the resubscription reports its recovery');
        assert.equal(recoveries[0].channel, name);
        assert.equal(recoveries[0].recovered, false, 'a lost history is reported, not a gap');
        assert.notEqual(recoveries[0].epoch, first.epoch);
        assert.equal(recoveries[0].epoch, resubscribed.epoch);

        // A new session on the new server, subscribed again.
        const idAfter = await tab.evaluate(() => window.client.session.client);
        assert.notEqual(idAfter, idBefore);
        const present = await tab.evaluate(() => window.sub.presence());
        assert.deepEqual(present.map((c) => c.client), [idAfter]);

        // Publishing and receiving work again, from the browser and from another client.
        const own = await tab.evaluate((ch) => window.client.publish(ch, 'after'), name);
        assert.equal(own.epoch, recoveries[0].epoch);
        const publisher = new Switchboard(server.url, { WebSocket, transports: ['websocket'] });
        try {
          await stateReached(publisher, 'connected');
          await publisher.publish(name, 'from node');
        } finally {
          publisher.close();
        }
        await tab.waitForFunction(() => window.received.length === 3);
        const received = await tab.evaluate(() => window.received);
        assert.deepEqual(received.map((p) => [p.epoch, p.offset, p.data]), [
          [first.epoch, 1, 'before'],
          [own.epoch, 1, 'after'],
          [own.epoch, 2, 'from node'],
        ]);
        assert.equal(await tab.evaluate(() => window.client.transport), transport);
        await tab.evaluate(() => window.client.close());
        assert.deepEqual(errors, []);
      });
  }
});
