// Small DOM helpers. Text from the server is only ever inserted as text, never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

// One part of the page (a view, the model bar): its root element and `$`, which looks only inside it.
export function scope(id) {
  const root = document.getElementById(id);
  return { root, $: (selector) => root.querySelector(selector) };
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

// Run a synchronous render and record its duration as a `performance` measure named `name`
// (read by the end-to-end tests; visible in the browser's performance tools).
export function timed(name, render) {
  const start = performance.now();
  const result = render();
  performance.measure(name, { start, end: performance.now() });
  return result;
}

// Counts print as integers with separators; everything else as `real` numbers.
export function fmt(value, digits = 4) {
  return Number.isInteger(value) ? value.toLocaleString('en-US') : real(value, digits);
}

// A measured quantity: fixed decimals (or exponent when tiny or huge), even when it happens to be whole.
export function real(value, digits = 4) {
  if (value === undefined || value === null) return '—';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value !== 'number') return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(digits - 1);
  return value.toFixed(digits);
}

// "1 neuron", "2 neurons", "1,536 neurons".
export function plural(count, noun, many = `${noun}s`) {
  return `${fmt(count)} ${count === 1 ? noun : many}`;
}

// A fraction as a percentage with `digits` decimals: 0.2 -> "20.00 %".
export function percent(fraction, digits = 2) {
  return typeof fraction === 'number' ? `${(100 * fraction).toFixed(digits)} %` : '—';
}

export function bytes(n) {
  if (typeof n !== 'number') return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A term with its definition (options.js DEFINITIONS) on hover and for screen readers; plain text otherwise.
export function defined(term, text = term) {
  const id = definitionId(term);
  if (!id) return text;
  return el('span', { class: 'defined', title: document.getElementById(id).textContent, 'aria-describedby': id, tabindex: 0 }, text);
}

// The element holding `term`'s definition (made once by `addDefinitions`), or null.
function definitionId(term) {
  const id = `def-${term.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return document.getElementById(id) ? id : null;
}

// The hidden definitions every `defined` term points at.
export function addDefinitions(definitions) {
  document.body.append(el('div', { id: 'definitions', hidden: true }, Object.entries(definitions).map(([term, text]) =>
    el('p', { id: `def-${term.toLowerCase().replace(/[^a-z0-9]+/g, '-')}` }, text))));
}

// A definition list of [term, value, extra class?] rows; a defined term carries its definition.
export function facts(target, rows) {
  target.replaceChildren(...rows.flatMap(([term, value, cls]) => [
    el('dt', {}, defined(term)), el('dd', { class: cls, dataset: { fact: term } }, value),
  ]));
}

export function setOptions(select, options, keepFirst = false) {
  const first = keepFirst ? [select.options[0]] : [];
  select.replaceChildren(...first, ...options.map(({ value, label, disabled, selected }) =>
    el('option', { value, disabled, selected }, label)));
}

// The number in a numeric input that needs one: an empty field is an error that names the field,
// never a silent 0.
export function numberIn(input) {
  const text = input.value.trim();
  if (text === '') throw new Error(`${input.labels?.[0]?.textContent.trim() || input.id} is empty: enter a number`);
  return Number(text);
}
