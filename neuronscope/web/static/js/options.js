// What every view shares about the analyses, in one place: the impact guide lines (the server's
// SAFE_IMPACT and HIGH_IMPACT) and the method lists of each analysis (the API's enums;
// tests/web/test_web.py checks both against the server).

export const SAFE_IMPACT = 0.1;
export const HIGH_IMPACT = 0.3;

export const IMPACT_GUIDES = [
  { value: SAFE_IMPACT, label: `safe < ${SAFE_IMPACT}` },
  { value: HIGH_IMPACT, label: `high ≥ ${HIGH_IMPACT}` },
];

// The neuron scorers (the server's one registry): they rank candidates
// (GET /api/pruning/candidates `method`) and make plans (POST /api/pruning/plan `method`).
export const SCORE_METHODS = [
  { value: 'magnitude', label: 'magnitude' },
  { value: 'wanda', label: 'Wanda' },
  { value: 'activation', label: 'activation' },
  { value: 'taylor', label: 'Taylor' },
  { value: 'obs', label: 'OBS (brain surgeon)' },
  { value: 'random', label: 'random (baseline)' },
];

// Scopes of a pruning plan (POST /api/pruning/plan `scope`).
export const PLAN_SCOPES = [
  { value: 'layer', label: 'per layer' },
  { value: 'global', label: 'global' },
];

// What a plan puts back for the removed neurons (POST /api/pruning/plan and /sweep `compensation`).
export const COMPENSATIONS = [
  { value: 'none', label: 'none' },
  { value: 'bias', label: 'bias (mean ablation)' },
  { value: 'reconstruct', label: 'reconstruct (ridge refit)' },
];

// A plan's perplexity ratio (after / before) above which the server warns (docs/compression.md):
// "large loss of quality" and "this plan breaks the model".
export const RATIO_WARN = 1.5;
export const RATIO_BREAKS = 10;

// Neuron importance (POST /api/pruning/neuron-importance `method`).
export const IMPORTANCE_METHODS = [
  { value: 'ablation', label: 'ablation (exact)' },
  { value: 'attribution', label: 'attribution (fast)' },
];

// The CSS class of the server's impact_level.
export const IMPACT_CLASS = { safe: 'good', moderate: 'warn', high: 'bad' };

// What each metric the views show means (shown on hover, and read out by screen readers through
// aria-describedby). Keys are the terms as the views print them.
export const DEFINITIONS = {
  'impact score': 'Mean over tokens of ||Δh|| / ||h||: how much the final hidden state (the LM head\'s input) moves, relative to its size, when the neuron is ablated (set to 0). Below 0.1 safe, 0.1–0.3 moderate, above 0.3 high.',
  'mean change': 'Mean |Δh| over all tokens and hidden dimensions of the final hidden state when the neuron is ablated.',
  'max change': 'Largest |Δh| of any token and hidden dimension of the final hidden state when the neuron is ablated.',
  'KL divergence': 'Mean over positions of KL(p_clean ‖ p_ablated), in nats: how far the next-token distribution moves when the neuron is ablated.',
  'loss delta': 'Mean next-token cross-entropy with the neuron ablated minus without (nats); positive means the model got worse.',
  'pruning score': '1 − (rank − 1) / (d_mlp − 1) within its layer under the chosen scoring method: 1 = the lowest score of the layer (safest to prune), 0 = the highest.',
  'rank in layer': 'Place of the neuron\'s score among its layer\'s neurons, 1 = the smallest (pruned first).',
  'critical': 'A neuron among the top quarter of its layer\'s impact scores (the ceil(n/4) largest). Relative to its layer: a critical neuron can still have an impact below 0.1.',
  'silhouette': 'Mean silhouette coefficient of the clustering, from −1 to 1: near 1 the clusters are compact and well apart, near 0 they overlap, below 0 neurons sit closer to another cluster.',
  'inertia': 'Sum of squared distances of the neurons to their cluster centre (k-means objective, on standardised activations); lower is tighter.',
  'safe to prune': 'Whether the impact score is below 0.1, the server\'s threshold for a safe ablation.',
  'achieved sparsity': 'Share of the MLP neurons the plan removes.',
  'parameter reduction': 'Share of the model\'s parameters removed with those neurons.',
  'perplexity ratio': 'Perplexity of the pruned model over the dense model\'s, on the built-in evaluation texts: 1 = no loss; above 1.5 the server warns of a large loss of quality, above 10 that the plan breaks the model.',
  'perplexity': 'exp(mean next-token cross-entropy) on the evaluation texts: lower is better.',
  'mean KL divergence': 'Mean over positions of KL(p_original ‖ p_pruned) of the next-token distributions, in nats: 0 = the pruned model predicts exactly as the original.',
  'top-1 agreement': 'Share of positions where the original and the pruned model have the same most likely next token.',
  'correlation': 'Pearson correlation of the two neurons\' activations over the tokens of the text, from −1 to 1.',
};
