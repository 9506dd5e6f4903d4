// The ticker dashboard: one `ticker:<SYMBOL>` channel per instrument, fed by the server's
// simulated price publisher (crates/server/src/demo.rs). Each channel's history fills the
// chart on load; live prices follow from the position the history ended at.

import { drawLineChart } from './chart.js';

/** The instruments the server publishes. */
const SYMBOLS = ['ACME', 'GLOBEX', 'INITECH', 'UMBRELLA', 'HOOLI'];
/** Points on the chart, and kept per symbol. */
const POINTS = 100;

/**
 * Starts the dashboard in the page's ticker elements.
 * @param {import('/switchboard.js').Switchboard} client
 * @param {(channel: string, handlers: object) => object} subscribe
 */
export function startTicker(client, subscribe) {
  const canvas = document.getElementById('chart');
  const label = document.getElementById('chart-symbol');
  const labelPrice = document.getElementById('chart-price');
  const body = document.getElementById('quotes');
  const quotes = new Map(SYMBOLS.map((symbol) => [symbol, newQuote(symbol)]));
  let selected = SYMBOLS[0];
  let frame = 0;

  for (const quote of quotes.values()) {
    body.append(quote.row);
    quote.row.addEventListener('click', () => select(quote.symbol));
    quote.row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        select(quote.symbol);
      }
    });
    load(quote);
  }
  select(selected);
  new ResizeObserver(() => redraw()).observe(canvas);

  function select(symbol) {
    selected = symbol;
    for (const quote of quotes.values()) {
      quote.row.setAttribute('aria-selected', String(quote.symbol === symbol));
    }
    redraw();
  }

  async function load(quote) {
    const channel = `ticker:${quote.symbol}`;
    let since;
    try {
      const history = await client.history(channel, { limit: POINTS });
      for (const publication of history.publications) add(quote, publication);
      since = { offset: history.offset, epoch: history.epoch };
    } catch {
      // Live prices fill the chart anyway.
    }
    subscribe(channel, {
      since,
      publication: (publication) => add(quote, publication),
      recovered: ({ recovered }) => recovered || reload(quote),
    });
  }

  /** After a failed recovery (a long cut): the history again, then what came live since. */
  async function reload(quote) {
    try {
      const history = await client.history(`ticker:${quote.symbol}`, { limit: POINTS });
      const { epoch, offset } = history;
      const live = quote.points.filter((p) => p.epoch === epoch && p.offset > offset);
      quote.points = [];
      for (const publication of history.publications) add(quote, publication);
      quote.points.push(...live);
    } catch {
      // Keep what is shown; live prices continue.
    }
  }

  function add(quote, { data, offset, epoch }) {
    if (typeof data?.price !== 'number') return;
    const previous = quote.price;
    quote.price = data.price;
    quote.open = typeof data.open === 'number' ? data.open : quote.open ?? data.price;
    quote.points.push({ price: data.price, offset, epoch });
    if (quote.points.length > POINTS) quote.points.splice(0, quote.points.length - POINTS);
    renderRow(quote, previous);
    if (quote.symbol === selected) redraw();
  }

  function redraw() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const quote = quotes.get(selected);
      label.textContent = quote.symbol;
      labelPrice.textContent = quote.price === undefined ? '' : formatPrice(quote.price);
      const prices = quote.points.map((p) => p.price);
      drawLineChart(canvas, prices, { capacity: POINTS, format: formatPrice });
    });
  }
}

function newQuote(symbol) {
  const row = document.createElement('tr');
  row.tabIndex = 0;
  row.dataset.symbol = symbol;
  const cells = ['symbol', 'last', 'change'].map((name) => {
    const cell = document.createElement(name === 'symbol' ? 'th' : 'td');
    cell.className = name;
    row.append(cell);
    return cell;
  });
  cells[0].scope = 'row';
  cells[0].textContent = symbol;
  cells[1].textContent = '—';
  return { symbol, row, last: cells[1], change: cells[2], points: [], price: undefined };
}

function renderRow(quote, previous) {
  quote.last.textContent = formatPrice(quote.price);
  const change = quote.price - quote.open;
  const percent = (change / quote.open) * 100;
  const sign = change > 0 ? '+' : change < 0 ? '−' : '';
  const amount = Math.abs(change).toFixed(2);
  quote.change.textContent = `${sign}${amount} (${sign}${Math.abs(percent).toFixed(2)} %)`;
  quote.change.dataset.trend = change > 0 ? 'up' : change < 0 ? 'down' : 'flat';
  if (previous !== undefined && previous !== quote.price) {
    // Restart the flash animation: drop the attribute, force a style flush, set it again.
    quote.last.removeAttribute('data-flash');
    void quote.last.offsetWidth;
    quote.last.dataset.flash = quote.price > previous ? 'up' : 'down';
  }
}

function formatPrice(price) {
  return price.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}
