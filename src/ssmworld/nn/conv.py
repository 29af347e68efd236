"""Image encoder and decoder for 64x64-style pixel observations, in two published styles.

``dreamerv3`` (DreamerV3 / R2I, docs/REFERENCE.md r2i.md §1): pixels x/255 - 0.5; log2(H/4) convs k4 s2 p1 without
bias, each followed by a channel-wise LayerNorm (eps 1e-3) and SiLU, channels depth * [1, 2, 4, 8, ...]; H -> 4 px, flattened (4*4*C_last).
The decoder mirrors it with transposed convs; its loss is the squared error summed over pixels.

``drama`` (Drama, docs/REFERENCE.md drama.md §1/§2): pixels x/255 in [0, 1]; 5 convs k5 p2 with bias, strides
1,2,2,2,2, channels 16 * [1, 2, 3, 4, 4], each -> BatchNorm2d -> SiLU; 64 -> 4 px, flattened 64*4*4 = 1024. The decoder is Linear -> 64x4x4
-> BN -> SiLU, 4 transposed convs (k5 s2 p2, output_padding 1) 64->64->48->32->16 with BN+SiLU, a last transposed conv
16->C (k5 s1 p2) and a sigmoid; loss = sum over C, H, W of (x_hat - x)^2 in [0, 1] (no symlog).

Images are channels-last (..., H, W, C) as stored in replay, uint8 or float on the 0..255 scale; any number of leading
batch dims. Weights use both papers' init: truncated normal, std sqrt(1/fan_avg)/0.8796, clipped at 2 sigma, zero bias.

BatchNorm (``norm="batch"``, Drama's default) makes the modules depend on train/eval mode: in ``train()`` each forward
normalises with the statistics of the current batch (all images and pixels of it) and updates running mean/variance;
in ``eval()`` it uses the running statistics. Those are buffers (``running_mean``, ``running_var``,
``num_batches_tracked``), so they are saved in ``state_dict`` and a checkpoint must carry them; acting with a model left
in train mode normalises single frames with their own statistics. ``norm="layer"`` has none of this (same parameter
count: 2 per channel).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError

STYLES = ("dreamerv3", "drama")
NORMS = ("layer", "batch")
_DRAMA_MULTS = (1, 2, 3, 4, 4)  # Drama channels = base * mults; base 16 in the paper
_DRAMA_STRIDES = (1, 2, 2, 2, 2)
_MIN_RES = 4  # both styles stop at 4x4 pixels


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel (DreamerV3's norm in conv nets). (N, C, H, W) -> (N, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _settings(shape: tuple[int, int, int], style: str, depth: int | None, norm: str | None) -> tuple[int, int, str]:
    """Validate (shape, style, norm); returns (number of convs, base depth, norm)."""
    if style not in STYLES:
        raise UserError(f"style must be one of {STYLES}, got {style!r}")
    if norm is None:
        norm = "batch" if style == "drama" else "layer"
    if norm not in NORMS:
        raise UserError(f"norm must be one of {NORMS}, got {norm!r}")
    if len(shape) != 3 or any(int(s) != s or s <= 0 for s in shape):
        raise UserError(f"shape must be (H, W, C) of positive ints, got {shape!r}")
    h, w, _ = shape
    if style == "drama":
        if (h, w) != (64, 64):
            raise UserError(f"style 'drama' expects images (..., 64, 64, C), got shape {tuple(shape)}")
        stages = len(_DRAMA_MULTS)
    else:
        stages = round(math.log2(max(h, 1) / _MIN_RES))
        if h != w or stages < 1 or h != _MIN_RES * 2**stages:
            raise UserError(f"style 'dreamerv3' expects square images (..., H, H, C) with H = 4 * 2^k (8, 16, 32, "
                             f"64, ...), got shape {tuple(shape)}")
    depth = depth if depth is not None else (16 if style == "drama" else 32)
    if depth < 1:
        raise UserError(f"depth must be a positive int, got {depth}")
    return stages, depth, norm


def _channels(style: str, depth: int, stages: int) -> list[int]:
    """Encoder channels per conv; the decoder uses them in reverse."""
    if style == "drama":
        return [depth * m for m in _DRAMA_MULTS]
    return [depth * 2**i for i in range(stages)]


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else ChannelLayerNorm(channels, eps=1e-3)


def init_fan_avg_(module: nn.Module) -> None:
    """Truncated-normal init of every Linear/conv weight (std sqrt(1/fan_avg)/0.8796, cut at 2 std), zero biases.

    0.8796 is the std of a unit normal truncated at +-2, so the weights end with std sqrt(1/fan_avg)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def normalise_image(x: torch.Tensor, style: str) -> torch.Tensor:
    """uint8 or float pixels on the 0..255 scale -> float in the style's space (dreamerv3: x/255-0.5, drama: x/255)."""
    x = x.float() / 255.0
    return x - 0.5 if style == "dreamerv3" else x


