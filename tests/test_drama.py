"""The drama preset reproduces Drama's world-model and actor-critic layout: parameter counts per part as in
docs/REFERENCE.md drama.md §1 and §3."""

import math

import pytest

from ssmworld.dreamer.agent import Agent
from ssmworld.runtime.config import load_config


@pytest.mark.parametrize("actions,total", [(6, 7_155_459), (18, 7_161_603)])
def test_drama_world_model_parameter_counts(actions, total):
    cfg = load_config("drama", "paper", "builtin:recall/5")  # the env only selects overlays; spaces are given here
    agent = Agent({"image": (64, 64, 3)}, actions, True, cfg.agent)
    counts = agent.world_model.parameter_counts()
    assert counts["encoder"] == 232_272
    assert counts["decoder"] == 1_281_811
    assert counts["latent heads"] == 1_574_912  # posterior Linear(1024, 1024) + prior Linear(512, 1024)
    assert counts["reward head"] == 197_119
    assert counts["continue head"] == 131_841
    assert counts["sequence model"] == 3_737_504 - 6 * 512 + actions * 512  # stem Linear(1024 + A, 512) + 2 Mamba-2
    assert counts["total"] == total
    actor, critic = (sum(p.numel() for p in m.parameters()) for m in (agent.actor_critic.actor,
                                                                      agent.actor_critic.critic))
    assert critic == 1_444_607  # drama.md §1: 3 x [Linear(1536 -> 512), RMSNorm, SiLU], Linear(512 -> 255)
    assert actor == 1536 * 256 + 256 + 2 * (256 * 256 + 256) + 3 * 256 + 257 * actions  # 3 x 256: ~0.53M


def tiny_drama(actions=3, **overrides):
    import torch

    torch.manual_seed(0)
    overrides = {"agent.imagination.starts": "batch", **overrides}  # no replay here: contexts from the batch
    cfg = load_config("drama", "debug", "builtin:recall/5", [f"{k}={v}" for k, v in overrides.items()])
    return Agent({"image": (64, 64, 3)}, actions, True, cfg.agent), cfg


def image_batch(B=2, T=8, A=3):
    import torch

    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return dict(obs={"image": torch.randint(0, 256, (B, T, 64, 64, 3), dtype=torch.uint8)},
                action=torch.nn.functional.one_hot(torch.randint(A, (B, T)), A).float(), reward=torch.randn(B, T),
                is_first=is_first, is_terminal=torch.zeros(B, T, dtype=torch.bool))


def test_d1_reward_and_termination_come_from_the_state_after_the_action():
    """Drama's official imagination applies the heads to h before the action (D1). Ours: reward[k] is predicted
    from s_{k+1}, which depends on a_k."""
    import torch

    agent, _ = tiny_drama(**{"agent.world_model.reward_init": 1.0})
    wm = agent.world_model
    with torch.no_grad():
        out = wm.observe(**{k: v for k, v in image_batch().items() if k in ("obs", "action", "is_first")})
        h, z = out["h"][:, -1], out["z"][:, -1]
        rewards = []
        for a in range(3):
            fixed = torch.nn.functional.one_hot(torch.full((2,), a), 3).float()
            torch.manual_seed(1)
            traj = wm.imagine(h, z, wm.core.initial(2), lambda parts: fixed, horizon=1)
            expected = wm.reward_head(wm.head_features(traj["h"][1], traj["z"][1]))
            torch.testing.assert_close(traj["reward"][0], __import__("ssmworld").nn.TwoHot(expected).mean)
            rewards.append(traj["reward"][0])
    assert not torch.allclose(rewards[0], rewards[1])  # the first transition's reward depends on the action


def test_d2_lambda_returns_bootstrap_on_the_next_state():
    """Drama's official returns use V(s_t) in the (1 - lambda) term (D2); ours use V(s_{t+1})."""
    import torch

    from ssmworld.dreamer.behavior import lambda_returns

    value = torch.tensor([10.0, 1.0, 2.0])  # V(s_0) must not appear in any return
    returns = lambda_returns(torch.zeros(2), torch.ones(2), value, gamma=1.0, lam=0.5)
    assert returns.tolist() == [0.5 * 1.0 + 0.5 * 2.0, 2.0]


def test_d3_imagined_latents_are_exact_one_hot_floats():
    """Drama's CUDA-graph path casts straight-through samples (1 + p - p = 0.99999994) to integers, zeroing ~1/5 of
    them (D3). Ours stay float, and the straight-through sample is exactly one-hot in the forward pass."""
    import torch

    agent, _ = tiny_drama()
    wm = agent.world_model
    logits = torch.randn(4096, wm.latent_dim) * 3
    z = wm.latent(logits.requires_grad_()).sample()
    assert z.dtype == torch.float32 and set(z.detach().unique().tolist()) == {0.0, 1.0}
    assert (z.detach().sum(-1) == 1).all()


