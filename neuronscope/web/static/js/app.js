// Entry point: hash routing between the views (#activations, #neuron/L/n, #weights, #pruning, #clusters).

import { $ } from './dom.js';
import { initModelBar } from './model-bar.js';
import { initActivations, refreshFiles } from './activations.js';
import { initNeuron, showNeuron } from './neuron.js';
import { initWeights, showWeights } from './weights.js';
import { initPruning, showPruning } from './pruning.js';
import { initClusters } from './clusters.js';
import { showError } from './feedback.js';

const VIEWS = ['activations', 'neuron', 'weights', 'pruning', 'clusters'];

const navigate = (hash) => { window.location.hash = hash; };
const openNeuron = (layer, neuron) => navigate(`neuron/${layer}/${neuron}`);

function route() {
  const [name, ...args] = window.location.hash.replace(/^#\/?/, '').split('/');
  const view = VIEWS.includes(name) ? name : 'activations';
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  document.querySelectorAll('.tabs a').forEach((a) => a.classList.toggle('active', a.dataset.view === view));
  if (view === 'neuron' && args.length === 2) showNeuron(+args[0], +args[1]);
  if (view === 'weights') showWeights(openNeuron);
  if (view === 'pruning') showPruning();
  if (view === 'clusters') refreshFiles();
}

async function start() {
  initActivations(openNeuron);
  initNeuron(navigate);
  initWeights(openNeuron);
  initPruning(openNeuron);
  initClusters(openNeuron);
  await initModelBar();
  window.addEventListener('hashchange', route);
  route();
  document.body.dataset.ready = 'true';
}

window.addEventListener('unhandledrejection', (event) => showError(event.reason));
start();
