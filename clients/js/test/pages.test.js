// Recoveries larger than one reply, read in pages, and publications whose data cannot be
// parsed: every publication once and in order, nothing stalls or loops.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';

import { Switchboard, salvage } from '../switchboard.js';
import { channel, startServer, waitFor } from '../test-support/harness.js';

const FAST = { WebSocket, minReconnectDelay: 100, maxReconnectDelay: 400 };
/** Publications of about this many bytes: near the largest a client may send (64 KiB). */
const LARGE = 60000;

test('salvage reads the envelope and each publication on its own', () => {
  const push = '{"push":"publication","channel":"ch","offset":2,"data":[1,]}';
  assert.deepEqual(
    { ...salvage(push), undecodable: 'x' },
    { push: 'publication', channel: 'ch', offset: 2, undecodable: 'x' },
  );
  const reply = '{"id":3,"result":{"epoch":"e","offset":3,"recovered":true,"publications":['
    + '{"offset":1,"data":"a,]\\"}"},{"offset":2,"data":[[1,]]},{"offset":3,"data":{"x":[1]}}]}}';
  const msg = salvage(reply);
  assert.equal(msg.id, 3);
  assert.deepEqual(msg.result.publications.map((p) => [p.offset, p.data]),
    [[1, 'a,]"}'], [2, undefined], [3, { x: [1] }]]);
  assert.match(msg.result.publications[1].undecodable, /JSON/);
  assert.equal(salvage('not json'), null);
  assert.equal(salvage('{"push":"join","channel":"ch"}'), null);
});