def test_d4_checkpoint_keeps_every_statistic_the_policy_uses(tmp_path):
    """Drama's official evaluation restarts its input-normalisation statistics (D4). Ours are buffers: BatchNorm
    running statistics, the return normaliser and the warm-up counter round-trip through a checkpoint."""
    import torch

    from ssmworld.runtime import checkpoint

    agent, _ = tiny_drama()
    for _ in range(3):
        agent.update(image_batch())
    buffers = {n for n, _ in agent.named_buffers()}
    assert any("running_mean" in n for n in buffers) and any("normalizer" in n for n in buffers)
    path = checkpoint.save(str(tmp_path), 3, {"agent": agent.state_dict()}, {})
    fresh, _ = tiny_drama()
    fresh.load_state_dict(checkpoint.load(path)[0]["agent"])
    for (name, a), (_, b) in zip(agent.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    obs = {"image": torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)}
    first = torch.ones(5, dtype=torch.bool)
    torch.manual_seed(7)
    a1, _ = agent.act(obs, first, None, explore=False)
    torch.manual_seed(7)
    a2, _ = fresh.act(obs, first, None, explore=False)
    assert torch.equal(a1, a2) and int(fresh.updates) == 3


def test_acting_uses_batch_norm_running_statistics():
    import torch

    agent, _ = tiny_drama()
    agent.update(image_batch())
    agent.train()
    obs = {"image": torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)}
    with torch.no_grad():
        agent.world_model.eval()
        expected = agent.world_model.encode(obs)
        agent.world_model.train()
    torch.manual_seed(3)
    agent.act(obs, torch.ones(1, dtype=torch.bool), None)
    assert agent.world_model.training  # the mode is restored
    with torch.no_grad():
        agent.world_model.eval()
        torch.testing.assert_close(agent.world_model.encode(obs), expected)


def test_learning_rate_warm_up_with_dramas_optimiser():
    agent, _ = tiny_drama(**{"agent.model_warmup": 4, "agent.model_lr": 1e-3, "agent.actor_critic_warmup": 2,
                             "agent.actor_lr": 1e-4, "agent.critic_lr": 2e-4, "agent.optimizer": "laprop",
                             "agent.model_eps": 1e-20, "agent.actor_critic_eps": 1e-20})
    lrs = []
    for _ in range(6):
        metrics = agent.update(image_batch())
        assert all(math.isfinite(v) for v in metrics.values())
        lrs.append([opt.param_groups[0]["lr"] for opt in (agent.model_opt, agent.actor_opt, agent.critic_opt)])
    assert [lr[0] for lr in lrs] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert [lr[1:] for lr in lrs[:3]] == [pytest.approx([5e-5, 1e-4]), pytest.approx([1e-4, 2e-4]),
                                          pytest.approx([1e-4, 2e-4])]


def test_acting_with_the_carried_state_equals_re_encoding_the_episode():
    """Drama acts by re-encoding the last <= 16 real steps at every step; ssmworld carries the core state in step mode.
    On an episode of <= 16 steps both see the same history, so they choose the same actions (latents: the posterior
    mode on both sides, so the comparison is deterministic)."""
    import torch

    from ssmworld.nn import distributions

    torch.manual_seed(0)
    cfg = load_config("drama", "debug", "builtin:recall/5")
    agent = Agent({"vector": 5}, 4, True, cfg.agent)
    wm = agent.world_model
    obs = torch.randn(1, 12, 5) * 3
    mode = distributions.CategoricalLatent.mode
    original = distributions.CategoricalLatent.sample
    distributions.CategoricalLatent.sample = lambda self: mode(self) + (self.probs - self.probs.detach())
    try:
        carried, state = [], None
        for t in range(12):
            action, state = agent.act({"vector": obs[:, t]}, torch.tensor([t == 0]), state, explore=False)
            carried.append(action)
        reencoded = []
        with torch.no_grad():
            for t in range(12):
                actions = torch.cat(reencoded + [torch.zeros(1, 4)], 0)[None]  # (1, t+1, A): a_0..a_{t-1}, pad
                first = torch.zeros(1, t + 1, dtype=torch.bool)
                first[:, 0] = True
                out = wm.observe({"vector": obs[:, : t + 1]}, actions, first)
                parts = {"h": out["h"][:, -1], "z": out["z"][:, -1], "x": wm.core.features(out["state"])}
                reencoded.append(agent.actor_critic.policy(agent.features(parts)).mode())
    finally:
        distributions.CategoricalLatent.sample = original
    assert torch.equal(torch.cat(carried), torch.cat(reencoded))
    assert len({int(a.argmax()) for a in carried}) > 1  # the comparison is not between constant policies


