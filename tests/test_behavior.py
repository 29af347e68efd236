"""Lambda returns and percentile return normalisation against hand-computed values."""

import pytest
import torch

from ssmworld.behavior import ReturnNormalizer, lambda_returns


def test_lambda_returns_hand_computed():
    reward = torch.tensor([1.0, 2.0])
    cont = torch.tensor([1.0, 0.5])
    value = torch.tensor([10.0, 20.0, 30.0])  # V(s_0), V(s_1), V(s_2)
    gamma, lam = 0.9, 0.5
    r1 = 2.0 + 0.9 * 0.5 * 30.0  # last step bootstraps on V(s_2): 15.5
    r0 = 1.0 + 0.9 * 1.0 * (0.5 * 20.0 + 0.5 * r1)  # (1-lam) V(s_1) + lam R_1: 1 + 0.9 * 17.75 = 16.975
    torch.testing.assert_close(lambda_returns(reward, cont, value, gamma, lam), torch.tensor([r0, r1]))


def test_lambda_returns_limits():
    reward, cont, value = torch.rand(5, 3), torch.ones(5, 3), torch.rand(6, 3)
    # lam = 0: one-step TD targets on V(s_{t+1})
    torch.testing.assert_close(lambda_returns(reward, cont, value, 0.9, 0.0), reward + 0.9 * value[1:])
    # lam = 1: discounted Monte-Carlo sum plus the discounted final value
    mc = sum(0.9**k * reward[k] for k in range(5)) + 0.9**5 * value[5]
    torch.testing.assert_close(lambda_returns(reward, cont, value, 0.9, 1.0)[0], mc)
    with pytest.raises(ValueError, match="H\\+1"):
        lambda_returns(reward, cont, value[:5], 0.9, 0.9)


def test_return_normalizer_hand_computed():
    norm = ReturnNormalizer(decay=0.5)
    returns = torch.arange(101, dtype=torch.float32)  # P5 = 5, P95 = 95
    scale = norm.update(returns)
    assert norm.ema_low.item() == pytest.approx(2.5) and norm.ema_high.item() == pytest.approx(47.5)
    assert scale.item() == pytest.approx(45.0)
    norm.update(returns)
    assert norm.scale().item() == pytest.approx(0.75 * 90)
    small = ReturnNormalizer()
    assert small.update(torch.full((10,), 0.3)).item() == 1.0  # never scales returns up
    assert set(small.state_dict()) == {"ema_low", "ema_high"}
