"""Layer 5: training (Cox and logistic), cutoffs, baseline survival."""
