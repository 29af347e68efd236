"""A causal pre-norm transformer: the O(T^2) baseline core (as in transformer world models such as TWM / STORM).

    h = Linear(x);  for each layer: h = h + Attn(LN(h));  h = h + MLP(LN(h));  y = LN(h)

Positions enter through rotary embeddings (RoPE) counted from the episode start, so there is no learned position
table and any length works. A query attends a key only if the key is valid, in the same episode, not in the future
and, when ``window`` is set, fewer than ``window`` tokens back (itself included).

The recurrent state is a KV cache: per layer the (post-RoPE) keys and values of past tokens, one slot per token in
time order, with a validity flag per slot. A reset invalidates every slot instead of shrinking the cache, so all
rows of a batch keep the same number of slots; slots invalid in every row are dropped from the front (so an acting
cache does not grow across episodes), and with ``window`` set only the last ``window`` slots are kept, in both
modes, so parallel and step states match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import SequenceCore, State, where_rows


@dataclass
class AttentionConfig:
    width: int = 256  # model width (also the output size)
    n_layers: int = 2  # transformer blocks
    n_heads: int = 4  # attention heads
    mlp_ratio: int = 4  # MLP hidden size = mlp_ratio * width
    window: int | None = None  # attend to the last `window` tokens (itself included); None = unlimited
    norm_eps: float = 1e-5  # epsilon of the layer norms
    rope_base: float = 10000.0  # base of the rotary position embedding

    def __post_init__(self) -> None:
        if self.width <= 0 or self.n_heads <= 0 or self.width % self.n_heads:
            raise UserError(f"attention: width ({self.width}) must be a positive multiple of n_heads")
        if (self.width // self.n_heads) % 2:
            raise UserError(f"attention: head size width / n_heads must be even for RoPE, got {self.width}")
        if self.window is not None and self.window < 1:
            raise UserError(f"attention: window must be None or >= 1, got {self.window}")
        if self.n_layers < 1 or self.mlp_ratio < 1:
            raise UserError("attention: n_layers and mlp_ratio must be >= 1")


def rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding (rotate-half form). x: (B, T, H, D) with D even; pos: (B, T) integer positions."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, dtype=x.dtype, device=x.device) / half)  # (D/2,)
    angle = (pos.to(x.dtype)[..., None] * inv_freq).unsqueeze(-2)  # (B, T, 1, D/2)
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)). The attention runs over cached keys/values followed by the new ones."""

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        width = config.width
        self.n_heads, self.rope_base = config.n_heads, config.rope_base
        self.ln_attn = nn.LayerNorm(width, eps=config.norm_eps)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln_mlp = nn.LayerNorm(width, eps=config.norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(width, config.mlp_ratio * width), nn.GELU(), nn.Linear(config.mlp_ratio * width, width)
        )

    def forward(
        self,
        h: torch.Tensor,
        pos: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h: (B, T, W); pos: (B, T) positions of the new tokens; k_cache, v_cache: (B, S0, H, Dh);
        mask: (B, 1, T, S0 + T), bool (True = may attend) or additive float (0 / -inf); None = plain causal,
        only when S0 == 0.
        Returns h: (B, T, W) and all keys, values: (B, S0 + T, H, Dh)."""
        batch, length, width = h.shape
        q, k, v = self.qkv(self.ln_attn(h)).view(batch, length, 3, self.n_heads, -1).unbind(2)
        keys = torch.cat([k_cache, rope(k, pos, self.rope_base)], 1)
        values = torch.cat([v_cache, v], 1)
        att = F.scaled_dot_product_attention(
            rope(q, pos, self.rope_base).transpose(1, 2),
            keys.transpose(1, 2),
            values.transpose(1, 2),
            attn_mask=mask,
            is_causal=mask is None,
        )  # (B, H, T, Dh)
        h = h + self.out(att.transpose(1, 2).reshape(batch, length, width))
        h = h + self.mlp(self.ln_mlp(h))
        return h, keys, values


class AttentionCore(SequenceCore):
    name = "attention"
    Config = AttentionConfig

    def __init__(self, input_dim: int, config: AttentionConfig | None = None) -> None:
        super().__init__()
        config = config or AttentionConfig()
        self.config = config
        self.input_dim = input_dim
        self.output_dim = config.width
        self.state_features_dim = config.n_layers * config.width
        self.head_dim = config.width // config.n_heads
        self.in_proj = nn.Linear(input_dim, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(config.width, eps=config.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 style: small normal weights, residual projections scaled down with depth.
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = 0.02 / (2 * self.config.n_layers) ** 0.5 if name.endswith(("out", "mlp.2")) else 0.02
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)

    # ---- interface ------------------------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """An empty cache: k, v (B, n_layers, 0, n_heads, head_dim), valid (B, 0), pos (B,) = 0, last 0."""
        c, p = self.config, self.in_proj.weight
        empty = p.new_zeros(batch_size, c.n_layers, 0, c.n_heads, self.head_dim)
        return {
            "k": empty,
            "v": empty.clone(),
            "valid": torch.zeros(batch_size, 0, dtype=torch.bool, device=p.device),
            "pos": torch.zeros(batch_size, dtype=torch.long, device=p.device),
            "last": p.new_zeros(batch_size, c.n_layers, c.width),
        }

    def reset(self, state: State, mask: torch.Tensor) -> State:
        """Rows where mask (B,) is True forget their cache (slots invalid, shapes unchanged) and restart at pos 0."""
        return {
            "k": state["k"],
            "v": state["v"],
            "valid": state["valid"] & ~mask[:, None],
            "pos": torch.where(mask, 0, state["pos"]),
            "last": where_rows(mask, torch.zeros_like(state["last"]), state["last"]),
        }

    def _forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x: (B, T, input_dim), reset: (B, T) -> y: (B, T, width) and the state with S0 + T slots (at most
        ``window``)."""
        batch, length = x.shape[:2]
        if length == 0:
            return x.new_zeros(batch, 0, self.output_dim), state
        k0, v0, valid0 = state["k"], state["v"], state["valid"]
        cached = k0.shape[2]
        t = torch.arange(length, device=x.device)

        # Episode bookkeeping: segment id = number of resets so far (the cache is segment 0); positions restart at 0.
        seg = reset.long().cumsum(1)  # (B, T)
        last_reset = torch.where(reset, t, -1).cummax(1).values  # (B, T), -1 before the first reset
        pos = torch.where(last_reset >= 0, t - last_reset, state["pos"][:, None] + t)  # (B, T)

        # Key slots: cached ones at times -S0..-1, then the new tokens at 0..T-1.
        key_time = torch.arange(-cached, length, device=x.device)  # (S0 + T,)
        key_seg = torch.cat([seg.new_zeros(batch, cached), seg], 1)  # (B, S0 + T)
        key_ok = torch.cat([valid0, torch.ones_like(reset)], 1)  # (B, S0 + T)
        window = self.config.window
        plain_causal = cached == 0 and not bool(reset[:, 1:].any()) and (window is None or window >= length)
        if plain_causal:
            mask = None  # only the new tokens, one segment, nothing cut by the window: let SDPA skip the future
        else:
            dist = t[:, None] - key_time[None, :]  # (T, S0 + T) how far back each key is
            in_range = (dist >= 0) & (dist < window if window is not None else True)
            same_seg = key_seg[:, None, :] == seg[:, :, None]  # (B, T, S0 + T)
            allowed = (in_range & same_seg & key_ok[:, None, :]).unsqueeze(1)  # (B, 1, T, S0 + T)
            # As an additive float mask built once: SDPA would otherwise convert (and save) a copy in every layer.
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))

        h = self.in_proj(x)
        keys, values, lasts = [], [], []
        for i, block in enumerate(self.blocks):
            lasts.append(h[:, -1])
            h, k, v = block(h, pos, k0[:, i], v0[:, i], mask)
            keys.append(k)
            values.append(v)

        # A reset anywhere in the row invalidates every slot before it, as the step loop would.
        valid = key_ok & (key_seg == seg[:, -1:])
        begin = max(0, valid.shape[1] - window) if window is not None else 0
        keep = slice(begin + _first_used(valid[:, begin:]), None)
        new_state = {
            "k": torch.stack(keys, 1)[:, :, keep],
            "v": torch.stack(values, 1)[:, :, keep],
            "valid": valid[:, keep],
            "pos": pos[:, -1] + 1,
            "last": torch.stack(lasts, 1),
        }
        return self.ln_final(h), new_state

    def _forward_states(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError(
            "attention: per-step states would be KV caches of every length; start imagination from a re-encoded real"
            " context instead (Drama's approach: agent.imagination.starts=replay or batch)")

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x: (B, input_dim) -> y: (B, width) and the state with one more slot (at most ``window``)."""
        batch, cached, window = x.shape[0], state["k"].shape[2], self.config.window
        # Append the new slot and drop what falls out of the window: every remaining valid slot may be attended.
        drop = max(0, cached + 1 - window) if window is not None else 0
        drop += _first_used(state["valid"][:, drop:])
        valid = torch.cat([state["valid"][:, drop:], state["valid"].new_ones(batch, 1)], 1)  # (B, S)
        mask = valid[:, None, None, :]  # (B, 1, 1, S)
        pos = state["pos"][:, None]  # (B, 1)
        h = self.in_proj(x)[:, None]  # (B, 1, W)
        keys, values, lasts = [], [], []
        for i, block in enumerate(self.blocks):
            lasts.append(h[:, 0])
            h, k, v = block(h, pos, state["k"][:, i, drop:], state["v"][:, i, drop:], mask)
            keys.append(k)
            values.append(v)
        new_state = {
            "k": torch.stack(keys, 1),
            "v": torch.stack(values, 1),
            "valid": valid,
            "pos": state["pos"] + 1,
            "last": torch.stack(lasts, 1),
        }
        return self.ln_final(h[:, 0]), new_state

    def features(self, state: State) -> torch.Tensor:
        """The input of every layer at the last token, flattened: (B, n_layers * width)."""
        return state["last"].flatten(1)


def _first_used(valid: torch.Tensor) -> int:
    """The first slot of ``valid`` (B, S) that some row may still attend (S if none): earlier ones can be dropped."""
    used = torch.cat([valid.any(0), valid.new_ones(1)])
    return int(used.int().argmax())