def _check_images(x: torch.Tensor, shape: tuple[int, int, int]) -> None:
    if x.dim() < 3 or tuple(x.shape[-3:]) != tuple(shape):
        raise ValueError(f"expected images (..., {shape[0]}, {shape[1]}, {shape[2]}) channels-last, "
                         f"got {tuple(x.shape)}")


class ImageEncoder(nn.Module):
    """(..., H, W, C) uint8/float pixels (0..255) -> (..., output_dim) flat features.

    shape: (H, W, C) of one image. depth: base channels (default 32 for dreamerv3, 16 for drama). norm: "layer" or
    "batch" (default: dreamerv3 "layer", drama "batch"; see the module docstring for what BatchNorm implies)."""

    def __init__(self, shape: tuple[int, int, int], style: str = "dreamerv3", depth: int | None = None,
                 norm: str | None = None):
        super().__init__()
        stages, depth, norm = _settings(tuple(shape), style, depth, norm)
        self.shape, self.style, self.norm = tuple(int(s) for s in shape), style, norm
        chans = _channels(style, depth, stages)
        layers: list[nn.Module] = []
        in_ch = self.shape[2]
        for i, out_ch in enumerate(chans):
            if style == "drama":  # Drama keeps the conv bias although BN follows (its parameter count includes it)
                layers.append(nn.Conv2d(in_ch, out_ch, 5, stride=_DRAMA_STRIDES[i], padding=2))
            else:  # the norm's shift makes a bias redundant
                layers.append(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False))
            layers += [_norm(norm, out_ch), nn.SiLU()]
            in_ch = out_ch
        self.net = nn.Sequential(*layers)
        self.out_channels = in_ch
        self.output_dim = in_ch * _MIN_RES * _MIN_RES
        init_fan_avg_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.shape)
        lead = x.shape[:-3]
        x = normalise_image(x, self.style).reshape(math.prod(lead), *self.shape).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, self.output_dim)  # flatten order (C, 4, 4), as both originals


class ImageDecoder(nn.Module):
    """(..., feat_dim) features -> (..., H, W, C) float image in the style's normalised space.

    dreamerv3: unbounded, targets x/255 - 0.5; drama: sigmoid output in [0, 1], targets x/255.
    ``loss(pred, target)`` gives the per-image squared error summed over H, W, C: (...)."""

    def __init__(self, feat_dim: int, shape: tuple[int, int, int], style: str = "dreamerv3",
                 depth: int | None = None, norm: str | None = None):
        super().__init__()
        stages, depth, norm = _settings(tuple(shape), style, depth, norm)
        if feat_dim < 1:
            raise UserError(f"feat_dim must be a positive int, got {feat_dim}")
        self.feat_dim, self.shape, self.style, self.norm = feat_dim, tuple(int(s) for s in shape), style, norm
        chans = _channels(style, depth, stages)[::-1]  # e.g. drama 64, 64, 48, 32, 16; dreamerv3 8d, 4d, 2d, d
        self.in_channels = chans[0]
        self.linear = nn.Linear(feat_dim, chans[0] * _MIN_RES * _MIN_RES)
        layers: list[nn.Module] = []
        if style == "drama":
            layers += [_norm(norm, chans[0]), nn.SiLU()]  # Drama normalises the Linear's output; DreamerV3 does not
            for in_ch, out_ch in zip(chans[:-1], chans[1:]):  # 4 doublings: 4 -> 64 px
                layers += [nn.ConvTranspose2d(in_ch, out_ch, 5, stride=2, padding=2, output_padding=1),
                           _norm(norm, out_ch), nn.SiLU()]
            layers += [nn.ConvTranspose2d(chans[-1], self.shape[2], 5, stride=1, padding=2), nn.Sigmoid()]
        else:
            outs = chans[1:] + [self.shape[2]]
            for i, (in_ch, out_ch) in enumerate(zip(chans, outs)):
                last = i == len(outs) - 1
                layers.append(nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=last))
                if not last:
                    layers += [_norm(norm, out_ch), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        init_fan_avg_(self)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if feat.shape[-1:] != (self.feat_dim,):
            raise ValueError(f"expected features (..., {self.feat_dim}), got {tuple(feat.shape)}")
        lead = feat.shape[:-1]
        x = self.linear(feat.reshape(math.prod(lead), self.feat_dim))
        x = self.net(x.reshape(math.prod(lead), self.in_channels, _MIN_RES, _MIN_RES))
        return x.permute(0, 2, 3, 1).reshape(*lead, *self.shape)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred (..., H, W, C) from forward, target (..., H, W, C) uint8/float pixels 0..255 -> (...) summed SE."""
        _check_images(pred, self.shape)
        _check_images(target, self.shape)
        return (pred - normalise_image(target, self.style)).square().sum((-3, -2, -1))
