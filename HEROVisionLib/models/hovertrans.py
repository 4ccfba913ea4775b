"""A compact HoVer-Trans image encoder: one feature vector per single-channel image, plus the
attention maps that explain it.

HoVer-Trans (Mo et al., breast ultrasound; reused per modality by the HEROVision paper, Nat Commun
2025) looks at an image through three kinds of tokens cut from a convolutional feature map: square
patches, horizontal strips (one per row of the patch grid) and vertical strips (one per column).
Strips carry the long-range layout of an organ along one axis; patches carry local texture. Each
block lets rows attend to rows and columns to columns, then runs patch self-attention twice with the
strip context injected in opposite orders (row context before attention and column context after,
and the reverse) and merges the two branches with a convolution over the patch grid.

* :class:`HoVerTransEncoder` — ``(N, 1, S, S)`` images → ``(N, out_features)`` features, and on
  request the patch attention of every block.
* :func:`attention_rollout` — Abnar & Zuidema's rollout of those attentions into one patch-importance
  map per image, scaled to [0, 1]; :func:`upsample_attention` brings it to the image's size.

Every constructor argument is a JSON scalar, so an encoder is rebuilt from a model package's config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: The stem halves the image three times: a 128² image becomes a 16² feature map.
STEM_STRIDE = 8
_POSITION_STD = 0.02
_CONSTANT_TOLERANCE = 1e-6  # a rollout map whose spread is below this share of its peak is constant


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm, not BatchNorm: a case's features must not depend on the others in its batch."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class _Attention(nn.Module):
    """Multi-head self-attention through PyTorch's fused scaled-dot-product kernel, which never builds
    the weight matrices; on request the weights too, averaged over heads (for rollout), computed
    beside it — so tokens, and the scores made from them, are the same bit for bit with or without
    the maps."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, count, dim = tokens.shape
        q, k, v = self.qkv(tokens).reshape(n, count, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v, scale=self.scale,
                                               dropout_p=self.dropout.p if self.training else 0.0)
        mean_weights = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1).mean(dim=1) if need_weights else None
        return self.out(mixed.transpose(1, 2).reshape(n, count, dim)), mean_weights


class _MLP(nn.Sequential):
    def __init__(self, dim: int, mlp_ratio: float, dropout: float):
        hidden = round(dim * mlp_ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))


