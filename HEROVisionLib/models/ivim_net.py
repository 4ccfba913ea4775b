"""The IVIM early-recurrence networks (J Hepatocell Carcinoma 2026): ViT-bDL, ViT-mDL and ViT-fDL.

Two MONAI 3-D vision transformers read the tumour VOI: one the nine b-value images stacked as
channels (ViT-bDL), one the four parametric maps ADC, D, D*, f (ViT-mDL). Each gives its deep
features as the mean of its last transformer block's tokens; the two are concatenated and
layer-normalised (ViT-fDL). A linear head on the fused features is what training optimises to shape
the features; the published predictor on top — feature selection and logistic regression — is kept
as plain numbers in the model package (:class:`EarlyRecurrenceHead`), not as network weights.

Grad-CAM for a ViT: the gradient of the score with respect to the last block's tokens, averaged over
tokens, weights each feature channel; the weighted, rectified token sum is a map on the patch grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.nets import ViT
from torch import nn

from ..transforms.ivim_crops import IVIM_MAP_CHANNELS
from .ensemble import NetworkEnsemble


class IVIMFeatureNet(nn.Module):
    """ViT-bDL + ViT-mDL → fused, layer-normalised deep features (ViT-fDL) and a training logit."""

    def __init__(self, bvalue_channels: int = 9, map_channels: int = len(IVIM_MAP_CHANNELS), crop_size: int = 64,
                 patch_size: int = 8, hidden_size: int = 128, mlp_dim: int = 256, num_layers: int = 4,
                 num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if crop_size % patch_size:
            raise ValueError(f"crop size {crop_size} is not a multiple of the patch size {patch_size}")
        self._config = dict(bvalue_channels=bvalue_channels, map_channels=map_channels, crop_size=crop_size,
                            patch_size=patch_size, hidden_size=hidden_size, mlp_dim=mlp_dim, num_layers=num_layers,
                            num_heads=num_heads, dropout=dropout)
        vit = dict(img_size=crop_size, patch_size=patch_size, hidden_size=hidden_size, mlp_dim=mlp_dim,
                   num_layers=num_layers, num_heads=num_heads, dropout_rate=dropout, spatial_dims=3)
        self.bvalue_vit = ViT(in_channels=bvalue_channels, **vit)
        self.map_vit = ViT(in_channels=map_channels, **vit)
        for branch in (self.bvalue_vit, self.map_vit):
            branch.norm = nn.Identity()  # features are read before the ViT's final norm: it would never train
            for block in branch.blocks:
                # MONAI's fused attention (its SABlock option, which ViT does not pass on): the same numbers
                # to float rounding, two to four times faster on a CPU; nothing here reads the weights.
                block.attn.use_flash_attention = True
        self.fusion_norm = nn.LayerNorm(2 * hidden_size)
        self.head = nn.Linear(2 * hidden_size, 1)
        self.grid = crop_size // patch_size

    @property
    def feature_count(self) -> int:
        return self.fusion_norm.normalized_shape[0]

    def to_config(self) -> dict:
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> IVIMFeatureNet:
        return cls(**config)

    @staticmethod
    def _last_block_tokens(vit: ViT, x: torch.Tensor) -> torch.Tensor:
        _, hidden_states = vit(x)
        return hidden_states[-1]  # (N, tokens, hidden): the last transformer block, before the final norm

    def tokens(self, bvalues: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each branch's last-block tokens (N, tokens, hidden) for b-value crops (N, 9, S, S, S) and map
        crops (N, 4, S, S, S): what :meth:`fuse` turns into features and :meth:`gradcam` explains."""
        return self._last_block_tokens(self.bvalue_vit, bvalues), self._last_block_tokens(self.map_vit, maps)

    def fuse(self, bvalue_tokens: torch.Tensor, map_tokens: torch.Tensor) -> torch.Tensor:
        """Fused deep features (N, 2·hidden): each branch's mean token, concatenated, layer-normalised."""
        return self.fusion_norm(torch.cat([bvalue_tokens.mean(1), map_tokens.mean(1)], dim=1))

    def features(self, bvalues: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Fused deep features (N, 2·hidden) of b-value crops (N, 9, S, S, S) and map crops (N, 4, S, S, S)."""
        return self.fuse(*self.tokens(bvalues, maps))

    def forward(self, bvalues: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The training logit of early recurrence, (N,)."""
        return self.head(self.features(bvalues, maps))[:, 0]

    def gradcam(self, tokens: tuple[torch.Tensor, torch.Tensor], score) -> tuple[torch.Tensor, torch.Tensor]:
        """Grad-CAM of ``score(features) -> (N,)`` for both branches: (N, S, S, S) maps in [0, 1] each.

        ``tokens`` are :meth:`tokens` of the case (computed without gradients, as for its features):
        the gradient is taken from the score back to them only, never through the ViTs, so the maps
        cost little more than the features. The score is any differentiable function of the fused
        features (the package's logistic model at prediction time), so the maps show what drives the
        reported probability.
        """
        tokens = [token.detach().requires_grad_() for token in tokens]
        with torch.enable_grad():
            gradients = torch.autograd.grad(score(self.fuse(*tokens)).sum(), tokens)
        size = self._config["crop_size"]
        cams = []
        for token, gradient in zip(tokens, gradients):
            weights = gradient.mean(dim=1, keepdim=True)  # (N, 1, hidden)
            cam = F.relu((weights * token.detach()).sum(-1))  # (N, tokens)
            cam = cam.reshape(-1, 1, self.grid, self.grid, self.grid)
            cam = F.interpolate(cam, size=(size,) * 3, mode="trilinear", align_corners=False)[:, 0]
            cams.append(_unit_range(cam))
        return cams[0], cams[1]


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1]; a constant map becomes 0."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    scale = torch.where(high > low, high - low, torch.ones_like(high))
    return ((flat - low[:, None]) / scale[:, None]).reshape(maps.shape)


