// Plain-SVG charts: bars, lines, histogram, heatmap, with one shared hover tooltip.

import { $, el, fmt, real } from './dom.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const MARGIN = { top: 12, right: 16, bottom: 40, left: 60 };
export const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777', '#4b5563'];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

export function showTip(event, lines) {
  const tip = $('#tooltip');
  tip.replaceChildren(...[].concat(lines).map((line) => Object.assign(document.createElement('div'), { textContent: line })));
  tip.hidden = false;
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}

export function hideTip() {
  $('#tooltip').hidden = true;
}

// Round ticks; `integer`: whole steps only (counts never get a 2.5 tick).
function niceTicks(min, max, count = 5, integer = false) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const nice = [1, 2, 2.5, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw);
  const step = integer ? Math.max(1, Math.ceil(nice)) : nice;
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

// A domain that starts and ends on ticks, so the largest value never rises above the last label.
function niceDomain(min, max, count = 5, integer = false) {
  if (!(max > min)) return [min, min + 1];
  const ticks = niceTicks(min, max, count, integer);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : max - min;
  return [ticks[0] > min ? ticks[0] - step : ticks[0], ticks.at(-1) < max ? ticks.at(-1) + step : ticks.at(-1)];
}

function tickLabel(t) {
  const abs = Math.abs(t);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? t.toExponential(1) : String(+t.toFixed(6));
}

function linear([d0, d1], [r0, r1]) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function frame(target, height) {
  const width = Math.max(target.clientWidth || 0, 320);
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'svg-chart' });
  target.replaceChildren(root);
  return { root, width, height, plotW: width - MARGIN.left - MARGIN.right, plotH: height - MARGIN.top - MARGIN.bottom };
}

function axisY(root, y, ticks, width, label) {
  for (const t of ticks) {
    root.append(svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(t), y2: y(t), class: 'grid' }));
    root.append(svg('text', { x: MARGIN.left - 6, y: y(t) + 4, class: 'tick', 'text-anchor': 'end' }, tickLabel(t)));
  }
  if (label) root.append(svg('text', { x: 12, y: MARGIN.top + 4, class: 'axis-label', transform: `rotate(-90 12 ${MARGIN.top + 4})`, 'text-anchor': 'end' }, label));
}

function axisX(root, x, ticks, height, label, width, format = tickLabel) {
  for (const t of ticks) {
    root.append(svg('text', { x: x(t), y: height - MARGIN.bottom + 16, class: 'tick', 'text-anchor': 'middle' }, format(t)));
  }
  if (label) root.append(svg('text', { x: width - MARGIN.right, y: height - 6, class: 'axis-label', 'text-anchor': 'end' }, label));
}

function thresholdLines(root, y, thresholds, width) {
  for (const { value, label } of thresholds || []) {
    root.append(svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value), class: 'threshold' }));
    root.append(svg('text', { x: width - MARGIN.right - 4, y: y(value) - 4, class: 'threshold-label', 'text-anchor': 'end' }, label));
  }
}

