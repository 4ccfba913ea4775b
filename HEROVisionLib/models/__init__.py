"""Layer 3: the networks and the model package."""

from .herovision_net import MODALITY_IMAGES, HEROVisionNet
from .hovertrans import HoVerTransEncoder, attention_rollout, upsample_attention

__all__ = ["HEROVisionNet", "HoVerTransEncoder", "MODALITY_IMAGES", "attention_rollout", "upsample_attention"]
