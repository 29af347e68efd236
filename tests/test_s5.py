"""S5-specific facts: HiPPO-LegS initialisation, discretisation, and the official R2I reset defects."""

import contextlib
import math

import pytest
import torch

from ssmworld import sequence
from ssmworld.sequence.s5 import S5Config, S5Layer, hippo_legs_normal


def test_hippo_legs_hand_computed_size_2():
    # S = A + p p^T = [[-1/2, sqrt(3)/2], [-sqrt(3)/2, -1/2]] -> eigenvalues -1/2 +- i sqrt(3)/2
    lam, v = hippo_legs_normal(2)
    torch.testing.assert_close(lam.real, torch.full((2,), -0.5, dtype=torch.float64))
    torch.testing.assert_close(lam.imag.sort().values, torch.tensor([-math.sqrt(3) / 2, math.sqrt(3) / 2], dtype=torch.float64))
    s = torch.tensor([[-0.5, math.sqrt(3) / 2], [-math.sqrt(3) / 2, -0.5]], dtype=torch.complex128)
    torch.testing.assert_close(v @ torch.diag(lam) @ v.conj().T, s)


@pytest.mark.parametrize("n,max_imag", [(16, 80.966), (64, 1303.27)])
def test_hippo_legs_spectrum_matches_r2i(n, max_imag):
    lam, v = hippo_legs_normal(n)
    assert torch.allclose(lam.real, torch.tensor(-0.5, dtype=torch.float64))
    assert abs(lam.imag.abs().max().item() - max_imag) < 1e-2
    torch.testing.assert_close(v.conj().T @ v, torch.eye(n, dtype=torch.complex128))


def test_block_diagonal_init_and_step_range():
    core = sequence.make("s5", 8, width=8, state_size=32, n_layers=1, n_blocks=8)
    layer = core.layers[0]
    lam_block, _ = hippo_legs_normal(4)
    torch.testing.assert_close(layer.lambda_im.double(), lam_block.imag.repeat(8), atol=1e-6, rtol=0)
    step = layer.log_step.exp()
    assert step.min() >= 1e-3 and step.max() <= 1e-1


@pytest.mark.parametrize("method", ["bilinear", "zoh"])
def test_discretization_hand_computed(method):
    core = sequence.make("s5", 1, width=1, state_size=8, n_layers=1, discretization=method)
    layer = core.layers[0]
    with torch.no_grad():
        layer.lambda_re.fill_(-0.5)
        layer.lambda_im.fill_(0.0)
        layer.log_step.fill_(math.log(0.1))
        layer.b_re.fill_(1.0)
        layer.b_im.fill_(0.0)
    lam_bar, b_bar = layer.discretize()
    if method == "bilinear":  # (1 + 0.1*-0.5/2) / (1 - 0.1*-0.5/2) and 0.1 / (1 + 0.025)
        expected_lam, expected_b = 0.975 / 1.025, 0.1 / 1.025
    else:  # exp(-0.05) and (exp(-0.05) - 1) / -0.5
        expected_lam, expected_b = math.exp(-0.05), (math.exp(-0.05) - 1) / -0.5
    torch.testing.assert_close(lam_bar.real, torch.full((8,), expected_lam))
    torch.testing.assert_close(b_bar.real, torch.full((8, 1), expected_b))


def _reference(core, x, reset, early: bool):
    """Sequential reference. early=True is the official R2I scan: each reset flag attached one step early."""
    if early:
        reset = torch.cat([reset[:, 1:], torch.zeros_like(reset[:, :1])], 1)
    state, ys = core.initial(x.shape[0]), []
    for t in range(x.shape[1]):
        y, state = core.step(x[:, t], state, reset=reset[:, t])
        ys.append(y)
    return torch.stack(ys, 1)


def test_reset_is_exact_not_one_step_early():
    torch.manual_seed(0)
    core = sequence.make("s5", 3, width=8, state_size=8, n_layers=2, initial="learned")
    with torch.no_grad():
        core.initial_ssm.normal_()
    x = torch.randn(2, 30, 3)
    reset = torch.zeros(2, 30, dtype=torch.bool)
    reset[:, [7, 8, 19]] = True  # several resets, two consecutive: the case where R2I's operator also drifts
    with torch.no_grad():
        y, _ = core(x, reset)
        exact = _reference(core, x, reset, early=False)
        early = _reference(core, x, reset, early=True)
    torch.testing.assert_close(y, exact, atol=1e-5, rtol=0)
    assert (y - early).abs().max() > 1e-2  # the off-by-one reset gives visibly different outputs


