// Pruning for real (in the pruning view): perplexity of the loaded model, a plan for a sparsity
// (which neurons go, how many parameters), and applying it to save a smaller model.

import { api } from './api.js';
import { bytes, facts, fmt, percent, real, scope, setOptions } from './dom.js';
import { busy } from './feedback.js';
import { sharePruning } from './pruning.js';
import { SCORE_METHODS, PLAN_SCOPES } from './options.js';
import { clearDownloads, downloads } from './downloads.js';

const { root, $ } = scope('view-pruning');
let lastPlan = null;

export function initCompression() {
  setOptions($('#plan-method'), SCORE_METHODS);
  setOptions($('#plan-scope'), PLAN_SCOPES);
  $('#eval-run').addEventListener('click', () => busy(root, 'Evaluating perplexity', evaluate));
  $('#plan-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Planning', plan);
  });
  $('#apply-run').addEventListener('click', () => busy(root, 'Applying plan', apply));
}

async function evaluate(onProgress) {
  const result = await api('pruning/evaluate', { method: 'POST', body: {}, onProgress });
  $('#apply-title').textContent = `Loaded model ${result.model_name}`;
  facts($('#apply-facts'), [
    ['perplexity', real(result.perplexity)],
    ['mean loss (nats)', real(result.mean_loss)],
    ['tokens', fmt(result.tokens)],
    ['texts', `${fmt(result.texts)} (${result.text_source})`],
  ]);
}

async function plan(onProgress) {
  const body = { sparsity: +$('#plan-sparsity').value, method: $('#plan-method').value, scope: $('#plan-scope').value };
  clearDownloads($('#plan-downloads'));
  const result = await api('pruning/plan', { method: 'POST', body, onProgress });
  lastPlan = result;
  sharePruning();
  downloads($('#plan-downloads'), 'the plan', () => ({
    name: `plan-${result.method}-${result.scope}-${result.sparsity}`, json: result,
    columns: ['layer_index', 'neuron_index'],
    rows: result.neurons.flatMap((g) => g.neuron_indices.map((n) => ({ layer_index: g.layer_index, neuron_index: n }))),
  }));
  const p = result.parameters;
  $('#plan-title').textContent = `Plan: ${result.method}, ${result.scope}, sparsity ${percent(result.sparsity, 0)}`;
  facts($('#plan-facts'), [
    ['removed neurons', `${fmt(result.removed_neurons)} of ${fmt(result.total_neurons)}`],
    ['achieved sparsity', percent(result.achieved_sparsity)],
    ['parameters before', fmt(p.before)],
    ['parameters after', fmt(p.after)],
    ['parameter reduction', percent(p.reduction)],
    ['removed per layer', result.layers.map((l) => `${l.layer_index}: ${l.removed}`).join(', ')],
  ]);
}

async function apply(onProgress) {
  if (!lastPlan) throw new Error('Make a plan first.');
  const body = { plan: lastPlan, output_name: $('#apply-name').value.trim() };
  clearDownloads($('#apply-downloads'));
  const result = await api('pruning/apply', { method: 'POST', body, onProgress });
  downloads($('#apply-downloads'), 'the report', () => ({
    name: `pruned-${result.output_name}`, json: result, columns: ['quantity', 'value'],
    rows: [['removed_neurons', result.removed_neurons], ['parameters_before', p.before], ['parameters_after', p.after],
      ['total_bytes', result.files.total_bytes], ['perplexity_before', result.perplexity_before],
      ['perplexity_after', result.perplexity_after]].map(([quantity, value]) => ({ quantity, value })),
  }));
  const p = result.parameters;
  $('#apply-title').textContent = `Pruned model ${result.output_name}`;
  facts($('#apply-facts'), [
    ['removed neurons', fmt(result.removed_neurons)],
    ['parameters before', fmt(p.before)],
    ['parameters after', fmt(p.after)],
    ['file size', `${bytes(result.files.total_bytes)} (${fmt(result.files.total_bytes)} bytes)`],
    ['perplexity before', real(result.perplexity_before)],
    ['perplexity after', real(result.perplexity_after)],
  ]);
}
