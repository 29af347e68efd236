"""The selective scan of Mamba-1 in pure PyTorch, memory-efficient, with episode resets (mamba_ssm's
selective_scan_fn does the same in one CUDA kernel, without resets); ``selective_scan_reference`` is the plain loop.

    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t,   y_t = C_t · h_t + D x_t      (per channel d and state n)

Parallel mode walks time in segments of at most ``chunk`` steps (a Python loop over T/chunk, never over T). Inside a
segment the states come from one prefix sum instead of a log-depth tree: with E_t = exp(A * Σ_{u<=t} Δ_u),
h_t = E_t * Σ_{s<=t} (Δ_s B_s x_s) / E_s, and the sum over s (cut at episode resets) is one GEMM with a 0/1 (L, L)
matrix. That is O(1) passes over the (B, L, d_inner, d_state) segment where Hillis-Steele needs ~4 log2(L); on this
CPU it measured 2-5x faster, and torch.cumsum was 3x slower than the GEMM. E_t / E_s must stay in floating-point
range, so a segment whose decay spread |A| ΣΔ is too large is halved until it fits (one step always fits).
Only segment-boundary states are kept for backward, which recomputes each segment in reverse order: autograd memory
is O(B T d_inner), not the O(B T d_inner d_state) a step-by-step graph stores. Reset bookkeeping is read from one
host copy of the flags per call (``_inner_resets``), not per segment: on a GPU each read would wait for the device.

Inside, states are laid out (B, L, d_state, d_inner), the channels last: the contractions over the state (C_t · h_t,
and B_t, A and Δ_t against the adjoint in backward) are then one batched (1, N) @ (N, D) product or a reduction over
a middle dimension, where the (…, D, N) layout needed batched matrix-vector products and einsums ~5-15x slower on this
CPU. Exponentials are exp2 of A log2(e) (about 2x faster than exp here). Segments of ~4 steps (``auto_chunk``) keep
the work tensors near the L2 cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def selective_scan_reference(x, delta, A, Bm, Cm, D, h_in, reset=None, h0=None):
    """Plain loop over time; the reference for tests. Shapes as ``selective_scan``."""
    h, ys = h_in, []
    for t in range(x.shape[1]):
        if reset is not None:
            start = torch.zeros_like(h_in) if h0 is None else h0.expand_as(h_in)
            h = torch.where(reset[:, t, None, None], start, h)
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * Bm[:, t, None, :]
        ys.append((h @ Cm[:, t, :, None]).squeeze(-1) + D * x[:, t])
    return torch.stack(ys, 1), h


LOG2_E = 1 / math.log(2)  # exp(x) = exp2(x log2(e)); exp2 is 2-3x faster than exp on this CPU


def _exp_limit(dtype: torch.dtype) -> float:
    """Largest |exponent| used inside a segment: leaves headroom below the dtype's overflow (~59 for float32)."""
    return math.log(torch.finfo(dtype).max) / 1.5


def _plan_segments(delta: torch.Tensor, A: torch.Tensor, chunk: int) -> list[tuple[int, int]]:
    """Split [0, T) into segments of <= chunk steps whose decay spread max |A| Σ_{t0<u<t1} Δ_u is < 2 * limit."""
    batch, length, d = delta.shape
    limit, delta = 2 * _exp_limit(delta.dtype), delta.detach()
    a_max = A.detach().abs().amax(-1)  # (D,)

    def fits(t0: int, t1: int) -> bool:
        return t1 - t0 == 1 or float((delta[:, t0 + 1 : t1].sum(1) * a_max).amax()) < limit

    segments: list[tuple[int, int]] = []

    def add(t0: int, t1: int, ok: bool) -> None:
        if ok:
            segments.append((t0, t1))
        else:  # rare: very large Δ |A|; halve until it fits
            mid = (t0 + t1) // 2
            add(t0, mid, fits(t0, mid))
            add(mid, t1, fits(mid, t1))

    full = length // chunk
    ok = [True] * full
    if full and chunk > 1:  # all whole chunks checked at once
        sums = delta[:, : full * chunk].reshape(batch, full, chunk, d)[:, :, 1:].sum(2)  # (B, full, D)
        ok = ((sums * a_max).amax((0, 2)) < limit).tolist()
    for i in range(full):
        add(i * chunk, (i + 1) * chunk, ok[i])
    if full * chunk < length:
        add(full * chunk, length, fits(full * chunk, length))
    return segments


