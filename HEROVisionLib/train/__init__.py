"""Layer train: training (Cox and logistic), cutoffs, baseline survival."""
