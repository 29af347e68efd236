"""Shared test helpers."""

import torch


def step_loop(core, x, reset, state):
    """Run ``core.step`` over x (B, T, D), resetting where reset (B, T) is True. Returns (y (B, T, out), state)."""
    ys = []
    for t in range(x.shape[1]):
        y, state = core.step(x[:, t], state, reset=reset[:, t])
        ys.append(y)
    return torch.stack(ys, 1), state
