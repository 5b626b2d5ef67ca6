// Entry point: hash routing between the views (#activations, #neuron/L/n, #weights, #pruning, #clusters,
// #search, #compare).

import { $, addDefinitions } from './dom.js';
import { DEFINITIONS } from './options.js';
import { current } from './url.js';
import { initModelBar, noteLinkModel } from './model-bar.js';
import { initActivations, refreshFiles, showActivations } from './activations.js';
import { initNeuron, showNeuron } from './neuron.js';
import { initWeights, showWeights } from './weights.js';
import { initPruning, showPruning } from './pruning.js';
import { initClusters, showClusters } from './clusters.js';
import { initSearch, showSearch } from './search.js';
import { initCompare, showCompare } from './compare.js';
import { clearErrors, showError } from './feedback.js';

const VIEWS = ['activations', 'neuron', 'weights', 'pruning', 'clusters', 'search', 'compare'];

const navigate = (hash) => { window.location.hash = hash; };
const openNeuron = (layer, neuron) => navigate(`neuron/${layer}/${neuron}`);

let currentView = null;

function route() {
  const { view: name, args, params } = current();
  const view = VIEWS.includes(name) ? name : 'activations';
  noteLinkModel(params.get('model'));
  if (currentView) clearErrors(); // the last page's banners do not follow the user elsewhere
  currentView = view;
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  document.querySelectorAll('.tabs a').forEach((a) => {
    a.classList.toggle('active', a.dataset.view === view);
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  if (view === 'activations') showActivations(params, openNeuron);
  if (view === 'neuron' && args.length) openNeuronAddress(args, params);
  if (view === 'weights') showWeights(openNeuron, params);
  if (view === 'pruning') showPruning(params);
  if (view === 'clusters') refreshFiles().then(() => showClusters(params, openNeuron));
  if (view === 'search') showSearch(params);
  if (view === 'compare') showCompare(params, openNeuron);
}

// `#neuron/L/n`: two whole numbers (exact in JavaScript), or one clear message (no request is made).
function openNeuronAddress(args, params) {
  const numbers = args.map((a) => (/^\d+$/.test(a) ? +a : NaN));
  if (args.length === 2 && numbers.every(Number.isSafeInteger)) {
    showNeuron(numbers[0], numbers[1], undefined, params);
    return;
  }
  const err = { error: 'Not a neuron address', details: `"#neuron/${args.join('/')}": expected #neuron/<layer>/<neuron>, two whole numbers` };
  showNeuron(undefined, undefined, err, params);
}

async function start() {
  addDefinitions(DEFINITIONS);
  initActivations(openNeuron);
  initNeuron(navigate);
  initWeights(openNeuron);
  initPruning(openNeuron);
  initClusters(openNeuron);
  initSearch(navigate);
  initCompare(openNeuron);
  await initModelBar();
  window.addEventListener('hashchange', route);
  route();
  document.body.dataset.ready = 'true';
  performance.mark('neuronscope-ready');
}

window.addEventListener('unhandledrejection', (event) => showError(event.reason));
start();
