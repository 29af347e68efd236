"""Mamba-1 sequence core (selective SSM, as in mamba_ssm's mamba_simple.py), in pure PyTorch.

    x -> [Linear to width] -> n_layers x (r = r + Mixer(RMSNorm(r))) -> RMSNorm -> y          (B, T, width)
    Mixer: in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> selective SSM (+ D x); * SiLU(z) -> out_proj
    SSM, per channel d and state n:  h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t,   y_t = C_t · h_t + D x_t

State, per layer i: "conv_i" (B, d_conv - 1, d_inner) the last pre-conv inputs, oldest first, and "ssm_i"
(B, d_inner, d_state).

Parallel mode: ``selective_scan`` (selective_scan.py), over segments of at most ``chunk`` steps.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import SequenceCore, State, prenorm_residual_stack
from .causal_conv import causal_conv, causal_conv_step
from .selective_scan import LOG2_E, selective_scan


@dataclasses.dataclass
class MambaConfig:
    width: int = 256  # d_model
    n_layers: int = 2  # Mamba blocks in the stack
    d_state: int = 16  # SSM state size N per channel
    expand: int = 2  # d_inner = expand * width
    d_conv: int = 4  # width of the causal depthwise convolution
    dt_rank: int | None = None  # None -> ceil(width / 16)
    dt_min: float = 1e-3  # smallest initial time step
    dt_max: float = 1e-1  # largest initial time step
    dt_init_floor: float = 1e-4  # floor of the initial time steps
    # "zeros" | "learned" (a parameter `initial_ssm`; the conv window always restarts at 0)
    initial: Literal["zeros", "learned"] = "zeros"
    # time steps per segment of the parallel scan; None: chosen from the sizes (selective_scan.auto_chunk: 4-16 on
    # the CPU, where 4-step segments measured 1.5x faster than 16 at B=16, d_inner 512; 16 on a GPU)
    chunk: int | None = None
    norm_eps: float = 1e-5  # epsilon of the RMS norms
    use_cuda_kernels: bool = False  # mamba_ssm's selective_scan_fn on CUDA where it applies (UNTESTED on GPU)

    def __post_init__(self) -> None:
        for name in ("width", "n_layers", "d_state", "expand"):
            _check_int(name, getattr(self, name), 1)
        if self.chunk is not None:
            _check_int("chunk", self.chunk, 1)
        _check_int("d_conv", self.d_conv, 2)
        if self.dt_rank is not None:
            _check_int("dt_rank", self.dt_rank, 1)
        if not 0 < self.dt_min <= self.dt_max:
            raise UserError(f"mamba: need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        if not self.dt_init_floor > 0:
            raise UserError(f"mamba: dt_init_floor must be > 0, got {self.dt_init_floor}")
        if self.initial not in ("zeros", "learned"):
            raise UserError(f"mamba: initial must be 'zeros' or 'learned', got {self.initial!r}")
        if not self.norm_eps > 0:
            raise UserError(f"mamba: norm_eps must be > 0, got {self.norm_eps}")
        if not isinstance(self.use_cuda_kernels, bool):
            raise UserError(f"mamba: use_cuda_kernels must be a bool, got {self.use_cuda_kernels!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"mamba: {name} must be an int >= {minimum}, got {value!r}")


# ---- model ----------------------------------------------------------------------------------------------------------
class MambaMixer(nn.Module):
    """One Mamba-1 mixer. Parallel: (B, T, width) -> (B, T, width); step: (B, width) -> (B, width)."""

    def __init__(self, cfg: MambaConfig, dt_rank: int, scan_fn: Callable | None) -> None:
        super().__init__()
        d_inner, n = cfg.expand * cfg.width, cfg.d_state
        self.d_state, self.dt_rank, self.chunk, self.scan_fn = n, dt_rank, cfg.chunk, scan_fn
        self.in_proj = nn.Linear(cfg.width, 2 * d_inner, bias=False)
        self.conv = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner)  # weight (d_inner, 1, d_conv)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        self.out_proj = nn.Linear(d_inner, cfg.width, bias=False)
        # S4D-real: A_n = -n; D = 1.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        with torch.no_grad():
            nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
            log_dt = torch.empty(d_inner).uniform_(math.log(cfg.dt_min), math.log(cfg.dt_max))
            dt = log_dt.exp().clamp(min=cfg.dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus: softplus(bias) = dt
            nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
            self.out_proj.weight /= math.sqrt(cfg.n_layers)

    def _ssm_inputs(self, xc: torch.Tensor):
        dt, Bm, Cm = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], -1)
        return F.softplus(self.dt_proj(dt)), Bm, Cm, -torch.exp(self.A_log)

    def forward(self, u, reset, hidden, window_mask, conv_state, h_in, h0):
        """u: (B, T, width); reset: (B, T) bool or None; hidden: index tensors (rows, steps, taps) of the conv taps
        that would read an input from before a reset, or None; window_mask: (B, d_conv-1, 1), 0 where the carried
        window predates a reset, or None; conv_state: (B, d_conv-1, d_inner); h_in: (B, d_inner, d_state);
        h0: (d_inner, d_state) or None. Returns out (B, T, width), conv_state, ssm_state (B, d_inner, d_state)."""
        k = self.conv.kernel_size[0]
        # Two products on row blocks of in_proj's weight: contiguous x and z (ops on the strided halves of one
        # product measured ~5x slower), and no concatenation of their gradients.
        x, z = (F.linear(u, w) for w in self.in_proj.weight.chunk(2))
        window = torch.cat([conv_state, x], 1)  # (B, k-1+T, d_inner): carried inputs, then new ones
        weight = self.conv.weight[:, 0].T  # (k, d_inner); weight[k-1] multiplies the current input
        acc = causal_conv(window, weight, self.conv.bias)  # (B, T, d_inner)
        if hidden is not None:  # remove the taps that look across a reset: at most k-1 steps after each reset
            rows, steps, taps = hidden
            acc = acc.index_put((rows, steps), -(window[rows, steps + taps] * weight[taps]), accumulate=True)
        tail = window[:, -(k - 1) :].clone()  # (B, k-1, d_inner): the next conv state, not a view of the window
        xc = F.silu(acc)
        delta, Bm, Cm, A = self._ssm_inputs(xc)
        y, h = self._scan(xc, delta, A, Bm, Cm, h_in, reset, h0)
        return self.out_proj(y * F.silu(z)), tail if window_mask is None else tail * window_mask, h

    def _scan(self, xc, delta, A, Bm, Cm, h_in, reset, h0):
        # mamba_ssm's kernel has no initial state and no resets: use it only when the state entering t=0 is zero
        # and nothing resets after t=0; otherwise (and on CPU) fall back to the torch path. UNTESTED on GPU.
        if self.scan_fn is not None and xc.is_cuda and (reset is None or not bool(reset[:, 1:].any())):
            h_enter = h_in if reset is None else torch.where(reset[:, 0, None, None], 0.0 if h0 is None else h0, h_in)
            if not bool(h_enter.any()):
                y, h = self.scan_fn(xc.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                                    Bm.transpose(1, 2).contiguous(), Cm.transpose(1, 2).contiguous(),
                                    self.D.float(), return_last_state=True)  # fmt: skip
                return y.transpose(1, 2), h
        return selective_scan(xc, delta, A, Bm, Cm, self.D, h_in, reset, h0, self.chunk)

    def step(self, u, conv_state, h):
        """u: (B, width); conv_state: (B, d_conv-1, d_inner); h: (B, d_inner, d_state)."""
        x, z = self.in_proj(u).chunk(2, -1)
        window = torch.cat([conv_state, x[:, None]], 1)  # (B, d_conv, d_inner): the carried inputs, then this one
        xc = F.silu(causal_conv_step(window, self.conv.weight[:, 0].T, self.conv.bias))
        delta, Bm, Cm, A = self._ssm_inputs(xc)
        decay = torch.exp2(delta.unsqueeze(-1) * (A * LOG2_E))  # exp(Δ A); measured 2.7x faster than torch.exp
        h = torch.addcmul((delta * xc).unsqueeze(-1) * Bm.unsqueeze(1), decay, h)
        # C · h as one fused reduction: a batch of (D, N) @ (N, 1) products measured 2x slower
        y = (torch.linalg.vecdot(h, Cm.unsqueeze(1)) + xc * self.D) * F.silu(z)
        return self.out_proj(y), window[:, 1:], h


class MambaCore(SequenceCore):
    """Mamba-1 stack: optional input projection, pre-norm residual mixers, final RMSNorm; output_dim = width."""

    name = "mamba"
    Config = MambaConfig

    def __init__(self, input_dim: int, config: MambaConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else MambaConfig()
        self.config = cfg
        self.input_dim, self.output_dim = input_dim, cfg.width
        self.d_inner = cfg.expand * cfg.width
        self.state_features_dim = cfg.n_layers * self.d_inner * cfg.d_state
        scan_fn = _load_cuda_scan() if cfg.use_cuda_kernels else None
        dt_rank = cfg.dt_rank if cfg.dt_rank is not None else math.ceil(cfg.width / 16)
        self.input_proj = nn.Linear(input_dim, cfg.width) if input_dim != cfg.width else nn.Identity()
        if isinstance(self.input_proj, nn.Linear):
            nn.init.zeros_(self.input_proj.bias)
        self.norms = nn.ModuleList(nn.RMSNorm(cfg.width, eps=cfg.norm_eps) for _ in range(cfg.n_layers))
        self.mixers = nn.ModuleList(MambaMixer(cfg, dt_rank, scan_fn) for _ in range(cfg.n_layers))
        self.norm_f = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        if cfg.initial == "learned":
            self.initial_ssm = nn.Parameter(torch.zeros(cfg.n_layers, self.d_inner, cfg.d_state))

    def initial(self, batch_size: int) -> State:
        cfg, p, state = self.config, self.norm_f.weight, {}
        for i in range(cfg.n_layers):
            state[f"conv_{i}"] = p.new_zeros(batch_size, cfg.d_conv - 1, self.d_inner)
            h0 = self._h0(i)
            state[f"ssm_{i}"] = h0.expand(batch_size, *h0.shape) if h0 is not None else \
                p.new_zeros(batch_size, self.d_inner, cfg.d_state)
        return state

    def _h0(self, layer: int) -> torch.Tensor | None:
        return self.initial_ssm[layer] if self.config.initial == "learned" else None

    def _forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        k = self.config.d_conv
        hidden = window_mask = None
        if bool(reset.any()):
            # A conv output at t reads inputs t-k+1..t; those before the latest reset <= t must read as zero.
            count = F.pad(torch.cumsum(reset, 1), (k - 1, 0))  # (B, k-1+T) resets so far; zeros before t=0
            windows = count.unfold(1, k, 1)  # (B, T, k): the counts at the inputs each output reads
            hidden = (windows != windows[..., -1:]).nonzero(as_tuple=True)
            window_mask = (count[:, -(k - 1) :] == count[:, -1:]).to(x.dtype).unsqueeze(-1)
        else:
            reset = None
        return self._layers(x, lambda i, mixer, u: mixer(
            u, reset, hidden, window_mask, state[f"conv_{i}"], state[f"ssm_{i}"], self._h0(i)))

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self._layers(x, lambda i, mixer, u: mixer.step(u, state[f"conv_{i}"], state[f"ssm_{i}"]))

    def _layers(self, x: torch.Tensor, run: Callable) -> tuple[torch.Tensor, State]:
        return prenorm_residual_stack(x, self.input_proj, self.norms, self.mixers, self.norm_f, run)

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state[f"ssm_{i}"].flatten(1) for i in range(self.config.n_layers)], 1)


def _load_cuda_scan() -> Callable:
    try:
        module = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except Exception as err:  # ImportError, or a CUDA extension that fails to load
        raise ValueError(
            "mamba: use_cuda_kernels=True needs the CUDA kernels of mamba-ssm (pip install mamba-ssm); "
            f"importing mamba_ssm failed: {err}"
        ) from err
    return module.selective_scan_fn
