"""Distributions used by world models and actor-critics, in DreamerV3's conventions.

- symlog / symexp: compress large magnitudes so one network handles rewards of any scale;
- TwoHot: a categorical over 255 bins evenly spaced in symlog space [-20, 20], trained with two-hot targets;
- CategoricalLatent: 32 categoricals of 32 classes with 1% uniform mix and straight-through samples;
- Bernoulli: the continue flag;
- BoundedNormal: continuous actions, tanh mean and a std squashed into [min_std, max_std].
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class _SmallSoftmax(torch.autograd.Function):
    """softmax over a last dimension narrower than one AVX-512 vector, from elementwise ops and reductions: PyTorch's
    CPU softmax kernel runs 4-13x slower there (16384 x 4 x 8 latents: 27 ms vs 3 ms forward, measured in
    docs/RESULTS.md "Small softmaxes"), the latents (4 x 8 or 16 x 16 classes) and policies (a few actions) of this
    library's small sizes. Backward: dx = y * (g - sum(g * y))."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        e = (x - x.amax(-1, keepdim=True)).exp_()
        y = e.div_(e.sum(-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(-1, keepdim=True))


def softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension; on the CPU, a last dimension < 16 takes the elementwise route above."""
    if x.shape[-1] < 16 and x.device.type == "cpu":
        return _SmallSoftmax.apply(x)
    return x.softmax(-1)


def full_precision(logits: torch.Tensor) -> torch.Tensor:
    """Distributions compute in float32 at least: under autocast (agent.precision=bfloat16) their inputs come from
    bfloat16 layers, whose 8-bit mantissa would round softmaxes, log-probabilities and KLs."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def unimix_probs(logits: torch.Tensor, unimix: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs, log-probs) of softmax(logits) mixed with the uniform distribution, (1 - unimix) p + unimix / K, over
    the last dimension (in float32 at least). Without a mix they come from log_softmax: a saturated softmax rounds
    small probabilities to 0, whose log (-inf) would turn 0 * log 0 in entropies and KLs into NaN."""
    x = full_precision(logits)
    if unimix > 0:
        probs = (1 - unimix) * softmax(x) + unimix / x.shape[-1]
        return probs, probs.log()
    log_probs = x.log_softmax(-1)
    return log_probs.exp(), log_probs


def onehot(index: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(...) int64 -> (...) x n one-hot in ``dtype`` (scatter: no int64 one-hot and cast, a hot path on CPU)."""
    out = torch.zeros(*index.shape, n, dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def sample_index(probs: torch.Tensor) -> torch.Tensor:
    """One categorical draw per row of probs (..., n) -> (...) int64, by inverting the CDF (several times faster
    than torch.multinomial for the small class counts used here)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1] + (1,), dtype=probs.dtype, device=probs.device) * cdf[..., -1:]
    return (cdf <= u).sum(-1).clamp(max=probs.shape[-1] - 1)


class TwoHot:
    """Categorical over ``bins`` (symlog space). logits: (..., n_bins). Values are in the original space."""

    def __init__(self, logits: torch.Tensor, low: float = -20.0, high: float = 20.0):
        logits = full_precision(logits)
        self.logits = logits
        self.bins = torch.linspace(low, high, logits.shape[-1], device=logits.device, dtype=logits.dtype)

    @property
    def mean(self) -> torch.Tensor:
        """(...): symexp of the expected bin (elementwise and summed: a matmul would run in bfloat16 under autocast)."""
        return symexp((self.logits.softmax(-1) * self.bins).sum(-1))

    @functools.cached_property
    def log_softmax(self) -> torch.Tensor:
        """(..., n_bins), computed once: the critic's two targets (returns, slow critic) share it."""
        return self.logits.log_softmax(-1)

    def _neighbours(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(...) -> (index of the bin at or below symlog(value), weight of the bin above it), both (...)."""
        y = symlog(value.detach()).to(self.bins.dtype).clamp(self.bins[0], self.bins[-1])
        below = (torch.bucketize(y, self.bins, right=True) - 1).clamp(0, self.bins.shape[0] - 2)
        low, high = self.bins[below], self.bins[below + 1]
        return below, ((y - low) / (high - low)).clamp(0, 1)

    def target(self, value: torch.Tensor) -> torch.Tensor:
        """Two-hot encoding of symlog(value): weight split between the two nearest bins. (...) -> (..., n_bins)."""
        below, w_high = self._neighbours(value)
        target = torch.zeros(*below.shape, self.bins.shape[0], dtype=self.logits.dtype, device=below.device)
        target.scatter_(-1, below.unsqueeze(-1), (1 - w_high).unsqueeze(-1))
        return target.scatter_add_(-1, (below + 1).unsqueeze(-1), w_high.unsqueeze(-1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """(...): sum over bins of two-hot target * log softmax (the negative cross-entropy), read off the two bins
        the target weights instead of a dense (..., n_bins) product (equal to ``(target(value) * log_softmax).sum(-1)``,
        tested)."""
        below, w_high = self._neighbours(value)
        log_softmax = self.log_softmax.expand(*below.shape, self.bins.shape[0])  # broadcast as the dense product
        pair = log_softmax.gather(-1, torch.stack([below, below + 1], -1))  # (..., 2)
        return pair[..., 0] * (1 - w_high) + pair[..., 1] * w_high


class CategoricalLatent:
    """``groups`` categoricals of ``classes`` each. logits: (..., groups, classes); samples are one-hot."""

    def __init__(self, logits: torch.Tensor, unimix: float = 0.01):
        self.probs, self.logits = unimix_probs(logits, unimix)  # logits: the log-probs of the mixed distribution

    def sample(self) -> torch.Tensor:
        """One-hot sample with straight-through gradients: onehot + probs - sg(probs). (..., groups, classes)."""
        probs = self.probs.detach()
        sample = onehot(sample_index(probs), probs.shape[-1], probs.dtype)
        return sample + (self.probs - probs)  # forward value exactly one-hot: x - x == 0 in floating point

    def mode(self) -> torch.Tensor:
        return onehot(self.probs.argmax(-1), self.probs.shape[-1], self.probs.dtype)

    def log_prob(self, onehot: torch.Tensor) -> torch.Tensor:
        """(...): summed over groups."""
        return (onehot * self.logits).sum((-1, -2))

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum((-1, -2))

    def kl(self, other: "CategoricalLatent") -> torch.Tensor:
        """KL(self || other), summed over groups. (...)."""
        return (self.probs * (self.logits - other.logits)).sum((-1, -2))


class Bernoulli:
    """logits: (...)."""

    def __init__(self, logits: torch.Tensor):
        self.logits = full_precision(logits)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def mode(self) -> torch.Tensor:
        return (self.logits > 0).to(self.logits.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, value.to(self.logits.dtype), reduction="none")


class BoundedNormal:
    """Independent Normal over action dims with mean tanh(m) and std in [min_std, max_std].
    mean_raw, std_raw: (..., A)."""

    def __init__(self, mean_raw: torch.Tensor, std_raw: torch.Tensor, min_std: float = 0.1, max_std: float = 1.0):
        self.mean = torch.tanh(full_precision(mean_raw))
        self.std = (max_std - min_std) * torch.sigmoid(full_precision(std_raw) + 2.0) + min_std

    def sample(self) -> torch.Tensor:
        """Reparameterised sample (gradients flow to mean and std). (..., A)."""
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample_in_bounds(self) -> torch.Tensor:
        """A sample clamped to [-1, 1] (the env's range) with the gradient of the unclamped sample: a plain clamp
        would zero the gradient of every sample past a bound, i.e. of most samples once the mean saturates. (..., A)."""
        action = self.sample()
        return action + (action.clamp(-1, 1) - action).detach()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p(value), summed over action dims. Values at the bounds +-1 are what ``sample_in_bounds`` returns for
        every sample past them, so they get the Normal's tail mass there (a censored Normal): the density instead
        would bias REINFORCE towards the bounds."""
        z = (value - self.mean) / self.std
        density = -0.5 * z.square() - self.std.log() - 0.5 * math.log(2 * math.pi)
        upper = torch.special.log_ndtr((self.mean - 1) / self.std)  # log P(sample >= 1)
        lower = torch.special.log_ndtr((-1 - self.mean) / self.std)  # log P(sample <= -1)
        return torch.where(value >= 1, upper, torch.where(value <= -1, lower, density)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.std.log()).sum(-1)
