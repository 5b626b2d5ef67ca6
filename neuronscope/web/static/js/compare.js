// Compare view: the same prompt on the loaded model and on it with a plan's neurons removed
// (POST /api/pruning/plan, then POST /api/activations/compare: one layer's activations as two
// heatmaps on one colour scale, and the next-token predictions at every position with the KL
// divergence between them); and two neurons side by side on one text
// (GET /api/neurons/{layer}/{neuron}/activations for each).

import { api } from './api.js';
import { el, facts, fmt, numberIn, percent, plural, real, scope, setOptions } from './dom.js';
import { busy, settled } from './feedback.js';
import { colourLegend, diverging, heatmap, inkOn } from './charts.js';
import { bindLayerInputs, onPromptChange, state } from './state.js';
import { PLAN_SCOPES, SCORE_METHODS } from './options.js';
import { clearDownloads, downloads } from './downloads.js';
import { parseAddress } from './search.js';
import { share } from './url.js';

const { root, $ } = scope('view-compare');
const TOP_NEURONS = 16;
const PREDICTIONS = 3;
const LINKED = {
  prompt: '#cmp-prompt', sparsity: '#cmp-sparsity', method: '#cmp-method', scope: '#cmp-scope', layer: '#cmp-layer',
  a: '#pair-a', b: '#pair-b', text: '#pair-text',
};

export function initCompare(openNeuron) {
  setOptions($('#cmp-method'), SCORE_METHODS);
  setOptions($('#cmp-scope'), PLAN_SCOPES);
  bindLayerInputs($('#cmp-layer'));
  onPromptChange((prompt, replace) => {
    if (replace || !$('#cmp-prompt').value) $('#cmp-prompt').value = prompt;
  });
  $('#cmp-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Comparing with the pruned model', (onProgress) => compareModels(openNeuron, onProgress));
  });
  $('#pair-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Comparing neurons', compareNeurons);
  });
}

// A shared link fills the inputs and runs what it names again.
export function showCompare(params = new URLSearchParams(), openNeuron) {
  for (const [key, id] of Object.entries(LINKED)) if (params.has(key)) $(id).value = params.get(key);
  if (!$('#cmp-prompt').value) $('#cmp-prompt').value = state.prompt;
  if (params.has('prompt')) busy(root, 'Comparing with the pruned model', (onProgress) => compareModels(openNeuron, onProgress));
  if (params.has('a') && params.has('b')) busy(root, 'Comparing neurons', compareNeurons);
}

function shareCompare() {
  share('compare', Object.fromEntries(Object.entries(LINKED).map(([key, id]) => [key, $(id).value.trim()])));
}

async function compareModels(openNeuron, onProgress) {
  const prompt = $('#cmp-prompt').value.trim();
  const layer = numberIn($('#cmp-layer'));
  for (const id of ['#cmp-original', '#cmp-pruned', '#cmp-legend', '#cmp-predictions', '#cmp-facts']) $(id).replaceChildren();
  clearDownloads($('#cmp-downloads'));
  const planBody = { sparsity: numberIn($('#cmp-sparsity')), method: $('#cmp-method').value, scope: $('#cmp-scope').value };
  const plan = await api('pruning/plan', { method: 'POST', body: planBody, onProgress });
  const ablate = plan.neurons.filter((g) => g.neuron_indices.length);
  if (!ablate.length) throw new Error(`this plan (sparsity ${planBody.sparsity}) removes no neuron: choose a larger sparsity`);
  const result = await api('activations/compare', {
    method: 'POST', body: { prompt, ablate, layer_index: layer, top_k: TOP_NEURONS, predictions: PREDICTIONS },
  });
  shareCompare();
  render(result, plan, openNeuron);
}

function render(result, plan, openNeuron) {
  const layer = result.layer_index;
  const removedHere = new Set(plan.neurons.find((g) => g.layer_index === layer)?.neuron_indices ?? []);
  $('#cmp-title').textContent = `${result.model_name} and it pruned (${plan.method}, ${plan.scope}, sparsity ${percent(plan.sparsity, 0)}), layer ${layer}`;
  facts($('#cmp-facts'), [
    ['removed neurons', `${fmt(result.ablated_neurons)} of ${fmt(plan.total_neurons)} (${fmt(removedHere.size)} in layer ${layer})`],
    ['mean KL divergence', real(result.mean_kl_divergence)],
    ['top-1 agreement', percent(result.top1_agreement, 1)],
  ]);
  const cols = result.original.neurons.map((n) => ({
    label: removedHere.has(n.neuron_index) ? `${n.neuron_index}×` : String(n.neuron_index),
    onclick: () => openNeuron(layer, n.neuron_index),
  }));
  // One colour scale per neuron for both sides: its largest |activation| on either.
  const limits = result.original.neurons.map((n, j) => Math.max(
    ...n.activations.map(Math.abs), ...result.pruned.neurons[j].activations.map(Math.abs)) || 1);
  for (const side of ['original', 'pruned']) {
    const neurons = result[side].neurons;
    heatmap($(`#cmp-${side}`), {
      rows: result.tokens, cols, limits,
      values: result.tokens.map((_, i) => neurons.map((n) => n.activations[i])),
      tip: (i, j, value) => [`${side}: neuron ${layer}:${neurons[j].neuron_index}${removedHere.has(neurons[j].neuron_index) ? ' (removed)' : ''}`,
        `token ${JSON.stringify(result.tokens[i])} (#${i})`, `activation ${real(value)}`],
    });
  }
  $('#cmp-original-title').textContent = `Original: ${plural(cols.length, 'neuron')} of layer ${layer} with the largest |activation|`;
  $('#cmp-pruned-title').textContent = 'Pruned (× = removed, reads 0)';
  $('#cmp-legend').replaceChildren(colourLegend(1, 'relative to each neuron\'s largest |activation| on either side (blue negative, red positive)', 'compare-gradient'));
  $('#cmp-predictions').replaceChildren(predictionTable(result));
  downloads($('#cmp-downloads'), 'the comparison', () => ({
    name: `compare-${plan.method}-${plan.sparsity}-layer${layer}`, json: { plan, comparison: result },
    columns: ['position', 'token', 'original_top1', 'original_p', 'pruned_top1', 'pruned_p', 'kl_divergence'],
    rows: result.tokens.map((token, i) => ({
      position: i, token, original_top1: result.original.predictions[i][0].token, original_p: result.original.predictions[i][0].probability,
      pruned_top1: result.pruned.predictions[i][0].token, pruned_p: result.pruned.predictions[i][0].probability,
      kl_divergence: result.kl_divergence[i],
    })),
  }));
}

