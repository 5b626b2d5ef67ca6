// Neuron view: max-activating examples from the corpus index, activation histogram over the saved
// activation files, weight magnitude and rank, and an ablation on a prompt with its impact metrics.

import { api } from './api.js';
import { el, facts, fmt, plural, real, scope, timed } from './dom.js';
import { busy, settled, showError } from './feedback.js';
import { diverging, histogram, inkOn } from './charts.js';
import { IMPACT_CLASS, SCORE_METHODS } from './options.js';
import { bindLayerInputs, onPromptChange, state } from './state.js';
import { clearDownloads, downloads } from './downloads.js';
import { corpusPage } from './neuron-page.js';
import { share } from './url.js';

const { root, $ } = scope('view-neuron');
const TOP_EXAMPLES = 20;
const HISTOGRAM_FILES = 12;
const layerCache = new Map(); // "file|layer" -> activation file slice
let shown = null; // {layer, neuron} of the neuron on screen: what "Ablate neuron" ablates

export function initNeuron(navigate) {
  bindLayerInputs($('#neuron-layer'));
  onPromptChange((prompt, replace) => {
    if (replace || !$('#neuron-prompt').value) $('#neuron-prompt').value = prompt;
  });
  $('#neuron-form').addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(`neuron/${$('#neuron-layer').value}/${$('#neuron-index').value}`);
  });
  $('#neuron-ablate').addEventListener('click', () => busy(root, 'Ablating', ablate));
}

// Open a neuron; with `invalid` (an address that names no neuron) show that one message instead.
// `params` (the link's): the ablation prompt, the scoring method of the ranks, the corpus.
export function showNeuron(layer, neuron, invalid, params = new URLSearchParams()) {
  for (const id of ['#neuron-examples', '#neuron-histogram', '#neuron-weights', '#neuron-impact', '#neuron-hist-caption',
    '#neuron-examples-downloads', '#neuron-impact-downloads', '#neuron-page']) {
    $(id).replaceChildren();
  }
  if (params.has('prompt')) $('#neuron-prompt').value = params.get('prompt');
  if (SCORE_METHODS.some((m) => m.value === params.get('method'))) state.scoreMethod = params.get('method');
  if (params.has('corpus')) state.corpus = params.get('corpus');
  shown = invalid ? null : { layer, neuron };
  if (invalid) {
    $('#neuron-title').textContent = 'No neuron open';
    showError(invalid, root.querySelector('[data-status]'));
    return;
  }
  $('#neuron-layer').value = layer;
  $('#neuron-index').value = neuron;
  $('#neuron-title').textContent = `Neuron ${layer}:${neuron} — max-activating examples`;
  if (!$('#neuron-prompt').value) $('#neuron-prompt').value = state.prompt;
  shareNeuron(layer, neuron);
  busy(root, `Loading neuron ${layer}:${neuron}`,
    () => settled([examples(layer, neuron), weights(layer, neuron), activationHistogram(layer, neuron),
      corpusPage($('#neuron-page'), layer, neuron, state.corpus)]));
}

function shareNeuron(layer, neuron) {
  share(`neuron/${layer}/${neuron}`, {
    method: state.scoreMethod === 'magnitude' ? undefined : state.scoreMethod,
    corpus: state.corpus, prompt: $('#neuron-prompt').value.trim(),
  });
}

async function examples(layer, neuron) {
  const result = await api('queries/neuron', {
    method: 'POST', body: { layer_index: layer, neuron_index: neuron, top_k: TOP_EXAMPLES },
  });
  const list = result.top_tokens;
  const target = $('#neuron-examples');
  if (!list.length) {
    target.replaceChildren(el('p', { class: 'notice' }, `Nothing is indexed for ${result.model_name ?? 'this model'} yet: index the sample `
      + 'prompts here, index a corpus (the button on the corpus page below, or the Search view), or run prompts in the Activations view.'),
      el('button', { type: 'button', id: 'index-samples', onclick: () => indexSamples(layer, neuron) }, 'Index the sample prompts'));
    return;
  }
  downloads($('#neuron-examples-downloads'), 'examples', () => ({
    name: `neuron-${layer}-${neuron}-examples`,
    json: result,
    columns: ['rank', 'activation', 'token', 'before', 'after', 'source_kind', 'source', 'position'],
    rows: list.map((r, i) => ({ rank: i + 1, activation: r.activation, token: r.context_parts.token, before: r.context_parts.before,
      after: r.context_parts.after, source_kind: r.source_kind, source: r.source, position: r.position })),
  }));
  const top = Math.max(...list.map((r) => Math.abs(r.activation))) || 1;
  timed('render neuron examples', () => target.replaceChildren(el('ol', { class: 'example-list', tabindex: 0, 'aria-label': `max-activating examples of neuron ${layer}:${neuron}` }, list.map((r) => el('li', { class: 'example' },
    el('span', { class: `example-value ${r.activation < 0 ? 'negative' : 'positive'}`, title: `activation at position ${r.position}` }, real(r.activation, 3)),
    el('span', { class: 'example-bar', title: 'signed: blue bars grow left from 0 (negative), red bars right (positive)' }, barFill(r.activation / top)),
    el('span', { class: 'example-context' }, context(r, top)),
    el('span', { class: 'muted example-source', title: `${r.source_kind} ${r.source}, token ${r.position}` }, r.source))))));
}

