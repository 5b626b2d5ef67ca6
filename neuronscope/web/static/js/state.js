// The page's shared state: the loaded model's shape and the current prompt / activation file.

const listeners = new Set();

export const state = {
  model: null, // {name, layers, d_mlp}
  prompt: '',
  activationFile: null,
  samples: [],
};

export function onModelChange(listener) {
  listeners.add(listener);
}

export function setModel(model) {
  state.model = model;
  for (const listener of listeners) listener(model);
}

// Keep number inputs for layers and neurons within the loaded model's shape.
export function bindLayerInputs(...inputs) {
  onModelChange((model) => {
    for (const input of inputs) {
      input.max = model.layers - 1;
      if (+input.value > model.layers - 1) input.value = Math.floor((model.layers - 1) / 2);
    }
  });
}

export function texts(textarea) {
  return textarea.value.split('\n').map((t) => t.trim()).filter(Boolean);
}
