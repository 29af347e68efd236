"""The sequence-core contract, checked for every core (ARCHITECTURE.md, "The sequence-core interface")."""

from __future__ import annotations

import pytest
import torch

from ssmworld import sequence

from .helpers import seeded_generator, step_loop

# Small sizes: every core, several layers, chunk sizes that T=257 crosses many times.
CONFIGS = {
    "s5": dict(width=16, state_size=16, n_layers=2, output_dim=12, initial="learned"),
    "s5_zoh": dict(width=16, state_size=16, n_layers=2, discretization="zoh", initial="learned", chunk=16),
    "mamba": dict(width=16, d_state=4, n_layers=2, initial="learned", chunk=32),
    "mamba2": dict(width=32, headdim=16, d_state=8, n_layers=2, chunk_size=16, initial="learned"),
    "gru": dict(width=32, blocks=4, initial="learned"),
    "attention": dict(width=32, n_heads=4, n_layers=2),
}
INPUT_DIM = 7


def core_name(key: str) -> str:
    return key.split("_")[0]


def build(key: str, dtype=torch.float32, seed: int = 0) -> sequence.SequenceCore:
    torch.manual_seed(seed)
    core = sequence.make(core_name(key), INPUT_DIM, **CONFIGS[key]).to(dtype)
    # Make learned initial states non-zero so that resets to them are really tested.
    with torch.no_grad():
        for name, p in core.named_parameters():
            if "initial" in name:
                p.copy_(0.5 * torch.randn_like(p))
    return core


def random_resets(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    reset = torch.rand(batch, length, generator=generator) < 0.05
    reset[0, 0] = True  # a reset at t=0
    reset[1, 10:13] = True  # consecutive resets
    reset[2, length - 1] = True  # a reset at the last step
    return reset


def nonzero_state(core, batch, generator, dtype=torch.float32):
    """A state reached by running the core over a random prefix: non-zero in every component."""
    prefix = torch.randn(batch, 5, INPUT_DIM, generator=generator).to(dtype)
    _, state = core(prefix)
    return state


def assert_states_close(a, b, atol):
    assert set(a) == set(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=lambda m: f"state[{key!r}]: {m}")


@pytest.mark.parametrize("key", CONFIGS)
def test_an_empty_sequence_passes_the_state_through(key):
    core = build(key)
    g = seeded_generator(2)
    with torch.no_grad():
        state0 = nonzero_state(core, 2, g)
        y, state = core(torch.zeros(2, 0, INPUT_DIM), None, state0)
        assert y.shape == (2, 0, core.output_dim)
        assert_states_close(state, state0, atol=0)
        if core_name(key) != "attention":  # (its per-step states are not materialised)
            y, states = core.forward_states(torch.zeros(2, 0, INPUT_DIM), None, state0)
            assert y.shape == (2, 0, core.output_dim)
            assert {k: v.shape for k, v in states.items()} == {k: (2, 0, *v.shape[1:]) for k, v in state0.items()}


@pytest.mark.parametrize("key", CONFIGS)
def test_parallel_equals_step_loop(key):
    core = build(key)
    g = seeded_generator(1)
    batch, length = 3, 257
    x = torch.randn(batch, length, INPUT_DIM, generator=g)
    reset = random_resets(batch, length, g)
    with torch.no_grad():
        state0 = nonzero_state(core, batch, g)
        y_par, s_par = core(x, reset, state0)
        y_seq, s_seq = step_loop(core, x, reset, state0)
    assert y_par.shape == (batch, length, core.output_dim)
    torch.testing.assert_close(y_par, y_seq, atol=1e-4, rtol=0)
    assert_states_close(s_par, s_seq, atol=1e-4)
    assert core.features(s_par).shape == (batch, core.state_features_dim)


@pytest.mark.parametrize("key", CONFIGS)
def test_reset_starts_a_fresh_segment(key):
    """A reset at t makes y[t:] exactly what a fresh sequence from the initial state gives. An implementation that
    resets one step early (the official R2I off-by-one) or leaks state across the boundary fails this."""
    core = build(key)
    g = seeded_generator(2)
    x = torch.randn(2, 40, INPUT_DIM, generator=g)
    reset = torch.zeros(2, 40, dtype=torch.bool)
    reset[:, 17] = True
    with torch.no_grad():
        state0 = nonzero_state(core, 2, g)
        y, _ = core(x, reset, state0)
        y_head, _ = core(x[:, :17], None, state0)
        y_tail, _ = core(x[:, 17:])
    torch.testing.assert_close(y[:, :17], y_head, atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 17:], y_tail, atol=1e-5, rtol=0)


