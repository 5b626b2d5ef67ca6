// Shareable addresses: `#view/args?key=value&…` holds what a view shows (model, layer, neuron, file,
// prompt, …), so a reload or a shared link restores it. Views write their state with `share` after a
// successful render; `history.replaceState` changes the address without re-routing.

import { state } from './state.js';

export function current() {
  const [path, query = ''] = window.location.hash.replace(/^#\/?/, '').split('?');
  const [view, ...args] = path.split('/');
  return { view, args, params: new URLSearchParams(query) };
}

// Record `params` for `path` (e.g. "activations" or "neuron/3/17"), only while that view is shown.
export function share(path, params) {
  if (current().view !== path.split('/')[0]) return;
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries({ model: state.model?.name, ...params })) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  const text = query.toString();
  window.history.replaceState(null, '', `#${path}${text ? `?${text}` : ''}`);
}
