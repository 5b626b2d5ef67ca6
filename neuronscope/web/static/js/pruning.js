// Pruning view: neuron importance of a layer as a sorted bar chart; batch analysis with its
// cumulative-impact curve and recommendations; both run as jobs with a real progress bar.
// The plan / apply panel is compression.js.

import { api } from './api.js';
import { defined, el, facts, fmt, numberIn, plural, real, scope, setOptions } from './dom.js';
import { busy } from './feedback.js';
import { barChart, lineChart, PALETTE } from './charts.js';
import { bindLayerInputs, state, texts } from './state.js';
import { initCompression } from './compression.js';
import { IMPACT_GUIDES, IMPORTANCE_METHODS } from './options.js';
import { clearDownloads, downloads } from './downloads.js';
import { share } from './url.js';

const { root, $ } = scope('view-pruning');
let lastImportance = null;

export function initPruning(openNeuron) {
  bindLayerInputs($('#imp-layer'));
  setOptions($('#imp-method'), IMPORTANCE_METHODS);
  $('#imp-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Ranking neurons', (onProgress) => importance(openNeuron, onProgress));
  });
  $('#batch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Analysing batch', batch);
  });
  $('#batch-fill').addEventListener('click', fillLeastImportant);
  initCompression();
}

// The inputs a link names (nothing runs by itself: these are long jobs); the rest as before.
const LINKED = {
  layer: '#imp-layer', method: '#imp-method', texts: '#imp-texts', sparsity: '#plan-sparsity', plan_method: '#plan-method',
  scope: '#plan-scope', compensation: '#plan-compensation', sweep: '#sweep-sparsities',
};

export function showPruning(params = new URLSearchParams()) {
  for (const [key, id] of Object.entries(LINKED)) if (params.has(key)) $(id).value = params.get(key);
  if (!$('#imp-texts').value) $('#imp-texts').value = [state.prompt, ...state.samples].filter(Boolean).slice(0, 3).join('\n');
}

export function sharePruning() {
  share('pruning', Object.fromEntries(Object.entries(LINKED).map(([key, id]) => [key, $(id).value])));
}

async function importance(openNeuron, onProgress) {
  const layer = numberIn($('#imp-layer'));
  const method = $('#imp-method').value;
  for (const id of ['#imp-chart', '#imp-caption']) $(id).replaceChildren(); // never the last run's chart beside this run's title
  clearDownloads($('#imp-downloads'));
  $('#imp-title').textContent = `Layer ${layer}: ranking neurons (${method})…`;
  const result = await api('pruning/neuron-importance', {
    method: 'POST', body: { layer_index: layer, input_texts: texts($('#imp-texts')), method },
    onProgress,
  });
  lastImportance = result;
  sharePruning();
  const columns = ['layer_index', 'neuron_index', 'impact_score', 'is_critical', 'activation_magnitude', 'activation_variance'];
  downloads($('#imp-downloads'), 'importance', () => ({
    name: `importance-layer${layer}-${result.method}`, json: result, columns, rows: result.importance_scores,
  }));
  const sorted = [...result.importance_scores].sort((a, b) => b.impact_score - a.impact_score);
  const methodLabel = IMPORTANCE_METHODS.find((m) => m.value === result.method)?.label ?? result.method;
  $('#imp-title').textContent = `Layer ${layer}, ${methodLabel}: impact of ablating each of ${plural(result.total_neurons, 'neuron')} `
    + `(${fmt(result.critical_neurons)} critical, in red)`;
  const chart = barChart($('#imp-chart'), {
    height: 220,
    yLabel: 'impact score',
    xLabel: 'rank (1 = most important)',
    label: 'impact of ablating each neuron',
    thresholds: IMPACT_GUIDES,
    xTicks: (n) => rankTicks(n),
    xTickLabel: (i) => String(i + 1),
    bars: sorted.map((s) => ({
      value: s.impact_score,
      color: s.is_critical ? PALETTE[1] : PALETTE[0],
      tip: [`neuron ${s.layer_index}:${s.neuron_index}${s.is_critical ? ' (critical)' : ''}`, `impact ${real(s.impact_score)}`,
        `mean |a| ${real(s.activation_magnitude)}`, `var a ${real(s.activation_variance)}`, 'click to open'],
      onclick: () => openNeuron(s.layer_index, s.neuron_index),
    })),
  });
  const hidden = chart.hiddenGuides.map((g) => g.label);
  $('#imp-caption').replaceChildren(defined('impact score', 'Impact score'), ' per neuron, bars sorted. ',
    el('span', { class: 'critical-key' }, defined('critical', 'Critical'), el('span', { class: 'muted' }, ` (red): ${criticalRule(result.critical_rule)}. `)),
    el('span', { class: 'muted' }, 'Critical is relative to this layer, so a critical bar can still sit below the absolute "safe < 0.1" line.'
      + (hidden.length ? ` Guide lines above the largest impact (${hidden.join(', ')}) are not drawn.` : '')));
  fillLeastImportant();
}