# mamba2's gradcheck takes ~50 s: a slow test (CI runs it; `pytest -m "not slow"` skips it)
@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if core_name(k) == "mamba2" else k
                                 for k in CONFIGS])
def test_gradcheck_float64(key):
    core = build(key, dtype=torch.float64)
    g = seeded_generator(3)
    batch, length = 2, 6
    x = torch.randn(batch, length, INPUT_DIM, generator=g, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(batch, length, dtype=torch.bool)
    reset[0, 2] = reset[1, 3] = reset[1, 4] = True
    with torch.no_grad():
        state0 = nonzero_state(core, batch, g, torch.float64)
    float_keys = [k for k, v in state0.items() if v.is_floating_point()]
    leaves = [state0[k].clone().requires_grad_() for k in float_keys]

    def fn(x, *leaves):
        state = dict(state0, **dict(zip(float_keys, leaves)))
        y, final = core(x, reset, state)
        return (y, *(final[k] for k in float_keys))

    assert torch.autograd.gradcheck(fn, (x, *leaves), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("key", [k for k, c in CONFIGS.items() if c.get("initial") == "learned"])
def test_gradients_reach_initial_state_parameters(key):
    core = build(key)
    params = {n: p for n, p in core.named_parameters() if "initial" in n}
    assert params, "a core with initial='learned' must have parameters named '*initial*'"
    x = torch.randn(2, 12, INPUT_DIM)
    reset = torch.zeros(2, 12, dtype=torch.bool)
    reset[1, 6] = True  # the initial state enters at t=0 and again mid-sequence
    y, _ = core(x, reset)
    y.square().sum().backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("key", CONFIGS)
def test_seeded_determinism(key):
    x = torch.randn(2, 20, INPUT_DIM)
    y1, _ = build(key, seed=5)(x)
    y2, _ = build(key, seed=5)(x)
    y3, _ = build(key, seed=6)(x)
    assert torch.equal(y1, y2)
    assert not torch.allclose(y1, y3)


@pytest.mark.parametrize("key", CONFIGS)
def test_bad_shapes_and_dtypes_name_the_expected_shape(key):
    core = build(key)
    with pytest.raises(ValueError, match=rf"\(B, T, {INPUT_DIM}\)"):
        core(torch.randn(2, 5, INPUT_DIM + 1))
    with pytest.raises(ValueError, match=rf"\(B, T, {INPUT_DIM}\)"):
        core(torch.randn(5, INPUT_DIM))
    with pytest.raises(ValueError, match=r"\(B, T\) = \(2, 5\)"):
        core(torch.randn(2, 5, INPUT_DIM), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="float32"):
        core(torch.randn(2, 5, INPUT_DIM, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"\(B, {INPUT_DIM}\)"):
        core.step(torch.randn(2, 5, INPUT_DIM), core.initial(2))
    with pytest.raises(ValueError, match="batch size"):
        core.step(torch.randn(3, INPUT_DIM), core.initial(2))


def test_make_rejects_unknown_core_and_option():
    with pytest.raises(ValueError, match="available: attention, gru, mamba, mamba2, s5"):
        sequence.make("nosuch", 4)
    with pytest.raises(ValueError, match="unknown option.*'nosuch_option'"):
        sequence.make("gru", 4, nosuch_option=1)


@pytest.mark.parametrize("key", [k for k in CONFIGS if core_name(k) != "attention"])
def test_forward_states_match_the_step_loop(key):
    core = build(key)
    g = seeded_generator(4)
    x = torch.randn(2, 19, INPUT_DIM, generator=g)
    reset = random_resets(3, 19, g)[1:]
    with torch.no_grad():
        state0 = nonzero_state(core, 2, g)
        y, states = core.forward_states(x, reset, state0)
        y_par, final = core(x, reset, state0)
        state = state0
        for t in range(19):
            _, state = core.step(x[:, t], state, reset=reset[:, t])
            for k in state:
                torch.testing.assert_close(states[k][:, t], state[k], atol=1e-4, rtol=0, msg=lambda m: f"{k}, t={t}: {m}")
    torch.testing.assert_close(y, y_par, atol=1e-5, rtol=0)
    assert_states_close({k: v[:, -1] for k, v in states.items()}, final, atol=1e-5)


def test_attention_has_no_per_step_states():
    core = build("attention")
    with pytest.raises(NotImplementedError, match="context"):
        core.forward_states(torch.randn(1, 3, INPUT_DIM))
