"""Lambda returns and percentile return normalisation against hand-computed values."""

import pytest
import torch

from ssmworld.dreamer.behavior import ReturnNormalizer, lambda_returns


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


def make_actor_critic(discrete=True, **cfg):
    from ssmworld.dreamer.behavior import ActorCritic, ActorCriticConfig

    torch.manual_seed(0)
    return ActorCritic(feat_dim=3, action_dim=2, discrete=discrete, cfg=ActorCriticConfig(units=16, layers=1, **cfg))


def test_reinforce_moves_the_policy_towards_the_rewarded_action():
    ac = make_actor_critic(entropy=0.0)
    opt = torch.optim.Adam(ac.actor.parameters(), lr=1e-2)
    feat = torch.ones(2, 256, 3)  # one state, horizon 1, 256 trajectories
    for _ in range(30):
        action = ac.policy(feat[0]).sample()
        reward = action[None, :, 0].clone()  # action 0 pays 1, action 1 pays 0
        actor_loss, _, _ = ac.loss(feat, action[None], reward, torch.ones(1, 256))
        opt.zero_grad()
        actor_loss.backward()
        opt.step()
    assert ac.policy(feat[0, :1]).probs[0, 0] > 0.9


def test_trajectory_weights_and_slow_critic_ema():
    ac = make_actor_critic()
    # weight w_t = start * prod_{k<t} gamma c_k: a terminal transition at t=0 zeroes the later steps' losses
    feat = torch.randn(4, 5, 3)
    action = torch.nn.functional.one_hot(torch.randint(2, (3, 5)), 2).float()
    cont = torch.ones(3, 5)
    cont[0] = 0.0
    actor_loss, _, _ = ac.loss(feat, action, torch.zeros(3, 5), cont)
    ac_masked = make_actor_critic()
    only_first, _, _ = ac_masked.loss(feat[:2], action[:1], torch.zeros(1, 5), cont[:1])
    assert actor_loss.item() == pytest.approx(only_first.item() / 3, rel=1e-5)  # later steps weigh 0 (mean over H=3)
    assert abs(only_first.item()) > 1e-6  # the first step weighs 1 (its entropy bonus at least): not 0 == 0
    with torch.no_grad():
        for p in ac.critic.parameters():
            p.fill_(1.0)
        for p in ac.slow_critic.parameters():
            p.fill_(0.0)
    ac.update_slow_critic()
    assert all(torch.allclose(p, torch.full_like(p, 0.02)) for p in ac.slow_critic.parameters())


def test_continuous_actor_backpropagates_through_the_return():
    ac = make_actor_critic(discrete=False, entropy=0.0)
    feat = torch.randn(2, 8, 3)
    action = ac.policy(feat[0]).sample()  # (8, 2), reparameterised
    reward = -(action - 0.5).square().sum(-1)[None]  # differentiable "dynamics": best action is 0.5
    actor_loss, critic_loss, metrics = ac.loss(feat, action[None], reward, torch.ones(1, 8))
    actor_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ac.actor.parameters())
    assert torch.isfinite(critic_loss) and set(metrics) >= {"loss_actor", "loss_critic", "return_scale"}


@pytest.mark.parametrize("discrete", [True, False])
def test_actor_loss_never_trains_the_critic(discrete):
    """The returns bootstrap on the online critic; for continuous actions they keep their gradient w.r.t. the imagined
    states (dynamics backprop), but the actor objective must not reach the critic's parameters."""
    ac = make_actor_critic(discrete=discrete, entropy=0.0)
    for p in ac.critic.parameters():  # a non-trivial critic (its output layer starts at zero)
        torch.nn.init.normal_(p, std=0.3)
    feat = torch.randn(3, 8, 3, requires_grad=True)
    action = ac.policy(feat[:-1]).sample()
    reward, cont = torch.randn(2, 8), torch.ones(2, 8)
    actor_loss, critic_loss, _ = ac.loss(feat, action, reward, cont)
    actor_loss.backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in ac.critic.parameters())
    if not discrete:
        assert feat.grad is not None and feat.grad[1:].abs().sum() > 0  # through V(s_t), t >= 1
    critic_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ac.critic.parameters())


