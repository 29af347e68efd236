"""Imagination: where it starts, and its one config group (``agent.imagination.*``).

The actor-critic learns from trajectories the world model imagines from N start states (behavior.py). The three
ways to choose the starts:

    posterior  the core state after every step of the world-model pass over the batch (R2I, DreamerV3): N = B*T, or
               a random subset of ``count``; free, the training pass computed them (``observe(all_states=True)``)
    batch      Drama: for ``count`` random steps t of the batch, the core runs from its initial state over the
               ``context`` real steps ending at t (re-encoded with the updated model); works for every core,
               including attention, whose per-step states are not materialised
    replay     Drama with its own draws: the same over ``count`` windows of ``context`` steps sampled from replay
               apart from the batch (with train.sampler=dfs, Drama's m_i rule, replay.py); the trainer samples them

A start is (h, z, core state, start_cont), all detached: the actor does not train the world model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from ..errors import UserError
from ..sequence import State
from .world_model import WorldModel


@dataclass
class ImaginationConfig:
    horizon: int = 15  # imagined steps per start state
    # posterior (every posterior state of the batch: R2I) | batch (Drama: a context of real steps from the batch) |
    # replay (Drama: contexts drawn from replay; with train.sampler=dfs, DFS's m_i rule)
    starts: Literal["posterior", "batch", "replay"] = "posterior"
    context: int = 8  # real steps re-encoded before each start (starts=batch | replay)
    count: int | None = None  # starts per update (None: B*T, every posterior state, as R2I)

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.context < 1 or (self.count is not None and self.count < 1):
            raise UserError(f"agent.imagination: horizon, context and count must be >= 1, got {self.horizon}, "
                            f"{self.context}, {self.count}")

    def number(self, batch_size: int, sequence_length: int) -> int:
        """How many starts an update imagines from."""
        return self.count or batch_size * sequence_length


class Starts(NamedTuple):
    h: torch.Tensor  # (N, H) core output
    z: torch.Tensor  # (N, G*C) latent
    state: State  # core state with batch N
    cont: torch.Tensor  # (N,) 1 - is_terminal at the start (a terminal start imagines nothing that counts)


def choose_starts(wm: WorldModel, cfg: ImaginationConfig, batch: dict[str, Any], observed: dict[str, Any] | None,
                  contexts: dict[str, Any] | None = None) -> Starts:
    """The imagination starts of one update. ``observed``: the world model's pass over ``batch`` (with every
    per-step state for starts=posterior; unused for starts=replay); ``contexts``: the replayed (N, C) windows for
    starts=replay."""
    B, T = batch["is_first"].shape
    n = cfg.number(B, T)
    if cfg.starts == "posterior":
        h, z = observed["h"].detach().flatten(0, 1), observed["z"].detach().flatten(0, 1)
        state = {k: v.detach().flatten(0, 1) for k, v in observed["state"].items()}
        cont = 1.0 - batch["is_terminal"].float().flatten()
        if n < h.shape[0]:
            pick = torch.randperm(h.shape[0], device=h.device)[:n]
            h, z, cont, state = h[pick], z[pick], cont[pick], {k: v[pick] for k, v in state.items()}
        return Starts(h, z, state, cont)
    if cfg.starts == "replay":
        if contexts is None:
            raise ValueError("imagination starts=replay: the update needs replayed context windows")
        return Starts(*wm.context_windows(contexts))
    return Starts(*wm.context_starts(observed["z"].detach(), batch, cfg.context, n))