// A signed bar from the middle: right and red for positive, left and blue for negative.
function barFill(fraction) {
  const fill = el('span', { class: `fill ${fraction < 0 ? 'negative' : 'positive'}` });
  fill.style.width = `${Math.round(Math.abs(fraction) * 50)}%`;
  return fill;
}

// The snippet with the activating token marked in the diverging colour of its activation.
function context({ context_parts: parts, activation }, top) {
  const mark = el('mark', { title: `activation ${real(activation)}` }, parts.token);
  mark.style.background = diverging(activation, top);
  mark.style.color = inkOn(activation, top);
  return [el('span', {}, parts.before), mark, el('span', {}, parts.after)];
}

function indexSamples(layer, neuron) {
  busy(root, 'Indexing the sample prompts', async () => {
    await api('activations/corpus', { method: 'POST', body: { use_samples: true } });
    await examples(layer, neuron);
  });
}

// Weight magnitude, and rank and pruning score under the scoring method chosen in the weights view.
async function weights(layer, neuron) {
  const d = state.model?.mlp_sizes?.[layer] ?? state.model?.d_mlp;
  const method = state.scoreMethod;
  const result = await api('pruning/candidates', {
    params: { threshold: 100, layer_index: layer, limit: d, method },
  });
  const row = result.candidates.find((c) => c.layer_index === layer && c.neuron_index === neuron);
  if (!row) throw new Error(`neuron ${layer}:${neuron} is not in the candidates listing of layer ${layer}`);
  const label = SCORE_METHODS.find((m) => m.value === method)?.label ?? method;
  facts($('#neuron-weights'), [
    ['weight magnitude', real(row.weight_magnitude)],
    ['scoring method', label],
    [`${label} score`, real(row.score)],
    ['rank in layer', `${row.weight_rank} of ${d ?? '?'} (1 = smallest ${label} score)`],
    ['pruning score', real(row.pruning_score, 3)],
  ]);
}

async function sliceOf(file, layer) {
  const key = `${file}|${layer}`;
  if (!layerCache.has(key)) layerCache.set(key, await api(`activations/${encodeURIComponent(file)}`, { params: { layer } }));
  return layerCache.get(key);
}

async function activationHistogram(layer, neuron) {
  const { files } = await api('activations/files');
  const current = files.includes(state.activationFile) ? [state.activationFile] : [];
  const chosen = [...current, ...files.filter((f) => f !== state.activationFile)].slice(0, HISTOGRAM_FILES);
  const values = [];
  let used = 0;
  for (const file of chosen) {
    const data = await sliceOf(file, layer);
    if (state.model && data.model_name && data.model_name !== state.model.name) continue;
    const row = data.layers.find((l) => l.layer_index === layer)?.neurons.find((n) => n.neuron_index === neuron);
    if (row) { values.push(...row.activations); used += 1; }
  }
  const caption = $('#neuron-hist-caption');
  if (!values.length) {
    caption.textContent = 'No saved activation files of this model yet: run a prompt in the Activations view.';
    return;
  }
  caption.textContent = `Neuron ${layer}:${neuron} over ${plural(values.length, 'token')} of ${plural(used, 'saved activation file')}; `
    + `mean ${real(values.reduce((a, b) => a + b, 0) / values.length, 3)}, max ${real(Math.max(...values), 3)}.`;
  histogram($('#neuron-histogram'), values, { bins: Math.min(40, Math.max(8, Math.round(Math.sqrt(values.length)))) });
}

async function ablate() {
  if (!shown) throw new Error('open a neuron first: the ablation removes the neuron on screen');
  const { layer, neuron } = shown;
  const text = $('#neuron-prompt').value.trim();
  clearDownloads($('#neuron-impact-downloads'));
  const result = await api('pruning/impact-analysis', {
    method: 'POST', body: { layer_index: layer, neuron_indices: [neuron], input_text: text },
  });
  shareNeuron(layer, neuron);
  const columns = ['layer_index', 'neuron_index', 'impact_score', 'impact_level', 'mean_change', 'max_change', 'kl_divergence', 'loss_delta', 'safe_to_prune'];
  downloads($('#neuron-impact-downloads'), 'ablation', () => ({
    name: `neuron-${layer}-${neuron}-ablation`, json: result, columns, rows: [{ ...result, layer_index: layer, neuron_index: neuron }],
  }));
  facts($('#neuron-impact'), [
    ['impact score', `${real(result.impact_score)} (${result.impact_level})`, IMPACT_CLASS[result.impact_level]],
    ['mean change', real(result.mean_change)],
    ['max change', real(result.max_change)],
    ['KL divergence', real(result.kl_divergence)],
    ['loss delta', real(result.loss_delta)],
    ['safe to prune', fmt(result.safe_to_prune), result.safe_to_prune ? 'good' : 'bad'],
  ]);
}
