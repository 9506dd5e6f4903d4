// The demo page: one Switchboard connection shared by the chat and the ticker, and the
// banner that says what the connection is doing.

import { Switchboard } from '/switchboard.js';
import { startBanner } from './banner.js';
import { startChat } from './chat.js';
import { startTicker } from './ticker.js';

const client = new Switchboard('/ws');
const subscribe = startBanner(client, document.getElementById('banner'));

startChat(client, subscribe);
startTicker(client, subscribe);
