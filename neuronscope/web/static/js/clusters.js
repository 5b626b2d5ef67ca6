// Clusters view: KMeans over a layer's neurons of an activation file; each cluster's size, top
// neurons, centroid over the file's tokens and its top tokens from the index.

import { api } from './api.js';
import { el, facts, fmt, real, scope, setOptions } from './dom.js';
import { busy, settled } from './feedback.js';
import { diverging, showTip, hideTip } from './charts.js';
import { bindLayerInputs, onFilesChange, state } from './state.js';

const { root, $ } = scope('view-clusters');
const TOP_TOKENS = 8;

export function initClusters(openNeuron) {
  bindLayerInputs($('#clu-layer'));
  onFilesChange((files) => {
    setOptions($('#clu-file'), files.map((f) => ({ value: f, label: f, selected: f === state.activationFile })));
  });
  $('#clu-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(root, 'Clustering', () => cluster(openNeuron));
  });
}

async function cluster(openNeuron) {
  const file = $('#clu-file').value;
  if (!file) throw new Error('no activation file yet: run a prompt in the Activations view first');
  const layer = +$('#clu-layer').value;
  const result = await api('clusters/generate', {
    method: 'POST', body: { activation_file: file, layer_index: layer, n_clusters: +$('#clu-k').value },
  });
  facts($('#clu-summary'), [
    ['file', result.filename],
    ['inertia', real(result.inertia)],
    ['silhouette', real(result.silhouette_score, 3)],
  ]);
  const cards = result.clusters.map((c) => card(c, layer, result.centroids[c.cluster_id], result.tokens, openNeuron));
  $('#clu-list').replaceChildren(...cards.map((x) => x.node));
  await settled(cards.map((x) => x.loadTokens(result.filename)));
}

function card(c, layer, centroid, tokens, openNeuron) {
  const topTokens = el('div', { class: 'top-tokens' }, el('span', { class: 'muted' }, 'top tokens…'));
  const node = el('article', { class: 'cluster', dataset: { cluster: c.cluster_id } },
    el('h4', {}, `Cluster ${c.cluster_id}`, el('span', { class: 'muted' }, ` · ${fmt(c.size)} neurons`)),
    el('div', { class: 'chips' }, el('span', { class: 'muted', title: 'the neurons closest to the cluster centre' }, 'typical neurons: '),
      c.top_neurons.map((n) => el('button', {
        type: 'button', class: 'chip', onclick: () => openNeuron(layer, n.neuron_index),
        title: `mean activation ${real(n.mean_activation)}, max ${real(n.max_activation)}`,
      }, `${layer}:${n.neuron_index}`))),
    centroid ? centroidStrip(centroid, tokens) : el('p', { class: 'muted' }, 'empty cluster'),
    topTokens);
  const loadTokens = async (clusterFile) => {
    const q = await api('queries/cluster', { method: 'POST', body: { cluster_id: c.cluster_id, top_k: TOP_TOKENS, cluster_file: clusterFile } });
    const list = q.top_tokens;
    topTokens.replaceChildren(el('span', { class: 'muted' }, 'top tokens: '), ...(list.length
      ? list.map((t) => el('span', { class: 'chip token', title: `mean activation of the cluster's neurons ${real(t.activation)} (${t.source}, token ${t.position})` }, `${t.token} ${real(t.activation, 2)}`))
      : [el('span', { class: 'notice' }, q.message || 'none')]));
  };
  return { node, loadTokens };
}

// The cluster's mean activation at each token of the file, as a row of coloured token boxes.
function centroidStrip(centroid, tokens) {
  const limit = Math.max(...centroid.map(Math.abs)) || 1;
  return el('div', { class: 'centroid' }, tokens.map((token, i) => {
    const box = el('span', {
      class: 'centroid-token',
      onmousemove: (event) => showTip(event, [`"${token}"`, `mean activation ${real(centroid[i])}`]),
      onmouseleave: hideTip,
    }, token);
    box.style.background = diverging(centroid[i], limit);
    return box;
  }));
}
