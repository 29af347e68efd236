"""Mamba-2 (SSD) sequence core, as used by Drama (docs/REFERENCE.md drama.md §1), in pure PyTorch.

Per layer (prenorm residual block r <- r + Mixer(RMSNorm(r))), the mixer is

    [z | xBC | dt] = in_proj(u);  x, B, C = SiLU(causal depthwise conv(xBC));  dt = softplus(dt + dt_bias)
    h_t = exp(dt_t A) h_{t-1} + dt_t x_t (outer) B_t      (A = -exp(A_log): one scalar per head; h: (headdim, d_state))
    y_t = h_t C_t + D x_t;   out = out_proj(RMSNorm(y * SiLU(z)))

Parallel mode is the chunked SSD algorithm: inside chunks of Q steps the outputs are a masked "attention" matmul
(C_i . B_j times the decay from j to i); chunk-end states are passed between chunks with a small (chunks x chunks)
decay matrix, as in mamba_ssm's SSD; the state entering each chunk is read out by C. A reset at t (state entering t
replaced by the initial state h0) is handled by (1) masking every decay that crosses it and (2) injecting h0 at
the reset, decayed to each later step. Masks are applied to finite log-decays *before* exp, so no inf - inf or
0 * inf appears in forward or backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import SequenceCore, State, prenorm_residual_stack
from .causal_conv import causal_conv, causal_conv_step

# On CPU, parallel mode runs over time blocks whose largest temporaries hold about this many elements. glibc hands
# buffers above 32 MB back to the OS when freed, so every large temporary is page-faulted in anew: at B=16, T=4096
# that was half the run time. Blocks (a multiple of chunk_size; the state is passed exactly) avoid it.
CPU_BLOCK_ELEMENTS = 2**22


@dataclass
class Mamba2Config:
    width: int = 256  # d_model
    n_layers: int = 2  # Mamba-2 blocks in the stack
    d_state: int = 16  # SSM state size N per head
    expand: int = 2  # d_inner = expand * width
    headdim: int = 64  # channels per head (heads = d_inner / headdim)
    ngroups: int = 1  # only 1 is supported (B, C shared by all heads)
    d_conv: int = 4  # width of the causal depthwise convolution
    chunk_size: int = 64  # time steps per chunk of the SSD algorithm
    dt_min: float = 1e-3  # smallest initial time step
    dt_max: float = 1e-1  # largest initial time step
    dt_init_floor: float = 1e-4  # floor of the initial time steps
    a_init_min: float = 1.0  # smallest initial decay rate A (per head)
    a_init_max: float = 16.0  # largest initial decay rate A
    # "zeros" | "learned" (the ssm state at t=0 and after resets; conv window always zeros)
    initial: Literal["zeros", "learned"] = "zeros"
    norm_eps: float = 1e-5  # epsilon of the RMS norms
    use_cuda_kernels: bool = False  # mamba_ssm's Triton SSD on CUDA tensors (untested here: no GPU)

    def __post_init__(self) -> None:
        for name in ("width", "n_layers", "d_state", "expand", "headdim", "d_conv", "chunk_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"mamba2: {name} must be a positive int, got {getattr(self, name)!r}")
        if self.ngroups != 1:
            raise UserError(f"mamba2: only ngroups=1 is supported, got ngroups={self.ngroups}")
        if (self.expand * self.width) % self.headdim:
            raise UserError(
                f"mamba2: d_inner = expand * width = {self.expand * self.width} must be divisible by"
                f" headdim = {self.headdim}"
            )
        if not 0 < self.dt_min <= self.dt_max or self.dt_init_floor <= 0:
            raise UserError(f"mamba2: need 0 < dt_min <= dt_max and dt_init_floor > 0, got {self}")
        if not 0 < self.a_init_min <= self.a_init_max:
            raise UserError(f"mamba2: need 0 < a_init_min <= a_init_max, got {self.a_init_min}, {self.a_init_max}")
        if self.initial not in ("zeros", "learned"):
            raise UserError(f"mamba2: initial must be 'zeros' or 'learned', got {self.initial!r}")


# ---- the SSM scan: sequential reference, one step, and chunked SSD -----------------------------------------------
def ssm_step(
    h: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step. h: (b, H, P, N); x: (b, H, P); dt: (b, H); A: (H,); B, C: (b, N).
    Returns y: (b, H, P) (without the D term) and the new h."""
    decay = torch.exp(dt * A)[:, :, None, None]
    h = (decay * h).addcmul_((dt[:, :, None] * x)[..., None], B[:, None, None, :])  # 2 passes over h, not 3
    return torch.linalg.vecdot(h, C[:, None, None]), h  # C · h: one fused reduction, 2x the einsum's bmm here


