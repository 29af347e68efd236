"""Parallel scan for diagonal linear recurrences, in pure PyTorch.

    x_t = a_t * x_{t-1} + b_t,   t = 0..T-1,   x_{-1} = x0          (elementwise; real or complex)

Episode resets need no special operator: a reset at t (state entering t replaced by z) is the element
a_t = 0, b_t = a * z + b_t, so resets with a learned initial state stay exactly associative (the official R2I
operator is not, see docs/REFERENCE.md r2i.md §1).

Two forward algorithms over chunks of C steps, chosen by ``method`` ("auto": blocked on the CPU, log-depth on GPUs):
- "log": a two-level log-depth scan: Hillis-Steele inside chunks, then over the T/C chunk totals, then one fix-up.
  O(T log C) work in ~log2(T) large vectorised operations: few kernel launches, what a GPU wants.
- "blocked": the recurrence stepped through the C positions of every chunk at once (C small ops over B x T/C x S),
  a sequential pass over the T/C chunk totals, then the same fix-up. O(T) work and one pass over memory per step of
  the chunk: on a CPU, where every extra pass over the (B, T, S) tensors costs, 3-8x faster than "log" (measured in
  docs/RESULTS.md, "S5 scan").
The backward pass is the same scan run in reverse (the adjoint of a linear recurrence is a linear recurrence), so
autograd stores only a, x and x0 instead of every intermediate.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 64


def _hillis_steele(a: torch.Tensor, b: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan along ``dim`` of the affine maps (a, b), composed left to right.
    Returns (A, X): A_t = a_t ... a_0 (product) and X_t = the recurrence from a zero start."""
    length = a.shape[dim]
    shift = 1
    while shift < length:
        a_prev = a.narrow(dim, 0, length - shift)
        b_prev = b.narrow(dim, 0, length - shift)
        a_cur = a.narrow(dim, shift, length - shift)
        b_cur = b.narrow(dim, shift, length - shift)
        b = torch.cat([b.narrow(dim, 0, shift), torch.addcmul(b_cur, a_cur, b_prev)], dim)
        a = torch.cat([a.narrow(dim, 0, shift), a_cur * a_prev], dim)
        shift *= 2
    return a, b


def scan_reference(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Plain sequential loop; the reference the parallel scan is tested against. Shapes as ``linear_scan``."""
    x, out = x0, []
    for t in range(a.shape[1]):
        x = a[:, t] * x + b[:, t]
        out.append(x)
    return torch.stack(out, 1)


def _within_chunks(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``_hillis_steele`` along dim 2 of (B, n, C, *S), by stepping through the C positions of all chunks at once."""
    a_cum, x = torch.empty_like(a), torch.empty_like(b)
    a_cum[:, :, 0], x[:, :, 0] = a[:, :, 0], b[:, :, 0]
    for t in range(1, a.shape[2]):  # written straight into the outputs (no copy per step); never under autograd
        torch.addcmul(b[:, :, t], a[:, :, t], x[:, :, t - 1], out=x[:, :, t])
        torch.mul(a[:, :, t], a_cum[:, :, t - 1], out=a_cum[:, :, t])
    return a_cum, x


def _across_chunks(a_end: torch.Tensor, x_end: torch.Tensor) -> torch.Tensor:
    """The state entering each chunk (B, n, *S), from each chunk's total map (a_end, x_end) (B, n, *S), in order."""
    carry, carries = torch.zeros_like(x_end[:, 0]), []
    for k in range(a_end.shape[1]):
        carries.append(carry)
        carry = torch.addcmul(x_end[:, k], a_end[:, k], carry)
    return torch.stack(carries, 1)


def _scan_forward(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, chunk: int, method: str = "auto"
                  ) -> torch.Tensor:
    batch, length = a.shape[:2]
    rest = a.shape[2:]
    blocked = method == "blocked" or (method == "auto" and not a.is_cuda)
    # Fold the incoming state into the first element, then scan from zero.
    b = torch.cat([(a[:, :1] * x0.unsqueeze(1) + b[:, :1]), b[:, 1:]], 1)
    if length <= chunk and not blocked:
        return _hillis_steele(a, b, 1)[1]
    if blocked:
        chunk = min(chunk, length)  # a short sequence is one chunk, unpadded
    pad = (-length) % chunk
    if pad:  # identity elements (a=1, b=0) at the end
        a = torch.cat([a, a.new_ones(batch, pad, *rest)], 1)
        b = torch.cat([b, b.new_zeros(batch, pad, *rest)], 1)
    n = a.shape[1] // chunk
    a = a.reshape(batch, n, chunk, *rest)
    b = b.reshape(batch, n, chunk, *rest)
    if blocked:
        a_cum, x_local = _within_chunks(a, b)  # within each chunk, from a zero start
        carry_in = _across_chunks(a_cum[:, :, -1], x_local[:, :, -1])
    else:
        a_cum, x_local = _hillis_steele(a, b, 2)
        # Carry between chunks: the state at the end of chunk k is an affine map of the state at the end of chunk k-1.
        _, carry = _hillis_steele(a_cum[:, :, -1], x_local[:, :, -1], 1)  # (B, n, *rest): state after chunk k
        carry_in = torch.cat([torch.zeros_like(carry[:, :1]), carry[:, :-1]], 1)
    x = torch.addcmul(x_local, a_cum, carry_in.unsqueeze(2))
    return x.reshape(batch, n * chunk, *rest)[:, :length]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, chunk: int, method: str) -> torch.Tensor:
        x = _scan_forward(a, b, x0, chunk, method)
        ctx.save_for_backward(a, x, x0)
        ctx.chunk, ctx.method = chunk, method
        return x

    @staticmethod
    def backward(ctx, grad_x: torch.Tensor):
        a, x, x0 = ctx.saved_tensors
        # g_t = dL/dx_t (total) satisfies g_t = grad_x_t + conj(a_{t+1}) g_{t+1}: a reverse linear recurrence.
        # (PyTorch's convention for complex: the gradient through y = a * x is grad_y * conj(a).)
        a_conj = a.conj() if a.is_complex() else a
        a_next = torch.cat([a_conj[:, 1:], torch.zeros_like(a_conj[:, :1])], 1)
        g = _scan_forward(a_next.flip(1), grad_x.flip(1), torch.zeros_like(x0), ctx.chunk, ctx.method).flip(1)
        x_prev = torch.cat([x0.unsqueeze(1), x[:, :-1]], 1)
        grad_a = g * (x_prev.conj() if x_prev.is_complex() else x_prev)
        grad_x0 = g[:, 0] * a_conj[:, 0]
        return grad_a, g, grad_x0, None, None


def linear_scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, chunk: int = DEFAULT_CHUNK,
                method: str = "auto") -> torch.Tensor:
    """All states of x_t = a_t * x_{t-1} + b_t.

    a, b: (B, T, *S) (a may be an expanded view); x0: (B, *S), the state entering t=0. ``method``: "blocked",
    "log" or "auto" (blocked on the CPU, log-depth on CUDA; see the module docstring).
    Returns x: (B, T, *S).
    """
    if a.shape != b.shape or x0.shape != (b.shape[0], *b.shape[2:]):
        raise ValueError(f"linear_scan: a, b must be (B, T, *S) and x0 (B, *S); got {a.shape}, {b.shape}, {x0.shape}")
    if method not in ("auto", "blocked", "log"):
        raise ValueError(f"linear_scan: method must be auto, blocked or log, got {method!r}")
    return _LinearScan.apply(a, b, x0, chunk, method)
