// Peer server on uWebSockets.js: echo on every path, broadcast on /broadcast with the
// library's pub/sub (`ws.publish` sends to every subscriber of the topic but the sender).
// Compression is off, as on Switchboard.

import { createRequire } from 'node:module';
import { MAX_PAYLOAD, port } from './args.mjs';

// The package falls back to a slow pure-JavaScript server when no native binary matches this
// Node; a benchmark of that would be meaningless, so load the binary or fail.
const require = createRequire(import.meta.url);
const binary = `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
let uWS;
try {
  uWS = require(binary);
} catch (e) {
  console.error(`no uWebSockets.js binary for this Node (${binary}): ${e.message}`);
  process.exit(1);
}

const TOPIC = 'broadcast';
const common = {
  compression: uWS.DISABLED,
  maxPayloadLength: MAX_PAYLOAD,
  // Bytes buffered for one slow receiver, as Switchboard's hub.outbound_queue_bytes.
  maxBackpressure: 1 << 20,
  idleTimeout: 120,
};

uWS
  .App()
  .ws('/broadcast', {
    ...common,
    open: (ws) => ws.subscribe(TOPIC),
    message: (ws, message, isBinary) => ws.publish(TOPIC, message, isBinary),
  })
  .ws('/*', {
    ...common,
    message: (ws, message, isBinary) => ws.send(message, isBinary),
  })
  .listen('127.0.0.1', port(), (token) => {
    if (!token) {
      console.error('listen failed');
      process.exit(1);
    }
  });
