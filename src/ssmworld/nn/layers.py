"""Dense building blocks: DreamerV3-style MLPs (Linear without bias + LayerNorm + SiLU)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


def dense_block(in_dim: int, out_dim: int, norm_eps: float = 1e-3, norm: str = "layer",
                bias: bool = False) -> nn.Sequential:
    """Linear -> norm -> SiLU. (..., in_dim) -> (..., out_dim).
    DreamerV3: norm="layer" and no bias (the norm has one); Drama: norm="rms" (weight only) after a biased Linear."""
    if norm not in ("layer", "rms"):
        raise UserError(f"dense block: norm must be 'layer' or 'rms', got {norm!r}")
    normalize = nn.LayerNorm(out_dim, eps=norm_eps) if norm == "layer" else nn.RMSNorm(out_dim, eps=norm_eps)
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=bias), normalize, nn.SiLU())


class PaddedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same values) whose product runs, on a CPU, with its output rows padded to a
    multiple of 16, then sliced back: at a width such as the 255 two-hot bins of the reward and critic heads, the
    CPU's sgemm took ~1.6x as long as at 256 (B=3840 rows of 128 inputs; forward and backward with the softmax after
    it: 1.3x). Widths under 64 or already a multiple of 16 run as ``nn.Linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = -self.out_features % 16
        if not pad or self.out_features < 64 or x.device.type != "cpu":
            return super().forward(x)
        bias = None if self.bias is None else F.pad(self.bias, (0, pad))
        return F.linear(x, F.pad(self.weight, (0, 0, 0, pad)), bias)[..., : self.out_features].contiguous()


class MLP(nn.Module):
    """``layers`` dense blocks of ``units``, then an optional output Linear to ``out_dim``.

    ``zero_output`` initialises the output layer to zero (DreamerV3 reward and critic heads: predictions start at 0
    instead of at a random value the critic then has to unlearn)."""

    def __init__(self, in_dim: int, units: int, layers: int, out_dim: int | None = None, zero_output: bool = False,
                 norm_eps: float = 1e-3, norm: str = "layer", bias: bool = False):
        super().__init__()
        blocks, dim = [], in_dim
        for _ in range(layers):
            blocks.append(dense_block(dim, units, norm_eps, norm, bias))
            dim = units
        self.trunk = nn.Sequential(*blocks)
        self.output_dim = dim if out_dim is None else out_dim
        self.head = PaddedLinear(dim, out_dim) if out_dim is not None else nn.Identity()
        if zero_output and out_dim is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x):
        """x: (..., in_dim) -> (..., output_dim)."""
        return self.head(self.trunk(x))


class RunningNorm(nn.Module):
    """(x - mean) / sqrt(var + eps), clipped to [-clip, clip], with the mean and variance of every input ``update``
    was given (batch moments combined as Chan et al.'s parallel variance). Buffers: checkpoints keep them and
    data-parallel ranks pool them (the mean of the means; the mean of the variances plus the means' spread). Drama
    normalises its actor's inputs so (its VecNormalize, whose statistics its checkpoints lost: drama.md D4).
    x: (..., dim)."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))  # a prior of N(0, 1), almost no weight

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        n, mean, var = x.shape[0], x.mean(0), x.var(0, unbiased=False)
        count = self.count.float()
        total = count + n
        delta = mean - self.mean
        self.var.copy_((self.var * count + var * n + delta.square() * count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.add_(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


@contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[nn.Module]:
    """``module``'s parameters do not require gradients inside the block (restored after). A graph built inside it
    still carries gradients through the module's activations, to whatever fed them, but computes no weight
    gradients for it: the actor's return gradient through the imagined dynamics (backward matmuls for the world
    model's inputs only, not its weights, which the actor-critic step must not train anyway)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block, its own mode restored after (batch-norm layers then use and keep
    their running statistics: acting, episode contexts, imagination starts that must not move them)."""
    training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(training)
