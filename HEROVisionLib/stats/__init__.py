"""Layer stats: how good a risk score is, where to cut it, and what it means for a patient.

Survival discrimination and Breslow baselines (:mod:`.survival`), the survminer/maxstat cutpoint
(:mod:`.cutpoint`), binary discrimination and calibration (:mod:`.classification`), decision curves
(:mod:`.decision_curve`), bootstrap intervals (:mod:`.bootstrap`) and the Cox nomogram
(:mod:`.nomogram`). Library implementations are used where they exist; what is written here is
checked against R (``Testing/fixtures/r``).
"""

from .bootstrap import BootstrapInterval, bootstrap_ci
from .classification import (AUCInterval, DeLongTest, HosmerLemeshow, auc_with_delong_ci, calibration, delong_test,
                             hosmer_lemeshow)
from .cutpoint import Cutpoint, logrank_scores, optimal_cutpoint
from .decision_curve import net_benefit, survival_net_benefit
from .nomogram_fit import CoxModel, Nomogram, build_nomogram, select_cox_model
from .survival import (RiskGroupComparison, breslow_baseline_cumulative_hazard, compare_risk_groups, harrell_c,
                       time_dependent_auc, uno_c)

__all__ = ["AUCInterval", "BootstrapInterval", "CoxModel", "Cutpoint", "DeLongTest", "HosmerLemeshow", "Nomogram",
           "RiskGroupComparison", "auc_with_delong_ci", "bootstrap_ci", "breslow_baseline_cumulative_hazard",
           "build_nomogram", "calibration", "compare_risk_groups", "delong_test", "harrell_c", "hosmer_lemeshow",
           "logrank_scores", "net_benefit", "optimal_cutpoint", "select_cox_model", "survival_net_benefit",
           "time_dependent_auc", "uno_c"]
