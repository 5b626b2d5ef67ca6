// Weights view: per-layer sparsity and magnitude from weight-analysis; candidates with a threshold slider.

import { api } from './api.js';
import { defined, el, facts, fmt, numberIn, percent, plural, real, scope, setOptions } from './dom.js';
import { busy } from './feedback.js';
import { barChart, lineChart, PALETTE } from './charts.js';
import { SCORE_METHODS } from './options.js';
import { onModelChange, state } from './state.js';
import { downloads } from './downloads.js';
import { share } from './url.js';

const { root, $ } = scope('view-weights');
const SHOWN_CANDIDATES = 200;

export function initWeights(openNeuron) {
  setOptions($('#cand-method'), SCORE_METHODS);
  $('#weights-run').addEventListener('click', () => busy(root, 'Analysing weights', analyse));
  const slider = $('#cand-threshold');
  slider.addEventListener('input', () => { $('#cand-threshold-value').textContent = slider.value; });
  const reload = () => busy(root, 'Finding candidates', () => candidates(openNeuron));
  $('#cand-method').addEventListener('change', () => { state.scoreMethod = $('#cand-method').value; });
  for (const input of [slider, $('#cand-layer'), $('#cand-method')]) input.addEventListener('change', reload);
  onModelChange((model) => {
    setOptions($('#cand-layer'), [{ value: '', label: 'all layers' },
      ...Array.from({ length: model.layers }, (_, i) => ({ value: i, label: `layer ${i}` }))]);
  });
}

// `params` (a link's): threshold, layer and method of the candidates listing.
export function showWeights(openNeuron, params = new URLSearchParams()) {
  const wanted = { '#cand-threshold': params.get('threshold'), '#cand-layer': params.get('layer'), '#cand-method': params.get('method') };
  let changed = false;
  for (const [id, value] of Object.entries(wanted)) {
    if (value !== null && $(id).value !== value) { $(id).value = value; changed = true; }
  }
  $('#cand-threshold-value').textContent = $('#cand-threshold').value;
  state.scoreMethod = $('#cand-method').value;
  if (changed && $('#weights-sparsity').childElementCount) busy(root, 'Finding candidates', () => candidates(openNeuron));
  if (!$('#weights-sparsity').childElementCount) {
    busy(root, 'Analysing weights', async () => {
      await analyse();
      await candidates(openNeuron);
    });
  }
}

// Per block: parameter-weighted sparsity and mean |w| of each module kind (name without the block prefix).
function perLayer(stats) {
  const layers = new Map();
  for (const s of stats.filter((x) => x.layer_index !== null && x.layer_index !== undefined)) {
    const entry = layers.get(s.layer_index) || { total: 0, nonZero: 0, modules: new Map() };
    entry.total += s.total_parameters;
    entry.nonZero += s.non_zero_parameters;
    entry.modules.set(s.layer_name.split(`.${s.layer_index}.`).pop(), s.mean_magnitude);
    layers.set(s.layer_index, entry);
  }
  return [...layers.entries()].sort((a, b) => a[0] - b[0]);
}

async function analyse() {
  const result = await api('pruning/weight-analysis');
  facts($('#weights-summary'), [
    ['parameters', fmt(result.total_parameters)],
    ['non-zero', fmt(result.non_zero_parameters)],
    ['overall sparsity', percent(result.overall_sparsity, 3)],
    ['modules', fmt(result.layer_stats.length)],
  ]);
  const columns = ['layer_name', 'layer_index', 'total_parameters', 'non_zero_parameters', 'sparsity', 'mean_magnitude'];
  downloads($('#weights-downloads'), 'weight statistics', () => ({
    name: `weight-analysis-${result.model_name}`.replace(/[^\w.-]+/g, '_'), json: result, columns,
    rows: result.layer_stats,
  }));
  const layers = perLayer(result.layer_stats);
  barChart($('#weights-sparsity'), {
    height: 170,
    yLabel: 'sparsity %',
    xLabel: 'layer',
    xTicks: (n) => Array.from({ length: n }, (_, i) => i).filter((i) => n <= 32 || i % 5 === 0),
    bars: layers.map(([layer, e]) => {
      const sparsity = 100 * (1 - e.nonZero / e.total);
      return { value: sparsity, tip: [`layer ${layer}`, `sparsity ${real(sparsity, 4)} %`, `${fmt(e.total - e.nonZero)} zeros of ${fmt(e.total)}`] };
    }),
  });
  const kinds = [...new Set(layers.flatMap(([, e]) => [...e.modules.keys()]))];
  lineChart($('#weights-magnitude'), {
    height: 240,
    xLabel: 'layer',
    yLabel: 'mean |w|',
    integerX: true,
    includeZero: false,
    series: kinds.map((kind, i) => ({
      name: kind,
      color: PALETTE[i % PALETTE.length],
      points: layers.filter(([, e]) => e.modules.has(kind)).map(([layer, e]) => [layer, e.modules.get(kind)]),
    })),
  });
}

// With all layers the server lists the candidates layer after layer; the table needs them ranked
// across layers, so it fetches them all and orders them by the chosen method's score (lowest first).
async function candidates(openNeuron) {
  const threshold = numberIn($('#cand-threshold'));
  const layer = $('#cand-layer').value;
  const method = $('#cand-method').value;
  const result = await api('pruning/candidates', {
    params: { threshold, layer_index: layer, method, limit: layer === '' ? undefined : SHOWN_CANDIDATES },
  });
  const rows = sortCandidates(result.candidates).slice(0, SHOWN_CANDIDATES);
  const label = SCORE_METHODS.find((m) => m.value === method)?.label ?? method;
  $('#cand-title').textContent = `Candidates at the ${result.threshold_percentile}th percentile of ${label} scores: `
    + `${plural(result.total_candidates, 'neuron')}${rows.length < result.total_candidates ? ` (lowest ${rows.length} shown)` : ''}`;
  const header = el('tr', {}, ['layer', 'neuron', 'weight magnitude', `${label} score`, 'rank in layer', 'pruning score'].map((h) => el('th', { scope: 'col' }, defined(h))));
  const body = rows.map((c) => {
    const open = () => openNeuron(c.layer_index, c.neuron_index);
    return el('tr', {
      class: 'clickable', tabindex: 0, onclick: open, 'aria-label': `open neuron ${c.layer_index}:${c.neuron_index}`,
      onkeydown: (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); open(); } },
    }, el('td', {}, c.layer_index), el('td', {}, c.neuron_index), el('td', {}, real(c.weight_magnitude)),
    el('td', {}, real(c.score)), el('td', {}, c.weight_rank), el('td', {}, real(c.pruning_score, 3)));
  });
  $('#cand-table').replaceChildren(el('table', { id: 'cand-rows' }, el('thead', {}, header), el('tbody', {}, body)));
  share('weights', { threshold, layer, method });
  const columns = ['layer_index', 'neuron_index', 'weight_magnitude', 'score', 'weight_rank', 'pruning_score'];
  downloads($('#cand-downloads'), `all ${plural(result.total_candidates, 'candidate')}`, () => ({
    name: `candidates-${method}-p${threshold}${layer === '' ? '' : `-layer${layer}`}`,
    json: layer === '' ? { ...result, candidates: sortCandidates(result.candidates) } : result,
    columns, rows: layer === '' ? sortCandidates(result.candidates) : result.candidates,
  }));
}

function sortCandidates(rows) {
  return [...rows].sort((a, b) => a.score - b.score || a.layer_index - b.layer_index || a.neuron_index - b.neuron_index);
}
