"""Distributions and layers, against hand-computed values."""

import math

import pytest
import torch

from ssmworld.nn import MLP, Bernoulli, BoundedNormal, CategoricalLatent, TwoHot, symexp, symlog


def test_symlog_symexp_hand_values_and_round_trip():
    x = torch.tensor([0.0, math.e - 1, -(math.e - 1), math.exp(3) - 1])
    torch.testing.assert_close(symlog(x), torch.tensor([0.0, 1.0, -1.0, 3.0]))
    v = torch.tensor([-1e6, -3.5, -1e-3, 0.0, 2.0, 1e8])
    torch.testing.assert_close(symexp(symlog(v)), v, rtol=1e-5, atol=0)


def test_two_hot_target_hand_computed():
    dist = TwoHot(torch.zeros(5), low=-2, high=2)  # bins -2, -1, 0, 1, 2 (symlog space)
    value = symexp(torch.tensor([0.25, 1.0, 2.0, 7.0, -1.5]))
    expected = torch.tensor([
        [0, 0, 0.75, 0.25, 0],  # between bins 0 and 1
        [0, 0, 0, 1, 0],  # exactly on a bin
        [0, 0, 0, 0, 1],  # the last bin
        [0, 0, 0, 0, 1],  # clipped above
        [0.5, 0.5, 0, 0, 0],
    ])
    torch.testing.assert_close(dist.target(value), expected)


def test_two_hot_round_trip_and_log_prob():
    value = torch.tensor([-300.0, -1.0, 0.0, 0.3, 42.0, 1e5])
    target = TwoHot(torch.zeros(255)).target(value)
    dist = TwoHot(target.clamp_min(1e-30).log())  # a distribution equal to the two-hot target
    torch.testing.assert_close(dist.mean, value, rtol=1e-4, atol=1e-5)
    # log_prob = sum target * log softmax: uniform logits give log(1/255) whatever the target
    torch.testing.assert_close(TwoHot(torch.zeros(6, 255)).log_prob(value), torch.full((6,), -math.log(255)))


def test_two_hot_log_prob_reads_two_bins_as_the_dense_product():
    """log_prob gathers the two weighted bins; the dense sum over target * log_softmax is the reference, values and
    gradients, including a second call on the same distribution (the critic's two targets share its log-softmax)."""
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 255, dtype=torch.float64, requires_grad=True)
    values = [symexp(torch.randn(3, 7, dtype=torch.float64) * 4), torch.full((3, 7), 1e12, dtype=torch.float64)]
    dist = TwoHot(logits)
    fast = sum(dist.log_prob(v).sum() for v in values)
    (fast_grad,) = torch.autograd.grad(fast, logits)
    dense = sum((TwoHot(logits).target(v) * logits.log_softmax(-1)).sum() for v in values)
    (dense_grad,) = torch.autograd.grad(dense, logits)
    torch.testing.assert_close(fast, dense)
    torch.testing.assert_close(fast_grad, dense_grad)


def test_categorical_latent_unimix_kl_and_straight_through():
    logits = torch.tensor([[[10.0, -10.0]]])  # one group of two classes, almost one-hot before mixing
    dist = CategoricalLatent(logits, unimix=0.01)
    p = torch.sigmoid(torch.tensor(20.0))
    torch.testing.assert_close(dist.probs[0, 0], torch.stack([0.99 * p + 0.005, 0.99 * (1 - p) + 0.005]))
    uniform = CategoricalLatent(torch.zeros(1, 1, 2), unimix=0.01)
    q = dist.probs[0, 0]
    expected_kl = (q * (q / 0.5).log()).sum()
    torch.testing.assert_close(dist.kl(uniform), expected_kl.reshape(1))
    torch.testing.assert_close(uniform.kl(uniform), torch.zeros(1))
    # straight-through: the sample is one-hot, and its gradient is that of the probabilities
    logits = torch.randn(4, 3, 5, requires_grad=True)
    sample = CategoricalLatent(logits).sample()
    hard = sample.detach().round()
    torch.testing.assert_close(sample.detach(), hard, atol=1e-6, rtol=0)
    assert torch.equal(hard.sum(-1), torch.ones(4, 3)) and set(hard.unique().tolist()) <= {0.0, 1.0}
    weights = torch.randn(4, 3, 5)
    (sample * weights).sum().backward()
    grad_st = logits.grad.clone()
    logits.grad = None
    (CategoricalLatent(logits).probs * weights).sum().backward()
    torch.testing.assert_close(grad_st, logits.grad)


def test_distributions_without_unimix_stay_finite_when_saturated():
    """unimix=0 (Drama's actor): a logit gap of 200 rounds the small probability to 0 in float32; the log-probs come
    from log_softmax, so log_prob, entropy and KL are finite (0 * log 0 = 0) and equal their limits."""
    from ssmworld.dreamer.behavior import OneHotPolicy

    logits = torch.tensor([[[200.0, 0.0]]])  # (1, groups=1, classes=2)
    dist = CategoricalLatent(logits, unimix=0.0)
    assert dist.probs.tolist() == [[[1.0, 0.0]]]
    assert dist.log_prob(torch.tensor([[[0.0, 1.0]]])).item() == -200.0
    assert dist.entropy().item() == 0.0
    other = CategoricalLatent(torch.zeros(1, 1, 2), unimix=0.0)
    assert math.isclose(dist.kl(other).item(), math.log(2), rel_tol=1e-6)  # KL(onehot || uniform over 2)
    policy = OneHotPolicy(logits[0], unimix=0.0)
    assert policy.entropy().item() == 0.0 and policy.log_prob(torch.tensor([[0.0, 1.0]])).item() == -200.0
    mixed = OneHotPolicy(logits[0], unimix=0.5)  # with a mix: 0.75 / 0.25, as before
    assert torch.allclose(mixed.probs, torch.tensor([[0.75, 0.25]]))