function criticalRule(rule) {
  return rule.startsWith('top quartile') ? 'among the top quarter of this layer\'s impact scores (the ceil(n/4) largest)' : rule;
}

// Rank ticks at 1 and round numbers, about eight of them.
function rankTicks(n) {
  const step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].find((s) => n / s <= 8) ?? Math.ceil(n / 8);
  return [0, ...Array.from({ length: Math.floor((n - 1) / step) }, (_, i) => (i + 1) * step - 1)];
}

function fillLeastImportant() {
  if (!lastImportance) return;
  const least = [...lastImportance.importance_scores].sort((a, b) => a.impact_score - b.impact_score).slice(0, 16);
  $('#batch-candidates').value = least.map((s) => `${s.layer_index}:${s.neuron_index}`).join(', ');
}

// One row per candidate: its impact alone and, when it was in the curve, the impact with the
// k lowest-impact candidates ablated together (k = its place in the curve).
function batchRows(result) {
  const place = new Map(result.cumulative_curve.map((p) => [`${p.added.layer_index}:${p.added.neuron_index}`, p]));
  return result.individual_impacts.map((s) => {
    const point = place.get(`${s.layer_index}:${s.neuron_index}`);
    return { ...s, cumulative_k: point?.k, cumulative_impact_score: point?.impact_score };
  });
}

function parseCandidates(text) {
  return text.split(/[\s,;]+/).filter(Boolean).map((item) => {
    const match = /^(\d+):(\d+)$/.exec(item);
    if (!match) throw new Error(`"${item}" is not layer:neuron`);
    return { layer_index: +match[1], neuron_index: +match[2] };
  });
}

async function batch(onProgress) {
  const body = {
    pruning_candidates: parseCandidates($('#batch-candidates').value),
    input_texts: texts($('#imp-texts')),
  };
  // The cumulative curve runs over every candidate unless a smaller group size is asked for.
  body.batch_size = $('#batch-size').value.trim() ? +$('#batch-size').value : body.pruning_candidates.length;
  clearDownloads($('#batch-downloads'));
  const result = await api('pruning/batch-analysis', { method: 'POST', body, onProgress });
  const columns = ['layer_index', 'neuron_index', 'impact_score', 'cumulative_k', 'cumulative_impact_score'];
  downloads($('#batch-downloads'), 'batch analysis', () => ({
    name: 'batch-analysis', json: result, columns, rows: batchRows(result),
  }));
  const curve = (result.cumulative_curve || []).map((p) => [p.k, p.impact_score]);
  const individual = [...result.individual_impacts].sort((a, b) => a.impact_score - b.impact_score);
  lineChart($('#batch-chart'), {
    height: 220,
    xLabel: 'k lowest-impact neurons ablated',
    yLabel: 'impact score',
    integerX: true,
    thresholds: IMPACT_GUIDES,
    series: [
      { name: 'ablated together (cumulative)', color: PALETTE[1], points: curve },
      { name: 'k-th neuron alone', color: PALETTE[0], points: individual.map((s, i) => [i + 1, s.impact_score]) },
    ],
  });
  const rec = result.recommendations;
  facts($('#batch-recommendations'), [
    ['safe to prune', fmt(rec.safe_to_prune), 'good'],
    ['risky to prune', fmt(rec.risky_to_prune), rec.risky_to_prune ? 'warn' : ''],
    ['suggested batch size', fmt(rec.suggested_batch_size)],
    [`impact of ${fmt(result.cumulative_impact.count)} together`, real(result.cumulative_impact.impact_score)],
    ['high-impact neurons', rec.high_impact_neurons.length
      ? el('span', {}, rec.high_impact_neurons.map((n) => el('a', {
        href: `#neuron/${n.layer_index}/${n.neuron_index}`, class: 'chip bad',
      }, `${n.layer_index}:${n.neuron_index} (${real(n.impact_score, 3)})`)))
      : 'none'],
  ]);
}