// bars: [{value, color, tip: string[], onclick}]; one hover overlay maps the pointer to a bar,
// so thousands of one-pixel bars stay usable. The y-axis spans the data only: a guide line above
// the largest bar is left out (and listed in the returned `hiddenGuides`) rather than squashing the bars.
// The chart is one tab stop: arrow keys move a cursor over the bars, Enter opens the bar.
export function barChart(target, { bars, height = 260, yLabel, xLabel, thresholds, xTicks, xTickLabel, integerY = false, label }) {
  const { root, width, plotW, plotH } = frame(target, height);
  const values = bars.map((b) => b.value);
  const [bottom, top] = niceDomain(Math.min(0, ...values), Math.max(0, ...values), 5, integerY);
  const y = linear([bottom, top], [MARGIN.top + plotH, MARGIN.top]);
  axisY(root, y, niceTicks(bottom, top, 5, integerY), width, yLabel);
  const step = plotW / Math.max(bars.length, 1);
  const gap = step > 4 ? step * 0.15 : 0;
  const group = svg('g', { class: 'bars', 'shape-rendering': 'crispEdges' });
  bars.forEach((bar, i) => {
    const y0 = y(Math.max(bar.value, 0));
    group.append(svg('rect', {
      x: MARGIN.left + i * step + gap / 2, width: Math.max(step - gap, 0.6), y: y0,
      height: Math.max(Math.abs(y(bar.value) - y(0)), 0.5), fill: bar.color || PALETTE[0], 'data-index': i,
    }));
  });
  root.append(group);
  const x = linear([0, bars.length], [MARGIN.left, MARGIN.left + plotW]);
  if (xTicks) axisX(root, (i) => x(i + 0.5), xTicks(bars.length), height, xLabel, width, xTickLabel);
  else if (xLabel) axisX(root, x, [], height, xLabel, width);
  const shown = (thresholds || []).filter((t) => t.value >= bottom && t.value <= top);
  thresholdLines(root, y, shown, width);
  root.hiddenGuides = (thresholds || []).filter((t) => !shown.includes(t));
  hoverOverlay(root, plotW, plotH, (px) => bars[Math.floor((px - MARGIN.left) / step)]);
  keyboardCursor(root, bars.length, label || yLabel || 'bar chart', (i) => ({
    box: { x: MARGIN.left + i * step, y: MARGIN.top, width: Math.max(step, 1), height: plotH },
    tip: [].concat(bars[i].tip || real(bars[i].value)),
    activate: bars[i].onclick,
  }));
  return root;
}

function hoverOverlay(root, plotW, plotH, pick) {
  const overlay = svg('rect', { x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH, class: 'overlay' });
  const position = (event) => {
    const box = root.getBoundingClientRect();
    return pick(event.clientX - box.left);
  };
  overlay.addEventListener('mousemove', (event) => {
    const bar = position(event);
    if (bar) showTip(event, bar.tip || real(bar.value));
    else hideTip();
    overlay.classList.toggle('clickable', Boolean(bar?.onclick));
  });
  overlay.addEventListener('mouseleave', hideTip);
  overlay.addEventListener('click', (event) => {
    const bar = position(event);
    if (bar?.onclick) { hideTip(); bar.onclick(); }
  });
  root.append(overlay);
}

// Bars as a keyboard widget: the chart takes focus, ←/→ (PageUp/PageDown by tens, Home/End) move a
// highlighted cursor whose tooltip shows, Enter or Space runs the bar's action.
function keyboardCursor(root, count, label, at) {
  if (!count) return;
  root.setAttribute('tabindex', '0');
  root.setAttribute('role', 'group');
  root.setAttribute('aria-label', `${label}: ${count} bars; arrow keys move between them, Enter opens one`);
  root.setAttribute('aria-roledescription', 'chart');
  const cursor = svg('rect', { class: 'cursor', hidden: '' });
  root.append(cursor);
  let index = -1;
  const show = () => {
    const { box, tip } = at(index);
    for (const [k, v] of Object.entries(box)) cursor.setAttribute(k, v);
    cursor.removeAttribute('hidden');
    root.setAttribute('aria-valuetext', tip.join(', '));
    const rect = root.getBoundingClientRect();
    showTip({ clientX: rect.left + box.x + box.width, clientY: rect.top + box.y }, tip);
  };
  root.addEventListener('keydown', (event) => {
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10 };
    if (event.key in moves) index = index < 0 ? 0 : Math.max(0, Math.min(count - 1, index + moves[event.key]));
    else if (event.key === 'Home') index = 0;
    else if (event.key === 'End') index = count - 1;
    else if ((event.key === 'Enter' || event.key === ' ') && index >= 0) {
      const { activate } = at(index);
      if (activate) { hideTip(); activate(); }
    } else return;
    event.preventDefault();
    if (index >= 0) show();
  });
  root.addEventListener('blur', () => { cursor.setAttribute('hidden', ''); hideTip(); });
}