def test_bernoulli_and_bounded_normal():
    b = Bernoulli(torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(b.log_prob(torch.tensor([1.0, 0.0])), torch.tensor([math.log(0.5), math.log(1 - torch.sigmoid(torch.tensor(2.0)).item())]))
    assert b.mode().tolist() == [0.0, 1.0]
    n = BoundedNormal(torch.tensor([[0.5, -40.0]]), torch.tensor([[-1e4, 1e4]]))
    torch.testing.assert_close(n.std, torch.tensor([[0.1, 1.0]]))
    torch.testing.assert_close(n.mean, torch.tanh(torch.tensor([[0.5, -40.0]])))
    value = torch.tensor([[0.2, -0.3]])
    reference = torch.distributions.Normal(n.mean, n.std)
    torch.testing.assert_close(n.log_prob(value), reference.log_prob(value).sum(-1))
    torch.testing.assert_close(n.entropy(), reference.entropy().sum(-1))
    # values at the bounds (clamped samples) get the tail mass past them: a censored Normal
    at_bounds = torch.tensor([[1.0, -1.0]])
    upper = 0.5 * math.erfc((1 - math.tanh(0.5)) / (0.1 * math.sqrt(2)))  # P(X >= 1), mean tanh(0.5), std 0.1
    lower = 0.5  # P(X <= -1), mean -1, std 1
    torch.testing.assert_close(n.log_prob(at_bounds), torch.tensor([math.log(upper) + math.log(lower)]))


def test_mlp_shapes_and_zero_output():
    mlp = MLP(7, 16, 2, out_dim=255, zero_output=True)
    y = mlp(torch.randn(3, 4, 7))
    assert y.shape == (3, 4, 255) and torch.equal(y, torch.zeros_like(y))
    assert MLP(7, 16, 2).output_dim == 16


def test_categorical_sampling_matches_the_probabilities():
    from ssmworld.nn.distributions import onehot, sample_index

    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.2, 0.0, 0.7]]).expand(200_000, 4)
    index = sample_index(probs)
    freq = torch.bincount(index, minlength=4).float() / len(index)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.0, 0.7]), atol=5e-3, rtol=0)
    assert onehot(torch.tensor([2, 0]), 3, torch.float32).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_small_softmax_equals_torch_softmax_with_its_gradient():
    from ssmworld.nn.distributions import softmax

    gen = torch.Generator().manual_seed(0)
    for classes in (1, 2, 3, 8, 15, 16, 32):
        x = (10 * torch.randn(6, 5, classes, generator=gen, dtype=torch.float64)).requires_grad_()
        y = softmax(x)
        torch.testing.assert_close(y, x.softmax(-1), rtol=0, atol=1e-12)
        grad = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        (mine,) = torch.autograd.grad(y, x, grad)
        (ref,) = torch.autograd.grad(x.softmax(-1), x, grad)
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-12)
    x = torch.randn(4, 3, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(softmax, (x,))
    big = torch.tensor([[1000.0, 0.0, -1000.0]])  # the max is subtracted: no overflow
    torch.testing.assert_close(softmax(big), torch.tensor([[1.0, 0.0, 0.0]]))


def test_running_norm_combines_batches_as_one_and_clips():
    """The statistics of two updates equal those of the concatenated inputs (up to the N(0, 1) prior's 1e-4 weight);
    forward normalises with them and clips to +-clip."""
    from ssmworld.nn import RunningNorm

    gen = torch.Generator().manual_seed(0)
    a, b = 3 + 2 * torch.randn(50, 4, generator=gen), 3 + 2 * torch.randn(7, 5, 4, generator=gen)
    norm = RunningNorm(4, clip=1.5)
    norm.update(a)
    norm.update(b)
    both = torch.cat([a, b.reshape(-1, 4)])
    torch.testing.assert_close(norm.mean, both.mean(0), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(norm.var, both.var(0, unbiased=False), rtol=1e-5, atol=1e-4)
    assert norm.count.item() == pytest.approx(85 + 1e-4)
    x = torch.stack([norm.mean, norm.mean + torch.sqrt(norm.var), norm.mean + 10 * torch.sqrt(norm.var)])
    torch.testing.assert_close(norm(x), torch.tensor([[0.0] * 4, [1.0] * 4, [1.5] * 4]), rtol=0, atol=1e-4)
    assert {"mean", "var", "count"} <= set(norm.state_dict())


@pytest.mark.parametrize("out_features", [255, 256, 18, 100])
def test_padded_linear_equals_linear_in_values_and_gradients(out_features):
    """PaddedLinear (the two-hot heads' output layer) computes nn.Linear with the same parameters, padded or not."""
    from ssmworld.nn.layers import PaddedLinear

    torch.manual_seed(0)
    padded = PaddedLinear(32, out_features).double()
    plain = torch.nn.Linear(32, out_features).double()
    plain.load_state_dict(padded.state_dict())
    x = torch.randn(5, 7, 32, dtype=torch.float64, requires_grad=True)
    y = padded(x)
    assert y.shape == (5, 7, out_features) and y.is_contiguous()
    torch.testing.assert_close(y, plain(x), atol=1e-12, rtol=0)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, padded.weight, padded.bias), g)
    expected = torch.autograd.grad(plain(x), (x, plain.weight, plain.bias), g)
    for got, want in zip(grads, expected):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
