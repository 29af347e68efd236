"""The causal transformer core: episode isolation across resets, the sliding window, and the KV-cache state."""

from __future__ import annotations

import pytest
import torch

from ssmworld import sequence

from .helpers import step_loop

INPUT_DIM = 5


def build(seed: int = 0, **cfg) -> sequence.SequenceCore:
    torch.manual_seed(seed)
    # Larger weights than the default init so that every token visibly influences the ones it may attend to.
    core = sequence.make("attention", INPUT_DIM, **dict(dict(width=16, n_heads=2, n_layers=2), **cfg))
    with torch.no_grad():
        for p in core.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return core


@pytest.mark.parametrize("window", [None, 6])
def test_no_attention_across_a_reset(window):
    core = build(window=window)
    x = torch.randn(2, 20, INPUT_DIM)
    reset = torch.zeros(2, 20, dtype=torch.bool)
    reset[:, 9] = True
    with torch.no_grad():
        _, state = core(torch.randn(2, 4, INPUT_DIM))  # a non-empty incoming cache
        y, _ = core(x, reset, state)
        x2 = x.clone()
        x2[:, :9] += torch.randn(2, 9, INPUT_DIM)
        y2, _ = core(x2, reset, core.initial(2))  # also change the incoming state
    torch.testing.assert_close(y2[:, 9:], y[:, 9:], atol=1e-5, rtol=0)
    assert not torch.allclose(y2[:, :9], y[:, :9])


@pytest.mark.parametrize("n_layers", [1, 2])
def test_window_limits_the_receptive_field(n_layers):
    """Each layer looks `window - 1` tokens back, so a token influences outputs up to n_layers * (window - 1) later."""
    window, t0, length = 4, 3, 20
    reach = t0 + n_layers * (window - 1)
    core = build(window=window, n_layers=n_layers)
    x = torch.randn(1, length, INPUT_DIM)
    x2 = x.clone()
    x2[:, t0] += 1.0
    with torch.no_grad():
        y, _ = core(x)
        y2, _ = core(x2)
        y_seq, _ = step_loop(core, x2, torch.zeros(1, length, dtype=torch.bool), core.initial(1))
    changed = (y2 - y).abs().amax(-1)[0] > 1e-5
    assert not changed[:t0].any()
    assert changed[reach]
    assert not changed[reach + 1 :].any()
    torch.testing.assert_close(y_seq, y2, atol=1e-5, rtol=0)


def test_unlimited_window_sees_the_whole_past():
    core = build()
    x = torch.randn(1, 30, INPUT_DIM)
    x2 = x.clone()
    x2[:, 0] += 1.0
    with torch.no_grad():
        changed = (core(x2)[0] - core(x)[0]).abs().amax(-1)[0] > 1e-6
    assert changed.all()


@pytest.mark.parametrize("window", [1, 3, 7])
def test_step_equals_parallel_with_window(window):
    core = build(window=window)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, INPUT_DIM, generator=g)
    reset = torch.rand(3, 40, generator=g) < 0.1
    reset[1, 5:7] = True
    reset[2, 39] = True
    with torch.no_grad():
        _, state0 = core(torch.randn(3, 5, INPUT_DIM, generator=g))
        y_par, s_par = core(x, reset, state0)
        y_seq, s_seq = step_loop(core, x, reset, state0)
    torch.testing.assert_close(y_par, y_seq, atol=1e-5, rtol=0)
    assert set(s_par) == set(s_seq)
    for key in s_par:
        assert s_par[key].shape == s_seq[key].shape, key
        torch.testing.assert_close(s_par[key], s_seq[key], atol=1e-5, rtol=0)
    assert s_par["k"].shape[2] <= window  # slots invalid in every row are dropped too