// series: [{name, color, points: [[x, y], ...], tips?: [string[] per point]}]. `logY`: a log10 y-axis
// (every y must be > 0) with ticks at 1, 2, 5 × powers of ten. `onPoint(series, index)`: the points are
// clickable, and the chart is one tab stop whose arrow keys move over every point (Enter runs it).
export function lineChart(target, {
  series, height = 260, xLabel, yLabel, thresholds, integerX = false, includeZero = true, logY = false, onPoint, label,
}) {
  const { root, width, plotW, plotH } = frame(target, height);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const x = linear([x0, x1 > x0 ? x1 : x0 + 1], [MARGIN.left, MARGIN.left + plotW]);
  const { y, ticks, domain: [y0, y1] } = logY ? logScale(ys, plotH) : linearScale(ys, plotH, includeZero);
  axisY(root, y, ticks, width, yLabel);
  const xticks = niceTicks(x0, x1 > x0 ? x1 : x0 + 1, 8).filter((t) => !integerX || Number.isInteger(t));
  axisX(root, x, xticks, height, xLabel, width);
  thresholdLines(root, y, (thresholds || []).filter((t) => t.value >= y0 && t.value <= y1), width);
  const marks = [];
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    root.append(svg('polyline', { points: s.points.map(([px, py]) => `${x(px)},${y(py)}`).join(' '), stroke: color, class: 'line' }));
    s.points.forEach(([px, py], k) => {
      const tip = s.tips?.[k] || [s.name, `${xLabel || 'x'} ${fmt(px)}`, `${yLabel || 'y'} ${real(py)}`];
      const activate = onPoint ? () => { hideTip(); onPoint(s, k); } : undefined;
      marks.push({ cx: x(px), cy: y(py), tip, activate });
      root.append(svg('circle', {
        cx: x(px), cy: y(py), r: onPoint ? 5 : 3, fill: color, class: onPoint ? 'point clickable' : 'point',
        'data-x': px, 'data-y': py, 'data-series': i,
        onmousemove: (event) => showTip(event, tip), onmouseleave: hideTip, onclick: activate,
      }));
    });
  });
  if (onPoint) {
    keyboardCursor(root, marks.length, label || yLabel || 'line chart', (i) => ({
      box: { x: marks[i].cx - 7, y: marks[i].cy - 7, width: 14, height: 14 }, tip: marks[i].tip, activate: marks[i].activate,
    }));
  }
  if (series.length > 1) target.append(legend(series));
  return root;
}

function linearScale(ys, plotH, includeZero) {
  const domain = niceDomain(Math.min(...ys, ...(includeZero ? [0] : [])), Math.max(...ys));
  return { domain, y: linear(domain, [MARGIN.top + plotH, MARGIN.top]), ticks: niceTicks(...domain) };
}

// A log10 axis: ticks at m × 10^k for the sparsest mantissa set m that puts at least three ticks on
// the data's span (1; 1, 2, 5; … down to 1, 1.1, 1.2, … within a narrow span); the domain runs from
// the tick at or below the smallest value to the tick at or above the largest.
const LOG_MANTISSAS = [[1], [1, 2, 5], [1, 1.5, 2, 3, 5, 7], [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9],
  Array.from({ length: 90 }, (_, i) => 1 + i / 10)];

function logScale(ys, plotH) {
  const [min, max] = [Math.min(...ys), Math.max(...ys)];
  const candidates = (mantissas) => {
    const all = [];
    for (let e = Math.floor(Math.log10(min)) - 1; e <= Math.ceil(Math.log10(max)); e += 1) {
      for (const m of mantissas) all.push(+(m * 10 ** e).toPrecision(6));
    }
    const below = all.filter((t) => t <= min).at(-1);
    const above = all.find((t) => t >= max);
    return all.filter((t) => t >= below && t <= above);
  };
  const ticks = LOG_MANTISSAS.map(candidates).find((t) => t.length >= 3) ?? candidates(LOG_MANTISSAS.at(-1));
  const domain = [ticks[0], ticks.at(-1) > ticks[0] ? ticks.at(-1) : ticks[0] * 10];
  const scale = linear([Math.log10(domain[0]), Math.log10(domain[1])], [MARGIN.top + plotH, MARGIN.top]);
  const shown = ticks.length > 12 ? ticks.filter((_, i) => i % Math.ceil(ticks.length / 8) === 0 || i === ticks.length - 1) : ticks;
  return { domain, ticks: shown, y: (v) => scale(Math.log10(v)) };
}

