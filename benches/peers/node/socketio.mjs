// Peer server on Socket.IO: WebSocket transport only, no compression. Event `echo` answers
// the sender with the same argument; event `publish` broadcasts `message` to every other
// socket.

import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { MAX_PAYLOAD, port } from './args.mjs';

const http = createServer();
const io = new Server(http, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: MAX_PAYLOAD,
});

io.on('connection', (socket) => {
  socket.on('echo', (arg) => socket.emit('echo', arg));
  socket.on('publish', (arg) => socket.broadcast.emit('message', arg));
});

http.listen(port(), '127.0.0.1');
