"""S5: the R2I sequence model (docs/REFERENCE.md r2i.md §1), a stack of complex diagonal state-space layers.

Each layer (post-norm, as in R2I):
    y = S5(u);  v = GELU(y);  v = Dense(v) * sigmoid(Dense'(v));  out = LayerNorm(u + v)
and after the last layer an output projection Linear + SiLU gives h_t (R2I's "deter").

The S5 layer with P complex states per layer:
    x_t = Lambda_bar * x_{t-1} + B_bar u_t,      y_t = Re(C x_t) + D * u_t
initialised from block-diagonal HiPPO-LegS (8 blocks), with one learned log-step per state. Complex parameters are
stored as separate real and imaginary tensors. Training runs all T steps at once through the parallel scan
(scan.py); a reset at t sets the decay entering t to 0 and injects the initial state, which is exact for a learned
initial state and any number of resets.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import SequenceCore, State
from .scan import linear_scan


@dataclass
class S5Config:
    width: int = 256  # H, the layer width
    state_size: int = 64  # P, complex states per layer
    n_layers: int = 4  # S5 layers in the stack
    output_dim: int | None = None  # R2I "deter" (None: = width)
    n_blocks: int = 8  # HiPPO blocks on the diagonal (R2I: 16 states each; smaller blocks start with slower rotations)
    discretization: Literal["bilinear", "zoh"] = "bilinear"  # "bilinear" | "zoh"
    initial: Literal["learned", "zeros"] = "learned"  # "learned" | "zeros"
    dt_min: float = 1e-3  # smallest initial time step (log-uniform init of the discretisation step)
    dt_max: float = 1e-1  # largest initial time step
    chunk: int = 64  # chunk of the parallel scan
    norm_eps: float = 1e-6  # epsilon of the layer norms

    def __post_init__(self) -> None:
        if self.discretization not in ("bilinear", "zoh"):
            raise UserError(f"s5: discretization must be 'bilinear' or 'zoh', got {self.discretization!r}")
        if self.initial not in ("learned", "zeros"):
            raise UserError(f"s5: initial must be 'learned' or 'zeros', got {self.initial!r}")
        if self.state_size % self.n_blocks:
            raise UserError(f"s5: state_size ({self.state_size}) must be divisible by n_blocks ({self.n_blocks})")
        if not 0 < self.dt_min <= self.dt_max:
            raise UserError(f"s5: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")


def hippo_legs_normal(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the normal part of HiPPO-LegS of size n.

    Returns (Lambda (n,) complex128, V (n, n) complex128) with S = V diag(Lambda) V^H, S = A + p p^T.
    S = -1/2 I + K with K skew-symmetric, so Lambda = -1/2 + i * eig(-i K) and V is unitary."""
    q = torch.sqrt(1 + 2 * torch.arange(n, dtype=torch.float64))
    a = -(torch.tril(q[:, None] * q[None, :]) - torch.diag(torch.arange(n, dtype=torch.float64)))
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    s = a + p[:, None] * p[None, :]
    diag = torch.diagonal(s)
    skew = s - torch.diag(diag)
    lambda_imag, v = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    return torch.complex(diag.mean().expand(n), lambda_imag), v


def _trunc_normal(shape: tuple[int, ...], std: float) -> torch.Tensor:
    """A normal of std ``std`` cut at 2 stds: its values have std 0.8796 * ``std``. R2I's lecun_normal divides by
    0.8796 first (values of std ``std``); kept 12% narrower here, see docs/REFERENCE.md r2i.md §1."""
    return nn.init.trunc_normal_(torch.empty(shape, dtype=torch.float64), std=std, a=-2 * std, b=2 * std)