function legend(series) {
  return el('div', { class: 'legend' }, series.map((s, i) => {
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = s.color || PALETTE[i % PALETTE.length];
    return el('span', {}, swatch, s.name);
  }));
}

export function histogram(target, values, { bins = 30, xLabel = 'activation', height = 220 } = {}) {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const width = (hi - lo) / bins || 1;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(Math.floor((v - lo) / width), bins - 1)] += 1;
  const bars = counts.map((count, i) => ({
    value: count,
    color: lo + (i + 0.5) * width < 0 ? PALETTE[0] : PALETTE[1],
    tip: [`${real(lo + i * width, 3)} … ${real(lo + (i + 1) * width, 3)}`, `${count} tokens`],
  }));
  const root = barChart(target, { bars, height, yLabel: 'tokens', xLabel, integerY: true, label: 'activation histogram' });
  const x = linear([lo, lo + width * bins], [MARGIN.left, root.viewBox.baseVal.width - MARGIN.right]);
  axisX(root, x, niceTicks(lo, lo + width * bins, 6), height, null, 0);
  return root;
}

// Diverging colour: blue for negative, white at 0, red for positive, scaled by `limit`.
export function diverging(value, limit) {
  const t = Math.max(-1, Math.min(1, value / (limit || 1)));
  const [r, g, b] = t >= 0 ? [220, 38, 38] : [37, 99, 235];
  const a = Math.abs(t);
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

// A numeric legend of the diverging scale: -limit (blue) … 0 … +limit (red).
// `id`: of its gradient, unique on the page (several legends may be in the document at once).
export function colourLegend(limit, caption, id = 'diverging-gradient') {
  const w = 220;
  const gradient = svg('linearGradient', { id },
    svg('stop', { offset: '0', 'stop-color': diverging(-1, 1) }), svg('stop', { offset: '0.5', 'stop-color': diverging(0, 1) }),
    svg('stop', { offset: '1', 'stop-color': diverging(1, 1) }));
  const labels = [[-limit, 0, 'start'], [0, w / 2, 'middle'], [limit, w, 'end']].map(([v, x, anchor]) =>
    svg('text', { x: x + 10, y: 30, class: 'tick', 'text-anchor': anchor }, typeof v === 'number' ? tickLabel(+v.toPrecision(3)) : v));
  return el('div', { class: 'colour-legend' },
    svg('svg', { width: w + 20, height: 34, class: 'svg-chart', role: 'img', 'aria-label': `colour scale from ${labels[0].textContent} to ${labels[2].textContent}` },
      svg('defs', {}, gradient), svg('rect', { x: 10, y: 4, width: w, height: 12, fill: `url(#${id})`, class: 'legend-bar' }), ...labels),
    el('span', { class: 'muted' }, caption));
}

// Text colour readable on `diverging(value, limit)`: black on light fills, white on dark ones
// (WCAG relative luminance; black keeps 4.5:1 down to L = 0.175, white from L = 0.183 up).
export function inkOn(value, limit) {
  const channels = diverging(value, limit).match(/\d+/g).map((c) => {
    const v = +c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2];
  return luminance >= 0.179 ? '#000000' : '#ffffff';
}

// rows: token strings; cols: [{label, onclick}]; values[row][col]; limits[col]: |value| of full colour.
// The token labels are a separate column that stays in view when the cells scroll sideways. The
// cells are one tab stop: arrow keys move a cursor cell, Enter opens its neuron; column labels are buttons.
export function heatmap(target, { rows, cols, values, limits, tip }) {
  const labelW = Math.min(140, 16 + Math.max(...rows.map((r) => r.length)) * 7);
  const headerH = 44;
  const cell = Math.max(14, Math.min(34, Math.floor((Math.max(target.clientWidth, 400) - labelW - 16) / cols.length)));
  const rowH = 18;
  const width = cols.length * cell + 8;
  const height = headerH + rows.length * rowH + 4;
  const labels = svg('svg', { width: labelW, height, class: 'svg-chart heatmap-rows' });
  const root = svg('svg', { width, height, class: 'svg-chart heatmap' });
  cols.forEach((col, j) => {
    const cx = j * cell + cell / 2;
    root.append(svg('text', {
      x: cx, y: headerH - 6, class: 'col-label', transform: `rotate(-60 ${cx} ${headerH - 6})`, 'data-col': j,
      tabindex: 0, role: 'button', 'aria-label': `open neuron ${col.label}`,
      onclick: col.onclick, onkeydown: (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); col.onclick(); } },
    }, col.label));
  });
  rows.forEach((token, i) => {
    const cy = headerH + i * rowH;
    labels.append(svg('text', { x: labelW - 6, y: cy + rowH - 5, class: 'row-label', 'text-anchor': 'end' }, token));
    cols.forEach((col, j) => {
      const value = values[i][j];
      root.append(svg('rect', {
        x: j * cell, y: cy, width: cell - 1, height: rowH - 1, fill: diverging(value, limits[j]), class: 'cell',
        'data-row': i, 'data-col': j, 'data-value': value,
        onmousemove: (event) => showTip(event, tip(i, j, value)), onmouseleave: hideTip,
        onclick: () => { hideTip(); col.onclick(); },
      }));
    });
  });
  const cells = svg('g', { class: 'cells' });
  cells.append(...root.querySelectorAll('rect.cell'));
  root.append(cells);
  gridCursor(cells, rows.length, cols.length, (i, j) => ({
    box: { x: j * cell, y: headerH + i * rowH, width: cell - 1, height: rowH - 1 },
    tip: tip(i, j, values[i][j]),
    activate: cols[j].onclick,
  }), root);
  const wrap = el('div', { class: 'heatmap-wrap' }, el('div', { class: 'heatmap-labels' }, labels), el('div', { class: 'heatmap-cells' }, root));
  target.replaceChildren(wrap);
  return root;
}

