// permessage-deflate (RFC 7692) with a real browser: headless Chromium offers it on every
// WebSocket; the server accepts it on /ws by default, and its metrics show the messages it
// inflated from the browser and the publication it compressed once and sent to it.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { channel, chromiumSkip, launchChromium, startServer } from '../test-support/harness.js';


function page(server) {
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Switchboard compression test</title>
<script type="module">
  import { Switchboard } from '${server}/switchboard.js';
  window.run = async (url, name, text) => {
    const client = new Switchboard(url, { transports: ['websocket'] });
    let delivered;
    const publication = new Promise((resolve) => { delivered = resolve; });
    const sub = client.subscribe(name, { publication: (p) => delivered(p) });
    await sub.ready;
    const ack = await client.publish(name, { text });
    const received = await publication;
    client.close();
    return { offset: ack.offset, echoed: received.data.text === text };
  };
  window.ready = true;
</script>
</html>
`;
}

/** The value of the metric line `key` in `text`, or undefined. */
function metric(text, key) {
  const line = text.split('\n').find((l) => l.startsWith(key + ' '));
  return line === undefined ? undefined : Number(line.slice(key.length + 1));
}

describe('permessage-deflate in Chromium', {
  skip: chromiumSkip,
}, () => {
  let server;
  let pages;
  let browser;

  before(async () => {
    server = await startServer();
    pages = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page(server.http));
    });
    await new Promise((resolve) => pages.listen(0, '127.0.0.1', resolve));
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (pages ? pages.close(resolve) : resolve()));
    await server?.stop();
  });

  test('the browser and /ws exchange compressed messages', async () => {
    const tab = await browser.newPage();
    tab.setDefaultTimeout(10000);
    const errors = [];
    tab.on('pageerror', (error) => errors.push(error.message));
    await tab.goto(`http://localhost:${pages.address().port}/`);
    await tab.waitForFunction(() => window.ready === true);
    const text = 'a message the browser compresses, '.repeat(40);
    const result = await tab.evaluate(
      ([url, name, t]) => window.run(url, name, t),
      [server.url, channel('deflate'), text],
    );
    assert.deepEqual(result, { offset: 1, echoed: true });
    assert.deepEqual(errors, []);

    const metrics = await (await fetch(`${server.http}/metrics`)).text();
    const messages = (direction, compressor) =>
      metric(
        metrics,
        `switchboard_deflate_messages_total{direction="${direction}",compressor="${compressor}"}`,
      );
    const bytes = (form) =>
      metric(metrics, `switchboard_deflate_bytes_total{direction="sent",form="${form}"}`);
    // From the browser: at least the publish (Chromium deflates what it sends).
    assert.ok(messages('received', 'connection') >= 1, metrics);
    // To the browser: the publication, 1.4 KB of JSON, as the frame compressed once for every
    // subscriber, far smaller than the JSON.
    assert.equal(messages('sent', 'shared'), 1, metrics);
    assert.equal(metric(metrics, 'switchboard_deflate_shared_frames_total'), 1, metrics);
    const plain = bytes('plain');
    const deflated = bytes('deflated');
    assert.ok(plain >= text.length, metrics);
    assert.ok(deflated * 5 < plain, `sent ${plain} bytes as ${deflated}`);
    await tab.close();
  });
});
