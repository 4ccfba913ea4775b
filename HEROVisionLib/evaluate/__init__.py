"""Layer evaluate (beside train): the metrics of a model package on a cohort, scored by the same path as
prediction, with the plots a clinician recognises."""