class S5Layer(nn.Module):
    """One S5 block: SSM -> GELU -> gated dense -> LayerNorm(u + v). Width H, P complex states."""

    def __init__(self, width: int, cfg: S5Config):
        super().__init__()
        P, H = cfg.state_size, width
        block = P // cfg.n_blocks
        lam, v_block = hippo_legs_normal(block)
        lam = lam.repeat(cfg.n_blocks)
        v = torch.block_diag(*[v_block] * cfg.n_blocks)  # (P, P) unitary; used only at init
        b = _trunc_normal((P, H), std=1 / math.sqrt(P)).to(torch.complex128)
        c = torch.complex(_trunc_normal((H, P), 1 / math.sqrt(H * P)), _trunc_normal((H, P), 1 / math.sqrt(H * P)))
        b_tilde = v.conj().T @ b  # (P, H)
        c_tilde = c @ v  # (H, P)
        self.discretization = cfg.discretization
        self.chunk = cfg.chunk
        self.lambda_re = nn.Parameter(lam.real.float())
        self.lambda_im = nn.Parameter(lam.imag.float())
        self.b_re = nn.Parameter(b_tilde.real.float())
        self.b_im = nn.Parameter(b_tilde.imag.float())
        self.c_re = nn.Parameter(c_tilde.real.float())
        self.c_im = nn.Parameter(c_tilde.imag.float())
        self.d = nn.Parameter(torch.randn(H))
        log_lo, log_hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        self.log_step = nn.Parameter(torch.rand(P) * (log_hi - log_lo) + log_lo)
        self.gate_value = nn.Linear(H, H)
        self.gate_sigmoid = nn.Linear(H, H)
        self.norm = nn.LayerNorm(H, eps=cfg.norm_eps)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (Lambda_bar (P,), B_bar (P, H)), complex."""
        lam = torch.complex(self.lambda_re, self.lambda_im)
        step = self.log_step.exp()
        b = torch.complex(self.b_re, self.b_im)
        if self.discretization == "bilinear":
            denom = 1 - step * lam / 2
            return (1 + step * lam / 2) / denom, (step / denom)[:, None] * b
        lam_bar = torch.exp(lam * step)  # zero-order hold
        return lam_bar, ((lam_bar - 1) / lam)[:, None] * b

    def weights(self) -> LayerWeights:
        """What every step computes from the parameters alone (once per parallel call, or once per rollout)."""
        lam_bar, b_bar = self.discretize()
        return LayerWeights(
            lam_bar=lam_bar,
            lam_pairs=torch.view_as_real(lam_bar),  # (P, 2): a view; ``step_real`` reads it (no complex op inside)
            # B_bar as a (2P, H) real matrix, rows re_0, im_0, re_1, ...: B_bar u is one real matmul whose (..., P, 2)
            # result is viewed as complex without a copy
            w_in=torch.view_as_real(b_bar).transpose(1, 2).reshape(-1, b_bar.shape[1]),
            # [C_re, -C_im] interleaved, (H, 2P): Re(C x) is one matmul over x's real view (no copy of x)
            w_out=torch.stack([self.c_re, -self.c_im], -1).flatten(1),
            # Dense and Dense' of the gate stacked, (2H, H): one matmul and one fused GLU instead of two Linears, a
            # sigmoid and a mul (the two Linears stay the parameters: checkpoints and init are unchanged)
            w_gate=torch.cat([self.gate_value.weight, self.gate_sigmoid.weight]),
            b_gate=torch.cat([self.gate_value.bias, self.gate_sigmoid.bias]))

    def _input(self, u: torch.Tensor, w: LayerWeights) -> torch.Tensor:
        """B_bar u for real u (..., H) -> complex (..., P). Under autocast the matmul runs in bfloat16 and its result is
        cast back: the state and the scan stay complex64."""
        return torch.view_as_complex(self._input_pairs(u, w))

    def _input_pairs(self, u: torch.Tensor, w: LayerWeights) -> torch.Tensor:
        """B_bar u as (re, im) pairs (..., P, 2): the rows of w_in are re_0, im_0, re_1, ..."""
        return (u @ w.w_in.T).to(w.w_in.dtype).unflatten(-1, (-1, 2))

    def _output(self, u: torch.Tensor, x: torch.Tensor, w: LayerWeights) -> torch.Tensor:
        """y = Re(C x) + D u, then the gated dense block and the post-norm residual. u (..., H), x (..., P) complex, or
        its (re, im) pairs (..., P, 2) as ``step_real`` keeps them."""
        pairs = torch.view_as_real(x) if x.is_complex() else x
        y = pairs.flatten(-2) @ w.w_out.T + self.d * u
        v = F.glu(F.linear(F.gelu(y, approximate="tanh"), w.w_gate, w.b_gate), -1)
        return self.norm(u + v)

    def forward(
        self, u: torch.Tensor, reset: torch.Tensor, x0: torch.Tensor, x_init: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (B, T, H); reset: (B, T) bool; x0: (B, P) complex, the state entering t=0; x_init: (B, P) complex,
        the state a reset restores. Returns (out (B, T, H), states x (B, T, P) complex)."""
        w = self.weights()
        bu = self._input(u, w)
        keep = ~reset[..., None]  # (B, T, 1)
        a = torch.where(keep, w.lam_bar, torch.zeros_like(w.lam_bar))  # decay 0 where the state is replaced
        b = torch.where(keep, bu, bu + w.lam_bar * x_init[:, None])
        x = linear_scan(a, b, x0, self.chunk)
        return self._output(u, x, w), x

    def step(self, u: torch.Tensor, x: torch.Tensor,
             w: LayerWeights | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (B, H); x: (B, P) complex; w: this layer's ``weights()`` if the caller keeps them. Returns (out (B, H),
        new x)."""
        w = w or self.weights()
        x = w.lam_bar * x + self._input(u, w)
        return self._output(u, x, w), x

    def step_real(self, u: torch.Tensor, x: torch.Tensor, w: LayerWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` without complex tensors, for compiled graphs (TorchInductor generates no code for complex ones):
        x (B, P, 2) the state's (re, im) pairs, the complex product written out. Returns (out (B, H), x (B, P, 2))."""
        lam, bu = w.lam_pairs, self._input_pairs(u, w)
        re = lam[:, 0] * x[..., 0] - lam[:, 1] * x[..., 1] + bu[..., 0]
        im = lam[:, 0] * x[..., 1] + lam[:, 1] * x[..., 0] + bu[..., 1]
        x = torch.stack([re, im], -1)
        return self._output(u, x, w), x


