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
  { value: 'random', label: 'random (baseline)' },
];

// Scopes of a pruning plan (POST /api/pruning/plan `scope`).
export const PLAN_SCOPES = [
  { value: 'layer', label: 'per layer' },
  { value: 'global', label: 'global' },
];

// Neuron importance (POST /api/pruning/neuron-importance `method`).
export const IMPORTANCE_METHODS = [
  { value: 'ablation', label: 'ablation (exact)' },
  { value: 'attribution', label: 'attribution (fast)' },
];

// The CSS class of the server's impact_level.
export const IMPACT_CLASS = { safe: 'good', moderate: 'warn', high: 'bad' };
