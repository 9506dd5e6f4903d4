// Peer server on `ws`: echo on every path, broadcast on /broadcast (each message to every
// other client there), as the library's README examples. permessage-deflate is off, as on
// Switchboard. `bufferutil` and `utf-8-validate` are installed, as the README recommends
// for speed.

import { WebSocketServer, WebSocket } from 'ws';
import { MAX_PAYLOAD, port } from './args.mjs';

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: port(),
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD,
  clientTracking: false,
});
const subscribers = new Set();

wss.on('connection', (ws, req) => {
  if (req.url.split('?')[0] === '/broadcast') {
    subscribers.add(ws);
    ws.on('close', () => subscribers.delete(ws));
    ws.on('message', (data, isBinary) => {
      for (const client of subscribers) {
        if (client !== ws && client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      }
    });
  } else {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  }
  ws.on('error', () => {});
});
