// MessagePack (`format: 'msgpack'`): the codec against the bytes protocol.md documents, and a
// MessagePack client against a real server, next to a JSON one on the same channel.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import {
  MSGPACK_SUBPROTOCOL,
  Switchboard,
  decodeMsgpack,
  encodeMsgpack,
} from '../switchboard.js';
import { channel, startServer, stateReached, waitFor } from '../test-support/harness.js';

const hex = (text) => Uint8Array.from(text.split(' '), (byte) => parseInt(byte, 16));

describe('the MessagePack codec', () => {
  test('writes and reads the ping of protocol.md', () => {
    const ping = hex('82 a2 69 64 08 a4 74 79 70 65 a4 70 69 6e 67');
    assert.deepEqual(encodeMsgpack({ id: 8, type: 'ping' }), ping);
    assert.deepEqual(decodeMsgpack(ping), { id: 8, type: 'ping' });
  });

  test('round-trips every kind of JSON value at every width', () => {
    const value = {
      small: [0, 127, -1, -32],
      ints: [128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1],
      negative: [-33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1],
      floats: [0.5, -1.25, 1e300],
      strings: ['', 'é', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(256), 'w'.repeat(70000)],
      nested: { a: [null, true, false, { b: [] }], long: Array.from({ length: 20 }, (_, i) => i) },
      keys: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
    };
    assert.deepEqual(decodeMsgpack(encodeMsgpack(value)), value);
  });

  test('writes what JSON would for values JSON cannot carry', () => {
    const value = { nan: NaN, gone: undefined, at: [Infinity] };
    assert.deepEqual(decodeMsgpack(encodeMsgpack(value)), JSON.parse(JSON.stringify(value)));
  });

  test('refuses truncated input, trailing bytes and ext types', () => {
    assert.throws(() => decodeMsgpack(hex('82 a2 69')), /truncated/);
    assert.throws(() => decodeMsgpack(hex('c0 c0')), /trailing/);
    assert.throws(() => decodeMsgpack(hex('d4 05 00')), /unsupported MessagePack type 0xd4/);
    assert.throws(() => decodeMsgpack(hex('81 01 02')), /key is not a string/);
  });

  test('keeps a `__proto__` key as data', () => {
    // {"__proto__": {"polluted": 1}}
    const tricky = hex('81 a9 5f 5f 70 72 6f 74 6f 5f 5f 81 a8 70 6f 6c 6c 75 74 65 64 01');
    const decoded = decodeMsgpack(tricky);
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
    assert.deepEqual(Object.keys(decoded), ['__proto__']);
    assert.equal({}.polluted, undefined);
  });
});

describe('a MessagePack client against a live server', () => {
  let server;
  const clients = [];
  const open = (options) => {
    const client = new Switchboard(server.url, { WebSocket, minReconnectDelay: 100, ...options });
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

  test('speaks the msgpack subprotocol over a WebSocket only', async () => {
    const client = open({ format: 'msgpack', transports: ['sse', 'websocket'] });
    await stateReached(client, 'connected');
    assert.equal(client.transport, 'websocket');
    assert.equal(MSGPACK_SUBPROTOCOL, 'switchboard.v1.msgpack');
    assert.throws(() => open({ format: 'cbor' }), /unsupported format "cbor"/);
  });

  test('exchanges publications with a JSON client on the same channel', async () => {
    const name = channel('msgpack');
    const binary = open({ format: 'msgpack' });
    const text = open();
    const seen = { binary: [], text: [] };
    binary.subscribe(name, { publication: (p) => seen.binary.push(p) });
    text.subscribe(name, { publication: (p) => seen.text.push(p) });
    await Promise.all([binary, text].map((c) => stateReached(c, 'connected')));
    await waitFor(async () => (await text.presence(name)).length === 2, 5000, () => 'both in');

    const fromBinary = { type: 'cursor', x: 800, y: 500, scale: 0.25, label: 'é' };
    const fromText = { type: 'draw', points: [0, 1600, -3, 70000], tag: null };
    await binary.publish(name, fromBinary);
    await text.publish(name, fromText);
    await waitFor(() => seen.binary.length === 2 && seen.text.length === 2, 5000,
      () => `both publications on both (${seen.binary.length}, ${seen.text.length})`);
    for (const side of [seen.binary, seen.text]) {
      assert.deepEqual(side.map((p) => p.data), [fromBinary, fromText]);
      assert.equal(side[0].info.client, binary.session.client);
    }
    const { publications } = await binary.history(name, { limit: 10 });
    assert.deepEqual(publications.map((p) => p.data), [fromBinary, fromText]);
  });
});
