"""Layer predict: one case in, one structured result out; cohorts streamed, sharded and resumable."""

from .background import BackgroundCohort, BackgroundPrediction
from .batch import parse_shard, predict_cohort
from .case_prediction import predict_case
from ..models.model_set import ModelSet, bundled_models_folder, load_models, write_untrained_models
from .outputs import write_case_outputs
from .result import RESULT_COLUMNS, PredictionResult

__all__ = ["RESULT_COLUMNS", "BackgroundCohort", "BackgroundPrediction", "ModelSet", "PredictionResult", "bundled_models_folder", "load_models", "parse_shard",
           "predict_case", "predict_cohort", "write_case_outputs", "write_untrained_models"]