def test_drama_mamba1_world_model_parameter_count():
    cfg = load_config("drama-mamba1", "paper", "atari:Pong")
    assert cfg.agent.world_model.core == "mamba" and cfg.agent.imagination.starts == "replay"  # inherited from drama
    agent = Agent({"image": (64, 64, 3)}, 6, True, cfg.agent)
    assert agent.world_model.parameter_counts()["total"] == 7_337_315


def test_laprop_hand_computed_steps():
    import torch

    from ssmworld.dreamer.optim import LaProp

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = LaProp([p], lr=0.1, betas=(0.5, 0.75), eps=0.0)
    p.grad = torch.tensor([2.0, -1.0])
    opt.step()
    # v = 0.25 g^2, v_hat = g^2; m = 0.5 g/|g|; m_hat = m / 0.5 = sign(g): a step of lr * sign(g)
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9]))
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()
    # v = 0.75*[1, 0.25] + 0.25*[1, 1] = [1, 0.4375]; v_hat = v / (1 - 0.5625) = [2.2857, 1.0]
    # m = 0.5*[0.5, -0.5] + 0.5*[1/1.5119, 1/1.0] = [0.5807, 0.25]; m_hat = m / 0.75
    v_hat = torch.tensor([1.0, 0.4375]) / (1 - 0.75 ** 2)
    m = 0.5 * torch.tensor([0.5, -0.5]) + 0.5 * torch.tensor([1.0, 1.0]) / v_hat.sqrt()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9]) - 0.1 * m / 0.75)


def test_laprop_decoupled_weight_decay_hand_computed():
    import torch

    from ssmworld.dreamer.optim import LaProp

    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = LaProp([p], lr=0.1, betas=(0.5, 0.75), eps=0.0, weight_decay=0.5)
    p.grad = torch.tensor([3.0])
    opt.step()
    # decay first: 2 * (1 - 0.1 * 0.5) = 1.9; then the step of lr * sign(g) (as above): 1.9 - 0.1
    torch.testing.assert_close(p.detach(), torch.tensor([1.8]))


def test_agent_trains_with_laprop():
    agent, _ = tiny_drama(**{"agent.optimizer": "laprop"})
    assert type(agent.model_opt).__name__ == "LaProp"
    metrics = agent.update(image_batch())
    assert all(abs(v) < float("inf") for v in metrics.values())


def test_trainer_draws_imagination_contexts_from_replay_with_dfs_counts(tmp_path):
    """drama: every update draws a world-model batch (n_i += 1 at its B starts) and imagination.count contexts of 8
    steps (m_i += 1 at their starts) from replay; both counts survive a checkpoint."""
    import numpy as np

    from ssmworld.runtime.train import Trainer

    cfg = load_config("drama", "debug", "builtin:recall/5")
    assert cfg.agent.imagination.starts == "replay" and cfg.train.sampler == "dfs"
    cfg.train.steps, cfg.train.eval_episodes = 60, 0
    trainer = Trainer(cfg, str(tmp_path), quiet=True)
    trainer.run()
    assert trainer.updates > 0
    chunks = list(trainer.replay.chunks)
    assert sum(int(c.visits.sum()) for c in chunks) == trainer.updates * cfg.train.batch_size
    assert sum(int(c.contexts.sum()) for c in chunks) == trainer.updates * cfg.agent.imagination.count
    resumed = Trainer(cfg, str(tmp_path), resume=True, quiet=True)
    for a, b in zip(chunks, resumed.replay.chunks):
        assert np.array_equal(a.contexts, b.contexts) and np.array_equal(a.visits, b.visits)


def test_dfs_contexts_need_enough_prefill():
    from ssmworld.runtime.train import Trainer

    cfg = load_config("drama", "debug", "builtin:recall/5", ["train.prefill=20"])
    with pytest.raises(ValueError, match="train.prefill must be >= 39"):
        Trainer(cfg, quiet=True)


def test_imagination_contexts_from_replay_do_not_move_batch_norm_statistics():
    """starts=replay encodes the drawn context windows inside the update, with the model in train mode: in eval mode
    (the running statistics normalise them, and they stay as they are), as acting does."""
    import torch

    agent, _ = tiny_drama()
    wm = agent.world_model
    agent.update(image_batch())  # the statistics move off their initial values
    wm.train()
    before = {n: b.clone() for n, b in wm.named_buffers() if "running" in n}
    assert before
    windows = image_batch(B=4, T=8)
    with torch.no_grad():
        torch.manual_seed(5)
        h, z, _, _ = wm.context_windows(windows)
        assert wm.training
        for name, value in wm.named_buffers():
            if name in before:
                assert torch.equal(value, before[name]), name
        wm.eval()
        torch.manual_seed(5)
        h_eval, z_eval, _, _ = wm.context_windows(windows)
    torch.testing.assert_close(h, h_eval)
    assert torch.equal(z, z_eval)
