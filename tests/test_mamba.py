"""Mamba-1 core: the memory-efficient selective scan against a plain loop, initialisation facts, config errors."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from ssmworld import sequence
from ssmworld.sequence.mamba import MambaConfig, MambaCore
from ssmworld.sequence.selective_scan import _plan_segments, auto_chunk, selective_scan, selective_scan_reference


def scan_inputs(batch, length, d, n, dtype=torch.float32, seed=0, delta_scale=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, d, generator=g, dtype=dtype)
    delta = delta_scale * torch.rand(batch, length, d, generator=g, dtype=dtype) + 1e-3
    A = -torch.exp(torch.randn(d, n, generator=g, dtype=dtype))
    Bm = torch.randn(batch, length, n, generator=g, dtype=dtype)
    Cm = torch.randn(batch, length, n, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    h_in = torch.randn(batch, d, n, generator=g, dtype=dtype)
    h0 = torch.randn(d, n, generator=g, dtype=dtype)
    reset = torch.rand(batch, length, generator=g) < 0.1
    reset[0, 0] = True  # at t=0
    reset[1, 3:5] = True  # consecutive, crossing a chunk boundary for chunk=4
    reset[-1, -1] = True  # at the last step
    return x, delta, A, Bm, Cm, D, h_in, reset, h0


@pytest.mark.parametrize("chunk", [1, 4, 7, 64])
@pytest.mark.parametrize("learned", [False, True])
def test_scan_matches_reference_values_and_gradients(chunk, learned):
    x, delta, A, Bm, Cm, D, h_in, reset, h0 = scan_inputs(3, 37, 5, 4)
    h0 = h0 if learned else None
    leaves = [t.clone().requires_grad_() for t in (x, delta, A, Bm, Cm, D, h_in)]
    leaves += [h0.clone().requires_grad_()] if learned else []
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]

    def run(fn, ts, **kw):
        x, delta, A, Bm, Cm, D, h_in, *rest = ts
        y, h = fn(x, delta, A, Bm, Cm, D, h_in, reset, rest[0] if rest else None, **kw)
        (y.sin().sum() + (h * h).sum()).backward()
        return y, h

    y, h = run(selective_scan, leaves, chunk=chunk)
    y_ref, h_ref = run(selective_scan_reference, ref_leaves)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    for name, a, b in zip(["x", "delta", "A", "B", "C", "D", "h_in", "h0"], leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


def test_auto_chunk_sizes_segments_for_the_cache_on_cpu_and_is_16_on_gpus():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_chunk(16, 512, 16, cpu) == 4  # 2^18 / 131072 = 2, raised to the floor of 4
    assert auto_chunk(16, 64, 16, cpu) == 16  # 2^18 / 16384 = 16
    assert auto_chunk(4, 128, 16, cpu) == 16  # 32, capped
    assert auto_chunk(16, 96, 16, cpu) == 8  # 10.7 -> the power of two below
    assert auto_chunk(16, 512, 16, cuda) == 16


def test_scan_with_automatic_chunk_matches_reference():
    x, delta, A, Bm, Cm, D, h_in, reset, h0 = scan_inputs(3, 37, 5, 4)
    y, h = selective_scan(x, delta, A, Bm, Cm, D, h_in, reset, h0)
    y_ref, h_ref = selective_scan_reference(x, delta, A, Bm, Cm, D, h_in, reset, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_scan_gradcheck_float64():
    x, delta, A, Bm, Cm, D, h_in, reset, h0 = scan_inputs(2, 9, 3, 2, dtype=torch.float64, seed=1)
    inputs = [t.requires_grad_() for t in (x, delta, A, Bm, Cm, D, h_in, h0)]

    def fn(x, delta, A, Bm, Cm, D, h_in, h0):
        return selective_scan(x, delta, A, Bm, Cm, D, h_in, reset, h0, chunk=4)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a[:7], None, None, chunk=3), inputs[:7])


def test_large_decay_splits_segments_and_stays_finite():
    """Δ |A| large enough that exp(|A| ΣΔ) over a 64-step chunk overflows float32: segments must be halved."""
    x, delta, A, Bm, Cm, D, h_in, reset, h0 = scan_inputs(2, 70, 4, 3, seed=2, delta_scale=5.0)
    A = -torch.linspace(1.0, 16.0, 12).reshape(4, 3)
    segments = _plan_segments(delta, A, 64)
    assert len(segments) > 2 and segments[0][0] == 0 and segments[-1][1] == 70
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
    leaves = [t.clone().requires_grad_() for t in (x, delta, Bm)]
    y, h = selective_scan(leaves[0], leaves[1], A, leaves[2], Cm, D, h_in, reset, h0, chunk=64)
    y.sum().backward()
    y_ref, h_ref = selective_scan_reference(x, delta, A, Bm, Cm, D, h_in, reset, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    assert all(torch.isfinite(t.grad).all() for t in leaves)


def test_segment_near_the_exponent_limit():
    """One segment whose decay spread is just under the limit, after a huge first step: exponents must be centred
    on the planned spread (which excludes Δ_0), or exp overflows in float32."""
    delta = torch.tensor([100.0] + [15.0] * 7).reshape(1, 8, 1)
    A = -torch.ones(1, 1)
    assert _plan_segments(delta, A, 8) == [(0, 8)]
    x, Bm, Cm = torch.ones(1, 8, 1), torch.ones(1, 8, 1), torch.ones(1, 8, 1)
    args = (x, delta, A, Bm, Cm, torch.ones(1), torch.ones(1, 1, 1))
    torch.testing.assert_close(selective_scan(*args, chunk=8)[0], selective_scan_reference(*args)[0])


def test_parallel_mode_saves_no_per_state_sequence_tensors():
    """Autograd must keep O(B T d_inner) numbers, not the O(B T d_inner d_state) a step-by-step graph stores
    (the plain-loop reference saves ~9x more than the bound below)."""
    core = sequence.make("mamba", 8, width=16, d_state=128, chunk=16)
    batch, length = 2, 64
    per_state = batch * length * core.d_inner * 128
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _ = core(torch.randn(batch, length, 8))
    assert sum(sizes) < per_state
    y.sum().backward()


@pytest.mark.parametrize("length", [1, 2, 5])
def test_short_sequences_match_step_loop(length):
    """T < d_conv - 1: the conv window mixes the carried window with new inputs; resets must clear it."""
    torch.manual_seed(0)
    core = sequence.make("mamba", 6, width=8, d_state=4, d_conv=4, initial="learned")
    with torch.no_grad():
        core.initial_ssm.normal_()
        _, state = core(torch.randn(2, 7, 6))
        x = torch.randn(2, length, 6)
        for reset in (torch.zeros(2, length, dtype=torch.bool), torch.eye(2, length, dtype=torch.bool)):
            y, s = core(x, reset, state)
            s_seq, ys = state, []
            for t in range(length):
                y_t, s_seq = core.step(x[:, t], s_seq, reset=reset[:, t])
                ys.append(y_t)
            torch.testing.assert_close(y, torch.stack(ys, 1), atol=1e-5, rtol=0)
            for key in s:
                torch.testing.assert_close(s[key], s_seq[key], atol=1e-5, rtol=0)


def test_shapes_and_initialisation():
    cfg = MambaConfig(width=32, n_layers=3, d_state=16, expand=2, d_conv=4, initial="learned")
    core = MambaCore(5, cfg)
    assert core.output_dim == 32 and core.state_features_dim == 3 * 64 * 16
    state = core.initial(4)
    assert sorted(state) == ["conv_0", "conv_1", "conv_2", "ssm_0", "ssm_1", "ssm_2"]  # one entry per layer
    assert state["conv_1"].shape == (4, 3, 64) and state["ssm_1"].shape == (4, 64, 16)  # conv: channels last
    assert core.features(state).shape == (4, 3 * 64 * 16)
    assert core.initial_ssm.shape == (3, 64, 16) and not core.initial_ssm.any()
    assert isinstance(core.input_proj, torch.nn.Linear) and not core.input_proj.bias.any()
    assert isinstance(MambaCore(32, MambaConfig(width=32)).input_proj, torch.nn.Identity)
    mixer = core.mixers[0]
    assert mixer.x_proj.weight.shape == (2 + 2 * 16, 64)  # dt_rank = ceil(32 / 16) = 2
    assert mixer.in_proj.bias is None and mixer.out_proj.bias is None and mixer.x_proj.bias is None
    torch.testing.assert_close(-torch.exp(mixer.A_log), -torch.arange(1.0, 17.0).expand(64, 16))
    assert torch.equal(mixer.D, torch.ones(64))
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= cfg.dt_min * (1 - 1e-4) and dt.max() <= cfg.dt_max * (1 + 1e-4)
    # out_proj: kaiming_uniform(a=sqrt(5)) bound 1/sqrt(fan_in), then / sqrt(n_layers)
    assert mixer.out_proj.weight.abs().max() <= 1 / math.sqrt(64) / math.sqrt(3) + 1e-6
    assert mixer.out_proj.weight.abs().max() > 0.8 / math.sqrt(64) / math.sqrt(3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(width=0), "width"),
        (dict(d_conv=1), "d_conv"),
        (dict(dt_rank=0), "dt_rank"),
        (dict(dt_min=0.2, dt_max=0.1), "dt_min"),
        (dict(dt_init_floor=0.0), "dt_init_floor"),
        (dict(initial="random"), "initial"),
        (dict(chunk=0), "chunk"),
        (dict(norm_eps=-1.0), "norm_eps"),
        (dict(use_cuda_kernels="yes"), "use_cuda_kernels"),
    ],
)
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        sequence.make("mamba", 4, **bad)


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba_ssm is installed")
def test_cuda_kernels_without_mamba_ssm_is_a_clear_error():
    with pytest.raises(ValueError, match="pip install mamba-ssm"):
        sequence.make("mamba", 4, use_cuda_kernels=True)
