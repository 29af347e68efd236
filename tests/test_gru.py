"""The DreamerV3 block GRU: one step worked out by hand, the update-gate bias, the learned initial state."""

from __future__ import annotations

import math

import pytest
import torch

from ssmworld import sequence

EPS = 1e-3


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def layer_norm(z: list[float]) -> list[float]:
    mean = sum(z) / len(z)
    var = sum((v - mean) ** 2 for v in z) / len(z)
    return [(v - mean) / math.sqrt(var + EPS) for v in z]


def make_core(blocks: int, weight: list) -> sequence.SequenceCore:
    core = sequence.make("gru", 1, width=2, blocks=blocks, norm_eps=EPS).double()
    with torch.no_grad():
        core.weight.copy_(torch.tensor(weight, dtype=torch.float64))
    return core


def test_single_step_by_hand_one_block():
    # One group: concat(x, h1, h2) (3,) -> (r1, r2, c1, c2, u1, u2).
    x_row, h1_row, h2_row = [1.0, -1.0, 2.0, 0.0, 0.0, 3.0], [1.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1.0]
    core = make_core(1, [[x_row, h1_row, h2_row]])
    x, h = 1.0, [0.5, -0.5]
    z = [1.0 + 0.5, -1.0, 2.0, 0.0, 0.0, 3.0 - 0.5]  # x row + h1 * (h1 row) + h2 * (h2 row)
    n = layer_norm(z)
    r = [sigmoid(n[0]), sigmoid(n[1])]
    c = [math.tanh(r[0] * n[2]), math.tanh(r[1] * n[3])]
    u = [sigmoid(n[4] - 1), sigmoid(n[5] - 1)]
    expected = [u[i] * c[i] + (1 - u[i]) * h[i] for i in range(2)]

    y, state = core.step(torch.tensor([[x]], dtype=torch.float64), {"hidden": torch.tensor([h], dtype=torch.float64)})
    torch.testing.assert_close(y, torch.tensor([expected], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(state["hidden"], y)


def test_single_step_by_hand_two_blocks_groups_do_not_mix():
    # Group g: concat(x, h_g) (2,) -> (r, c, u) of unit g only.
    core = make_core(2, [[[0.0, 1.0, 5.0], [2.0, 0.0, 0.0]], [[1.0, -1.0, 0.0], [0.0, 0.0, 4.0]]])
    x, h = 2.0, [0.5, -0.25]
    z = [[0.0 + 1.0, 2.0, 10.0], [2.0, -2.0, -1.0]]  # group 0: 2 * x row + 0.5 * h row; group 1: likewise
    expected = []
    for g in range(2):
        r_, c_, u_ = layer_norm(z[g])
        r = sigmoid(r_)
        c = math.tanh(r * c_)
        u = sigmoid(u_ - 1)
        expected.append(u * c + (1 - u) * h[g])

    x_t = torch.tensor([[x]], dtype=torch.float64)
    y, _ = core.step(x_t, {"hidden": torch.tensor([h], dtype=torch.float64)})
    torch.testing.assert_close(y, torch.tensor([expected], dtype=torch.float64), atol=1e-12, rtol=0)
    # Unit 0 sees only h_0: changing h_1 leaves it unchanged.
    y2, _ = core.step(x_t, {"hidden": torch.tensor([[h[0], 0.9]], dtype=torch.float64)})
    assert y2[0, 0] == y[0, 0] and y2[0, 1] != y[0, 1]


def test_update_gate_bias():
    """With zero weights the gates see only the norm bias: u = sigmoid(-1), r = 1/2, c = tanh(r * bias_c)."""
    core = sequence.make("gru", 3, width=4, blocks=2, initial="zeros")
    with torch.no_grad():
        core.weight.zero_()
        core.norm_bias.zero_()
        core.norm_bias[:, 2:4] = 1.0  # the candidate units of each group (group width 2)
    h = torch.randn(5, 4)
    y, _ = core.step(torch.randn(5, 3), {"hidden": h})
    u = torch.sigmoid(torch.tensor(-1.0))
    c = math.tanh(0.5)
    torch.testing.assert_close(y, u * c + (1 - u) * h)


def test_learned_initial_is_tanh_of_parameter():
    core = sequence.make("gru", 3, width=8, blocks=4)
    with torch.no_grad():
        core.initial_hidden.copy_(torch.linspace(-3, 3, 8))
    hidden = core.initial(2)["hidden"]
    assert hidden.shape == (2, 8)
    torch.testing.assert_close(hidden, torch.tanh(torch.linspace(-3, 3, 8)).expand(2, 8))
    zeros = sequence.make("gru", 3, width=8, blocks=4, initial="zeros")
    assert not any("initial" in n for n, _ in zeros.named_parameters())
    assert torch.equal(zeros.initial(2)["hidden"], torch.zeros(2, 8))


def test_parallel_uses_the_same_cell_as_step():
    core = sequence.make("gru", 3, width=16, blocks=4)
    x = torch.randn(2, 7, 3)
    y, state = core(x)
    h = core.initial(2)
    for t in range(7):
        y_t, h = core.step(x[:, t], h)
        torch.testing.assert_close(y[:, t], y_t)
    torch.testing.assert_close(state["hidden"], h["hidden"])
    assert core.features(state).shape == (2, core.state_features_dim) == (2, 16)


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of blocks"):
        sequence.make("gru", 3, width=10, blocks=4)
    with pytest.raises(ValueError, match="initial"):
        sequence.make("gru", 3, width=8, blocks=4, initial="random")
