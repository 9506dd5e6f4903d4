// The client's pure rules: close-code advice, backoff with full jitter, token expiry.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Switchboard, adviceFor, reconnectDelay, tokenExpiry } from '../switchboard.js';
import { mintToken } from '../test-support/harness.js';

test('close codes map to the advice of protocol.md §8', () => {
  for (const code of [1001, 1012, 4000, 4001, 4002, 4003, 4099]) {
    assert.equal(adviceFor(code), 'reconnect', `${code}`);
  }
  for (const code of [1000, 1002, 1005, 1006, 1007, 1008, 1009, 1011, 1013, 4100, 4101, 4102,
    4103, 4300, 4500, 3000]) {
    assert.equal(adviceFor(code), 'backoff', `${code}`);
  }
  assert.equal(adviceFor(4200), 'refresh_token');
  for (const code of [4400, 4401, 4403, 4499]) assert.equal(adviceFor(code), 'stop', `${code}`);
});

test('backoff doubles from the minimum up to the maximum, with full jitter', () => {
  const options = { minReconnectDelay: 500, maxReconnectDelay: 30000 };
  const top = () => 0.999999;
  const attempts = [0, 1, 2, 3, 4, 5, 6, 7, 100];
  const bounds = attempts.map((n) => reconnectDelay('backoff', n, options, top));
  assert.deepEqual(bounds, [499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999]);
  assert.equal(reconnectDelay('backoff', 3, options, () => 0), 0);
  const samples = Array.from({ length: 1000 }, () => reconnectDelay('backoff', 2, options));
  assert.ok(samples.every((d) => d >= 0 && d < 2000));
  // Full jitter: spread over the whole range, not bunched near the bound.
  assert.ok(samples.some((d) => d < 500) && samples.some((d) => d > 1500));
});

test('reconnect advice after a stable connection waits at most a second', () => {
  const options = { minReconnectDelay: 500, maxReconnectDelay: 30000 };
  const top = () => 0.999999;
  assert.equal(reconnectDelay('reconnect', 0, options, top), 999);
  // Repeated in a row, it backs off like any failure.
  assert.equal(reconnectDelay('reconnect', 3, options, top), 3999);
  assert.equal(reconnectDelay('reconnect', 0, { minReconnectDelay: 10, maxReconnectDelay: 50 },
    top), 49);
});

test('a JWT expiry is read from its payload; anything else has none', () => {
  const token = mintToken('s'.repeat(32), { sub: 'ann', exp: 1795000000, name: 'Ännchen ✓' });
  assert.equal(tokenExpiry(token), 1795000000);
  assert.equal(tokenExpiry('a-ticket-without-dots'), undefined);
  assert.equal(tokenExpiry('x.bm90IGpzb24.y'), undefined);
  assert.equal(tokenExpiry(undefined), undefined);
});

test('the constructor refuses what it cannot speak', () => {
  assert.throws(() => new Switchboard('ws://127.0.0.1:1/ws', { format: 'msgpack' }), TypeError);
  assert.throws(() => new Switchboard('ws://127.0.0.1:1/ws', { WebSocket: {} }), TypeError);
});
