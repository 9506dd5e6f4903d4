// A line chart drawn by hand on a <canvas>: the newest point on the right, a scale on the
// right edge. Colours come from the page's CSS variables, so it follows light and dark mode.

/**
 * Draws `values` (oldest first) into `canvas`, sized to its CSS box.
 * @param {HTMLCanvasElement} canvas
 * @param {number[]} values
 * @param {object} [options]
 * @param {number} [options.capacity] how many points fill the width (default 100)
 * @param {number} [options.min] a floor for the scale (0 for rates)
 * @param {(n: number) => string} [options.format] the scale's labels
 * @param {string} [options.empty] shown with fewer than two points
 */
export function drawLineChart(canvas, values, options = {}) {
  const { capacity = 100, min: floor, empty = 'Waiting for data…' } = options;
  const format = options.format ?? ((n) => n.toFixed(2));
  const ratio = window.devicePixelRatio || 1;
  const { width, height } = canvas.getBoundingClientRect();
  if (width === 0 || height === 0) return;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(canvas);
  const colour = (name) => style.getPropertyValue(name).trim();
  ctx.font = `12px ${style.fontFamily}`;

  if (values.length < 2) {
    ctx.fillStyle = colour('--muted');
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(empty, width / 2, height / 2);
    return;
  }

  const points = values.slice(-capacity);
  let low = Math.min(...points);
  let high = Math.max(...points);
  if (floor !== undefined) low = Math.min(low, floor);
  const pad = (high - low) * 0.1 || Math.abs(high) * 0.01 || 1;
  high += pad;
  if (floor === undefined || low - pad >= floor) low -= pad;
  const area = { left: 4, top: 8, right: width - 64, bottom: height - 8 };
  const slot = (area.right - area.left) / (capacity - 1);
  const x = (i) => area.left + (capacity - points.length + i) * slot;
  const y = (v) => area.bottom - ((v - low) / (high - low)) * (area.bottom - area.top);

  // Grid lines at round values, labelled on the right.
  ctx.strokeStyle = colour('--grid');
  ctx.fillStyle = colour('--muted');
  ctx.lineWidth = 1;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  const step = roundStep((high - low) / 3);
  for (let value = Math.ceil(low / step) * step; value <= high; value += step) {
    const at = Math.round(y(value)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(area.left, at);
    ctx.lineTo(area.right, at);
    ctx.stroke();
    ctx.fillText(format(value), area.right + 8, at);
  }

  const line = new Path2D();
  points.forEach((value, i) => {
    if (i === 0) line.moveTo(x(i), y(value));
    else line.lineTo(x(i), y(value));
  });
  const fill = new Path2D(line);
  fill.lineTo(x(points.length - 1), area.bottom);
  fill.lineTo(x(0), area.bottom);
  fill.closePath();
  const accent = colour('--accent');
  const gradient = ctx.createLinearGradient(0, area.top, 0, area.bottom);
  gradient.addColorStop(0, colour('--accent-fade'));
  gradient.addColorStop(1, colour('--accent-clear'));
  ctx.fillStyle = gradient;
  ctx.fill(fill);
  ctx.strokeStyle = accent;
  ctx.lineWidth = 2;
  ctx.lineJoin = 'round';
  ctx.stroke(line);

  const lastX = x(points.length - 1);
  const lastY = y(points[points.length - 1]);
  ctx.fillStyle = accent;
  ctx.beginPath();
  ctx.arc(lastX, lastY, 3.5, 0, Math.PI * 2);
  ctx.fill();
}

/** A step of 1, 2 or 5 times a power of ten, near `raw`. */
function roundStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return power * (unit < 1.5 ? 1 : unit < 3 ? 2 : unit < 7 ? 5 : 10);
}
