"""The HEROVision survival network: four imaging modalities of a case → one Cox log-hazard.

Each modality (T2WI, DWI, grey-scale ultrasound, contrast-enhanced ultrasound) has its own
:class:`~.hovertrans.HoVerTransEncoder`, shared by that modality's images (11 images in all, 11 × 128
image features with the default encoder). A modality's image features are projected to one
modality vector; the four vectors are concatenated and an MLP turns them into the risk score, the
log-hazard of a Cox model (so no bias: the partial likelihood ignores it).

Cases often lack a modality, so an absent one is never encoded: a learned "missing" embedding
stands in for its vector, and its pixels (zeros, or anything) cannot change the score. Training
drops present modalities at random (never all of a case's) so the network learns to score cases
with whatever they have.

The constructor takes only JSON values; :meth:`HEROVisionNet.to_config` and
:meth:`HEROVisionNet.from_config` carry the architecture in a model package.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..transforms.network_inputs import MODALITY_IMAGES
from .ensemble import NetworkEnsemble
from .hovertrans import HoVerTransEncoder, attention_rollout, upsample_attention

_EMBEDDING_STD = 0.02


class HEROVisionNet(nn.Module):
    """Per-modality HoVer-Trans encoders, a missing-modality-aware fusion and a Cox head.

    ``forward(images, present)``: ``images[m]`` is (N, k_m, H, W), ``present`` a bool (N, M) in the
    order of :attr:`modalities`; returns the (N,) log-hazards."""

    def __init__(self, modality_images: dict[str, int] = MODALITY_IMAGES, encoder: dict | None = None,
                 modality_features: int = 64, fusion_hidden: int = 128, modality_dropout: float = 0.25,
                 fusion_dropout: float = 0.1):
        super().__init__()
        if not modality_images:
            raise ValueError("the network needs at least one modality")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.modalities = tuple(modality_images)
        self.modality_images = {name: int(count) for name, count in modality_images.items()}
        self.encoders = nn.ModuleDict({name: HoVerTransEncoder(**(encoder or {})) for name in self.modalities})
        self.encoder_config = self.encoders[self.modalities[0]].config
        image_features = self.encoder_config["out_features"]
        self.projections = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(count * image_features, modality_features), nn.LayerNorm(modality_features),
                                nn.GELU())
            for name, count in self.modality_images.items()})
        self.missing = nn.Parameter(torch.zeros(len(self.modalities), modality_features))
        nn.init.trunc_normal_(self.missing, std=_EMBEDDING_STD)
        self.head = nn.Sequential(nn.Linear(len(self.modalities) * modality_features, fusion_hidden), nn.GELU(),
                                  nn.Dropout(fusion_dropout), nn.Linear(fusion_hidden, 1, bias=False))
        self.modality_dropout = modality_dropout
        self._config = {"modality_images": dict(self.modality_images), "encoder": self.encoder_config,
                        "modality_features": modality_features, "fusion_hidden": fusion_hidden,
                        "modality_dropout": modality_dropout, "fusion_dropout": fusion_dropout}

    @property
    def config(self) -> dict:
        """The constructor arguments (encoder defaults filled in), JSON-serialisable."""
        return {**self._config, "modality_images": dict(self._config["modality_images"]),
                "encoder": dict(self._config["encoder"])}

    def to_config(self) -> dict:
        """:attr:`config`, under the name a model package calls."""
        return self.config

    @classmethod
    def from_config(cls, config: dict) -> HEROVisionNet:
        """The same architecture (fresh weights) from :meth:`to_config`'s dict."""
        return cls(**config)

    def _check_presence(self, present: torch.Tensor) -> torch.Tensor:
        present = torch.as_tensor(present, dtype=torch.bool, device=self.missing.device)
        if present.ndim != 2 or present.shape[1] != len(self.modalities):
            raise ValueError(f"present must be (N, {len(self.modalities)}) for modalities {self.modalities}, "
                             f"got {tuple(present.shape)}")
        empty = (~present.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise InputError("present", f"case(s) at batch position {empty} have none of the modalities "
                                        f"{self.modalities}: nothing to score")
        return present

    def draw_presence(self, present: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training's modality drop-out: each present modality is marked absent with probability
        ``modality_dropout``; a case that would lose all keeps one of its modalities, drawn at random."""
        present = self._check_presence(present)
        dropped = torch.rand(present.shape, generator=generator, device=present.device) < self.modality_dropout
        kept = present & ~dropped
        emptied = ~kept.any(dim=1)
        # The highest random score among a case's present modalities picks the one it keeps.
        scores = torch.rand(present.shape, generator=generator, device=present.device).masked_fill(~present, -1.0)
        rescued = nn.functional.one_hot(scores.argmax(dim=1), len(self.modalities)).bool()
        return kept | (emptied[:, None] & rescued)

    def _modality_images(self, images: dict[str, torch.Tensor], name: str, cases: torch.Tensor) -> torch.Tensor:
        """The present cases' images of one modality, as (cases·k, 1, H, W) for the shared encoder."""
        if name not in images:
            raise ValueError(f"images has no {name!r} entry though some cases have that modality")
        selected = images[name][cases]
        if selected.ndim != 4 or selected.shape[1] != self.modality_images[name]:
            raise ValueError(f"images[{name!r}] must be (N, {self.modality_images[name]}, H, W), "
                             f"got {tuple(images[name].shape)}")
        return selected.reshape(-1, 1, *selected.shape[2:])

    def _score(self, images: dict[str, torch.Tensor], present: torch.Tensor, with_attention: bool):
        """Log-hazards, and when asked the upsampled rollout maps of each modality's images."""
        count = present.shape[0]
        vectors, attention = [], {}
        for index, name in enumerate(self.modalities):
            k = self.modality_images[name]
            cases = present[:, index].nonzero().flatten()
            vector = self.missing[index].expand(count, -1)
            if len(cases):
                flat = self._modality_images(images, name, cases)
                encoded = self.encoders[name](flat, return_attention=with_attention)
                if with_attention:
                    encoded, attentions = encoded
                    size = tuple(flat.shape[2:])
                    maps = upsample_attention(attention_rollout(attentions, self.encoders[name].grid_shape), size)
                    attention[name] = maps.new_zeros(count, k, *size).index_copy(
                        0, cases, maps.reshape(len(cases), k, *size))
                vector = vector.index_copy(0, cases, self.projections[name](encoded.reshape(len(cases), -1)))
            elif with_attention:
                size = self.encoders[name].image_size
                attention[name] = self.missing.new_zeros(count, k, size, size)
            vectors.append(vector)
        log_hazard = self.head(torch.cat(vectors, dim=1)).squeeze(-1)
        return log_hazard, attention

    def forward(self, images: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """(N,) log-hazards; in training mode after modality drop-out (see :meth:`draw_presence`)."""
        present = self._check_presence(present)
        if self.training and self.modality_dropout > 0:
            present = self.draw_presence(present)
        return self._score(images, present, with_attention=False)[0]

    def scores_and_attention(self, images: dict[str, torch.Tensor],
                             present: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The (N,) log-hazards of :meth:`forward` (bit for bit, in eval mode) and per modality the
        (N, k_m, H, W) attention-rollout maps in [0, 1] of its images (zeros for cases without it),
        without modality drop-out: the attention weights are computed beside the fused kernel."""
        present = self._check_presence(present)
        return self._score(images, present, with_attention=True)


class HEROVisionEnsemble(NetworkEnsemble):
    """``members`` :class:`HEROVisionNet` trained alike from different seeds (see :mod:`.ensemble`):
    the risk score is the mean of their log-hazards, the attention maps the mean of theirs. Same
    inputs and outputs as one network, so packages, prediction and evaluation take either."""

    member_class = HEROVisionNet

    def __init__(self, members: int = 3, member: dict | None = None):
        super().__init__(members, member)
        first = self.members[0]
        self.modalities, self.modality_images, self.encoder_config = (first.modalities, first.modality_images,
                                                                      first.encoder_config)

    def forward(self, images: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """(N,) mean log-hazards of the members (each in its own mode: drop-out only when training)."""
        return torch.stack([member(images, present) for member in self.members]).mean(dim=0)

    def scores_and_attention(self, images: dict[str, torch.Tensor],
                             present: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The members' mean log-hazards (as :meth:`forward`) and mean attention-rollout maps (each
        in [0, 1], so the mean is too)."""
        scored = [member.scores_and_attention(images, present) for member in self.members]
        maps = [member_maps for _, member_maps in scored]
        return (torch.stack([scores for scores, _ in scored]).mean(dim=0),
                {name: torch.stack([one[name] for one in maps]).mean(dim=0) for name in maps[0]})
