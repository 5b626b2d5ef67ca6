// The model bar: current model, its shape and memory, and switching from the registry.

import { api, setApiKey } from './api.js';
import { bytes, el, scope } from './dom.js';
import { busy, showError } from './feedback.js';
import { setModel } from './state.js';

const { root, $ } = scope('model-bar');

export async function initModelBar() {
  $('#model-switch').addEventListener('submit', (event) => {
    event.preventDefault();
    switchModel($('#model-select').value);
  });
  $('#api-key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    setApiKey($('#api-key').value);
    window.location.reload();
  });
  await refresh();
}

// Read the model list and the loaded model again (after a switch, or a model saved by apply).
export async function refresh() {
  try {
    const listing = await api('models');
    renderListing(listing);
    const current = listing.models[listing.current_model];
    if (current) {
      setModel({ name: listing.current_model, layers: current.layers, d_mlp: current.intermediate_size, mlp_sizes: current.mlp_sizes });
    }
    await refreshMemory();
  } catch (err) {
    showError(err);
  }
}

// The MLP width: one number, or the range of a model whose layers differ (pruned with a global scope).
function mlpWidth({ intermediate_size: size, mlp_sizes: sizes }) {
  const low = sizes?.length ? Math.min(...sizes) : size;
  return low === undefined || low === null ? '?' : (low === size ? `${size}` : `${low}–${size} (per layer)`);
}

function renderListing({ models, current_model: current, default_model: fallback }) {
  $('#model-name').textContent = current || `none loaded yet (${fallback} loads on first use)`;
  const info = models[current];
  $('#model-shape').textContent = info
    ? `${info.family} · ${info.layers} layers · d_model ${info.hidden_size} · d_mlp ${mlpWidth(info)}`
    : '';
  const option = ([name, m]) => el('option', {
    value: name, disabled: m.availability === 'unavailable', selected: name === (current || fallback), title: m.description,
  }, `${name} (${AVAILABILITY[m.availability] ?? m.availability}${m.loaded ? ', loaded' : ''})`);
  const entries = Object.entries(models);
  $('#model-select').replaceChildren(...GROUPS.map(({ label, kinds }) => {
    const members = entries.filter(([, m]) => kinds.includes(m.availability));
    return members.length ? el('optgroup', { label }, members.map(option)) : null;
  }).filter(Boolean));
}

// How each availability reads in the list, and the groups it falls in: what loads offline first.
const AVAILABILITY = {
  embedded: 'embedded', local: 'local', cached: 'cached', hub: 'hub: downloads on first use',
  unavailable: 'unavailable: not available offline',
};
const GROUPS = [
  { label: 'Loads offline', kinds: ['embedded', 'local', 'cached'] },
  { label: 'Downloads from the Hub', kinds: ['hub'] },
  { label: 'Not available offline', kinds: ['unavailable'] },
];

// A shared link made on another model than the loaded one says so, with a way to switch.
export function noteLinkModel(name) {
  const note = $('#model-link-note');
  const loaded = $('#model-select').querySelector(`option[value="${CSS.escape(name || '')}"]`);
  if (!name || name === $('#model-name').textContent) {
    note.replaceChildren();
    return;
  }
  note.replaceChildren(`This link was made on ${name}. `, loaded && !loaded.disabled
    ? el('button', { type: 'button', class: 'secondary small', onclick: () => switchModel(name) }, `Switch to ${name}`)
    : el('span', {}, 'That model is not available here.'));
}

async function refreshMemory() {
  const memory = await api('models/memory');
  $('#model-memory').replaceChildren(...[
    el('span', { title: 'bytes of the model parameters and buffers' }, `model ${bytes(memory.model_memory)}`),
    el('span', { title: 'resident memory of the server process' }, `server RSS ${bytes(memory.process_rss)}`),
    el('span', { title: 'system memory in use / total' }, `system ${bytes(memory.used_memory)} / ${bytes(memory.total_memory)}`),
    memory.gpu ? el('span', {}, `GPU ${bytes(memory.gpu.allocated_memory)} / ${bytes(memory.gpu.total_memory)}`) : null,
    memory.device ? el('span', { class: 'muted' }, `on ${memory.device}`) : null,
  ].filter(Boolean));
}

async function switchModel(name) {
  $('#model-name').textContent = `loading ${name}…`;
  const done = await busy(root, `Switching to ${name}`, () => api('models/switch', { method: 'POST', body: { model_name: name } }));
  // Every view shows results of the old model: start afresh. A failed switch keeps the page (and its error).
  if (done) window.location.reload();
  else await refresh();
}
