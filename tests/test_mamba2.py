"""Mamba-2 / SSD core: chunked SSD vs the sequential reference (resets, learned initial state, chunk sizes),
NaN-free gradients, init facts, config validation and the CUDA-kernel option."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from ssmworld import sequence
from ssmworld.sequence import mamba2
from ssmworld.sequence.mamba2 import Mamba2Config, Mamba2Core, ssd_chunked, ssd_reference


def ssd_inputs(batch=3, length=50, heads=2, headdim=3, d_state=4, dt_scale=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads, headdim, generator=g, dtype=dtype)
    dt = dt_scale * torch.rand(batch, length, heads, generator=g, dtype=dtype)
    A = -torch.empty(heads, dtype=dtype).uniform_(0.5, 4.0, generator=g)
    B = torch.randn(batch, length, d_state, generator=g, dtype=dtype)
    C = torch.randn(batch, length, d_state, generator=g, dtype=dtype)
    state = torch.randn(batch, heads, headdim, d_state, generator=g, dtype=dtype)
    h0 = torch.randn(heads, headdim, d_state, generator=g, dtype=dtype)
    return x, dt, A, B, C, state, h0


def boundary_resets(batch: int, length: int, chunk: int) -> torch.Tensor:
    reset = torch.zeros(batch, length, dtype=torch.bool)
    reset[0, 0] = True  # at t=0: the incoming state is discarded
    reset[0, [chunk - 1, chunk, 2 * chunk]] = True  # around / at chunk boundaries
    reset[1, 5:9] = True  # consecutive
    reset[1, length - 1] = True  # at the last step
    reset[2, 1:length:3] = True  # several per chunk
    return reset


@pytest.mark.parametrize("chunk", [1, 7, 10, 16, 64])  # 10 divides T=50, the others do not; 64 > T
@pytest.mark.parametrize("learned", [False, True])
def test_chunked_ssd_matches_sequential_reference(chunk, learned):
    x, dt, A, B, C, state, h0 = ssd_inputs()
    h0 = h0 if learned else None
    reset = boundary_resets(3, 50, chunk=min(max(chunk, 2), 16))
    y_ref, s_ref = ssd_reference(x, dt, A, B, C, reset, state, h0)
    y, s = ssd_chunked(x, dt, A, B, C, reset, state, h0, chunk_size=chunk)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=1e-10)


def test_chunked_ssd_without_resets_and_with_strong_decay():
    # dt * |A| up to 40 per step: decays underflow to 0 inside a chunk, which must stay exact and finite.
    x, dt, A, B, C, state, h0 = ssd_inputs(dt_scale=10.0, dtype=torch.float32)
    reset = torch.zeros(3, 50, dtype=torch.bool)
    y_ref, s_ref = ssd_reference(x, dt, A, B, C, reset, state, h0)
    y, s = ssd_chunked(x, dt, A, B, C, reset, state, h0, chunk_size=16)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s, s_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dt_scale", [1.0, 30.0])
def test_gradients_with_resets_are_finite_and_match_reference(dt_scale):
    inputs = ssd_inputs(length=40, dt_scale=dt_scale)
    reset = boundary_resets(3, 40, chunk=8)

    def grads(fn, dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
        x, dt, A, B, C, state, h0 = leaves
        y, s = fn(x, dt, A, B, C, reset, state, h0) if fn is ssd_reference else fn(x, dt, A, B, C, reset, state, h0, 8)
        (y.sin().sum() + s.cos().sum()).backward()
        return [leaf.grad for leaf in leaves]

    for g in grads(ssd_chunked, torch.float32):
        assert g is not None and torch.isfinite(g).all()
    for g, g_ref in zip(grads(ssd_chunked, torch.float64), grads(ssd_reference, torch.float64)):
        torch.testing.assert_close(g, g_ref, atol=1e-8, rtol=1e-8)


def small_core(**cfg) -> Mamba2Core:
    torch.manual_seed(0)
    core = sequence.make("mamba2", 5, **dict(dict(width=16, headdim=8, d_state=4, chunk_size=8), **cfg))
    with torch.no_grad():
        for name, p in core.named_parameters():
            if "initial" in name:
                p.normal_()
    return core


def test_core_gradients_finite_with_resets_and_learned_initial():
    core = small_core(initial="learned")
    x = torch.randn(2, 30, 5)
    reset = torch.zeros(2, 30, dtype=torch.bool)
    reset[0, [0, 7, 8, 16]] = True  # t=0, consecutive, chunk boundaries
    reset[1, 29] = True
    y, state = core(x, reset)
    (y.square().sum() + state["ssm_1"].square().sum()).backward()
    for name, p in core.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert core.initial_ssm.grad.abs().sum() > 0


@pytest.mark.parametrize("chunk", [1, 5, 8, 64])
def test_core_output_does_not_depend_on_chunk_size(chunk):
    x = torch.randn(2, 30, 5)
    reset = torch.zeros(2, 30, dtype=torch.bool)
    reset[1, [3, 4, 20]] = True
    with torch.no_grad():
        ref = small_core(initial="learned", chunk_size=30)
        y_ref, s_ref = ref(x, reset)
        core = small_core(initial="learned", chunk_size=chunk)
        y, s = core(x, reset)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=0)
    for key in s_ref:
        torch.testing.assert_close(s[key], s_ref[key], atol=1e-5, rtol=0)


def test_time_blocks_give_the_same_result(monkeypatch):
    core = small_core(initial="learned")
    x = torch.randn(2, 45, 5)
    reset = torch.zeros(2, 45, dtype=torch.bool)
    reset[0, [8, 9, 30]] = True
    with torch.no_grad():
        y_ref, s_ref = core(x, reset)
        monkeypatch.setattr(mamba2, "CPU_BLOCK_ELEMENTS", 1)  # blocks of one chunk (8 steps)
        assert core._time_block(x) == 8
        y, s = core(x, reset)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=0)
    for key in s:
        torch.testing.assert_close(s[key], s_ref[key], atol=1e-5, rtol=0)


def test_state_shapes_and_init_facts():
    core = sequence.make("mamba2", 256)  # defaults: width 256, 2 layers, d_inner 512, 8 heads of 64, d_state 16
    assert isinstance(core.input_proj, torch.nn.Identity)  # input_dim == width: no projection
    state = core.initial(3)
    assert sorted(state) == ["conv_0", "conv_1", "ssm_0", "ssm_1"]  # one entry per layer
    assert state["conv_0"].shape == (3, 3, 512 + 2 * 16)  # the last d_conv - 1 inputs, channels last
    assert state["ssm_0"].shape == (3, 8, 64, 16)
    assert core.features(state).shape == (3, core.state_features_dim) == (3, 2 * 8 * 64 * 16)
    assert core.output_dim == 256
    mixer = core.mixers[0]
    assert mixer.in_proj.weight.shape == (2 * 512 + 2 * 16 + 8, 256) and mixer.in_proj.bias is None
    assert mixer.out_proj.bias is None
    dt = torch.nn.functional.softplus(mixer.dt_bias)
    assert ((dt >= 1e-3 * 0.999) & (dt <= 1e-1 * 1.001)).all()
    A = -torch.exp(mixer.A_log)
    assert ((A <= -1.0 + 1e-6) & (A >= -16.0 - 1e-5)).all()
    assert torch.equal(mixer.D, torch.ones(8))
    bound = 1 / math.sqrt(512) / math.sqrt(2)  # kaiming_uniform(a=sqrt 5) bound, / sqrt(n_layers)
    assert mixer.out_proj.weight.abs().max() <= bound * (1 + 1e-6)
    assert mixer.out_proj.weight.abs().max() > 0.9 * bound
    projected = sequence.make("mamba2", 10, width=32, headdim=16)
    assert torch.equal(projected.input_proj.bias, torch.zeros(32))
    assert not any("initial" in n for n, _ in core.named_parameters())  # initial="zeros"
    learned = sequence.make("mamba2", 10, width=32, headdim=16, initial="learned")
    assert torch.equal(learned.initial(2)["ssm_1"], torch.zeros(2, 4, 16, 16))


@pytest.mark.parametrize("d_conv", [1, 2, 4])
def test_step_mode_matches_parallel_mode_for_every_conv_width(d_conv):
    """Steps then a parallel call give what one parallel call gives; d_conv=1 carries an empty conv window."""
    core = small_core(initial="learned", d_conv=d_conv)
    x = torch.randn(2, 7, 5)
    with torch.no_grad():
        y_ref, s_ref = core(x)
        state, ys = None, []
        for t in range(3):
            y, state = core.step(x[:, t], state)
            ys.append(y)
        y_rest, state = core(x[:, 3:], state=state)
    assert state["conv_0"].shape == (2, d_conv - 1, core.mixers[0].conv_dim)
    torch.testing.assert_close(torch.cat([torch.stack(ys, 1), y_rest], 1), y_ref, atol=1e-5, rtol=0)
    for key in s_ref:
        torch.testing.assert_close(state[key], s_ref[key], atol=1e-5, rtol=0)


def test_reset_clears_conv_window_and_loads_learned_state():
    core = small_core(initial="learned")
    with torch.no_grad():
        _, state = core(torch.randn(2, 6, 5))
        fresh = core.reset(state, torch.tensor([True, False]))
    assert torch.equal(fresh["conv_0"][0], torch.zeros_like(fresh["conv_0"][0]))
    assert torch.equal(fresh["ssm_0"][0], core.initial_ssm[0])
    assert torch.equal(fresh["ssm_0"][1], state["ssm_0"][1])


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(ngroups=2), "ngroups=1"),
        (dict(width=48, headdim=64), "divisible by headdim"),
        (dict(initial="random"), "initial must be"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(dt_min=0.5, dt_max=0.1), "dt_min"),
    ],
)
def test_config_errors(cfg, message):
    with pytest.raises(ValueError, match=message):
        sequence.make("mamba2", 4, **cfg)


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba_ssm is installed")
def test_cuda_kernels_without_mamba_ssm_raise():
    with pytest.raises(ValueError, match="pip install mamba-ssm"):
        sequence.make("mamba2", 4, use_cuda_kernels=True)
    assert Mamba2Core.Config is Mamba2Config and Mamba2Core.name == "mamba2"
