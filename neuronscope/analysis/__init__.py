"""Pure torch/numpy analyses (no Flask): weights, ablation, importance, activations, clustering."""