def _inner_resets(reset: torch.Tensor | None, segments: list[tuple[int, int]]
                  ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Per segment, the (rows, steps) of its resets after its first step (steps counted within the segment), or None
    without any: from one host copy of ``reset``, so that a GPU does not wait at every segment of every layer."""
    if reset is None:
        return [None] * len(segments)
    host, inner = reset.cpu(), []
    for t0, t1 in segments:
        rows, steps = host[:, t0 + 1:t1].nonzero(as_tuple=True)
        inner.append((rows.to(reset.device), (steps + 1).to(reset.device)) if len(rows) else None)
    return inner


def _prefix_matrix(reset: torch.Tensor | None, inner: object, length: int, like: torch.Tensor) -> torch.Tensor:
    """(B or 1, L, L) 0/1 matrix, [t, s] = 1 where s <= t and no reset lies in (s, t]. M @ w sums each step's terms
    into the later steps of its episode; M^T @ c sums the adjoint backwards. One GEMM, ~3x faster than cumsum here.
    ``inner``: the segment's entry of ``_inner_resets`` (None: no reset after its first step)."""
    tril = torch.ones(length, length, dtype=like.dtype, device=like.device).tril()
    if reset is None or inner is None:
        return tril.unsqueeze(0)
    episode = F.pad(torch.cumsum(reset[:, 1:], 1), (1, 0))  # (B, L): resets after step 0 seen so far
    return tril * (episode.unsqueeze(2) == episode.unsqueeze(1)).to(like.dtype)


class _Buffers:
    """Work tensors reused across segments. Fresh multi-MB tensors per segment cost page faults that took longer than
    the arithmetic (CPU, glibc), so every (B, L, N, D) intermediate is written into one of these."""

    def __init__(self, like: torch.Tensor, d_state: int) -> None:
        self.like, self.d_state, self.store = like, d_state, {}

    def __call__(self, name: str, length: int) -> torch.Tensor:
        key = (name, length)
        if key not in self.store:
            batch, _, d = self.like.shape
            self.store[key] = self.like.new_empty(batch, length, self.d_state, d)
        return self.store[key]


def _segment_states(x, delta, a2, Bm, h_in, reset, inner, h0, buf: _Buffers, for_backward: bool):
    """States of one segment, laid out (B, L, N, D). x, delta: (B, L, D); a2: (N, D) = A^T log2(e); Bm: (B, L, N);
    h_in: (B, N, D) entering the segment; reset: (B, L) bool or None; inner: its resets after step 0
    (``_inner_resets``); h0: (N, D) or None (zeros). Returns h (B, L, N, D) and, if for_backward, the pieces the
    adjoint needs (else None). Tensors live in ``buf``."""
    batch, length = x.shape[:2]
    s = torch.cumsum(delta, 1)
    # E_t / E_s = exp(A (s_t - s_s)) is the decay from step s to step t for any offset of s; this one centres the
    # exponents in [-limit, limit] (the plan bounds s_{L-1} - s_0).
    s = s.sub_(0.5 * (s[:, :1] + s[:, -1:])).unsqueeze(2)
    e_inv = torch.mul(s, -a2, out=buf("e_inv", length)).exp2_()  # 1 / E_t, (B, L, N, D)
    dx = (delta * x).unsqueeze(2)
    w = buf("w", length)
    if for_backward:
        b = torch.mul(dx, Bm.unsqueeze(-1), out=buf("b", length))  # the input terms Δ_t x_t B_t
        torch.mul(b, e_inv, out=w)
    else:
        torch.mul(e_inv, dx, out=w).mul_(Bm.unsqueeze(-1))
    # The state entering step 0 (h_in, or h0 on a reset) is folded into the first input term, h0 likewise at resets.
    dA0 = torch.exp2(delta[:, 0].unsqueeze(1) * a2)
    h_enter = h_in
    if reset is not None:
        h_enter = torch.where(reset[:, 0, None, None], 0.0 if h0 is None else h0, h_in)
    w[:, 0] += dA0 * h_enter * e_inv[:, 0]
    rows = steps = dA = None
    if inner is not None:
        rows, steps = inner
        dA = torch.exp2(delta[rows, steps].unsqueeze(1) * a2)  # (k, N, D)
        if h0 is not None:
            w[rows, steps] += dA * h0 * e_inv[rows, steps]
    m = _prefix_matrix(reset, inner, length, x).expand(batch, length, length)
    h = buf("h", length)
    torch.bmm(m, w.view(batch, length, -1), out=h.view(batch, length, -1))
    h.div_(e_inv)
    if not for_backward:
        return h, None
    return h, (b, w, e_inv, m, dA0, rows, steps, dA)


def _contract_state(v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Σ_n v_n h_{n, d}: v (B, L, N), h (B, L, N, D) -> (B, L, D), as one batched (1, N) @ (N, D) product."""
    batch, length, n, d = h.shape
    return torch.bmm(v.reshape(-1, 1, n), h.view(-1, n, d)).view(batch, length, d)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, Bm, Cm, D, h_in, reset, h0, chunk):
        Bm, Cm = Bm.contiguous(), Cm.contiguous()  # small; broadcasting them over (B, L, N, D) must be unit-stride
        a2 = (A.t() * LOG2_E).contiguous()  # (N, D): exp2 is about twice as fast as exp on this CPU
        h0_t = None if h0 is None else h0.t().contiguous()
        segments = _plan_segments(delta, A, chunk)
        inner = _inner_resets(reset, segments)
        buf = _Buffers(x, A.shape[1])
        y = x.new_empty(x.shape)
        boundaries, h = [], h_in.transpose(1, 2).contiguous()  # (B, N, D)
        for (t0, t1), inner_resets in zip(segments, inner):
            boundaries.append(h)
            r = None if reset is None else reset[:, t0:t1]
            states, _ = _segment_states(x[:, t0:t1], delta[:, t0:t1], a2, Bm[:, t0:t1], h, r, inner_resets, h0_t,
                                        buf, False)
            torch.addcmul(_contract_state(Cm[:, t0:t1], states), x[:, t0:t1], D, out=y[:, t0:t1])
            h = states[:, -1].clone()  # clone: the buffer is overwritten by the next segment
        ctx.segments, ctx.inner = segments, inner
        ctx.save_for_backward(x, delta, A, Bm, Cm, D, torch.stack(boundaries, 1), reset, h0)
        return y, h.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_y, grad_h):
        x, delta, A, Bm, Cm, D, boundaries, reset, h0 = ctx.saved_tensors
        a_t = A.t().contiguous()  # (N, D)
        a2, h0_t = a_t * LOG2_E, None if h0 is None else h0.t().contiguous()
        grad_x, grad_delta = torch.empty_like(x), torch.empty_like(delta)
        grad_B, grad_C = torch.empty_like(Bm), torch.empty_like(Cm)
        grad_a = torch.zeros_like(a_t)
        grad_D = (grad_y * x).sum((0, 1))
        grad_h0 = None if h0 is None else torch.zeros_like(h0_t)
        # carry = dL/dh at the end of the current segment (from later steps and the final-state output), (B, N, D)
        carry = torch.zeros_like(boundaries[:, 0]) if grad_h is None else grad_h.transpose(1, 2).contiguous()
        buf = _Buffers(x, A.shape[1])
        for i in reversed(range(len(ctx.segments))):
            t0, t1 = ctx.segments[i]
            sl = slice(t0, t1)
            xs, ds, Bs, Cs, gy = x[:, sl], delta[:, sl], Bm[:, sl], Cm[:, sl], grad_y[:, sl]
            r = None if reset is None else reset[:, sl]
            h, (b, w, e_inv, m, dA0, rows, steps, dA) = _segment_states(
                xs, ds, a2, Bs, boundaries[:, i], r, ctx.inner[i], h0_t, buf, True
            )
            scratch = buf("scratch", t1 - t0)
            gy_n = gy.unsqueeze(2)  # (B, L, 1, D)
            torch.sum(torch.mul(h, gy_n, out=scratch), -1, out=grad_C[:, sl])
            # Adjoint g_t = dL/dh_t = C_t gy_t + exp(Δ_{t+1} A) g_{t+1} (0 across a reset): the same sums, reversed.
            c = torch.mul(gy_n, Cs.unsqueeze(-1), out=buf("c", t1 - t0)).div_(e_inv)  # E_t C_t gy_t
            c[:, -1] += carry / e_inv[:, -1]
            g = w  # reuse the buffer
            torch.bmm(m.transpose(1, 2), c.view(*c.shape[:2], -1), out=g.view(*c.shape[:2], -1))
            g.mul_(e_inv)
            into = g[:, 0] * dA0  # dL/d(state entering the segment)
            if r is None:
                carry = into
            else:
                carry = torch.where(r[:, 0, None, None], 0.0, into)
                if grad_h0 is not None:
                    grad_h0 += (into - carry).sum(0)
                    if rows is not None:
                        grad_h0 += (g[rows, steps] * dA).sum(0)
            q = h.sub_(b).mul_(g)  # g_t * exp(Δ_t A) h_{t-1}: the gradient of the log-decay Δ_t A
            grad_a += torch.mul(q, ds.unsqueeze(2), out=scratch).sum((0, 1))
            g_b = _contract_state(Bs, g)  # Σ_n g B: (B, L, D)
            torch.sum(torch.mul(q, a_t, out=scratch), 2, out=grad_delta[:, sl]).addcmul_(xs, g_b)
            torch.addcmul(ds * g_b, gy, D, out=grad_x[:, sl])
            torch.sum(torch.mul(g, (ds * xs).unsqueeze(2), out=scratch), -1, out=grad_B[:, sl])
        grad_h0 = None if grad_h0 is None else grad_h0.t()
        return grad_x, grad_delta, grad_a.t(), grad_B, grad_C, grad_D, carry.transpose(1, 2), None, grad_h0, None


def auto_chunk(batch: int, d_inner: int, d_state: int, device: torch.device) -> int:
    """Segment length for ``chunk=None``. On the CPU a segment's (B, L, N, D) work tensors should stay near the
    L2 cache (~2^18 numbers; the scan measured 1.5x faster than with 16-step segments at B=16, D=512, N=16) without
    making the per-segment Python and dispatch cost dominate at small sizes: 2^18 / (B N D) as a power of two in
    [4, 16]. On a GPU, 16 (fewer kernel launches)."""
    if device.type != "cpu":
        return 16
    steps = (1 << 18) // max(1, batch * d_inner * d_state)
    return min(16, max(4, 1 << max(0, steps.bit_length() - 1)))


def selective_scan(x, delta, A, Bm, Cm, D, h_in, reset=None, h0=None, chunk: int | None = None):
    """The selective SSM, memory-efficient (see the module docstring).

    x, delta: (B, T, D); A: (D, N) negative; Bm, Cm: (B, T, N); D: (D,); h_in: (B, D, N) the state entering t=0;
    reset: (B, T) bool or None, True at t replaces the state entering t by h0; h0: (D, N) or None (zeros).
    chunk: steps per segment, None: ``auto_chunk``.
    Returns y: (B, T, D) with y_t = C_t · h_t + D x_t, and the last state h: (B, D, N).
    """
    if chunk is None:
        chunk = auto_chunk(x.shape[0], x.shape[2], A.shape[1], x.device)
    return _SelectiveScan.apply(x, delta, A, Bm, Cm, D, h_in, reset, h0, chunk)