def ssd_reference(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    reset: torch.Tensor, state: torch.Tensor, h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Plain sequential loop, the reference for ``ssd_chunked`` (same arguments and returns)."""
    h0 = torch.zeros_like(state[0]) if h0 is None else h0
    ys = []
    for t in range(x.shape[1]):
        state = torch.where(reset[:, t, None, None, None], h0, state)
        y, state = ssm_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t])
        ys.append(y)
    return torch.stack(ys, 1), state


def _masked_exp(log: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """exp(log) where keep, else exactly 0. Masking the (finite) argument first keeps gradients NaN-free."""
    return log.masked_fill_(~keep, float("-inf")).exp_()  # in place: ``log`` must be a fresh temporary


class _DecayedScores(torch.autograd.Function):
    """W[..., i, j] = exp(cum_i - cum_j) * S[i, j] where keep[i, j], else 0. Hand-written backward: autograd would
    make five (b, H, n, Q, Q) temporaries (masking, negation, ...) where one suffices.
    cum: (b, H, n, Q); S: (b, n, Q, Q) (shared by the heads); keep: (b, 1, n, Q, Q) bool -> W: (b, H, n, Q, Q)."""

    @staticmethod
    def forward(ctx, cum: torch.Tensor, S: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        decay = _masked_exp(cum[..., :, None] - cum[..., None, :], keep)
        ctx.save_for_backward(decay, S)
        return decay * S[:, None]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        decay, S = ctx.saved_tensors
        grad = grad * decay
        grad_S = grad.sum(1)
        grad.mul_(S[:, None])  # now dL/d(cum_i - cum_j) = dL/dW * W
        return grad.sum(-1) - grad.sum(-2), grad_S, None


def ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    reset: torch.Tensor, state: torch.Tensor, h0: torch.Tensor | None = None, chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Chunked SSD. x: (b, T, H, P); dt: (b, T, H) (after softplus); A: (H,) (negative); B, C: (b, T, N);
    reset: (b, T) bool; state: (b, H, P, N) entering t=0; h0: (H, P, N) initial state at resets (None = zeros).
    Returns y: (b, T, H, P) (without the D term) and the state after T-1: (b, H, P, N)."""
    b, length, H, P = x.shape
    N = B.shape[-1]
    Q = max(1, min(chunk_size, length))  # a sequence shorter than a chunk is one unpadded chunk (Drama's contexts)
    pad = (-length) % Q
    if pad:  # padded steps are identities: dt = 0 gives decay 1 and no input
        x, dt, B, C = (F.pad(t, (0, 0) * (t.ndim - 2) + (0, pad)) for t in (x, dt, B, C))
        reset = torch.cat([reset, reset.new_zeros(b, pad)], 1)
    n = x.shape[1] // Q
    B, C, reset = B.reshape(b, n, Q, N), C.reshape(b, n, Q, N), reset.reshape(b, n, Q)
    dt = dt.reshape(b, n, Q, H).permute(0, 3, 1, 2).contiguous()  # (b, H, n, Q)
    # dt first: the product is laid out like dt, i.e. contiguous (b, H, n, Q, P), as both matmuls below want it.
    xdt = dt[..., None] * x.reshape(b, n, Q, H, P).permute(0, 3, 1, 2, 4)

    log_a = dt * A[:, None, None]  # (b, H, n, Q) per-step log-decay, finite
    cum = log_a.cumsum(-1)  # inclusive, within the chunk
    seg = reset.cumsum(-1)  # (b, n, Q): steps i, j share a segment iff seg_i == seg_j

    # 1. Intra-chunk "attention": y_i = sum_{j <= i, same segment} exp(cum_i - cum_j) (C_i . B_j) dt_j x_j.
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    same = (seg[..., :, None] == seg[..., None, :]) & causal  # (b, n, Q, Q)
    y = _DecayedScores.apply(cum, C @ B.transpose(-1, -2), same[:, None]) @ xdt  # (b, H, n, Q, P)

    # 2. State at each chunk end from the chunk's own inputs (decays to the last step, not across resets).
    to_end = _masked_exp(cum[..., -1:] - cum, (seg == seg[..., -1:])[:, None])  # (b, H, n, Q)
    states = xdt.transpose(-1, -2) @ (B[:, None] * to_end[..., None])  # (b, H, n, P, N)

    # 3. The learned initial state enters at each reset: decay from the last reset s <= i (inclusive) to i.
    if h0 is not None:
        last = torch.where(reset, torch.arange(Q, device=x.device), -1).cummax(-1).values  # (b, n, Q), -1: none
        cum_before = (cum - log_a).gather(-1, last.clamp(min=0)[:, None].expand(b, H, n, Q))
        from_reset = _masked_exp(cum - cum_before, (last >= 0)[:, None])  # (b, H, n, Q)
        states = states + from_reset[..., -1, None, None] * h0[:, None]

    # 4. Pass states between chunks (slot 0: the incoming state, slot c+1: the end of chunk c).
    ends = _pass_between_chunks(cum[..., -1], seg[..., -1] > 0, state, states)  # (b, H, n+1, P, N)

    # 5. Read out the state entering each chunk (up to the chunk's first reset) and h0 (after it), in one matmul.
    read_c = C[:, None] * torch.where(seg[:, None] == 0, cum.exp(), 0.0)[..., None]  # (b, H, n, Q, N)
    read_h = ends[:, :, :-1].transpose(-1, -2)  # (b, H, n, N, P): the state entering each chunk
    if h0 is not None:
        read_c = torch.cat([read_c, C[:, None] * from_reset[..., None]], -1)
        read_h = torch.cat([read_h, h0.transpose(-1, -2)[:, None].expand(b, H, n, N, P)], -2)
    k = read_c.shape[-1]
    y.view(-1, Q, P).baddbmm_(read_c.reshape(-1, Q, k), read_h.reshape(-1, k, P))  # y += read_c @ read_h
    y = y.permute(0, 2, 3, 1, 4).reshape(b, n * Q, H, P)[:, :length]
    return y, ends[:, :, -1]


def _pass_between_chunks(chunk_log_decay: torch.Tensor, chunk_has_reset: torch.Tensor, state: torch.Tensor,
                         states: torch.Tensor) -> torch.Tensor:
    """S_c = a_c S_{c-1} + states_c, a_c = exp(chunk log-decay), 0 if the chunk has a reset.
    chunk_log_decay: (b, H, n); chunk_has_reset: (b, n) bool; state: (b, H, P, N) entering chunk 0; states: (b, H, n,
    P, N) each chunk's own end state. Returns (b, H, n+1, P, N): the incoming state, then the end of each chunk.
    The decay from slot j to slot i is a small (n+1, n+1) matrix per (b, head), its log-sums taken as masked cumsums
    (no cancellation of large sums)."""
    P, N = state.shape[-2:]
    g = F.pad(chunk_log_decay, (1, 0))  # (b, H, n+1)
    cr = F.pad(chunk_has_reset.long(), (1, 0)).cumsum(-1)  # (b, n+1): chunks with a reset so far
    keep = (cr[..., :, None] == cr[..., None, :]).tril()
    span = g[..., :, None].expand(*g.shape, g.shape[-1]).tril(-1).cumsum(-2)  # [i, j] = sum of g over (j, i]
    passing = _masked_exp(span, keep[:, None])  # (b, H, n+1, n+1)
    ends = passing @ torch.cat([state[:, :, None], states], 2).flatten(-2)  # (b, H, n+1, P*N)
    return ends.unflatten(-1, (P, N))


# ---- layers ------------------------------------------------------------------------------------------------------
class GatedRMSNorm(nn.Module):
    """RMSNorm(y * SiLU(z)) * weight (norm after gating, as mamba_ssm's norm_before_gate=False)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(y * F.silu(z), (y.shape[-1],), self.weight, self.eps)


class Mamba2Mixer(nn.Module):
    """One Mamba-2 mixer (no norm, no residual): (b, T, width) -> (b, T, width)."""

    def __init__(self, cfg: Mamba2Config, kernel=None):
        super().__init__()
        self.cfg = cfg
        self.kernel = kernel  # mamba_ssm's mamba_chunk_scan_combined, or None for the torch path
        self.d_inner = cfg.expand * cfg.width
        self.nheads = self.d_inner // cfg.headdim
        self.conv_dim = self.d_inner + 2 * cfg.d_state
        self.in_proj = nn.Linear(cfg.width, self.d_inner + self.conv_dim + self.nheads, bias=False)
        # Depthwise causal conv; PyTorch default init as in mamba_ssm (weight (conv_dim, 1, d_conv), with bias).
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, cfg.d_conv, groups=self.conv_dim, bias=True)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = dt.clamp(min=cfg.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.empty(self.nheads).uniform_(cfg.a_init_min, cfg.a_init_max).log())
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner, cfg.norm_eps)
        self.out_proj = nn.Linear(self.d_inner, cfg.width, bias=False)
        with torch.no_grad():  # GPT-2 style rescaling of the residual-branch output (mamba_ssm mixer_seq_simple)
            nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
            self.out_proj.weight /= math.sqrt(cfg.n_layers)

    def _split(self, u: torch.Tensor, fused: bool) -> tuple[torch.Tensor, ...]:
        """in_proj(u) split into z, xBC, dt. Unfused (parallel mode): three products on row blocks of the weight,
        so the outputs are contiguous and the backward does not concatenate their gradients."""
        sizes = [self.d_inner, self.conv_dim, self.nheads]
        if fused:
            return torch.split(self.in_proj(u), sizes, dim=-1)
        return tuple(F.linear(u, w) for w in torch.split(self.in_proj.weight, sizes))

    def _heads(self, xbc: torch.Tensor, dt: torch.Tensor):
        """xbc: (..., conv_dim) after conv + SiLU -> x (..., H, P), B, C (..., N); dt: (..., H) after softplus."""
        x, B, C = torch.split(xbc, [self.d_inner, self.cfg.d_state, self.cfg.d_state], dim=-1)
        return x.unflatten(-1, (self.nheads, self.cfg.headdim)), B, C, F.softplus(dt + self.dt_bias)

    def _out(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = torch.addcmul(y, x, self.D[:, None])
        return self.out_proj(self.norm(y.flatten(-2), z))

    def forward(
        self, u: torch.Tensor, reset: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor,
        h0: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """u: (b, T, width); reset: (b, T); conv_state: (b, d_conv-1, conv_dim) (the last pre-conv inputs);
        ssm_state: (b, H, P, N); h0: (H, P, N) or None. Returns out (b, T, width), conv_state, ssm_state."""
        k = self.cfg.d_conv
        z, xbc, dt = self._split(u, fused=False)
        window = torch.cat([conv_state, xbc], 1)  # (b, k-1+T, conv_dim)
        weight = self.conv1d.weight[:, 0].T  # (k, conv_dim); weight[k-1] multiplies the current input
        conv = causal_conv(window, weight, self.conv1d.bias)  # (b, T, conv_dim)
        # Resets: the input at t-j must not reach output t if a reset lies in (t-j, t]. Resets are rare, so
        # subtract those taps only at the few outputs concerned instead of masking every tap densely.
        counts = torch.cat([reset.new_zeros(reset.shape[0], k - 1), reset], 1).cumsum(1)  # (b, k-1+T)
        windows = counts.unfold(1, k, 1)  # (b, T, k): tap i reads padded position t+i, i = k-1 is t itself
        dropped = windows != windows[..., -1:]
        rows, times = dropped.any(-1).nonzero(as_tuple=True)
        if rows.numel():
            taps = window[rows[:, None], times[:, None] + torch.arange(k, device=u.device)]  # (m, k, conv_dim)
            conv.index_put_((rows, times), -(taps * weight * dropped[rows, times][..., None]).sum(1), accumulate=True)
        # The next window: the last k-1 inputs, zeroed where a later reset cleared them.
        start = window.shape[1] - (k - 1)
        tail = window[:, start:] * (counts[:, start:] == counts[:, -1:])[..., None]
        x, B, C, dt = self._heads(F.silu(conv), dt)
        A = -torch.exp(self.A_log)
        if self.kernel is not None and x.is_cuda and (h0 is None or not bool(reset.any())):
            y, ssm_state = self.kernel(  # untested: no GPU here. seq_idx = segment id; h0 is zeros
                x, dt, A, B[:, :, None], C[:, :, None], self.cfg.chunk_size,
                initial_states=ssm_state.contiguous(), seq_idx=reset.cumsum(1).int(), return_final_states=True,
            )  # fmt: skip
        else:
            y, ssm_state = ssd_chunked(x, dt, A, B, C, reset, ssm_state, h0, self.cfg.chunk_size)
        return self._out(y, x, z), tail, ssm_state

    def step(
        self, u: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """u: (b, width); states as in ``forward``. Returns out (b, width) and the new states."""
        z, xbc, dt = self._split(u, fused=True)
        window = torch.cat([conv_state, xbc[:, None]], 1)  # (b, d_conv, conv_dim): the carried inputs, then this one
        conv = causal_conv_step(window, self.conv1d.weight[:, 0].T, self.conv1d.bias)
        x, B, C, dt = self._heads(F.silu(conv), dt)
        y, ssm_state = ssm_step(ssm_state, x, dt, -torch.exp(self.A_log), B, C)
        return self._out(y, x, z), window[:, 1:], ssm_state


class Mamba2Core(SequenceCore):
    """Stack of prenorm residual Mamba-2 blocks with a final RMSNorm; output_dim = width.
    State, per layer i: "conv_i" (B, d_conv-1, conv_dim) the last pre-conv inputs, oldest first, and "ssm_i"
    (B, nheads, headdim, d_state)."""

    name = "mamba2"
    Config = Mamba2Config

    def __init__(self, input_dim: int, cfg: Mamba2Config):
        super().__init__()
        kernel = None
        if cfg.use_cuda_kernels:
            try:
                from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
            except ImportError as e:
                raise ValueError(
                    "mamba2: use_cuda_kernels=True needs the mamba_ssm package (`pip install mamba-ssm`, CUDA only);"
                    " set use_cuda_kernels=False for the pure-PyTorch path"
                ) from e
            kernel = mamba_chunk_scan_combined
        self.cfg = cfg
        self.input_dim, self.output_dim = input_dim, cfg.width
        self.input_proj = nn.Linear(input_dim, cfg.width) if input_dim != cfg.width else nn.Identity()
        if isinstance(self.input_proj, nn.Linear):
            nn.init.zeros_(self.input_proj.bias)
        self.norms = nn.ModuleList(nn.RMSNorm(cfg.width, eps=cfg.norm_eps) for _ in range(cfg.n_layers))
        self.mixers = nn.ModuleList(Mamba2Mixer(cfg, kernel) for _ in range(cfg.n_layers))
        self.final_norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        mixer = self.mixers[0]
        self.ssm_shape = (mixer.nheads, cfg.headdim, cfg.d_state)  # per layer
        self.conv_shape = (cfg.d_conv - 1, mixer.conv_dim)
        self.state_features_dim = cfg.n_layers * math.prod(self.ssm_shape)
        if cfg.initial == "learned":
            self.initial_ssm = nn.Parameter(torch.zeros(cfg.n_layers, *self.ssm_shape))

    def _h0(self, layer: int) -> torch.Tensor | None:
        return self.initial_ssm[layer] if self.cfg.initial == "learned" else None

    def initial(self, batch_size: int) -> State:
        p, state = next(self.parameters()), {}
        for i in range(self.cfg.n_layers):
            state[f"conv_{i}"] = p.new_zeros(batch_size, *self.conv_shape)
            h0 = self._h0(i)
            state[f"ssm_{i}"] = h0.expand(batch_size, *h0.shape) if h0 is not None else \
                p.new_zeros(batch_size, *self.ssm_shape)
        return state

    def _time_block(self, x: torch.Tensor) -> int:
        """Steps per block of parallel mode (see CPU_BLOCK_ELEMENTS); the whole sequence on accelerators."""
        if x.device.type != "cpu":
            return x.shape[1]
        chunk, mixer = self.cfg.chunk_size, self.mixers[0]
        per_step = x.shape[0] * max(mixer.in_proj.out_features, mixer.nheads * chunk)
        return chunk * max(1, round(CPU_BLOCK_ELEMENTS / (per_step * chunk)))

    def _forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        block, ys = self._time_block(x), []
        for start in range(0, x.shape[1], block):
            y, state = self._forward_block(x[:, start : start + block], reset[:, start : start + block], state)
            ys.append(y)
        return torch.cat(ys, 1) if len(ys) > 1 else ys[0], state

    def _forward_block(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return prenorm_residual_stack(
            x, self.input_proj, self.norms, self.mixers, self.final_norm,
            lambda i, mixer, u: mixer(u, reset, state[f"conv_{i}"], state[f"ssm_{i}"], self._h0(i)),
        )

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return prenorm_residual_stack(
            x, self.input_proj, self.norms, self.mixers, self.final_norm,
            lambda i, mixer, u: mixer.step(u, state[f"conv_{i}"], state[f"ssm_{i}"]),
        )

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state[f"ssm_{i}"].flatten(1) for i in range(self.cfg.n_layers)], 1)
