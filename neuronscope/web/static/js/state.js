// The page's shared state: the loaded model's shape and the current prompt / activation file.
// The views never touch each other's elements: they share through this state and its events.

const listeners = { model: new Set(), prompt: new Set(), files: new Set() };

export const state = {
  model: null, // {name, layers, d_mlp, mlp_sizes}: d_mlp the largest layer's, mlp_sizes per layer
  prompt: '',
  activationFile: null,
  samples: [],
  corpus: undefined, // the corpus a shared neuron link names (kept in its address)
  scoreMethod: 'magnitude', // the neuron scorer chosen in the weights view (ranks shown in the neuron view)
};

function notify(kind, ...args) {
  for (const listener of listeners[kind]) listener(...args);
}

export function onModelChange(listener) {
  listeners.model.add(listener);
}

export function setModel(model) {
  state.model = model;
  notify('model', model);
}

// `listener(prompt, replace)`: a prompt was run (`replace`: it replaces prompts typed elsewhere) or opened.
export function onPromptChange(listener) {
  listeners.prompt.add(listener);
}

export function setPrompt(prompt, replace) {
  state.prompt = prompt;
  notify('prompt', prompt, replace);
}

// `listener(files)`: the saved activation files changed.
export function onFilesChange(listener) {
  listeners.files.add(listener);
}

export function setActivationFiles(files) {
  notify('files', files);
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