// The heatmap's cells as one keyboard stop: arrows move the cursor cell, Enter runs its action.
function gridCursor(group, nRows, nCols, at, root) {
  group.setAttribute('tabindex', '0');
  group.setAttribute('role', 'group');
  group.setAttribute('aria-label', `heatmap of ${nRows} tokens × ${nCols} neurons; arrow keys move between cells, Enter opens the neuron`);
  const cursor = svg('rect', { class: 'cursor', hidden: '' });
  root.append(cursor);
  let [i, j] = [-1, -1];
  group.addEventListener('keydown', (event) => {
    const moves = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0] };
    if (event.key in moves && i < 0) [i, j] = [0, 0]; // the first key lands on the first cell
    else if (event.key in moves) {
      const [di, dj] = moves[event.key];
      [i, j] = [Math.max(0, Math.min(nRows - 1, i + di)), Math.max(0, Math.min(nCols - 1, j + dj))];
    } else if ((event.key === 'Enter' || event.key === ' ') && i >= 0) {
      hideTip();
      at(i, j).activate();
      event.preventDefault();
      return;
    } else return;
    event.preventDefault();
    const { box, tip } = at(i, j);
    for (const [k, v] of Object.entries(box)) cursor.setAttribute(k, v);
    cursor.removeAttribute('hidden');
    group.setAttribute('aria-valuetext', tip.join(', '));
    const rect = root.getBoundingClientRect();
    showTip({ clientX: rect.left + box.x + box.width, clientY: rect.top + box.y + box.height }, tip);
  });
  group.addEventListener('blur', () => { cursor.setAttribute('hidden', ''); hideTip(); });
}
