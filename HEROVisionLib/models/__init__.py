"""Layer models: the networks, the model package (bundle I/O, verification) and the loaded model set."""

from .herovision_net import MODALITY_IMAGES, HEROVisionNet
from .hovertrans import HoVerTransEncoder, attention_rollout, upsample_attention
from .ivim_net import IVIM_MAP_CHANNELS, EarlyRecurrenceHead, IVIMFeatureNet, LogisticModel
from .package import ModelPackage, load_package, save_package, verify_package

__all__ = ["IVIM_MAP_CHANNELS", "MODALITY_IMAGES", "EarlyRecurrenceHead", "HEROVisionNet", "HoVerTransEncoder",
           "IVIMFeatureNet", "LogisticModel", "ModelPackage", "attention_rollout", "load_package", "save_package",
           "upsample_attention", "verify_package"]
