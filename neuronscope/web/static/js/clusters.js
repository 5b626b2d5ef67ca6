// Clusters view: KMeans over a layer's neurons of an activation file; each cluster's size, top
// neurons, centroid over the file's tokens and its top tokens from the index.

import { api } from './api.js';
import { el, facts, numberIn, plural, real, scope, setOptions } from './dom.js';
import { busy, settled } from './feedback.js';
import { diverging, hideTip, inkOn, showTip } from './charts.js';
import { bindLayerInputs, onFilesChange, state } from './state.js';
import { clearDownloads, downloads } from './downloads.js';
import { share } from './url.js';

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

// A link's file, layer and cluster count: filled in and clustered (quick, and the answer is cached).
export function showClusters(params, openNeuron) {
  const file = params.get('file');
  if (!file || !$('#clu-file').querySelector(`option[value="${CSS.escape(file)}"]`)) return;
  if ($('#clu-file').value === file && $('#clu-list').childElementCount) return;
  $('#clu-file').value = file;
  if (params.has('layer')) $('#clu-layer').value = params.get('layer');
  if (params.has('k')) $('#clu-k').value = params.get('k');
  busy(root, 'Clustering', () => cluster(openNeuron));
}

async function cluster(openNeuron) {
  const file = $('#clu-file').value;
  if (!file) throw new Error('no activation file yet: run a prompt in the Activations view first');
  const layer = numberIn($('#clu-layer'));
  clearDownloads($('#clu-downloads'));
  const result = await api('clusters/generate', {
    method: 'POST', body: { activation_file: file, layer_index: layer, n_clusters: numberIn($('#clu-k')) },
  });
  share('clusters', { file, layer, k: result.n_clusters });
  downloads($('#clu-downloads'), 'assignments', () => ({
    name: result.filename.replace(/\.json$/, ''), json: result, columns: ['neuron_index', 'cluster_id'],
    rows: result.assignments.map((cluster, n) => ({ neuron_index: n, cluster_id: cluster })),
  }));
  facts($('#clu-summary'), [
    ['file', result.filename],
    ['inertia', real(result.inertia)],
    ['silhouette', el('span', {}, real(result.silhouette_score, 3), el('span', { class: 'muted' }, ` (${silhouetteMeaning(result.silhouette_score)})`))],
  ]);
  const cards = result.clusters.map((c) => card(c, layer, result.centroids[c.cluster_id], result.tokens, openNeuron));
  $('#clu-list').replaceChildren(...cards.map((x) => x.node));
  await settled(cards.map((x) => x.loadTokens(result.filename)));
}

function card(c, layer, centroid, tokens, openNeuron) {
  const topTokens = el('div', { class: 'top-tokens' }, el('span', { class: 'muted' }, 'top tokens…'));
  const node = el('article', { class: 'cluster', dataset: { cluster: c.cluster_id } },
    el('h4', {}, `Cluster ${c.cluster_id}`, el('span', { class: 'muted' }, ` · ${plural(c.size, 'neuron')}`)),
    el('div', { class: 'chips' }, el('span', { class: 'muted', title: 'the neurons closest to the cluster centre' }, 'typical neurons: '),
      c.top_neurons.map((n) => el('button', {
        type: 'button', class: 'chip', onclick: () => openNeuron(layer, n.neuron_index),
        title: `mean activation ${real(n.mean_activation)}, max ${real(n.max_activation)}`,
      }, `${layer}:${n.neuron_index}`))),
    centroid ? centroidStrip(centroid, tokens) : el('p', { class: 'muted' }, 'empty cluster'),
    topTokens);
  const loadTokens = async (clusterFile) => {
    const q = await api('queries/cluster', { method: 'POST', body: { cluster_id: c.cluster_id, top_k: TOP_TOKENS, cluster_file: clusterFile } });
    const list = distinctTokens(q.top_tokens);
    topTokens.replaceChildren(el('span', { class: 'muted' }, 'top tokens: '), ...(list.length
      ? list.map((t) => el('span', {
        class: 'chip token',
        title: `largest mean activation of the cluster's neurons ${real(t.activation)} (${t.source}, token ${t.position})${t.count > 1 ? `; ${t.count} of the top positions are this token` : ''}`,
      }, `${t.token} ${real(t.activation, 2)}${t.count > 1 ? ` ×${t.count}` : ''}`))
      : [el('span', { class: 'notice' }, q.message || 'none')]));
  };
  return { node, loadTokens };
}

// One chip per token string (its best position), with how many of the top positions it took.
function distinctTokens(list) {
  const byToken = new Map();
  for (const t of list) {
    const seen = byToken.get(t.token);
    if (seen) seen.count += 1;
    else byToken.set(t.token, { ...t, count: 1 });
  }
  return [...byToken.values()];
}

// How to read a silhouette score (-1 … 1).
function silhouetteMeaning(score) {
  if (score >= 0.5) return 'well separated clusters';
  if (score >= 0.25) return 'some structure';
  if (score > 0) return 'near 0: the clusters overlap, weak structure';
  return 'at or below 0: neurons sit closer to other clusters';
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
    box.style.color = inkOn(centroid[i], limit);
    return box;
  }));
}