function predictionTable(result) {
  const cell = (list, other) => el('td', {}, list.map((p, k) => el('span', {
    class: k === 0 && other && p.token_id !== other[0].token_id ? 'pred changed' : 'pred',
  }, `${JSON.stringify(p.token)} ${real(p.probability, 3)}`)));
  return el('table', { class: 'predictions', id: 'cmp-prediction-rows' },
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', class: 'num' }, '#'), el('th', { scope: 'col' }, 'token'),
      el('th', { scope: 'col' }, `original: top ${PREDICTIONS} next tokens`), el('th', { scope: 'col' }, 'pruned (red: top-1 changed)'),
      el('th', { scope: 'col', class: 'num' }, 'KL'))),
    el('tbody', {}, result.tokens.map((token, i) => el('tr', {},
      el('td', { class: 'num' }, String(i)), el('td', { class: 'pred' }, JSON.stringify(token)),
      cell(result.original.predictions[i]), cell(result.pruned.predictions[i], result.original.predictions[i]),
      el('td', { class: 'num kl' }, real(result.kl_divergence[i]))))));
}

function neuronOf(id) {
  const address = parseAddress($(id).value);
  if (!address) throw new Error(`"${$(id).value}" is not layer:neuron (two whole numbers, e.g. 3:17)`);
  return address;
}

async function compareNeurons() {
  const pair = [neuronOf('#pair-a'), neuronOf('#pair-b')];
  const text = $('#pair-text').value.trim() || $('#cmp-prompt').value.trim() || state.prompt;
  if (!text) throw new Error('Type a text for the two neurons (or a prompt above).');
  $('#pair-text').value = text;
  $('#pair-result').replaceChildren();
  $('#pair-facts').replaceChildren();
  clearDownloads($('#pair-downloads'));
  const answers = [];
  await settled(pair.map(async ({ layer, neuron }, k) => {
    answers[k] = await api(`neurons/${layer}/${neuron}/activations`, { params: { text } });
  }));
  shareCompare();
  const [a, b] = answers;
  const limit = Math.max(...a.activations.map(Math.abs), ...b.activations.map(Math.abs)) || 1;
  $('#pair-title').textContent = `Neurons ${a.layer}:${a.neuron} and ${b.layer}:${b.neuron} on ${plural(a.tokens.length, 'token')}`;
  facts($('#pair-facts'), [['correlation', real(pearson(a.activations, b.activations), 3)]]);
  $('#pair-result').replaceChildren(...answers.map((r, k) => el('div', { class: 'pair-side', dataset: { side: 'ab'[k] } },
    el('h4', {}, el('a', { href: `#neuron/${r.layer}/${r.neuron}` }, `Neuron ${r.layer}:${r.neuron}`)),
    el('dl', { class: 'facts' }, el('dt', {}, 'max activation'), el('dd', { dataset: { fact: 'max activation' } },
      `${real(r.max_activation)} at ${JSON.stringify(r.tokens[r.max_position])}`)),
    el('p', { class: 'tokens-line', tabindex: 0, 'aria-label': `text coloured by neuron ${r.layer}:${r.neuron}` }, r.tokens.map((token, i) => {
      const span = el('span', { class: i === r.max_position ? 'tok max' : 'tok', title: `activation ${real(r.activations[i])}` }, token);
      span.style.background = diverging(r.activations[i], limit);
      span.style.color = inkOn(r.activations[i], limit);
      return span;
    })))));
  downloads($('#pair-downloads'), 'both neurons', () => ({
    name: `neurons-${a.layer}-${a.neuron}-vs-${b.layer}-${b.neuron}`, json: answers,
    columns: ['position', 'token', `neuron_${a.layer}_${a.neuron}`, `neuron_${b.layer}_${b.neuron}`],
    rows: a.tokens.map((token, i) => ({ position: i, token, [`neuron_${a.layer}_${a.neuron}`]: a.activations[i], [`neuron_${b.layer}_${b.neuron}`]: b.activations[i] })),
  }));
}

// Pearson correlation of two equally long lists (NaN when either is constant).
function pearson(x, y) {
  const mean = (v) => v.reduce((s, t) => s + t, 0) / v.length;
  const [mx, my] = [mean(x), mean(y)];
  let [sxy, sxx, syy] = [0, 0, 0];
  x.forEach((xi, i) => { sxy += (xi - mx) * (y[i] - my); sxx += (xi - mx) ** 2; syy += (y[i] - my) ** 2; });
  return sxy / Math.sqrt(sxx * syy);
}
