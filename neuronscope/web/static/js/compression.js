// Pruning for real (in the pruning view): perplexity of the loaded model, a plan for a sparsity
// (which neurons go, how many parameters, and with "Estimate quality" the perplexity after and the
// server's warnings), applying it to save a smaller model (a plan with a warning asks first), and
// the sweep: perplexity ratio against sparsity per method, on a log scale, a click making that plan.

import { api } from './api.js';
import { bytes, defined, el, facts, fmt, numberIn, percent, real, scope, setOptions } from './dom.js';
import { busy } from './feedback.js';
import { refresh as refreshModels } from './model-bar.js';
import { lineChart, PALETTE } from './charts.js';
import { sharePruning } from './pruning.js';
import { COMPENSATIONS, PLAN_SCOPES, RATIO_BREAKS, RATIO_WARN, SCORE_METHODS } from './options.js';
import { clearDownloads, downloads } from './downloads.js';

const { root, $ } = scope('view-pruning');
let lastPlan = null;
const SWEEP_DEFAULT_METHODS = ['magnitude', 'wanda', 'random'];

export function initCompression() {
  setOptions($('#plan-method'), SCORE_METHODS);
  setOptions($('#plan-scope'), PLAN_SCOPES);
  setOptions($('#plan-compensation'), COMPENSATIONS);
  checkboxes($('#sweep-methods'), 'sweep-method', SCORE_METHODS, SWEEP_DEFAULT_METHODS);
  checkboxes($('#sweep-compensations'), 'sweep-compensation', COMPENSATIONS, ['none']);
  $('#eval-run').addEventListener('click', () => busy(root, 'Evaluating perplexity', evaluate));
  $('#plan-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Planning', plan);
  });
  $('#apply-run').addEventListener('click', askToApply);
  $('#apply-confirm-yes').addEventListener('click', () => { closeConfirm(); busy(root, 'Applying plan', apply); });
  $('#apply-confirm-no').addEventListener('click', () => { closeConfirm(); $('#apply-run').focus(); });
  $('#sweep-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Sweeping', sweep);
  });
}

function checkboxes(target, name, options, checked) {
  target.replaceChildren(...options.map(({ value, label }) => el('label', { class: 'check' },
    el('input', { type: 'checkbox', name, value, checked: checked.includes(value) }), ` ${label}`)));
}

