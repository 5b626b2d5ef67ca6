// Search view: jump to a neuron by layer:neuron; the neurons that fire most on a token over a
// corpus' index (GET /api/neurons/search?token=); a phrase run once with, at each token, the neurons
// that fire most (?text=). Every neuron found links to its page.

import { api } from './api.js';
import { el, fmt, plural, real, scope, setOptions } from './dom.js';
import { busy, showError } from './feedback.js';
import { state } from './state.js';
import { clearDownloads, downloads } from './downloads.js';
import { share } from './url.js';

const { root, $ } = scope('view-search');

export function initSearch(navigate) {
  $('#jump-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const address = parseAddress($('#jump-address').value);
    if (address) navigate(`neuron/${address.layer}/${address.neuron}`);
    else {
      showError({ error: 'Not a neuron address', details: `"${$('#jump-address').value}": expected layer:neuron, two whole numbers (e.g. 3:17)` },
        root.querySelector('[data-status]'));
    }
  });
  $('#token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Searching the token', searchToken);
  });
  $('#search-corpus').addEventListener('change', showCorpusState);
  $('#corpus-index').addEventListener('click', () => busy(root, 'Indexing the corpus', indexCorpus));
  $('#text-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Running the phrase', searchText);
  });
}

// "3:17" (spaces allowed) as {layer, neuron}; null when it is not two whole numbers.
export function parseAddress(text) {
  const match = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(text);
  const [layer, neuron] = match ? [+match[1], +match[2]] : [];
  return Number.isSafeInteger(layer) && Number.isSafeInteger(neuron) ? { layer, neuron } : null; // no rounded huge numbers
}

// Shows the view; a shared link's search runs again (one quick request).
export async function showSearch(params = new URLSearchParams()) {
  await fillCorpora(params.get('corpus'));
  if (params.has('token')) {
    $('#search-token').value = params.get('token');
    $('#search-token-layer').value = params.get('layer') ?? '';
    busy(root, 'Searching the token', searchToken);
  } else if (params.has('text')) {
    $('#search-text').value = params.get('text');
    $('#search-text-layer').value = params.get('layer') ?? '';
    if (params.has('k')) $('#search-text-k').value = params.get('k');
    busy(root, 'Running the phrase', searchText);
  }
}

let corpora = [];

// The corpora and, for the one chosen, how much of it is indexed for the loaded model.
async function fillCorpora(wanted) {
  ({ corpora } = await api('corpora'));
  const chosen = wanted || $('#search-corpus').value || 'default';
  setOptions($('#search-corpus'), corpora.map((c) => ({
    value: c.name, selected: c.name === chosen, label: `${c.name}${indexedFor(c) ? '' : ' (not indexed)'}`,
  })));
  showCorpusState();
}

const indexedFor = (corpus) => (corpus.indexed_models || []).find((m) => m.model_name === state.model?.name);

function showCorpusState() {
  const corpus = corpora.find((c) => c.name === $('#search-corpus').value);
  if (!corpus) { $('#search-corpus-state').textContent = ''; return; }
  const done = indexedFor(corpus);
  $('#search-corpus-state').textContent = done
    ? `Indexed for ${done.model_name}: ${plural(done.texts, 'text')}, ${plural(done.tokens, 'token')} (of ${plural(corpus.splits?.explore ?? corpus.texts, 'text')} to explore).`
    : `Not indexed for ${state.model?.name ?? 'this model'} yet: index it to search its tokens and fill the neuron pages.`;
}

// Index the chosen corpus for the loaded model (a job: its progress in the bar); new texts only.
async function indexCorpus(onProgress) {
  const name = $('#search-corpus').value;
  await api(`corpora/${encodeURIComponent(name)}/index`, { method: 'POST', body: {}, onProgress });
  await fillCorpora(name);
}

const optional = (input) => (input.value.trim() === '' ? undefined : +input.value);

const neuronLink = (layer, neuron, text, corpus) => el('a', {
  href: `#neuron/${layer}/${neuron}${corpus ? `?corpus=${encodeURIComponent(corpus)}` : ''}`, class: 'chip',
}, text);

async function searchToken() {
  const params = { token: $('#search-token').value, corpus: $('#search-corpus').value, layer: optional($('#search-token-layer')) };
  clearDownloads($('#search-downloads'));
  const result = await api('neurons/search', { params });
  share('search', params);
  $('#search-title').textContent = `Token "${result.token}" (id ${result.token_id}): ${plural(result.neurons.length, 'neuron')}, `
    + (result.occurrences === null ? `not searchable in corpus ${result.corpus}` : `${plural(result.occurrences, 'occurrence')} in corpus ${result.corpus}`);
  $('#search-caption').textContent = 'Neurons with the highest mean activation on this token over the corpus\' indexed texts. Open one for its page.';
  const columns = ['rank', 'layer', 'neuron', 'mean_activation'];
  const rows = result.neurons.map((n, i) => ({ rank: i + 1, ...n }));
  $('#search-results').replaceChildren(result.neurons.length ? el('div', { class: 'table-wrap' }, el('table', { id: 'search-token-rows' },
    el('thead', {}, el('tr', {}, ['rank', 'neuron', 'mean activation'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map((r) => el('tr', {}, el('td', {}, fmt(r.rank)),
      el('td', {}, neuronLink(r.layer, r.neuron, `${r.layer}:${r.neuron}`, result.corpus)),
      el('td', { class: 'value' }, real(r.mean_activation)))))))
    : el('p', { class: 'notice' }, result.message));
  downloads($('#search-downloads'), 'the results', () => ({ name: `search-token-${result.token_id}`, json: result, columns, rows }));
}

async function searchText() {
  const params = { text: $('#search-text').value, layer: optional($('#search-text-layer')), k: optional($('#search-text-k')) };
  clearDownloads($('#search-downloads'));
  const result = await api('neurons/search', { params });
  share('search', params);
  $('#search-title').textContent = `Phrase of ${plural(result.tokens.length, 'token')}: the neurons that fire most at each`;
  $('#search-caption').textContent = 'The phrase run once on the loaded model; at each token, its neurons with the highest activation (any layer unless one is chosen).';
  $('#search-results').replaceChildren(el('div', { id: 'search-text-rows' }, result.tokens.map((t, position) => el('div', { class: 'search-token-row' },
    el('span', { class: 'pred', title: `token id ${t.token_id}, position ${position}` }, JSON.stringify(t.token)),
    el('span', { class: 'chips' }, t.neurons.map((n) => neuronLink(n.layer, n.neuron, `${n.layer}:${n.neuron} (${real(n.activation, 3)})`)))))));
  const columns = ['position', 'token', 'rank', 'layer', 'neuron', 'activation'];
  downloads($('#search-downloads'), 'the results', () => ({
    name: 'search-text', json: result, columns,
    rows: result.tokens.flatMap((t, position) => t.neurons.map((n, i) => ({ position, token: t.token, rank: i + 1, ...n }))),
  }));
}
