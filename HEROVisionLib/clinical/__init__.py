"""Layer clinical: what a clinician reads — the treatment advice (cross-stratification and its
firmness), the per-patient report and the cohort analyses of the paper. Above prediction and evaluation."""