@dataclass
class LogisticModel:
    """``p = σ(intercept + Σ coefficient·value)`` on named inputs; stored as plain numbers."""

    intercept: float
    coefficients: dict[str, float]

    def linear_predictor(self, values: dict[str, torch.Tensor | float]):
        return self.intercept + sum(weight * values[name] for name, weight in self.coefficients.items())

    def to_dict(self) -> dict:
        return {"intercept": self.intercept, "coefficients": dict(self.coefficients)}

    @classmethod
    def from_dict(cls, data: dict) -> LogisticModel:
        return cls(float(data["intercept"]), {k: float(v) for k, v in data["coefficients"].items()})


@dataclass
class EarlyRecurrenceHead:
    """The published predictor on the fused deep features.

    ``selected`` are the indices kept by the Pearson filter and ANOVA ranking; they are
    standardised with the training cohort's ``mean`` and ``scale`` and fed to the deep logistic
    model (inputs ``feature_<index>``). The combined model takes the deep model's linear predictor
    (``deep_score``) with the clinical predictors ``tumor_size_cm`` and ``tumor_D_1e3``
    (tumour median D in 10⁻³ mm²/s).
    """

    selected: list[int]
    mean: list[float]
    scale: list[float]
    deep: LogisticModel
    combined: LogisticModel

    def deep_score(self, features: torch.Tensor) -> torch.Tensor:
        """The deep model's linear predictor (N,) from fused features (N, F); differentiable."""
        chosen = features[:, self.selected]
        standardised = (chosen - chosen.new_tensor(self.mean)) / chosen.new_tensor(self.scale)
        values = {f"feature_{index}": standardised[:, k] for k, index in enumerate(self.selected)}
        return self.deep.linear_predictor(values)

    def probabilities(self, features: torch.Tensor, tumor_size_cm, tumor_d) -> tuple[torch.Tensor, torch.Tensor]:
        """(deep, combined) early-recurrence probabilities; ``tumor_d`` in mm²/s."""
        score = self.deep_score(features)
        combined = self.combined.linear_predictor({"deep_score": score, "tumor_size_cm": tumor_size_cm,
                                                   "tumor_D_1e3": tumor_d * 1e3})
        return torch.sigmoid(score), torch.sigmoid(torch.as_tensor(combined))

    def to_dict(self) -> dict:
        return {"selected_features": list(self.selected), "feature_mean": list(self.mean),
                "feature_scale": list(self.scale), "deep": self.deep.to_dict(), "combined": self.combined.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> EarlyRecurrenceHead:
        return cls([int(i) for i in data["selected_features"]], [float(v) for v in data["feature_mean"]],
                   [float(v) for v in data["feature_scale"]], LogisticModel.from_dict(data["deep"]),
                   LogisticModel.from_dict(data["combined"]))

    @classmethod
    def untrained(cls, feature_count: int, n_selected: int = 10, seed: int = 0) -> EarlyRecurrenceHead:
        """A placeholder head for an untrained package: the first features, unit scaling and small
        random weights (so every code path, Grad-CAM included, runs; the output means nothing)."""
        selected = list(range(min(n_selected, feature_count)))
        weights = torch.randn(len(selected), generator=torch.Generator().manual_seed(seed)) / len(selected) ** 0.5
        deep = LogisticModel(0.0, {f"feature_{i}": float(w) for i, w in zip(selected, weights)})
        return cls(selected, [0.0] * len(selected), [1.0] * len(selected), deep,
                   LogisticModel(0.0, {"deep_score": 1.0, "tumor_size_cm": 0.0, "tumor_D_1e3": 0.0}))


class IVIMEnsemble(NetworkEnsemble):
    """``members`` :class:`IVIMFeatureNet` trained alike from different seeds (see :mod:`.ensemble`),
    each with its own published head (the package's ``early_recurrence.members``); the ensemble's
    probabilities are the mean of the members' (:func:`ensemble_probabilities`)."""

    member_class = IVIMFeatureNet


def networks_of(network: IVIMFeatureNet | IVIMEnsemble) -> list[IVIMFeatureNet]:
    """The IVIM networks a package holds: an ensemble's members, or the one network."""
    return list(network.members) if isinstance(network, IVIMEnsemble) else [network]


def heads_of(block: dict) -> list[EarlyRecurrenceHead]:
    """A package's published head(s), one per network of :func:`networks_of` (same order)."""
    return [EarlyRecurrenceHead.from_dict(head) for head in block.get("members", [block])]


def heads_block(heads: list[EarlyRecurrenceHead]) -> dict:
    """The ``early_recurrence`` block a package stores for these heads (inverse of :func:`heads_of`)."""
    return heads[0].to_dict() if len(heads) == 1 else {"members": [head.to_dict() for head in heads]}


def ensemble_probabilities(heads: list[EarlyRecurrenceHead], features: list[torch.Tensor], tumor_size_cm,
                           tumor_d) -> tuple[torch.Tensor, torch.Tensor]:
    """(deep, combined) early-recurrence probabilities: each network's fused features through its own
    head, averaged over the networks — the one output path of prediction, evaluation and the bench."""
    outputs = [head.probabilities(fused, tumor_size_cm, tumor_d) for head, fused in zip(heads, features, strict=True)]
    return tuple(torch.stack([torch.as_tensor(output[k]) for output in outputs]).mean(dim=0) for k in range(2))


def ensemble_gradcam(networks: list[IVIMFeatureNet], heads: list[EarlyRecurrenceHead], tokens: list,
                     sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of ``sign`` × each network's deep score (its own head) from that network's
    :meth:`~IVIMFeatureNet.tokens`, the networks' maps averaged."""
    cams = [network.gradcam(network_tokens, lambda fused, head=head: sign * head.deep_score(fused))
            for network, head, network_tokens in zip(networks, heads, tokens, strict=True)]
    return tuple(torch.stack([cam[k] for cam in cams]).mean(dim=0) for k in range(2))