class HoVerBlock(nn.Module):
    """One pre-norm block: row and column strip attention, then the two patch branches (H→V and
    V→H) merged by a 1×1 convolution over the patch grid, then an MLP per token kind."""

    def __init__(self, dim: int, grid_shape: tuple[int, int], num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.grid_shape = grid_shape
        self.norm_rows, self.norm_columns = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.row_attention = _Attention(dim, num_heads, dropout)
        self.column_attention = _Attention(dim, num_heads, dropout)
        self.norm_row_context, self.norm_column_context = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.row_context = nn.Linear(dim, dim)
        self.column_context = nn.Linear(dim, dim)
        self.norm_patches = nn.LayerNorm(dim)
        self.attention_rows_first = _Attention(dim, num_heads, dropout)
        self.attention_columns_first = _Attention(dim, num_heads, dropout)
        self.merge = nn.Conv2d(2 * dim, dim, kernel_size=1)
        self.merge_dropout = nn.Dropout(dropout)
        self.norm_mlp_patches, self.norm_mlp_rows, self.norm_mlp_columns = (nn.LayerNorm(dim) for _ in range(3))
        self.mlp_patches, self.mlp_rows, self.mlp_columns = (_MLP(dim, mlp_ratio, dropout) for _ in range(3))

    def forward(self, patches: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, need_weights: bool = False):
        """Tokens (N, P, D), (N, gh, D), (N, gw, D) → the updated tokens and, with ``need_weights``,
        the patch attention (N, P, P) averaged over heads and over the two branches (else None)."""
        n, count, dim = patches.shape
        gh, gw = self.grid_shape
        rows = rows + self.row_attention(self.norm_rows(rows))[0]
        columns = columns + self.column_attention(self.norm_columns(columns))[0]

        # Patch (i, j) is token i·gw + j: on the (N, gh, gw, D) grid it gets row i's context and column j's.
        row_context = self.row_context(self.norm_row_context(rows))[:, :, None]
        column_context = self.column_context(self.norm_column_context(columns))[:, None]
        normed = self.norm_patches(patches).reshape(n, gh, gw, dim)
        rows_first = (normed + row_context).reshape(n, count, dim)
        attended, weights_rows_first = self.attention_rows_first(rows_first, need_weights)
        rows_first = (rows_first + attended).reshape(n, gh, gw, dim) + column_context
        columns_first = (normed + column_context).reshape(n, count, dim)
        attended, weights_columns_first = self.attention_columns_first(columns_first, need_weights)
        columns_first = (columns_first + attended).reshape(n, gh, gw, dim) + row_context

        # The 1×1 convolution over the patch grid is a linear map of each patch's two branches.
        branches = torch.cat([rows_first, columns_first], dim=-1).reshape(n, count, 2 * dim)
        patches = patches + self.merge_dropout(F.linear(branches, self.merge.weight.flatten(1), self.merge.bias))
        patches = patches + self.mlp_patches(self.norm_mlp_patches(patches))
        rows = rows + self.mlp_rows(self.norm_mlp_rows(rows))
        columns = columns + self.mlp_columns(self.norm_mlp_columns(columns))
        attention = 0.5 * (weights_rows_first + weights_columns_first) if need_weights else None
        return patches, rows, columns, attention


class HoVerTransEncoder(nn.Module):
    """Single-channel ``image_size``² images → ``out_features`` features (mean of the patch, row and
    column tokens, LayerNorm, linear); ``return_attention=True`` adds each block's patch attention."""

    def __init__(self, image_size: int = 128, stem_channels: int = 32, patch_grid: int = 8, embed_dim: int = 64,
                 depth: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0, out_features: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        feature_size, remainder = divmod(image_size, STEM_STRIDE)
        if remainder or feature_size % patch_grid:
            raise ValueError(f"image_size {image_size} must be a multiple of {STEM_STRIDE}·patch_grid "
                             f"({STEM_STRIDE * patch_grid})")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self._config = {"image_size": image_size, "stem_channels": stem_channels, "patch_grid": patch_grid,
                        "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio,
                        "out_features": out_features, "dropout": dropout}
        self.image_size = image_size
        self.grid_shape = (patch_grid, patch_grid)
        self.patch_size = feature_size // patch_grid

        channels = (1, stem_channels // 2, stem_channels, stem_channels)
        self.stem = nn.Sequential(*(layer for c_in, c_out in zip(channels, channels[1:]) for layer in (
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), _group_norm(c_out), nn.GELU())))

        strip_features = stem_channels * self.patch_size * feature_size
        self.patch_embedding = nn.Linear(stem_channels * self.patch_size ** 2, embed_dim)
        self.row_embedding = nn.Linear(strip_features, embed_dim)
        self.column_embedding = nn.Linear(strip_features, embed_dim)
        self.patch_position = nn.Parameter(torch.zeros(1, patch_grid ** 2, embed_dim))
        self.row_position = nn.Parameter(torch.zeros(1, patch_grid, embed_dim))
        self.column_position = nn.Parameter(torch.zeros(1, patch_grid, embed_dim))
        for position in (self.patch_position, self.row_position, self.column_position):
            nn.init.trunc_normal_(position, std=_POSITION_STD)
        self.token_dropout = nn.Dropout(dropout)

        self.blocks = nn.ModuleList(HoVerBlock(embed_dim, self.grid_shape, num_heads, mlp_ratio, dropout)
                                    for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(3 * embed_dim), nn.Linear(3 * embed_dim, out_features))

    @property
    def config(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return dict(self._config)

    def _tokens(self, feature_map: torch.Tensor):
        """(N, C, s, s) features → patch (N, P, C·p²), row (N, gh, C·p·s) and column (N, gw, C·s·p) inputs."""
        n, channels, size, _ = feature_map.shape
        p, (gh, gw) = self.patch_size, self.grid_shape
        patches = F.unfold(feature_map, kernel_size=p, stride=p).transpose(1, 2)
        rows = feature_map.reshape(n, channels, gh, p, size).permute(0, 2, 1, 3, 4).reshape(n, gh, -1)
        columns = feature_map.reshape(n, channels, size, gw, p).permute(0, 3, 1, 2, 4).reshape(n, gw, -1)
        return patches, rows, columns

    def forward(self, images: torch.Tensor, return_attention: bool = False):
        """(N, 1, S, S) → (N, out_features); with ``return_attention`` also a list, one per block, of
        (N, P, P) patch attentions."""
        if images.ndim != 4 or images.shape[1:] != (1, self.image_size, self.image_size):
            raise ValueError(f"expected images of shape (N, 1, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        patch_inputs, row_inputs, column_inputs = self._tokens(self.stem(images))
        patches = self.token_dropout(self.patch_embedding(patch_inputs) + self.patch_position)
        rows = self.token_dropout(self.row_embedding(row_inputs) + self.row_position)
        columns = self.token_dropout(self.column_embedding(column_inputs) + self.column_position)
        attentions = []
        for block in self.blocks:
            patches, rows, columns, attention = block(patches, rows, columns, need_weights=return_attention)
            attentions.append(attention)
        features = self.head(torch.cat([patches.mean(dim=1), rows.mean(dim=1), columns.mean(dim=1)], dim=-1))
        return (features, attentions) if return_attention else features


def attention_rollout(attentions: list[torch.Tensor], grid_shape: tuple[int, int]) -> torch.Tensor:
    """Abnar & Zuidema's rollout: how much each patch feeds the last block's tokens, through the
    residual paths too. Per block A' = ½A + ½I with rows renormalised; the product A'_L···A'_1 is
    averaged over its query rows. Returns (N, gh, gw) maps, each min-max scaled to [0, 1] (a constant
    map, where no patch stands out, is all 0)."""
    if not attentions:
        raise ValueError("attention rollout needs the attention of at least one block")
    rolled = None
    for attention in attentions:
        identity = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
        mixed = 0.5 * attention + 0.5 * identity
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rolled = mixed if rolled is None else mixed @ rolled
    importance = rolled.mean(dim=1)
    low, high = importance.amin(dim=1, keepdim=True), importance.amax(dim=1, keepdim=True)
    span = high - low
    # Rounding noise on a constant map must not be stretched to [0, 1].
    constant = span <= _CONSTANT_TOLERANCE * high.abs()
    scaled = (importance - low) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, torch.zeros_like(scaled), scaled).reshape(-1, *grid_shape)


def upsample_attention(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(N, gh, gw) patch maps → (N, H, W) image maps by bilinear interpolation, which keeps [0, 1]."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
