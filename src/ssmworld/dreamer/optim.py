"""LaProp (Ziyin et al. 2020), the optimiser option of Drama: Adam with the normalisation applied before momentum.

    v_t = b2 v_{t-1} + (1 - b2) g_t^2                   (second moment, bias-corrected: v_hat = v_t / (1 - b2^t))
    m_t = b1 m_{t-1} + (1 - b1) g_t / (sqrt(v_hat) + eps)
    theta -= lr * m_t / (1 - b1^t)                      (after theta *= 1 - lr * weight_decay: decoupled, as AdamW)

Adam divides the momentum by the current second moment; LaProp keeps a momentum of already-normalised gradients,
which decouples the two betas (b1 can be large without instability).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import UserError


class LaProp(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 4e-4, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-15, weight_decay: float = 0.0):
        if lr <= 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise UserError(f"LaProp: need lr > 0, eps >= 0, weight_decay >= 0, 0 <= betas < 1; got {lr}, {eps}, "
                            f"{weight_decay}, {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None if closure is None else closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (state["exp_avg_sq"] / (1 - b2 ** t)).sqrt_().add_(group["eps"])
                state["exp_avg"].mul_(b1).add_(p.grad / denom, alpha=1 - b1)
                p.add_(state["exp_avg"], alpha=-group["lr"] / (1 - b1 ** t))
        return loss