const checked = (name) => [...root.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

async function evaluate(onProgress) {
  const result = await api('pruning/evaluate', { method: 'POST', body: {}, onProgress });
  $('#apply-title').textContent = `Loaded model ${result.model_name}`;
  $('#apply-warnings').replaceChildren();
  facts($('#apply-facts'), [
    ['perplexity', real(result.perplexity)],
    ['mean loss (nats)', real(result.mean_loss)],
    ['tokens', fmt(result.tokens)],
    ['texts', `${fmt(result.texts)} (${result.text_source})`],
  ]);
}

// Red for "breaks the model" (ratio over RATIO_BREAKS), amber for a large loss; each of the server's words shown.
function showWarnings(target, warnings, ratio) {
  if (!warnings?.length) { target.replaceChildren(); return; }
  const severe = ratio > RATIO_BREAKS || warnings.some((w) => w.includes('breaks the model'));
  target.replaceChildren(el('div', { class: `warning-box ${severe ? 'severe' : 'caution'}`, role: 'status' },
    el('strong', {}, severe ? 'This plan breaks the model' : 'Large loss of quality'),
    el('ul', {}, warnings.map((w) => el('li', {}, w)))));
}

function ratioClass(ratio) {
  if (!(ratio > RATIO_WARN)) return 'good';
  return ratio > RATIO_BREAKS ? 'bad' : 'warn';
}

async function plan(onProgress) {
  const body = {
    sparsity: numberIn($('#plan-sparsity')), method: $('#plan-method').value, scope: $('#plan-scope').value,
    compensation: $('#plan-compensation').value, estimate: $('#plan-estimate').checked,
  };
  clearDownloads($('#plan-downloads'));
  $('#plan-warnings').replaceChildren();
  closeConfirm();
  lastPlan = null;
  const result = await api('pruning/plan', { method: 'POST', body, onProgress });
  lastPlan = result;
  sharePruning();
  downloads($('#plan-downloads'), 'the plan', () => ({
    name: `plan-${result.method}-${result.scope}-${result.sparsity}`, json: result,
    columns: ['layer_index', 'neuron_index'],
    rows: result.neurons.flatMap((g) => g.neuron_indices.map((n) => ({ layer_index: g.layer_index, neuron_index: n }))),
  }));
  const compare = new URLSearchParams({ sparsity: result.sparsity, method: result.method, scope: result.scope });
  $('#plan-downloads').append(el('a', { id: 'plan-compare', class: 'compare-link', href: `#compare?${compare}` },
    'Compare this plan with the original on a prompt (without compensation)'));
  const p = result.parameters;
  const est = result.estimate;
  $('#plan-title').textContent = `Plan: ${result.method}, ${result.scope}, sparsity ${percent(result.sparsity, 0)}`
    + `, compensation ${result.compensation ?? 'none'}`;
  showWarnings($('#plan-warnings'), result.warnings, est?.ratio);
  facts($('#plan-facts'), [
    ...(est ? [
      ['perplexity ratio', `×${real(est.ratio, 3)}`, ratioClass(est.ratio)],
      ['perplexity before', real(est.perplexity_before)],
      ['perplexity after', real(est.perplexity_after), ratioClass(est.ratio)],
    ] : [['perplexity ratio', 'not estimated (tick "Estimate quality")']]),
    ['removed neurons', `${fmt(result.removed_neurons)} of ${fmt(result.total_neurons)}`],
    ['achieved sparsity', percent(result.achieved_sparsity)],
    ['parameters before', fmt(p.before)],
    ['parameters after', fmt(p.after)],
    ['parameter reduction', percent(p.reduction)],
    ['removed per layer', result.layers.map((l) => `${l.layer_index}: ${l.removed}`).join(', ')],
  ]);
}

// Apply at once, or first ask when the plan carries a warning (or was not estimated).
function askToApply() {
  if (!lastPlan) { busy(root, 'Applying plan', apply); return; }
  const warnings = lastPlan.warnings || [];
  if (!warnings.length && lastPlan.estimate) { busy(root, 'Applying plan', apply); return; }
  $('#apply-confirm-text').textContent = warnings.length
    ? `This plan has ${warnings.length === 1 ? 'a warning' : `${warnings.length} warnings`}: ${warnings.join('; ')}. Save the pruned model anyway?`
    : 'The quality of this plan was not estimated. Save the pruned model anyway?';
  $('#apply-confirm').classList.toggle('severe', lastPlan.estimate?.ratio > RATIO_BREAKS);
  $('#apply-confirm').hidden = false;
  $('#apply-confirm-no').focus();
}

function closeConfirm() {
  $('#apply-confirm').hidden = true;
}

async function apply(onProgress) {
  if (!lastPlan) throw new Error('Make a plan first.');
  const body = { plan: lastPlan, output_name: $('#apply-name').value.trim() };
  clearDownloads($('#apply-downloads'));
  $('#apply-warnings').replaceChildren();
  const result = await api('pruning/apply', { method: 'POST', body, onProgress });
  const p = result.parameters;
  downloads($('#apply-downloads'), 'the report', () => ({
    name: `pruned-${result.output_name}`, json: result, columns: ['quantity', 'value'],
    rows: [['removed_neurons', result.removed_neurons], ['parameters_before', p.before], ['parameters_after', p.after],
      ['total_bytes', result.files.total_bytes], ['perplexity_before', result.perplexity_before],
      ['perplexity_after', result.perplexity_after], ['ratio', result.ratio]].map(([quantity, value]) => ({ quantity, value })),
  }));
  $('#apply-title').textContent = `Pruned model ${result.output_name}`;
  showWarnings($('#apply-warnings'), result.warnings, result.ratio);
  facts($('#apply-facts'), [
    ['removed neurons', fmt(result.removed_neurons)],
    ['parameters before', fmt(p.before)],
    ['parameters after', fmt(p.after)],
    ['file size', `${bytes(result.files.total_bytes)} (${fmt(result.files.total_bytes)} bytes)`],
    ['perplexity before', real(result.perplexity_before)],
    ['perplexity after', real(result.perplexity_after), ratioClass(result.ratio)],
    ...(typeof result.ratio === 'number' ? [['perplexity ratio', `×${real(result.ratio, 3)}`, ratioClass(result.ratio)]] : []),
  ]);
  await refreshModels(); // the model bar's list then offers the saved model
}

function parseSparsities(text) {
  return text.split(/[\s,;]+/).filter(Boolean).map((item) => {
    const value = Number(item);
    if (!Number.isFinite(value)) throw new Error(`"${item}" is not a sparsity (a number from 0 to 0.95)`);
    return value;
  });
}

async function sweep(onProgress) {
  const body = {
    methods: checked('sweep-method'), sparsities: parseSparsities($('#sweep-sparsities').value),
    compensations: checked('sweep-compensation'), scope: $('#plan-scope').value,
  };
  for (const id of ['#sweep-chart', '#sweep-table']) $(id).replaceChildren();
  $('#sweep-table').hidden = true;
  clearDownloads($('#sweep-downloads'));
  $('#sweep-title').textContent = 'Pruning sweep: running…';
  const result = await api('pruning/sweep', { method: 'POST', body, onProgress });
  renderSweep(result);
}

// One line per method (and compensation, when several were swept): ratio against sparsity, log y.
function renderSweep(result) {
  const groups = new Map();
  for (const row of result.rows.filter((r) => Number.isFinite(r.ratio) && r.ratio > 0)) { // a log axis: positive ratios only
    const key = `${row.method}|${row.compensation}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(row);
  }
  const several = new Set(result.rows.map((r) => r.compensation)).size > 1;
  const series = [...groups.values()].map((rows, i) => {
    const sorted = [...rows].sort((a, b) => a.sparsity - b.sparsity);
    const name = several ? `${sorted[0].method} + ${sorted[0].compensation}` : sorted[0].method;
    return {
      name, color: PALETTE[i % PALETTE.length], rows: sorted,
      points: sorted.map((r) => [100 * r.sparsity, r.ratio]),
      tips: sorted.map((r) => [name, `sparsity ${percent(r.sparsity, 0)}`, `perplexity ${real(r.perplexity)} (×${real(r.ratio, 3)})`,
        `parameters after ${fmt(r.parameters_after)}`, 'click to make this plan']),
    };
  });
  $('#sweep-title').textContent = `Pruning sweep (${result.scope} scope): dense perplexity ${real(result.dense_perplexity)}`;
  lineChart($('#sweep-chart'), {
    series, height: 260, logY: true, includeZero: false, xLabel: 'sparsity (% of MLP neurons removed)',
    yLabel: 'perplexity ratio (log)', label: 'pruning sweep', thresholds: [
      { value: RATIO_WARN, label: `large loss > ×${RATIO_WARN}` }, { value: RATIO_BREAKS, label: `breaks > ×${RATIO_BREAKS}` }],
    onPoint: (s, k) => makePlanFrom(s.rows[k], result.scope),
  });
  $('#sweep-caption').replaceChildren(defined('perplexity ratio', 'Perplexity ratio'),
    ` (pruned / dense, log scale) on ${fmt(result.evaluation.tokens)} evaluation tokens, each plan carried out on a temporary copy. `
    + 'Click a point (or focus the chart, move with the arrow keys and press Enter) to make that plan below.');
  const columns = ['method', 'compensation', 'sparsity', 'perplexity', 'ratio', 'parameters_after'];
  $('#sweep-table').replaceChildren(el('table', { class: 'compact', id: 'sweep-rows' },
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col' }, c.replace('_', ' '))))),
    el('tbody', {}, result.rows.map((r) => el('tr', {}, el('td', {}, r.method), el('td', {}, r.compensation),
      el('td', {}, percent(r.sparsity, 0)), el('td', {}, real(r.perplexity)), el('td', { class: ratioClass(r.ratio) }, `×${real(r.ratio, 3)}`),
      el('td', {}, fmt(r.parameters_after)))))));
  $('#sweep-table').hidden = false;
  downloads($('#sweep-downloads'), 'the sweep', () => ({ name: `sweep-${result.scope}`, json: result, columns, rows: result.rows }));
}

// A sweep point becomes the plan form's method, sparsity and compensation, and that plan is made.
function makePlanFrom(row, planScope) {
  $('#plan-method').value = row.method;
  $('#plan-sparsity').value = row.sparsity;
  $('#plan-compensation').value = row.compensation;
  $('#plan-scope').value = planScope;
  $('#plan-estimate').checked = true;
  $('#plan-title').scrollIntoView({ block: 'nearest' });
  busy(root, 'Planning', plan);
}
