// The corpus neuron page (GET /api/neurons/{layer}/{neuron}?corpus=): top and bottom examples with
// every token coloured by the neuron's signed activation, its activation statistics, the tokens it
// promotes and suppresses, its top input tokens, the lookup explanation, similar neurons and its
// weight ranks per method. A server whose API (its OpenAPI document) has no such endpoint gets
// "not available", and so does a 404.

import { api } from './api.js';
import { el, fmt, real, timed } from './dom.js';
import { busy, showError } from './feedback.js';
import { barChart, diverging, inkOn, PALETTE } from './charts.js';

const PAGE_PATH = '/api/neurons/{layer}/{neuron}';
const TEST_PATH = '/api/neurons/{layer}/{neuron}/activations';
let served = null; // Promise<Set<string>>: the API paths the server's OpenAPI document lists (asked once)

async function serves(path) {
  served ??= api('openapi.json').then((spec) => new Set(Object.keys(spec.paths || {})), () => new Set());
  return (await served).has(path);
}

// Renders into `target`; resolves when shown (or when the server has no neuron pages).
export async function corpusPage(target, layer, neuron, corpus) {
  const unavailable = () => target.replaceChildren(el('p', { class: 'muted', id: 'neuron-page-unavailable' },
    `Corpus neuron pages are not available on this server (no GET ${PAGE_PATH}).`));
  target.replaceChildren(el('p', { class: 'muted' }, 'Loading the corpus page…'));
  if (!(await serves(PAGE_PATH))) { unavailable(); return; }
  let page;
  try {
    page = await api(`neurons/${layer}/${neuron}`, { params: { corpus } });
  } catch (err) {
    if (err.status !== 404) throw err;
    unavailable();
    return;
  }
  timed('render neuron page', () => target.replaceChildren(...render(page, layer)));
  if (page.status?.state === 'not_indexed') target.prepend(indexButton(target, layer, neuron, page.corpus));
  if (await serves(TEST_PATH)) target.append(testBox(layer, neuron));
}

// Index the page's corpus for the loaded model (a job, its progress in the view's bar), then show the page again.
function indexButton(target, layer, neuron, corpus) {
  const view = target.closest('.view');
  const run = () => busy(view, `Indexing corpus ${corpus}`, async (onProgress) => {
    await api(`corpora/${encodeURIComponent(corpus)}/index`, { method: 'POST', body: {}, onProgress });
    await corpusPage(target, layer, neuron, corpus);
  });
  return el('button', { type: 'button', id: 'neuron-index-corpus', onclick: run }, `Index corpus ${corpus} for this model`);
}

// "Test this neuron": its activation at every token of a text the user types.
function testBox(layer, neuron) {
  const text = el('textarea', { rows: 2, id: 'neuron-test-text', 'aria-label': 'Text to test this neuron on', placeholder: 'Type a text' });
  const out = el('div', { id: 'neuron-test-result' });
  const run = async (event) => {
    event.preventDefault();
    const result = await api(`neurons/${layer}/${neuron}/activations`, { params: { text: text.value } });
    out.replaceChildren(examples([result]));
  };
  return el('form', { class: 'neuron-test', onsubmit: (event) => run(event).catch((err) => showError(err)) },
    el('h4', {}, 'Test this neuron'), text, el('button', { type: 'submit' }, 'Run'), out);
}