def test_rollout_reuses_the_weights_with_equal_outputs_and_gradients(monkeypatch):
    torch.manual_seed(0)
    core = sequence.make("s5", 6, width=8, state_size=8, n_layers=2)
    x = torch.randn(3, 5, 6)
    built = []
    weights = S5Layer.weights
    monkeypatch.setattr(S5Layer, "weights", lambda layer: built.append(layer) or weights(layer))

    def run(rollout: bool):
        built.clear()
        core.zero_grad()
        state, ys = core.initial(3), []
        with core.rollout() if rollout else contextlib.nullcontext():
            for t in range(5):
                y, state = core.step(x[:, t], state)
                ys.append(y)
        torch.stack(ys).square().sum().backward()
        return torch.stack(ys).detach(), [p.grad.clone() for p in core.parameters()]

    y_plain, g_plain = run(False)
    assert len(built) == 2 * 5  # every step builds each layer's weights
    y_cached, g_cached = run(True)
    assert len(built) == 2  # once per layer for the whole rollout
    torch.testing.assert_close(y_cached, y_plain, rtol=0, atol=0)
    for a, b in zip(g_cached, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert core._rollout_weights is None
    with pytest.raises(RuntimeError), core.rollout():
        raise RuntimeError("an error inside the rollout")
    assert core._rollout_weights is None  # a later step recomputes (e.g. after an optimiser step)


def test_real_arithmetic_step_equals_the_complex_step():
    """S5Layer.step_real (what a compiled imagination step runs) against step, with and without per-rollout weights."""
    torch.manual_seed(0)
    layer = S5Layer(16, S5Config(width=16, state_size=8, n_blocks=2))
    u, x = torch.randn(5, 16), torch.randn(5, 8, dtype=torch.complex64)
    out, new = layer.step(u, x)
    out_real, new_real = layer.step_real(u, torch.view_as_real(x), layer.weights())
    torch.testing.assert_close(out_real, out)
    torch.testing.assert_close(new_real, torch.view_as_real(new))


def test_a_rollout_for_a_compiled_graph_steps_as_the_complex_core():
    torch.manual_seed(0)
    core = sequence.make("s5", 6, width=16, state_size=8, n_blocks=2, n_layers=2)
    x, state = torch.randn(4, 6), {"ssm": torch.randn(4, 2, 8, 2)}
    h, new = core.step(x, state)
    real_steps = []
    step_real = S5Layer.step_real
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S5Layer, "step_real", lambda *args: real_steps.append(1) or step_real(*args))
        with core.rollout(compiled=True):
            h_real, new_real = core.step(x, state)
    assert len(real_steps) == 2  # both layers in real arithmetic (no complex tensors for TorchInductor)
    torch.testing.assert_close(h_real, h)
    torch.testing.assert_close(new_real["ssm"], new["ssm"])


def test_b_and_c_start_at_the_documented_scale():
    """B (P x H) and C (H x P, re and im): normals of std 1/sqrt(P) and 1/sqrt(H P) cut at 2 stds, whose values have
    0.8796 x those stds (R2I's lecun_normal: exactly those stds; docs/REFERENCE.md says why not). V is unitary, so
    B~ = V^H B and C~ = C V keep the mean square."""
    torch.manual_seed(0)
    P, H = 256, 512
    layer = S5Layer(H, S5Config(width=H, state_size=P))
    b_square = (layer.b_re.double() ** 2 + layer.b_im.double() ** 2).mean().item()
    c_square = (layer.c_re.double() ** 2 + layer.c_im.double() ** 2).mean().item()
    cut = 0.87962566103423978 ** 2  # the variance of a unit normal cut at +-2
    assert b_square == pytest.approx(cut / P, rel=0.02)
    assert c_square == pytest.approx(2 * cut / (H * P), rel=0.02)