describe('against a live server', () => {
  let server;
  const clients = [];
  const open = (options = {}) => {
    const client = new Switchboard(server.url, { ...FAST, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('a recovery larger than one page is delivered once, in order, before live ones',
    async () => {
      const name = channel('big');
      const publisher = open();
      let epoch;
      for (let n = 1; n <= 20; n += 1) {
        const ack = await publisher.publish(name, { n, text: 'x'.repeat(LARGE) });
        assert.equal(ack.offset, n);
        epoch = ack.epoch;
      }
      const reader = open();
      const received = [];
      const recovered = [];
      const states = [];
      reader.on('state', (event) => states.push(event.state));
      const sub = reader.subscribe(name, {
        since: { offset: 1, epoch },
        publication: (p) => received.push(p.offset),
        recovered: (context) => recovered.push(context.recovered),
      });
      await sub.ready;
      for (let n = 21; n <= 23; n += 1) await publisher.publish(name, { n });
      await waitFor(() => received.length >= 22, 10000, () => `got ${received}`);
      assert.deepEqual(received, Array.from({ length: 22 }, (_, i) => i + 2));
      assert.deepEqual(recovered, [true]);
      assert.deepEqual(sub.position, { offset: 23, epoch });
      assert.deepEqual(states, ['connecting', 'connected'], 'never cut off');
    });

  test('history larger than one page resolves whole', async () => {
    const name = channel('big');
    const client = open();
    let epoch;
    for (let n = 1; n <= 20; n += 1) {
      ({ epoch } = await client.publish(name, { n, text: 'x'.repeat(LARGE) }));
    }
    const offsets = (result) => result.publications.map((p) => p.offset);
    const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

    // A 256 KiB page holds four of these publications: each call takes several pages.
    const all = await client.history(name);
    assert.deepEqual(offsets(all), range(1, 20));
    assert.deepEqual([all.offset, all.epoch, all.complete, all.more, all.next],
      [20, epoch, undefined, undefined, undefined]);
    assert.deepEqual(all.publications.map((p) => p.data.n), range(1, 20));

    const newest = await client.history(name, { limit: 10 });
    assert.deepEqual(offsets(newest), range(11, 20));

    const after = await client.history(name, { since: { offset: 3, epoch } });
    assert.deepEqual(offsets(after), range(4, 20));
    assert.equal(after.complete, true);

    const lost = await client.history(name, { since: { offset: 3, epoch: 'another' } });
    assert.deepEqual([lost.complete, lost.publications.length], [false, 0]);
  });
});

describe('against a scripted server', () => {
  let wss;
  let script;
  const clients = [];

  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        const command = JSON.parse(data.toString());
        const reply = (result) => ws.send(JSON.stringify({ id: command.id, result }));
        if (command.type === 'connect') {
          reply({
            client: 'c1', version: '0.1.0', ping_interval: 25,
            limits: { max_message_size: 65536, max_subscriptions: 128 },
          });
        } else {
          script(command, ws, reply);
        }
      });
    });
  });

  after(async () => {
    for (const client of clients) client.close();
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });

  const open = () => {
    const client = new Switchboard(`ws://127.0.0.1:${wss.address().port}/ws`, FAST);
    clients.push(client);
    return client;
  };

  const publication = (offset) => JSON.stringify({
    push: 'publication', channel: 'ch', offset, data: offset,
  });
  /** Data that is not JSON: what a parser refuses. */
  const broken = (offset) => `{"push":"publication","channel":"ch","offset":${offset},`
    + '"data":[1,]}';

  test('an undecodable publication push is reported and the stream moves past it', async () => {
    const commands = [];
    script = (command, ws, reply) => {
      commands.push(command.type);
      if (command.type === 'subscribe') {
        reply({ epoch: 'e1', offset: 0, recoverable: true });
        ws.send(publication(1));
        ws.send(broken(2));
        ws.send(publication(3));
      }
    };
    const client = open();
    const events = [];
    const errors = [];
    client.on('error', (e) => errors.push(e));
    const sub = client.subscribe('ch', {
      publication: (p) => events.push(['publication', p.offset]),
      undecodable: (e) => events.push(['undecodable', e.channel, e.offset, e.epoch]),
    });
    await waitFor(() => events.length === 3, 5000, () => JSON.stringify(events));
    assert.deepEqual(events, [
      ['publication', 1], ['undecodable', 'ch', 2, 'e1'], ['publication', 3],
    ]);
    assert.deepEqual(sub.position, { offset: 3, epoch: 'e1' });
    assert.deepEqual(commands, ['subscribe'], 'no resubscription for a gap');
    assert.deepEqual(errors, []);
    client.close();
  });

  test('an undecodable publication in a recovery and in its pages is delivered in its place',
    async () => {
      const commands = [];
      script = (command, ws, reply) => {
        commands.push(command);
        if (command.type === 'subscribe') {
          ws.send('{"id":' + command.id + ',"result":{"epoch":"e1","offset":5,'
            + '"recoverable":true,"recovered":false,"publications":[{"offset":1,"data":1},'
            + '{"offset":2,"data":[1,]}],"more":true,"next":{"offset":2,"epoch":"e1"}}}');
          ws.send(publication(6));
        } else if (command.type === 'history') {
          ws.send('{"id":' + command.id + ',"result":{"epoch":"e1","offset":6,'
            + '"publications":[{"offset":3,"data":3},{"offset":4,"data":{"x":}},'
            + '{"offset":5,"data":5},{"offset":6,"data":6}],"complete":true}}');
          ws.send(publication(7));
        }
      };
      const client = open();
      const events = [];
      const sub = client.subscribe('ch', {
        since: { offset: 0, epoch: 'e1' },
        publication: (p) => events.push(p.offset),
        undecodable: (e) => events.push(`undecodable ${e.offset}`),
        recovered: (context) => events.push(`recovered ${context.recovered}`),
      });
      await waitFor(() => events.length === 8, 5000, () => JSON.stringify(events));
      assert.deepEqual(events,
        [1, 'undecodable 2', 3, 'undecodable 4', 5, 6, 'recovered true', 7]);
      assert.deepEqual(commands.map((c) => c.type), ['subscribe', 'history']);
      assert.deepEqual(commands[1].since, { offset: 2, epoch: 'e1' });
      assert.deepEqual(sub.position, { offset: 7, epoch: 'e1' });
      client.close();
    });
});