class LayerWeights(NamedTuple):
    lam_bar: torch.Tensor  # (P,) complex
    lam_pairs: torch.Tensor  # (P, 2) its (re, im), the same memory
    w_in: torch.Tensor  # (2P, H)
    w_out: torch.Tensor  # (H, 2P)
    w_gate: torch.Tensor  # (2H, H)
    b_gate: torch.Tensor  # (2H,)


class S5Core(SequenceCore):
    """R2I's stack of S5 layers. State: {"ssm": (B, n_layers, P, 2)} (real and imaginary parts)."""

    name = "s5"
    Config = S5Config
    autocast_ok = True  # bfloat16 matmuls; B_bar u, the scan and the states stay float32 / complex64

    def __init__(self, input_dim: int, cfg: S5Config):
        super().__init__()
        self.cfg = cfg
        self.input_dim = input_dim
        self.output_dim = cfg.output_dim or cfg.width
        self.state_features_dim = 2 * cfg.n_layers * cfg.state_size
        self.input_proj = nn.Linear(input_dim, cfg.width) if input_dim != cfg.width else nn.Identity()
        self.layers = nn.ModuleList(S5Layer(cfg.width, cfg) for _ in range(cfg.n_layers))
        self.output_proj = nn.Linear(cfg.width, self.output_dim)
        shape = (cfg.n_layers, cfg.state_size, 2)
        self._rollout_weights: list[LayerWeights] | None = None  # set inside ``rollout()``
        self._rollout_real = False  # inside ``rollout(compiled=True)``
        if cfg.initial == "learned":
            self.initial_ssm = nn.Parameter(torch.zeros(shape))
        else:
            self.register_buffer("initial_ssm", torch.zeros(shape), persistent=False)

    def initial(self, batch_size: int) -> State:
        return {"ssm": self.initial_ssm.expand(batch_size, *self.initial_ssm.shape)}

    def features(self, state: State) -> torch.Tensor:
        return state["ssm"].flatten(1)

    def _run(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Parallel mode: y (B, T, output_dim) and each layer's states (B, T, P) complex."""
        u = self.input_proj(x)
        x0 = torch.view_as_complex(state["ssm"].contiguous())  # (B, L, P)
        init = torch.view_as_complex(self.initial(x.shape[0])["ssm"].contiguous())
        per_layer = []
        for i, layer in enumerate(self.layers):
            u, xs = layer(u, reset, x0[:, i], init[:, i])
            per_layer.append(xs)
        return F.silu(self.output_proj(u)), per_layer

    def _forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, per_layer = self._run(x, reset, state)
        return y, {"ssm": torch.view_as_real(torch.stack([xs[:, -1] for xs in per_layer], 1))}

    def _forward_states(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The scan yields every step's state anyway: {"ssm": (B, T, n_layers, P, 2)}."""
        y, per_layer = self._run(x, reset, state)
        return y, {"ssm": torch.view_as_real(torch.stack(per_layer, 2))}

    @contextmanager
    def rollout(self, compiled: bool = False) -> Iterator[None]:
        """Each layer's ``weights()`` (discretisation and stacked matrices) computed once for all steps inside;
        ``compiled``: the steps inside use ``S5Layer.step_real`` (real arithmetic, for a torch.compile graph)."""
        self._rollout_weights = [layer.weights() for layer in self.layers]
        self._rollout_real = compiled
        try:
            yield
        finally:
            self._rollout_weights, self._rollout_real = None, False

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self.input_proj(x)
        real = self._rollout_real  # inside a torch.compile graph: real arithmetic only (``S5Layer.step_real``)
        ssm = state["ssm"] if real else torch.view_as_complex(state["ssm"].contiguous())
        weights = self._rollout_weights or [None] * len(self.layers)
        new = []
        for i, (layer, w) in enumerate(zip(self.layers, weights)):
            u, xi = layer.step_real(u, ssm[:, i], w) if real else layer.step(u, ssm[:, i], w)
            new.append(xi)
        stacked = torch.stack(new, 1)
        return F.silu(self.output_proj(u)), {"ssm": stacked if real else torch.view_as_real(stacked)}
