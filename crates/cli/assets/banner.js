// The banner every demo page shows under its header: what the connection is doing, and
// after a cut, what was recovered. Shared by the chat and ticker page (demo.js) and the
// whiteboard (board.js).

/**
 * A banner in `element` that follows `client`, and a `subscribe` that is
 * `client.subscribe` telling the banner what each channel delivers and recovers. Channels
 * subscribed through it count in "Recovered N missed messages"; subscribe channels
 * without history (nothing to recover) with `client.subscribe` itself.
 * @param {import('/switchboard.js').Switchboard} client
 * @param {HTMLElement} element
 * @returns {(channel: string, handlers: object) => object}
 */
export function startBanner(client, element) {
  const banner = createBanner(client, element);
  client.on('state', (event) => banner.state(event));
  return subscribe;

  /** `client.subscribe` that also tells the banner what was recovered after a cut. */
  function subscribe(channel, handlers) {
    return client.subscribe(channel, {
      ...handlers,
      publication: (publication) => {
        banner.delivered(channel);
        handlers.publication?.(publication);
      },
      recovered: (context) => {
        banner.recovered(context);
        handlers.recovered?.(context);
      },
      subscribed: (context) => {
        banner.subscribed(channel);
        handlers.subscribed?.(context);
      },
      unsubscribed: (context) => {
        banner.unsubscribed(channel);
        handlers.unsubscribed?.(context);
      },
    });
  }
}

/** How the banner names the client's transports (clients/js, `client.transport`). */
const TRANSPORT_NAMES = { websocket: 'WebSocket', sse: 'SSE', longpoll: 'long-polling' };

/**
 * The banner: "Connected over WebSocket" (or SSE, or long-polling, when the client fell back
 * to one), "Connection lost — reconnecting in 3 s…", then, once every
 * subscription is back, how many publications were recovered or that history was reloaded.
 * The client replays missed publications before its `recovered` event (clients/js/README.md,
 * Recovery), so the publications a channel delivers between the cut and that event are
 * exactly the missed ones.
 */
function createBanner(client, element) {
  let countdown = null;
  /** Channels subscribed when the connection was lost, until each has recovered. */
  let waiting = null;
  const subscribed = new Set();
  let replayed = 0;
  let failed = false;

  const show = (message, tone) => {
    element.textContent = message;
    element.dataset.tone = tone;
  };
  const stopCountdown = () => {
    clearInterval(countdown);
    countdown = null;
  };
  const settle = () => {
    if (!waiting || waiting.size > 0) return;
    waiting = null;
    if (failed) show('Could not recover: reloaded history', 'warn');
    else if (replayed === 0) show('Reconnected — nothing was missed', 'ok');
    else show(`Recovered ${replayed} missed message${replayed === 1 ? '' : 's'}`, 'ok');
  };

  return {
    state({ state, previous, delay, reason, transport, nextTransport, switching }) {
      stopCountdown();
      const over = TRANSPORT_NAMES[transport] ?? transport;
      if (state === 'connecting') show('Connecting…', 'idle');
      if (state === 'reconnecting' && !switching) show('Reconnecting…', 'warn');
      if (state === 'closed') show(`Disconnected: ${reason ?? 'closed'}`, 'bad');
      if (state === 'disconnected' && switching) {
        // Not a loss: the client found the WebSocket working again and moves over to it.
        show(`Switching to ${TRANSPORT_NAMES[nextTransport] ?? nextTransport}…`, 'idle');
      }
      if (state === 'disconnected' && !switching) {
        // Cut again before every channel recovered: keep counting from the first cut. A
        // failure before the first connection has nothing to recover.
        if (previous === 'connected' || waiting) {
          if (!waiting) {
            replayed = 0;
            failed = false;
          }
          waiting = new Set(subscribed);
        }
        const next = TRANSPORT_NAMES[nextTransport] ?? nextTransport;
        const moving = nextTransport && nextTransport !== transport;
        if (moving && !(delay > 0)) {
          show(`No connection over ${over} — trying ${next}…`, 'warn');
        } else {
          const until = Date.now() + (delay ?? 0);
          const tick = () => {
            const seconds = Math.max(Math.ceil((until - Date.now()) / 1000), 1);
            const how = moving ? ` over ${next}` : '';
            show(`Connection lost — reconnecting${how} in ${seconds} s…`, 'bad');
          };
          tick();
          countdown = setInterval(tick, 250);
        }
      }
      if (state === 'connected') {
        if (waiting) {
          show(`Connected over ${over} — recovering…`, 'warn');
          settle();
        } else {
          show(`Connected over ${over}`, 'ok');
        }
      }
    },
    subscribed(channel) {
      subscribed.add(channel);
    },
    unsubscribed(channel) {
      subscribed.delete(channel);
      waiting?.delete(channel);
      if (client.state === 'connected') settle();
    },
    delivered(channel) {
      if (waiting?.has(channel)) replayed += 1;
    },
    recovered({ channel, recovered }) {
      if (!waiting?.has(channel)) return;
      waiting.delete(channel);
      if (!recovered) failed = true;
      settle();
    },
  };
}