function render(page, layer) {
  const stats = page.activation_stats;
  const histogramBox = el('div', { class: 'chart' });
  const parts = [
    page.status && page.status.state !== 'indexed' ? el('p', { class: 'notice' }, indexing(page.status)) : null,
    el('h4', {}, 'Top examples'), examples(page.top_examples || []),
    el('h4', {}, 'Bottom examples (most negative)'), examples(page.bottom_examples || []),
    stats ? el('p', { class: 'muted' }, `mean ${real(stats.mean, 3)}, std ${real(stats.std, 3)}, `
      + `${real(100 * stats.fraction_positive, 3)} % of tokens > 0`) : null,
    histogramBox,
    el('h4', {}, 'Output tokens (W_U · (γ ⊙ w_out))'),
    chips('promotes', page.output_tokens?.promoted, 'good'), chips('suppresses', page.output_tokens?.suppressed, 'bad'),
    el('h4', {}, 'Top input tokens'),
    chips('mean activation on', page.input_tokens, ''),
    page.explanation ? el('p', { id: 'neuron-explanation' }, page.explanation.text,
      el('span', { class: 'muted' }, ` (lookup score ${real(page.explanation.score, 3)})`)) : null,
    el('h4', {}, 'Similar neurons (cosine of output directions)'),
    el('div', { class: 'chips' }, (page.similar_neurons || []).map((s) => el('span', { class: 'similar' }, el('a', {
      class: 'chip', href: `#neuron/${s.layer}/${s.neuron}`,
    }, `${s.layer}:${s.neuron} (${real(s.cosine, 3)})`), el('a', {
      class: 'compare-link', href: `#compare?a=${layer}:${page.neuron}&b=${s.layer}:${s.neuron}`,
      'aria-label': `compare ${layer}:${page.neuron} with ${s.layer}:${s.neuron} on a text`,
    }, 'compare')))),
  ];
  if (stats?.histogram) queueMicrotask(() => histogramFromBins(histogramBox, stats.histogram));
  return parts.filter(Boolean).concat(weightRanks(page.weights, layer));
}

// The corpus' indexing state for this model: {state: indexed | indexing | not_indexed, progress?}.
function indexing(status) {
  if (status.state === 'indexing') return `Indexing the corpus: ${Math.round(100 * (status.progress ?? 0))} %`;
  return 'This corpus is not indexed for this model yet.';
}

// Each example as its tokens, coloured by the activation at each (blue negative, red positive).
function examples(list) {
  if (!list.length) return el('p', { class: 'muted' }, 'none indexed');
  const limit = Math.max(...list.flatMap((e) => e.activations.map(Math.abs))) || 1;
  return el('ol', { class: 'example-list corpus-examples', tabindex: 0, 'aria-label': 'examples' }, list.map((e) => el('li', { class: 'example-tokens' },
    el('span', { class: 'example-value' }, real(e.max_activation, 3)),
    el('span', { class: 'example-context' }, e.tokens.map((token, i) => {
      const span = el('span', { class: i === e.max_position ? 'tok max' : 'tok', title: `activation ${real(e.activations[i])}` }, token);
      span.style.background = diverging(e.activations[i], limit);
      span.style.color = inkOn(e.activations[i], limit);
      return span;
    })))));
}

function chips(label, list, cls) {
  return el('div', { class: 'chips' }, el('span', { class: 'muted' }, `${label}: `), (list || []).map((t) => el('span', {
    class: `chip token ${cls}`, title: t.count !== undefined ? `${fmt(t.count)} occurrences` : `token id ${t.token_id}`,
  }, `${t.token} ${real(t.value ?? t.mean_activation, 2)}`)));
}

// The API's histogram (edges [n + 1], counts [n]) as bars, negative bins blue, positive red.
function histogramFromBins(target, { edges, counts }) {
  barChart(target, {
    height: 180, yLabel: 'tokens', xLabel: 'activation', integerY: true, label: 'activation histogram over the corpus',
    bars: counts.map((count, i) => ({
      value: count, color: (edges[i] + edges[i + 1]) / 2 < 0 ? PALETTE[0] : PALETTE[1],
      tip: [`${real(edges[i], 3)} … ${real(edges[i + 1], 3)}`, `${fmt(count)} tokens`],
    })),
  });
}

function weightRanks(weights, layer) {
  if (!weights) return [];
  const rows = Object.entries(weights.methods || {});
  return [el('h4', {}, `Weight ranks in layer ${layer} (‖w_out‖ ${real(weights.output_norm)})`), el('table', { class: 'compact' },
    el('thead', {}, el('tr', {}, ['method', 'score', 'rank (1 = smallest)'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map(([method, w]) => el('tr', {}, el('td', {}, method), el('td', {}, real(w.score)),
      el('td', {}, `${fmt(w.rank)} of ${fmt(w.of)}`)))))];
}
