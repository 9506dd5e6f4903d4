// The client against a real server, through a proxy that cuts connections on demand.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { Switchboard, SwitchboardError } from '../switchboard.js';
import {
  channel,
  freePort,
  sleep,
  startProxy,
  startServer,
  stateReached,
  waitFor,
} from '../test-support/harness.js';

/** Fast reconnection for tests; the delays still follow the backoff rules. */
const FAST = { WebSocket, minReconnectDelay: 100, maxReconnectDelay: 400 };

describe('against a live server', () => {
  let server;
  let proxy;
  const clients = [];
  const open = (url, options = {}) => {
    const client = new Switchboard(url, { ...FAST, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    // Pings every second, so that the heartbeat test is quick.
    server = await startServer({ args: ['--ping-interval', '1s'] });
    proxy = await startProxy(server.port);
  });

  after(async () => {
    for (const client of clients) client.close();
    await proxy?.close();
    await server?.stop();
  });

  test('connects, subscribes, publishes with an ack and receives', async () => {
    const name = channel('basic');
    const client = open(proxy.url);
    const states = [];
    client.on('state', (event) => states.push(event.state));
    const received = [];
    const sub = client.subscribe(name, { publication: (p) => received.push(p) });
    await sub.ready;
    assert.equal(client.state, 'connected');
    assert.deepEqual(states, ['connecting', 'connected']);
    assert.match(client.session.client, /.+/);
    assert.equal(client.session.ping_interval, 1);

    const ack = await client.publish(name, { text: 'hello' });
    assert.equal(ack.offset, 1);
    assert.equal(typeof ack.epoch, 'string');
    await waitFor(() => received.length === 1, 2000, () => 'the publication');
    assert.deepEqual(received[0], {
      channel: name,
      offset: 1,
      epoch: ack.epoch,
      data: { text: 'hello' },
      info: { client: client.session.client },
    });
    assert.deepEqual(sub.position, { offset: 1, epoch: ack.epoch });

    const present = await sub.presence();
    assert.deepEqual(present.map((c) => c.client), [client.session.client]);
    const history = await sub.history({ limit: 10 });
    assert.deepEqual(history.publications.map((p) => p.data), [{ text: 'hello' }]);

    const refused = await client.publish('nope:x', 1).catch((e) => e);
    assert.ok(refused instanceof SwitchboardError);
    assert.equal(refused.code, 'unknown_namespace');
    assert.equal(refused.temporary, false);
  });

  test('recovers every publication missed while the connection was cut, in order', async () => {
    const name = channel('cut');
    const subscriber = open(proxy.url);
    const publisher = open(server.url);
    const received = [];
    const recoveries = [];
    const states = [];
    subscriber.on('state', (event) => states.push(event));
    const sub = subscriber.subscribe(name, {
      publication: (p) => received.push(p),
      recovered: (context) => recoveries.push(context),
    });
    await sub.ready;
    await stateReached(publisher, 'connected');

    const total = 60;
    const queued = [];
    for (let n = 1; n <= total; n += 1) {
      await publisher.publish(name, n);
      if (n === 20) {
        // Cut mid-stream, and keep the subscriber out for a while so that it misses some.
        proxy.dropAll({ holdMs: 300 });
        await stateReached(subscriber, 'disconnected', 2000);
        // Publishing while disconnected queues; the queue flushes in order on reconnection.
        queued.push(subscriber.publish(name, 'queued-1'), subscriber.publish(name, 'queued-2'));
      }
    }
    const acks = await Promise.all(queued);
    await waitFor(() => received.length === total + 2, 5000, () => `${total + 2} publications, `
      + `got ${received.length}`);

    const offsets = received.map((p) => p.offset);
    const expected = Array.from({ length: total + 2 }, (_, i) => i + 1);
    assert.deepEqual(offsets, expected, 'in order, no gap, no duplicate');
    const numbers = received.map((p) => p.data).filter((d) => typeof d === 'number');
    assert.deepEqual(numbers, Array.from({ length: total }, (_, i) => i + 1));
    const own = received.filter((p) => typeof p.data === 'string');
    assert.deepEqual(own.map((p) => p.data), ['queued-1', 'queued-2']);
    assert.deepEqual(own.map((p) => p.offset), acks.map((a) => a.offset));
    assert.ok(acks[0].offset < acks[1].offset);

    assert.equal(recoveries.length, 1);
    assert.equal(recoveries[0].recovered, true);
    const disconnected = states.find((e) => e.state === 'disconnected');
    assert.equal(disconnected.code, 1006);
    assert.equal(disconnected.advice, 'backoff');
    assert.ok(disconnected.delay <= FAST.minReconnectDelay, `${disconnected.delay}`);
    assert.equal(states.at(-1).state, 'connected');
  });

  test('after a server restart, recovered is false and live delivery resumes', async () => {
    const name = channel('restart');
    const client = open(proxy.url);
    const received = [];
    const recoveries = [];
    const sub = client.subscribe(name, {
      publication: (p) => received.push(p),
      recovered: (context) => recoveries.push(context),
    });
    await sub.ready;
    const first = await client.publish(name, 'before');
    await waitFor(() => received.length === 1, 2000, () => 'the first publication');

    await server.stop();
    await stateReached(client, 'disconnected', 2000);
    server = await startServer({ port: server.port, args: ['--ping-interval', '1s'] });
    await stateReached(client, 'connected', 5000);
    await waitFor(() => recoveries.length === 1, 2000, () => 'the recovered callback');
    assert.equal(recoveries[0].recovered, false);
    assert.notEqual(recoveries[0].epoch, first.epoch);

    const afterRestart = await client.publish(name, 'after');
    await waitFor(() => received.length === 2, 2000, () => 'the publication after the restart');
    assert.deepEqual(received.map((p) => p.data), ['before', 'after']);
    assert.equal(received[1].offset, afterRestart.offset);
    assert.equal(received[1].epoch, afterRestart.epoch);
  });

  test('a silent connection fails the ack and the heartbeat, then reconnects', async () => {
    const client = open(proxy.url, { ackTimeout: 300, heartbeatMargin: 500 });
    await stateReached(client, 'connected');
    const connectionsBefore = proxy.connections;
    proxy.silence();
    const error = await client.publish(channel('silent'), 1).catch((e) => e);
    assert.equal(error.code, 'timeout');
    // Nothing for ping_interval (1 s) + margin (0.5 s): dead, reconnect.
    const disconnected = await stateReached(client, 'disconnected', 3000);
    assert.equal(disconnected.reason, 'heartbeat timeout');
    await stateReached(client, 'connected', 3000);
    assert.ok(proxy.connections > connectionsBefore);
    await client.ping();
  });

  test('an idle connection stays up: pings answer for the silence of the channel', async () => {
    const client = open(proxy.url, { heartbeatMargin: 300 });
    await stateReached(client, 'connected');
    const changes = [];
    client.on('state', (event) => changes.push(event.state));
    await sleep(2500);
    assert.deepEqual(changes, []);
  });
});

describe('while disconnected', () => {
  let deadUrl;
  before(async () => {
    deadUrl = `ws://127.0.0.1:${await freePort()}/ws`;
  });

  test('queueSize 0 rejects at once', async () => {
    const client = new Switchboard(deadUrl, { ...FAST, queueSize: 0 });
    try {
      const error = await client.publish('chat:x', 1).catch((e) => e);
      assert.equal(error.code, 'disconnected');
      assert.equal(error.temporary, true);
    } finally {
      client.close();
    }
  });

  test('the queue is bounded and close() rejects what it holds', async () => {
    const client = new Switchboard(deadUrl, { ...FAST, queueSize: 2 });
    const first = client.publish('chat:x', 1).catch((e) => e);
    const second = client.presence('chat:x').catch((e) => e);
    const third = await client.publish('chat:x', 3).catch((e) => e);
    assert.equal(third.code, 'queue_full');
    await stateReached(client, 'disconnected', 2000);
    client.close();
    assert.equal((await first).code, 'closed');
    assert.equal((await second).code, 'closed');
    assert.equal(client.state, 'closed');
    assert.equal((await client.publish('chat:x', 4).catch((e) => e)).code, 'closed');
  });

  test('failures to open back off with growing, jittered delays', async () => {
    // One transport: with more, the backoff grows once per round (transports.test.js).
    const options = { ...FAST, transports: ['websocket'], minReconnectDelay: 20,
      maxReconnectDelay: 80 };
    const client = new Switchboard(deadUrl, options);
    const delays = [];
    client.on('disconnected', (event) => delays.push(event));
    try {
      await waitFor(() => delays.length >= 5, 3000, () => 'five attempts');
    } finally {
      client.close();
    }
    delays.forEach((event, i) => {
      assert.equal(event.attempt, i + 1);
      assert.ok(event.delay < Math.min(80, 20 * 2 ** i), `attempt ${i + 1}: ${event.delay}`);
    });
  });
});

describe('on a channel past its join_leave_limit', () => {
  let server;
  const clients = [];

  before(async () => {
    const big = 'big:anonymous=publish,join_leave_limit=1,join_leave_interval=100ms';
    server = await startServer({ args: ['--namespace', big] });
  });

  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('joins and leaves arrive summed, as presenceCount events', async () => {
    const name = `big:room-${process.pid}`;
    const events = [];
    const joins = [];
    const first = new Switchboard(server.url, FAST);
    clients.push(first);
    await first.subscribe(name, {
      presenceCount: (event) => events.push(event),
      join: (event) => joins.push(event),
    }).ready;
    const others = [0, 1].map(() => new Switchboard(server.url, FAST));
    clients.push(...others);
    await Promise.all(others.map((c) => c.subscribe(name).ready));
    // Both joins, in one event or (on a slow machine) two.
    const joined = () => events.reduce((sum, event) => sum + event.joined, 0);
    await waitFor(() => joined() === 2, 5000, () => `two joins summed: ${JSON.stringify(events)}`);
    assert.deepEqual(events.at(-1), { channel: name, count: 3, joined: events.at(-1).joined, left: 0 });
    assert.ok(events.every((event) => event.channel === name && event.left === 0));
    assert.deepEqual(joins, [], 'no join of its own past the limit');
    assert.equal(await first.presenceCount(name), 3);
  });
});