def test_sample_in_bounds_keeps_the_gradient_of_samples_past_the_bounds():
    from ssmworld.nn import BoundedNormal

    torch.manual_seed(0)
    mean_raw = torch.zeros(2000, 1, requires_grad=True)
    dist = BoundedNormal(mean_raw, torch.full((2000, 1), 10.0))  # std ~1: about a third of the samples fall past +-1
    action = dist.sample_in_bounds()
    assert action.abs().max() <= 1.0 and (action.abs() == 1.0).float().mean() > 0.2
    action.sum().backward()  # d action / d mean_raw = tanh'(0) = 1 for every sample, clamped or not
    torch.testing.assert_close(mean_raw.grad, torch.ones_like(mean_raw))


def test_reinforce_moves_a_continuous_policy_towards_the_best_action():
    ac = make_actor_critic(discrete=False, entropy=0.0, continuous_gradient="reinforce")
    assert not ac.backprop_dynamics
    opt = torch.optim.Adam(ac.actor.parameters(), lr=1e-2)
    feat = torch.ones(2, 256, 3)
    for _ in range(150):
        action = ac.policy(feat[0]).sample().clamp(-1, 1).detach()  # no gradient through the "dynamics"
        reward = -(action - 0.5).square().sum(-1)[None]
        actor_loss, _, _ = ac.loss(feat, action[None], reward, torch.ones(1, 256))
        opt.zero_grad()
        actor_loss.backward()
        opt.step()
    torch.testing.assert_close(ac.policy(feat[0, :1]).mode(), torch.full((1, 2), 0.5), atol=0.1, rtol=0)


def test_dynamics_gradient_needs_a_differentiable_return():
    """With backprop through the dynamics and a return that carries no gradient, the actor's mean learns nothing."""
    ac = make_actor_critic(discrete=False, entropy=0.0)
    feat = torch.ones(2, 64, 3)
    action = ac.policy(feat[0]).sample().detach()
    actor_loss, _, _ = ac.loss(feat, action[None], -(action - 0.5).square().sum(-1)[None], torch.ones(1, 64))
    actor_loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in ac.actor.parameters())
    with pytest.raises(ValueError, match="continuous_gradient"):
        make_actor_critic(discrete=False, continuous_gradient="backprop")


@pytest.mark.parametrize("discrete", [True, False])
def test_actor_and_critic_losses_equal_their_definitions(discrete):
    """r2i.md §3 with an entropy bonus, a terminal start and a terminal step inside the horizon:
    actor = -mean(w (obj + eta H[pi])), obj = log pi(a) sg((R - v) / S) (REINFORCE) or R / S (through the dynamics:
    no baseline, since v(s_t) there would depend on the earlier actions); critic = -mean(w (log p(R) + log p(v_slow)));
    w_0 = start_cont, w_t = w_{t-1} gamma c_{t-1}."""
    import copy

    from ssmworld.nn import TwoHot

    ac = make_actor_critic(discrete=discrete, entropy=0.1)
    with torch.no_grad():
        for p in [*ac.critic.parameters(), *ac.slow_critic.parameters()]:
            p.normal_(std=0.3)
    H, N = 3, 4
    feat = torch.randn(H + 1, N, 3)
    action = ac.policy(feat[:-1]).sample().detach()
    reward, cont = torch.randn(H, N), torch.ones(H, N)
    cont[1, 2] = 0.0
    start_cont = torch.tensor([1.0, 0.0, 1.0, 1.0])
    ref = copy.deepcopy(ac)
    actor_loss, critic_loss, metrics = ac.loss(feat, action, reward, cont, start_cont)
    cfg = ref.cfg
    with torch.no_grad():
        value = TwoHot(ref.critic(feat)).mean
        returns = lambda_returns(reward, cont, value, cfg.gamma, cfg.lam)
        weight = torch.cumprod(torch.cat([start_cont[None], cfg.gamma * cont[:-1]]), 0)
        assert weight[:, 1].tolist() == [0.0, 0.0, 0.0] and weight[2, 2] == 0.0
        scale = ref.normalizer.update(returns)
        policy = ref.policy(feat[:-1])
        objective = policy.log_prob(action) * (returns - value[:-1]) / scale if discrete else returns / scale
        expected_actor = -(weight * (objective + 0.1 * policy.entropy())).mean()
        critic = TwoHot(ref.critic(feat[:-1]))
        slow = TwoHot(ref.slow_critic(feat[:-1])).mean
        expected_critic = -(weight * (critic.log_prob(returns) + cfg.slow_critic_reg * critic.log_prob(slow))).mean()
    torch.testing.assert_close(actor_loss.detach(), expected_actor)
    torch.testing.assert_close(critic_loss.detach(), expected_critic)
    torch.testing.assert_close(metrics["return_mean"], returns.mean())


