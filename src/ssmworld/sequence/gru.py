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

import torch
import torch.nn.functional as F
from torch import nn

from .base import SequenceCore, State


@dataclass
class GRUConfig:
    width: int = 256  # hidden size, also the output size
    blocks: int = 8  # number of groups; width must be divisible by blocks
    initial: str = "learned"  # "learned": h0 = tanh(parameter) | "zeros"
    norm_eps: float = 1e-3


class GRUCore(SequenceCore):
    name = "gru"
    Config = GRUConfig

    def __init__(self, input_dim: int, config: GRUConfig | None = None) -> None:
        super().__init__()
        config = config or GRUConfig()
        if config.width <= 0 or config.blocks <= 0 or config.width % config.blocks:
            raise ValueError(f"gru: width ({config.width}) must be a positive multiple of blocks ({config.blocks})")
        if config.initial not in ("learned", "zeros"):
            raise ValueError(f"gru: initial must be 'learned' or 'zeros', got {config.initial!r}")
        self.config = config
        self.input_dim = input_dim
        self.output_dim = self.state_features_dim = config.width
        groups, group_width = config.blocks, config.width // config.blocks
        self.group_width = group_width

        # weight[g] maps concat(x, h_g) (input_dim + group_width) to the group's 3 * group_width gate units.
        bound = 1.0 / math.sqrt(input_dim + group_width)
        self.weight = nn.Parameter(torch.empty(groups, input_dim + group_width, 3 * group_width).uniform_(-bound, bound))
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

    def _cell(self, x_part: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """One GRU update. x_part: (B, G, 3g) from ``_input_part``; hidden: (B, width). Returns (B, width)."""
        batch = hidden.shape[0]
        h = hidden.reshape(batch, self.config.blocks, self.group_width)  # (B, G, g)
        w_h = self.weight[:, self.input_dim :]  # (G, g, 3g)
        z = x_part + torch.einsum("bgi,gio->bgo", h, w_h)
        z = F.layer_norm(z, (z.shape[-1],), eps=self.config.norm_eps) * self.norm_weight + self.norm_bias
        r, c, u = z.chunk(3, dim=-1)  # split inside each group, as DreamerV3 does
        r = torch.sigmoid(r)
        c = torch.tanh(r * c)
        u = torch.sigmoid(u - 1.0)
        return (u * c + (1.0 - u) * h).reshape(batch, -1)

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
        x_part = self._input_part(x)  # (B, T, G, 3g)
        h0 = self._initial_hidden(batch)
        h = state["hidden"]
        reset = reset.unsqueeze(-1)  # (B, T, 1)
        ys = []
        for t in range(length):
            h = self._cell(x_part[:, t], torch.where(reset[:, t], h0, h))
            ys.append(h)
        y = torch.stack(ys, 1) if ys else x.new_zeros(batch, 0, self.output_dim)
        return y, {"hidden": h}

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x: (B, input_dim) -> y: (B, width), {"hidden": (B, width)}."""
        h = self._cell(self._input_part(x), state["hidden"])
        return h, {"hidden": h}

    def features(self, state: State) -> torch.Tensor:
        return state["hidden"]
