// Activations view: run a prompt, show a token × neuron heatmap of a layer's top-k neurons.

import { api } from './api.js';
import { numberIn, plural, real, scope, setOptions, timed } from './dom.js';
import { busy, showError } from './feedback.js';
import { colourLegend, heatmap } from './charts.js';
import { bindLayerInputs, setActivationFiles, setPrompt, state } from './state.js';
import { downloads } from './downloads.js';
import { share } from './url.js';

const { root, $ } = scope('view-activations');
let shown = null; // {layer, topK} of the heatmap on screen: a failed change puts the inputs back

export function initActivations(openNeuron) {
  bindLayerInputs($('#act-layer'));
  $('#act-sample').addEventListener('change', (event) => {
    if (event.target.value) $('#act-prompt').value = event.target.value;
  });
  $('#act-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Capturing activations', () => generate(openNeuron));
  });
  $('#act-save-sample').addEventListener('click', () => busy(root, 'Saving sample', saveSample));
  $('#act-files').addEventListener('change', (event) => {
    if (event.target.value) busy(root, 'Loading file', () => openFile(event.target.value, openNeuron));
  });
  for (const input of [$('#act-layer'), $('#act-topk'), $('#act-scale')]) {
    input.addEventListener('change', async () => {
      if (!state.activationFile) return;
      const done = await busy(root, 'Loading layer', async () => { await openFile(state.activationFile, openNeuron); return true; });
      if (!done && shown) { $('#act-layer').value = shown.layer; $('#act-topk').value = shown.topK ?? ''; }
    });
  }
  loadSamples();
  refreshFiles();
}

// Restore what a link names: a saved file (with its layer, top-k and colour scale) or a prompt to run.
export function showActivations(params, openNeuron) {
  const file = params.get('file');
  if (params.has('prompt') && !file) $('#act-prompt').value = params.get('prompt');
  if (!file || file === state.activationFile) return;
  if (params.has('layer')) $('#act-layer').value = params.get('layer');
  if (params.has('top_k')) $('#act-topk').value = params.get('top_k');
  if (params.has('scale')) $('#act-scale').value = params.get('scale');
  busy(root, 'Loading file', () => openFile(file, openNeuron));
}

async function loadSamples() {
  try {
    state.samples = await api('samples');
    setOptions($('#act-sample'), state.samples.map((s) => ({ value: s, label: s.length > 70 ? `${s.slice(0, 70)}…` : s })), true);
    if (!$('#act-prompt').value && state.samples.length) $('#act-prompt').value = state.samples[0];
  } catch (err) {
    showError(err);
  }
}

export async function refreshFiles() {
  try {
    const { files } = await api('activations/files');
    setOptions($('#act-files'), files.map((f) => ({ value: f, label: f, selected: f === state.activationFile })), true);
    setActivationFiles(files);
  } catch (err) {
    showError(err);
  }
}

async function generate(openNeuron) {
  const prompt = $('#act-prompt').value.trim();
  const result = await api('activations/generate', { method: 'POST', body: { prompt } });
  setPrompt(prompt, true);
  await openFile(result.filename, openNeuron);
  await refreshFiles();
}

async function saveSample() {
  const prompt = $('#act-prompt').value.trim();
  await api('samples', { method: 'POST', body: { prompt } });
  await loadSamples();
}

async function openFile(filename, openNeuron) {
  const layer = numberIn($('#act-layer'));
  const topK = $('#act-topk').value.trim() === '' ? undefined : +$('#act-topk').value; // empty: the server's default
  const data = await api(`activations/${encodeURIComponent(filename)}`, { params: { layer, top_k: topK } });
  state.activationFile = filename;
  setPrompt(data.prompt, false);
  const slice = data.layers.find((l) => l.layer_index === layer);
  if (!slice) throw new Error(`the file ${filename} has no layer ${layer}`);
  $('#act-title').textContent = `Layer ${layer}: ${plural(slice.neurons.length, 'neuron')} × ${plural(data.tokens.length, 'token')} (${filename})`;
  shown = { layer, topK };
  timed('render activations', () => renderHeatmap(data.tokens, layer, slice.neurons, openNeuron));
  share('activations', { file: filename, layer, top_k: topK, scale: $('#act-scale').value });
  downloads($('#act-downloads'), 'this layer', () => ({
    name: `${filename.replace(/\.json$/, '')}-layer${layer}`,
    json: data,
    columns: ['position', 'token', ...slice.neurons.map((n) => `neuron_${n.neuron_index}`)],
    rows: data.tokens.map((token, t) => Object.fromEntries([['position', t], ['token', token],
      ...slice.neurons.map((n) => [`neuron_${n.neuron_index}`, n.activations[t]])])),
  }));
}

// The |activation| that gets the full colour, per column. The first token often dwarfs every
// other (an attention sink), so by default it is left out of the scale and saturates.
function colourLimits(neurons, scale) {
  const peak = (values) => Math.max(0, ...values.map(Math.abs));
  if (scale === 'neuron') return neurons.map((n) => peak(n.activations));
  const skip = scale === 'rest' && neurons[0]?.activations.length > 1 ? 1 : 0;
  const limit = peak(neurons.flatMap((n) => n.activations.slice(skip)));
  return neurons.map(() => limit);
}

function renderHeatmap(tokens, layer, neurons, openNeuron) {
  const scale = $('#act-scale');
  const limits = colourLimits(neurons, scale.value);
  heatmap($('#act-heatmap'), {
    rows: tokens.map((t) => JSON.stringify(t).slice(1, -1)),
    cols: neurons.map((n) => ({ label: `${n.neuron_index}`, onclick: () => openNeuron(layer, n.neuron_index) })),
    values: tokens.map((_, t) => neurons.map((n) => n.activations[t])),
    limits,
    tip: (i, j, value) => [`token ${i}: "${tokens[i]}"`, `neuron ${layer}:${neurons[j].neuron_index}`, `activation ${real(value)}`],
  });
  const perNeuron = scale.value === 'neuron';
  const caption = perNeuron
    ? 'activation relative to each neuron\'s own largest |activation| (±1 = full colour)'
    : `activation; full colour at the ${scale.selectedOptions[0].textContent}, values beyond saturate`;
  $('#act-legend').replaceChildren(colourLegend(perNeuron ? 1 : limits[0] || 1, caption));
}
