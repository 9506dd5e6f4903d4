// Test harness: the real `switchboard` binary, a TCP proxy that can cut connections, HS256
// tokens and bounded waits. Not a test file itself.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The server binary: `$SWITCHBOARD_BIN`, or the debug build of this checkout. */
export const serverBinary =
  process.env.SWITCHBOARD_BIN ?? path.join(repoRoot, 'target', 'debug', 'switchboard');

/** Debian's Chromium, or `$CHROMIUM_PATH`. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Why a browser suite is skipped: no Chromium on this machine (outside CI, where its absence
 * is a failure), or `false` to run it.
 */
export const chromiumSkip = !existsSync(chromiumPath) && !process.env.CI && `no ${chromiumPath}`;

/** Headless Chromium through `playwright-core`, with `extraArgs` after the usual switches. */
export async function launchChromium(extraArgs = []) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      ...extraArgs,
    ],
    timeout: 20000,
  });
}

/** `redis-server`: `$REDIS_SERVER`, or the one on `PATH`. */
const redisBinary = process.env.REDIS_SERVER ?? 'redis-server';

/**
 * Why a suite that needs `redis-server` is skipped: none on this machine (outside CI, where
 * its absence is a failure), or `false` to run it.
 */
export const redisSkip = !process.env.CI && !onPath(redisBinary) && `no ${redisBinary}`;

function onPath(name) {
  if (name.includes('/')) return existsSync(name);
  const dirs = (process.env.PATH ?? '').split(path.delimiter);
  return dirs.some((dir) => existsSync(path.join(dir, name)));
}

/**
 * A private `redis-server` on a free port of 127.0.0.1 (never the machine's own on 6379),
 * persistence off, answering `PING`; `stop()` kills it by PID. `url` is
 * `redis://127.0.0.1:PORT/0`.
 */
export async function startRedis() {
  const port = await freePort();
  const child = spawn(redisBinary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid, 'SIGKILL');
    await withTimeout(exited, 5000, () => `redis-server ${child.pid} did not exit`);
  };
  try {
    await waitFor(() => ping(port), 5000, () => `redis-server on port ${port} to answer PING`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, url: `redis://127.0.0.1:${port}/0`, stop };
}

/** Whether a Redis server answers `PING` on `port`. */
function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      answer += chunk;
      if (answer.includes('\r\n')) socket.end();
    });
    socket.once('error', () => resolve(false));
    socket.once('close', () => resolve(answer.startsWith('+PONG')));
  });
}

/** A port that was free a moment ago. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts `switchboard serve --listen 127.0.0.1:PORT ...args` and waits for its listening
 * line on stderr. Stop it with `stop()` (by PID).
 */
export async function startServer({ port, args = [], env = {} } = {}) {
  if (!existsSync(serverBinary)) {
    throw new Error(`no server binary at ${serverBinary}: run \`cargo build -p switchboard\``);
  }
  port ??= await freePort();
  const child = spawn(serverBinary, ['serve', '--listen', `127.0.0.1:${port}`, ...args], {
    env: { ...process.env, SWITCHBOARD_LOG: 'info', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await withTimeout(
    new Promise((resolve, reject) => {
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk) => {
        log += chunk;
        if (log.includes('switchboard listening on')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
      child.once('error', reject);
    }),
    10000,
    () => `server did not log that it listens:\n${log}`,
  ).catch((error) => {
    child.kill('SIGKILL');
    throw error;
  });
  return {
    port,
    pid: child.pid,
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    log: () => log,
    /** Kills the process by its PID and waits (bounded) for it to exit. */
    async stop(signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid, signal);
      await withTimeout(exited, 5000, () => `server ${child.pid} did not exit`);
    },
  };
}

/**
 * A TCP proxy on 127.0.0.1 to `target`: counts connections, cuts them all on demand, can
 * refuse new ones for a while, and can silence existing ones (a dead path that stays open).
 * Like some real proxies, it can also break WebSockets (`webSockets`): `refuse` answers an
 * upgrade request with 502, `kill` lets it through and drops the connection `killAfterMs`
 * after the server's answer; `pass` (the default) leaves them alone.
 */
export async function startProxy(target) {
  const pairs = new Set();
  let refuseUntil = 0;
  const proxy = {
    port: 0,
    connections: 0,
    /** Upgrade requests seen, whatever became of them. */
    upgrades: 0,
    webSockets: 'pass',
    killAfterMs: 200,
    target,
    get url() {
      return `ws://127.0.0.1:${this.port}/ws`;
    },
    /** Destroys every proxied connection; new ones are refused for `holdMs`. */
    dropAll({ holdMs = 0 } = {}) {
      refuseUntil = Date.now() + holdMs;
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
    },
    /** Stops forwarding bytes on the current connections, in both directions. */
    silence() {
      for (const pair of pairs) pair.silent = true;
    },
    close() {
      proxy.dropAll();
      return new Promise((resolve) => server.close(resolve));
    },
  };
  const server = net.createServer((client) => {
    proxy.connections += 1;
    if (Date.now() < refuseUntil) {
      client.destroy();
      return;
    }
    const upstream = net.connect(proxy.target, '127.0.0.1');
    const pair = { client, upstream, silent: false };
    pairs.add(pair);
    let first = true;
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk) => {
      if (first) {
        first = false;
        // A WebSocket opens its own connection, with the upgrade as its first request.
        if (/^GET [^\r\n]* HTTP\/1\.1\r\n(?:[^\r\n]+\r\n)*upgrade: *websocket\r\n/i
          .test(chunk.toString('latin1'))) {
          proxy.upgrades += 1;
          if (proxy.webSockets === 'refuse') {
            pair.silent = true;
            // Without the server: the answer must reach the client before anything closes it.
            upstream.removeAllListeners('close').removeAllListeners('error').on('error', () => {});
            upstream.destroy();
            client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
            return;
          }
          if (proxy.webSockets === 'kill') {
            upstream.once('data', () => setTimeout(end, proxy.killAfterMs));
          }
        }
      }
      if (!pair.silent) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => pair.silent || client.write(chunk));
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = server.address().port;
  return proxy;
}

/** An HS256 JWT (RFC 7519) signed with `secret`. */
export function mintToken(secret, claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  const signature = createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${signature}`;
}

/** Resolves `promise`, or rejects after `ms` with `describe()`. */
export function withTimeout(promise, ms, describe = () => `timed out after ${ms} ms`) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(describe())), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `predicate` (sync or async) every 20 ms until it holds, for at most `ms`. */
export async function waitFor(predicate, ms, describe = () => 'condition') {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${describe()}`);
    }
    await sleep(20);
  }
}

/** Resolves when `client` enters `state` (at once if it is there), within `ms`. */
export function stateReached(client, state, ms = 5000) {
  if (client.state === state) return Promise.resolve({ state });
  let off;
  return withTimeout(
    new Promise((resolve) => {
      off = client.on(state, resolve);
    }),
    ms,
    () => `client did not reach ${state} (it is ${client.state})`,
  ).finally(() => off());
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A unique channel in the `chat` namespace, which the default config opens to anyone. */
export function channel(name) {
  return `chat:test-${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}
