// Checks `switchboard bench` against the real peer servers, on loopback: every round trip
// of an echo and every delivery of a broadcast is counted exactly, over the raw protocol
// (ws, uWebSockets.js) and Socket.IO. Exits non-zero on the first wrong count.
//
//   SWITCHBOARD_BIN=target/debug/switchboard node benches/peers/node/smoke.mjs

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.SWITCHBOARD_BIN;
if (!bin) {
  console.error('smoke.mjs: set SWITCHBOARD_BIN to the switchboard binary');
  process.exit(2);
}

const peers = [
  { name: 'ws', script: 'ws.mjs', protocol: 'raw', echo: '/echo', broadcast: '/broadcast' },
  { name: 'uWebSockets.js', script: 'uws.mjs', protocol: 'raw', echo: '/echo', broadcast: '/broadcast' },
  {
    name: 'Socket.IO',
    script: 'socketio.mjs',
    protocol: 'socketio',
    echo: '/socket.io/?EIO=4&transport=websocket',
    broadcast: '/socket.io/?EIO=4&transport=websocket',
  },
];

/** A port the kernel just handed out and took back. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts on `port`; gives up after 10 s. */
async function accepting(port) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing accepts on 127.0.0.1:${port}`);
}

/** Runs `switchboard bench ARGS --json` and returns its report. */
async function bench(args) {
  const { stdout } = await promisify(execFile)(bin, ['bench', ...args, '--json'], {
    timeout: 60_000,
  });
  return JSON.parse(stdout);
}

for (const peer of peers) {
  const port = await freePort();
  const server = spawn(process.execPath, [join(here, peer.script), '--port', String(port)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await accepting(port);
    const base = `ws://127.0.0.1:${port}`;

    const echo = await bench([
      'echo', '--url', base + peer.echo, '--protocol', peer.protocol,
      '--connections', '4', '--messages', '50', '--in-flight', '4', '--size', '200',
    ]);
    assert.equal(echo.messages, 200, `${peer.name} echo: ${JSON.stringify(echo)}`);
    assert.equal(echo.errors, 0, `${peer.name} echo: ${JSON.stringify(echo)}`);

    const fanout = await bench([
      'fanout', '--url', base + peer.broadcast, '--protocol', peer.protocol,
      '--subscribers', '5', '--rate', '40', '--duration', '500ms', '--grace', '1s',
      '--size', '256',
    ]);
    const context = `${peer.name} fanout: ${JSON.stringify(fanout)}`;
    assert.ok(fanout.publishes > 0, context);
    assert.equal(fanout.expected_deliveries, fanout.publishes * 5, context);
    assert.equal(fanout.deliveries, fanout.expected_deliveries, context);
    assert.equal(fanout.delivered_fraction, 1, context);
    assert.equal(fanout.errors, 0, context);
    console.log(
      `ok ${peer.name}: ${echo.messages} echoes, ${fanout.deliveries}/${fanout.expected_deliveries} deliveries`,
    );
  } finally {
    server.kill('SIGTERM');
  }
}
