"""The DreamerV3 block GRU: the sequential (non-parallelisable) baseline core.

The hidden state h (width) is split into ``blocks`` groups. Group g sees the whole input x and only its own slice
h_g of the hidden state, through its own linear map (a block-diagonal weight, no bias), followed by a LayerNorm
over the group's 3 * width / blocks units:

    z_g = LayerNorm(W_g [x, h_g])              # (3 * width / blocks,) split into r, c, u
    r = sigmoid(r);  c = tanh(r * c);  u = sigmoid(u - 1)
    h_g' = u * c + (1 - u) * h_g

The "-1" biases the update gate towards keeping the old state (DreamerV3). Grouping cuts the recurrent weights by
a factor ``blocks`` compared with a dense GRU of the same width.

Parallel mode cannot avoid a loop over T (h_t depends non-linearly on h_{t-1}); it only hoists the input half of
the block linear out of the loop as one matmul over all T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import SequenceCore, State


@dataclass
class GRUConfig:
    width: int = 256  # hidden size, also the output size
    blocks: int = 8  # number of groups; width must be divisible by blocks
    initial: Literal["learned", "zeros"] = "learned"  # "learned": h0 = tanh(parameter) | "zeros"
    norm_eps: float = 1e-3  # epsilon of the layer norms

    def __post_init__(self) -> None:
        if self.width <= 0 or self.blocks <= 0 or self.width % self.blocks:
            raise UserError(f"gru: width ({self.width}) must be a positive multiple of blocks ({self.blocks})")
        if self.initial not in ("learned", "zeros"):
            raise UserError(f"gru: initial must be 'learned' or 'zeros', got {self.initial!r}")


class GRUCore(SequenceCore):
    name = "gru"
    Config = GRUConfig
    # Float32 under autocast: its T sequential (B x width) matmuls are too small for bfloat16 to pay off (measured
    # 1.1-1.4x slower at widths 128-4096, B=16, docs/RESULTS.md "Mixed precision")
    autocast_ok = False

    def __init__(self, input_dim: int, config: GRUConfig | None = None) -> None:
        super().__init__()
        config = config or GRUConfig()
        self.config = config
        self.input_dim = input_dim
        self.output_dim = self.state_features_dim = config.width
        groups, group_width = config.blocks, config.width // config.blocks
        self.group_width = group_width

        # weight[g] maps concat(x, h_g) (input_dim + group_width) to the group's 3 * group_width gate units.
        bound = 1.0 / math.sqrt(input_dim + group_width)
        weight = torch.empty(groups, input_dim + group_width, 3 * group_width).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)
        self.norm_weight = nn.Parameter(torch.ones(groups, 3 * group_width))
        self.norm_bias = nn.Parameter(torch.zeros(groups, 3 * group_width))
        if config.initial == "learned":
            self.initial_hidden = nn.Parameter(torch.zeros(config.width))

    # ---- pieces ---------------------------------------------------------------------------------------------------
    def _input_part(self, x: torch.Tensor) -> torch.Tensor:
        """The x half of every group's linear map, for any leading shape. x: (..., input_dim) ->
        (..., blocks, 3 * group_width)."""
        w_x = self.weight[:, : self.input_dim]  # (G, I, 3g)
        out = x @ w_x.transpose(0, 1).reshape(self.input_dim, -1)  # one matmul for all groups (and all T)
        return out.unflatten(-1, (self.config.blocks, 3 * self.group_width))

    def _cell(self, x_part: torch.Tensor, h: torch.Tensor, w_h: torch.Tensor) -> torch.Tensor:
        """One GRU update, groups first so that the block linear is one batched matmul.
        x_part: (G, B, 3g) from ``_input_part``; h: (G, B, g); w_h: (G, g, 3g). Returns the new h: (G, B, g)."""
        z = torch.baddbmm(x_part, h, w_h)
        z = F.layer_norm(z, (z.shape[-1],), eps=self.config.norm_eps)
        z = z * self.norm_weight[:, None] + self.norm_bias[:, None]  # per-unit affine, (G, 1, 3g)
        r, c, u = z.chunk(3, dim=-1)  # split inside each group, as DreamerV3 does
        r = torch.sigmoid(r)
        c = torch.tanh(r * c)
        u = torch.sigmoid(u - 1.0)
        return torch.lerp(h, c, u)  # u * c + (1 - u) * h

    def _to_groups(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, width) -> (G, B, g)."""
        return hidden.reshape(hidden.shape[0], self.config.blocks, self.group_width).transpose(0, 1)

    def _initial_hidden(self, batch_size: int) -> torch.Tensor:
        """(batch_size, width)."""
        if self.config.initial == "learned":
            return torch.tanh(self.initial_hidden).expand(batch_size, -1)
        p = self.weight
        return torch.zeros(batch_size, self.config.width, dtype=p.dtype, device=p.device)

    # ---- interface ------------------------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        return {"hidden": self._initial_hidden(batch_size)}

    def _forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x: (B, T, input_dim), reset: (B, T) bool -> y: (B, T, width), {"hidden": (B, width)}."""
        batch, length = x.shape[:2]
        # Time first, then groups: each step reads one contiguous slice. unbind, not x_part[t]: the backward of T
        # slices would build T full-size gradients (O(T^2) memory).
        x_parts = self._input_part(x).permute(1, 2, 0, 3).contiguous().unbind(0)  # T x (G, B, 3g)
        resets = reset.T[:, None, :, None].unbind(0)  # T x (1, B, 1)
        any_reset = reset.any(0).tolist()  # skip the select (and its backward) on steps without a reset
        w_h = self.weight[:, self.input_dim :]
        h0 = self._to_groups(self._initial_hidden(batch))
        h = self._to_groups(state["hidden"])
        ys = []
        for x_t, reset_t, any_t in zip(x_parts, resets, any_reset):
            h = self._cell(x_t, torch.where(reset_t, h0, h) if any_t else h, w_h)
            ys.append(h)
        if not ys:
            return x.new_zeros(batch, 0, self.output_dim), state
        y = torch.stack(ys, 0).permute(2, 0, 1, 3).reshape(batch, length, self.output_dim)  # (B, T, width)
        return y, {"hidden": y[:, -1]}

    def _forward_states(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, _ = self._forward(x, reset, state)
        return y, {"hidden": y}  # the output is the hidden state

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x: (B, input_dim) -> y: (B, width), {"hidden": (B, width)}."""
        w_h = self.weight[:, self.input_dim :]
        h = self._cell(self._input_part(x).transpose(0, 1), self._to_groups(state["hidden"]), w_h)
        h = h.transpose(0, 1).reshape(x.shape[0], -1)
        return h, {"hidden": h}

    def features(self, state: State) -> torch.Tensor:
        return state["hidden"]
