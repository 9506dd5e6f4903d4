// The status page: polls /status.json once a second and shows counts, rates derived from the
// counters, and a chart of messages per second.

import { drawLineChart } from './chart.js';

const INTERVAL = 1000;
/** Seconds of rate history on the chart. */
const WINDOW = 120;

const $ = (id) => document.getElementById(id);
const banner = $('banner');
const canvas = $('rate-chart');
const rates = [];
let previous = null;

new ResizeObserver(draw).observe(canvas);
poll();

async function poll() {
  const started = performance.now();
  try {
    const response = await fetch('/status.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    show(await response.json(), started);
  } catch (error) {
    banner.textContent = `Server unreachable: ${error.message}`;
    banner.dataset.tone = 'bad';
    previous = null;
  }
  setTimeout(poll, Math.max(0, INTERVAL - (performance.now() - started)));
}

function show(status, at) {
  $('connections').textContent = count(status.connections);
  $('channels').textContent = count(status.channels);
  $('subscriptions').textContent = count(status.subscriptions);
  $('memory').textContent = bytes(status.memory_bytes);
  $('uptime').textContent = duration(status.uptime_seconds);
  if (previous) {
    const seconds = (at - previous.at) / 1000;
    // A restarted server starts its counters again from zero.
    const per = (field) => Math.max(0, status[field] - previous.status[field]) / seconds;
    const messages = per('messages_received');
    const publications = per('publications');
    $('messages-rate').textContent = rate(messages);
    $('publications-rate').textContent = rate(publications);
    rates.push(messages);
    if (rates.length > WINDOW) rates.shift();
    draw();
  }
  previous = { status, at };
  banner.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
  banner.dataset.tone = 'ok';
}

function draw() {
  drawLineChart(canvas, rates, { capacity: WINDOW, min: 0, format: rate, empty: 'Measuring…' });
}

function count(n) {
  return n.toLocaleString('en-US');
}

function rate(n) {
  return n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US');
}

function bytes(n) {
  if (!n) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  const power = Math.min(units.length - 1, Math.floor(Math.log2(n) / 10));
  return `${(n / 2 ** (10 * power)).toFixed(power ? 1 : 0)} ${units[power]}`;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}