@pytest.mark.parametrize("window", [None, 5])
def test_parallel_calls_chain_through_the_cache(window):
    """Two parallel calls on halves, passing the state, equal one call on the whole (with resets in both)."""
    core = build(window=window)
    x = torch.randn(2, 24, INPUT_DIM)
    reset = torch.zeros(2, 24, dtype=torch.bool)
    reset[0, 4] = reset[1, 15] = True
    with torch.no_grad():
        y, state = core(x, reset)
        y1, s1 = core(x[:, :10], reset[:, :10])
        y2, s2 = core(x[:, 10:], reset[:, 10:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, atol=1e-5, rtol=0)
    for key in state:
        torch.testing.assert_close(s2[key], state[key], atol=1e-5, rtol=0)


def test_cache_length_growth_and_reset():
    core = build(n_layers=3, width=8, n_heads=2)
    state = core.initial(2)
    assert state["k"].shape == state["v"].shape == (2, 3, 0, 2, 4)
    assert state["valid"].shape == (2, 0) and state["pos"].tolist() == [0, 0]
    for t in range(1, 4):
        _, state = core.step(torch.randn(2, INPUT_DIM), state)
        assert state["k"].shape == (2, 3, t, 2, 4) and state["valid"].shape == (2, t)
    assert state["pos"].tolist() == [3, 3] and state["valid"].all()
    _, state = core(torch.randn(2, 6, INPUT_DIM), None, state)
    assert state["k"].shape[2] == state["v"].shape[2] == 9 and state["pos"].tolist() == [9, 9]
    assert core.features(state).shape == (2, core.state_features_dim) == (2, 24)

    state = core.reset(state, torch.tensor([True, False]))
    assert state["k"].shape[2] == 9  # shapes unchanged, slots invalidated
    assert not state["valid"][0].any() and state["valid"][1].all()
    assert state["pos"].tolist() == [0, 9]
    assert (state["last"][0] == 0).all() and (state["last"][1] != 0).any()

    windowed = build(window=4)
    state = windowed.initial(1)
    lengths = []
    for _ in range(6):
        _, state = windowed.step(torch.randn(1, INPUT_DIM), state)
        lengths.append(state["k"].shape[2])
    assert lengths == [1, 2, 3, 4, 4, 4]
    _, state = windowed(torch.randn(1, 2, INPUT_DIM), None, windowed.initial(1))
    assert state["k"].shape[2] == 2
    _, state = windowed(torch.randn(1, 10, INPUT_DIM), None, state)
    assert state["k"].shape[2] == 4


@pytest.mark.parametrize("window", [None, 6])
def test_an_acting_cache_keeps_only_what_can_still_be_attended(window):
    """Episodes of 10 steps in two envs, out of phase: the cache holds at most the longest live episode, not every
    step since the start (slots invalid in every row are dropped); a whole sequence gives the same state."""
    core = build(window=window)
    state, lengths = core.initial(2), []
    xs, resets = torch.randn(2, 60, INPUT_DIM), torch.zeros(2, 60, dtype=torch.bool)
    resets[0, ::10], resets[1, 5::10] = True, True
    for t in range(60):
        state = core.reset(state, resets[:, t])
        _, state = core.step(xs[:, t], state)
        lengths.append(state["k"].shape[2])
    assert max(lengths) <= (window or 15)  # row 1's episode starts 5 steps after row 0's: at most 15 slots
    _, parallel = core(xs, resets, core.initial(2))
    for key in ("k", "v", "valid", "pos"):
        torch.testing.assert_close(parallel[key], state[key], msg=key)


def test_positions_restart_at_each_reset():
    core = build()
    reset = torch.zeros(1, 8, dtype=torch.bool)
    reset[0, 5] = True
    _, state = core(torch.randn(1, 8, INPUT_DIM), reset)
    assert state["pos"].tolist() == [3]
    assert state["valid"][0].tolist() == [True] * 3  # the first episode's slots are dropped: no row attends them
    two_rows = torch.zeros(2, 8, dtype=torch.bool)
    two_rows[0, 5] = True
    _, state = core(torch.randn(2, 8, INPUT_DIM), two_rows)
    assert state["valid"].tolist() == [[False] * 5 + [True] * 3, [True] * 8]  # kept while another row needs them


def test_bad_config():
    with pytest.raises(ValueError, match="n_heads"):
        sequence.make("attention", 3, width=10, n_heads=4)
    with pytest.raises(ValueError, match="even"):
        sequence.make("attention", 3, width=12, n_heads=4)
    with pytest.raises(ValueError, match="window"):
        sequence.make("attention", 3, width=8, n_heads=2, window=0)
