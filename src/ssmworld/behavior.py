"""Actor-critic learning in imagination (DreamerV3 / R2I): lambda returns and return normalisation.

The ActorCritic module itself arrives with the agent; these pieces are used by it and tested on their own.
"""

from __future__ import annotations

import torch
from torch import nn


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """TD(lambda) returns of an imagined trajectory s_0 .. s_H, bootstrapped on V(s_{t+1}).

    reward, cont: (H, ...), the reward and continue flag of the transition s_t -> s_{t+1};
    value: (H + 1, ...), V(s_0) .. V(s_H).
    Returns R: (H, ...) with R_{H-1} = r + gamma c V(s_H) and
    R_t = r_t + gamma c_t ((1 - lam) V(s_{t+1}) + lam R_{t+1}).
    """
    horizon = reward.shape[0]
    if cont.shape != reward.shape or value.shape != (horizon + 1, *reward.shape[1:]):
        raise ValueError(f"lambda_returns: reward and cont must be (H, ...) and value (H+1, ...); got "
                         f"{tuple(reward.shape)}, {tuple(cont.shape)}, {tuple(value.shape)}")
    out, last = [], value[-1]
    for t in reversed(range(horizon)):
        last = reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


class ReturnNormalizer(nn.Module):
    """Scale = max(1, EMA(P_high) - EMA(P_low)) of the returns; statistics are buffers, so checkpoints keep them."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95, limit: float = 1.0):
        super().__init__()
        self.decay, self.low, self.high, self.limit = decay, low, high, limit
        self.register_buffer("ema_low", torch.zeros(()))
        self.register_buffer("ema_high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Update the EMAs with a batch of returns (any shape) and return the new scale."""
        flat = returns.detach().flatten().float()
        quantiles = torch.quantile(flat, torch.tensor([self.low, self.high], device=flat.device))
        self.ema_low.mul_(self.decay).add_((1 - self.decay) * quantiles[0])
        self.ema_high.mul_(self.decay).add_((1 - self.decay) * quantiles[1])
        return self.scale()

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.ema_high - self.ema_low, min=self.limit)