def test_actor_input_norm_learns_the_imagined_states_statistics():
    """actor_input_norm (Drama): the loss updates the running statistics from the imagined states it trains on; the
    policy reads the normalised input; acting (policy alone) leaves them alone; checkpoints keep them."""
    from ssmworld.dreamer.behavior import OneHotPolicy

    ac = make_actor_critic(actor_input_norm=True)
    feat = 5 + 3 * torch.randn(4, 8, 3)
    before = {k: v.clone() for k, v in ac.state_dict().items() if k.startswith("actor_input.")}
    assert set(before) == {"actor_input.mean", "actor_input.var", "actor_input.count"}
    ac.policy(feat)  # acting: no update
    assert all(torch.equal(v, ac.state_dict()[k]) for k, v in before.items())
    action = ac.policy(feat[:-1]).sample()
    ac.loss(feat, action, torch.zeros(3, 8), torch.ones(3, 8))
    torch.testing.assert_close(ac.actor_input.mean, feat[:-1].reshape(-1, 3).mean(0), rtol=1e-3, atol=1e-3)
    normalised = (feat - ac.actor_input.mean) / torch.sqrt(ac.actor_input.var + 1e-8)
    torch.testing.assert_close(ac.policy(feat).probs, OneHotPolicy(ac.actor(normalised), ac.cfg.unimix).probs)


def test_slow_critic_target_return_is_the_lambda_return_of_slow_values():
    """slow_critic_target=return (Drama): the critic's second target is the lambda-return computed with the slow
    critic's values instead of the slow critic's value of each state."""
    import copy

    from ssmworld.nn import TwoHot

    ac = make_actor_critic(slow_critic_target="return")
    with torch.no_grad():
        for p in [*ac.critic.parameters(), *ac.slow_critic.parameters()]:
            p.normal_(std=0.3)
    feat, reward, cont = torch.randn(4, 6, 3), torch.randn(3, 6), torch.ones(3, 6)
    action = ac.policy(feat[:-1]).sample()
    ref = copy.deepcopy(ac)
    _, critic_loss, _ = ac.loss(feat, action, reward, cont)
    cfg = ref.cfg
    with torch.no_grad():
        returns = lambda_returns(reward, cont, TwoHot(ref.critic(feat)).mean, cfg.gamma, cfg.lam)
        slow_returns = lambda_returns(reward, cont, TwoHot(ref.slow_critic(feat)).mean, cfg.gamma, cfg.lam)
        weight = torch.cumprod(torch.cat([torch.ones(1, 6), cfg.gamma * cont[:-1]]), 0)
        critic = TwoHot(ref.critic(feat[:-1]))
        expected = -(weight * (critic.log_prob(returns) + cfg.slow_critic_reg * critic.log_prob(slow_returns))).mean()
    torch.testing.assert_close(critic_loss.detach(), expected)
