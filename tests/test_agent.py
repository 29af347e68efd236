"""Agent: one full update (world model + imagination + actor-critic) for every core, discrete and continuous;
acting carries the core state and matches the training pass."""

import pytest
import torch

from ssmworld.dreamer.agent import Agent, AgentConfig, require_compiler, world_model_optimizer
from ssmworld.dreamer.behavior import ActorCriticConfig
from ssmworld.dreamer.imagination import ImaginationConfig
from ssmworld.dreamer.world_model import WorldModelConfig
from ssmworld.errors import UserError

from .test_world_model import CORE_CFGS, batch


def make_agent(core, discrete=True, policy_input="hidden", starts=None, imagination="posterior",
               continuous_gradient="dynamics", compile_imagination=False):
    torch.manual_seed(0)
    cfg = AgentConfig(
        world_model=WorldModelConfig.with_core(core, CORE_CFGS[core], units=32, latent_groups=4, latent_classes=4),
        actor_critic=ActorCriticConfig(units=32, layers=1, continuous_gradient=continuous_gradient),
        policy_input=policy_input,
        imagination=ImaginationConfig(horizon=4, starts=imagination, context=4, count=starts),
        compile_imagination=compile_imagination)
    return Agent({"vector": 5, "cue": 2}, 4, discrete, cfg)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("core", ["s5", "mamba", "mamba2", "gru"])
def test_one_full_update(core, discrete):
    agent = make_agent(core, discrete, starts=16 if core == "mamba" else None)
    before = {n: p.detach().clone() for n, p in agent.named_parameters()}
    metrics = agent.update(batch(continuous=not discrete))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    changed = {n.split(".")[0] + "." + n.split(".")[1] for n, p in agent.named_parameters()
               if not torch.equal(before[n], p)}
    assert {"world_model.core", "actor_critic.actor", "actor_critic.critic", "actor_critic.slow_critic"} <= changed


def test_one_full_update_with_reinforce_for_continuous_actions():
    agent = make_agent("s5", discrete=False, continuous_gradient="reinforce")
    actor = [p.detach().clone() for p in agent.actor_critic.actor.parameters()]
    metrics = agent.update(batch(continuous=True))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    assert metrics["grad_norm_actor"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(actor, agent.actor_critic.actor.parameters()))


def test_attention_core_needs_context_imagination():
    agent = make_agent("attention")
    with pytest.raises(NotImplementedError, match="context"):
        agent.update(batch())


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("core", ["s5", "mamba", "mamba2", "gru", "attention"])
def test_one_full_update_with_context_imagination(core, discrete):
    agent = make_agent(core, discrete, policy_input="output", starts=8, imagination="batch")
    before = {n: p.detach().clone() for n, p in agent.named_parameters()}
    metrics = agent.update(batch(continuous=not discrete))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    changed = {n.split(".")[0] + "." + n.split(".")[1] for n, p in agent.named_parameters()
               if not torch.equal(before[n], p)}
    assert {"world_model.core", "actor_critic.actor", "actor_critic.critic"} <= changed


@pytest.mark.parametrize("core", ["gru", "s5", "attention"])
def test_context_start_equals_the_posterior_state_when_the_episode_starts_inside(core):
    """A context window that contains the episode start reproduces the training pass's h at its last step."""
    agent = make_agent(core, starts=64, imagination="batch")
    data = batch()  # B=3, T=12; episodes start at t=0 (all rows) and at t=5 in row 1
    with torch.no_grad():
        out = agent.world_model.observe(data["obs"], data["action"], data["is_first"])
        torch.manual_seed(5)
        h, z, state, cont = agent.world_model.context_starts(out["z"], data, context=4, n=64)
        torch.manual_seed(5)  # the same draws as inside context_starts
        b = torch.randint(3, (64, 1))[:, 0]
        t = torch.randint(3, 12, (64, 1))[:, 0]
    starts_inside = (t < 4) | ((b == 1) & (t >= 5) & (t < 9))  # window t-3..t covers an episode start
    assert starts_inside.any() and (~starts_inside).any()
    torch.testing.assert_close(h[starts_inside], out["h"][b, t][starts_inside], atol=1e-4, rtol=0)
    torch.testing.assert_close(z, out["z"][b, t])
    assert cont.shape == (64,) and h.shape == (64, agent.world_model.core.output_dim)


@pytest.mark.parametrize("core", ["s5", "gru", "mamba2"])
def test_acting_carries_the_state_like_the_training_pass(core):
    """act() steps the core with (z_{t-1}, a_{t-1}) and resets at is_first: with the same latent samples and actions,
    its carried core state equals the parallel pass's state after every step."""
    agent = make_agent(core, policy_input="full")
    data = batch(B=2, T=6)
    with torch.no_grad():
        out = agent.world_model.observe(data["obs"], data["action"], data["is_first"], all_states=True)
    state = None
    for t in range(6):
        obs = {k: v[:, t] for k, v in data["obs"].items()}
        action, state = agent.act(obs, data["is_first"][:, t], state)
        assert action.shape == (2, 4) and torch.equal(action.sum(-1), torch.ones(2))  # one-hot
        state["z"], state["action"] = out["z"][:, t], data["action"][:, t]  # the batch's sample and action
        for key, value in state["core"].items():
            torch.testing.assert_close(value, out["state"][key][:, t], atol=1e-4, rtol=0)


@pytest.mark.parametrize("discrete", [True, False])
def test_one_full_update_with_image_observations(discrete):
    """Pixels (uint8, as replay stores them) plus a vector, e.g. dmc_vision with proprioception or Atari."""
    torch.manual_seed(0)
    cfg = AgentConfig(world_model=WorldModelConfig.with_core("s5", CORE_CFGS["s5"], units=32, latent_groups=4,
                                                   latent_classes=4, cnn_depth=4),
                      actor_critic=ActorCriticConfig(units=32, layers=1), policy_input="full",
                      imagination=ImaginationConfig(horizon=3, count=16))
    agent = Agent({"image": (16, 16, 3), "vector": 5}, 4, discrete, cfg)
    data = batch(continuous=not discrete)
    data["obs"] = {"image": torch.randint(0, 256, (3, 12, 16, 16, 3), dtype=torch.uint8),
                   "vector": data["obs"]["vector"]}
    metrics = agent.update(data)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    action, state = agent.act({"image": data["obs"]["image"][:, 0], "vector": data["obs"]["vector"][:, 0]},
                              torch.ones(3, dtype=torch.bool), None)
    assert action.shape == (3, 4)


def test_reset_actor_critic_gives_a_fresh_pair_and_keeps_the_world_model():
    agent = make_agent("s5")
    with torch.no_grad():  # a saturated actor: one action's logit far above the others
        agent.actor_critic.actor.head.bias.copy_(torch.tensor([60.0, 0.0, 0.0, 0.0]))
    agent.update(batch())
    feat = torch.randn(64, agent.feat_dim)
    saturated = agent.actor_critic.policy(feat).entropy().mean()
    model = {k: v.clone() for k, v in agent.world_model.state_dict().items()}
    normalizer = {k: v.clone() for k, v in agent.actor_critic.normalizer.state_dict().items()}
    assert agent.actor_opt.state and agent.critic_opt.state and agent.model_opt.state
    agent.reset_actor_critic()
    ac = agent.actor_critic
    fresh = ac.policy(feat).entropy().mean()
    assert saturated < 0.1 < 1.0 < fresh <= torch.log(torch.tensor(4.0))  # near uniform again
    assert not ac.critic.head.weight.any() and not ac.critic.head.bias.any()  # zero-initialised output, as built
    assert all(torch.equal(a, b) for a, b in zip(ac.critic.state_dict().values(), ac.slow_critic.state_dict().values()))
    assert not agent.actor_opt.state and not agent.critic_opt.state and agent.model_opt.state
    assert all(torch.equal(v, agent.world_model.state_dict()[k]) for k, v in model.items())
    assert all(torch.equal(v, ac.normalizer.state_dict()[k]) for k, v in normalizer.items())
    metrics = agent.update(batch())  # and it trains on from there
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_update_resets_the_actor_critic_every_reset_every_updates(monkeypatch):
    agent = make_agent("gru")
    agent.cfg.actor_critic.reset_every = 3
    at = []
    monkeypatch.setattr(agent, "reset_actor_critic", lambda: at.append(int(agent.updates)))
    for _ in range(7):
        agent.update(batch())
    assert at == [3, 6]


def test_warm_up_behavior_trains_the_actor_critic_on_the_current_world_model():
    agent = make_agent("s5")
    agent.cfg.actor_critic.reset_every, agent.cfg.actor_critic.reset_warmup = 2, 5
    data = batch()
    assert agent.behavior_warmups_due() == 0  # before any update: nothing was reset
    agent.update(data)
    assert agent.behavior_warmups_due() == 0
    agent.update(data)  # update 2: the reset
    assert agent.behavior_warmups_due() == 5
    model = {k: v.clone() for k, v in agent.world_model.state_dict().items()}
    actor = {k: v.clone() for k, v in agent.actor_critic.actor.state_dict().items()}
    updates = int(agent.updates)
    metrics = agent.warm_up_behavior(data)
    assert "loss_actor" in metrics and all(torch.isfinite(torch.as_tensor(v)) for v in metrics.values())
    assert all(torch.equal(v, agent.world_model.state_dict()[k]) for k, v in model.items())
    assert not all(torch.equal(v, agent.actor_critic.actor.state_dict()[k]) for k, v in actor.items())
    assert int(agent.updates) == updates  # not an update: the reset schedule and the model warm-up stay put


@pytest.mark.parametrize("discrete", [True, False])
def test_act_epsilon_takes_uniformly_random_actions_while_exploring_only(discrete):
    agent = make_agent("gru", discrete)
    obs = {"vector": torch.randn(4000, 5), "cue": torch.randn(4000, 2)}
    first = torch.ones(4000, dtype=torch.bool)
    torch.manual_seed(1)
    policy, _ = agent.act(obs, first, None)
    torch.manual_seed(2)  # the posterior latent is sampled in either mode
    greedy, _ = agent.act(obs, first, None, explore=False)
    agent.cfg.act_epsilon = 0.5
    torch.manual_seed(1)
    mixed, state = agent.act(obs, first, None)
    assert torch.equal(state["action"], mixed)  # the world model sees the action taken
    torch.manual_seed(2)
    assert torch.equal(agent.act(obs, first, None, explore=False)[0], greedy)  # evaluation stays greedy
    changed = (mixed != policy).any(-1).float().mean()
    if discrete:  # half the rows random, of which 3/4 differ from the policy's own pick (4 actions)
        assert mixed.sum(-1).eq(1).all() and 0.33 < changed < 0.42
    else:  # random rows: uniform in [-1, 1] (mean 0, variance 1/3); the others as sampled
        assert 0.45 < changed < 0.55 and mixed.abs().max() <= 1
        random = mixed[(mixed != policy).any(-1)]
        assert random.mean().abs() < 0.05 and abs(random.var() - 1 / 3) < 0.03
    agent.cfg.act_epsilon = 1.0
    counts = torch.bincount(agent.act(obs, first, None)[0].argmax(-1), minlength=4) if discrete else None
    assert counts is None or counts.min() > 900  # every action about 1000 times in 4000


def test_act_epsilon_must_be_a_probability():
    with pytest.raises(UserError, match=r"agent.act_epsilon must be in \[0, 1\]"):
        AgentConfig(act_epsilon=1.5)


@pytest.mark.parametrize("optimizer", ["adam", "laprop"])
def test_model_weight_decay_shrinks_linear_weights_only(optimizer):
    """Decoupled decay: with zero gradients an update multiplies each linear weight of the world model by
    1 - lr * wd and leaves biases, norms and the S5 layer's own parameters as they are."""
    agent = make_agent("s5")
    assert type(agent.model_opt) is torch.optim.Adam and len(agent.model_opt.param_groups) == 1  # default: no decay
    agent.cfg.model_weight_decay, agent.cfg.model_lr, agent.cfg.optimizer = 0.5, 0.1, optimizer
    opt = world_model_optimizer(agent.world_model, agent.cfg)
    assert type(opt).__name__ == {"adam": "AdamW", "laprop": "LaProp"}[optimizer]
    before = {n: p.detach().clone() for n, p in agent.world_model.named_parameters()}
    for p in agent.world_model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    linear = {f"{n}.weight" for n, m in agent.world_model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert "reward_head.head.weight" in linear and "core.layers.0.b_re" not in linear
    for name, p in agent.world_model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] * (0.95 if name in linear else 1.0), msg=name)


def test_model_weight_decay_must_not_be_negative():
    with pytest.raises(UserError, match=r"agent.model_weight_decay must be >= 0"):
        AgentConfig(model_weight_decay=-0.1)


def test_warm_up_behavior_keeps_batch_norm_statistics():
    """Drama's image encoder has BatchNorm: a warm-up pass must not move its running statistics (eval mode)."""
    torch.manual_seed(0)
    cfg = AgentConfig(world_model=WorldModelConfig.with_core("s5", CORE_CFGS["s5"], units=32, latent_groups=4,
                                                   latent_classes=4, cnn_depth=4, image_style="drama"),
                      actor_critic=ActorCriticConfig(units=32, layers=1), imagination=ImaginationConfig(horizon=3))
    agent = Agent({"image": (64, 64, 3)}, 4, True, cfg)
    data = batch()
    data["obs"] = {"image": torch.randint(0, 256, (3, 12, 64, 64, 3), dtype=torch.uint8)}
    agent.update(data)
    buffers = {k: v.clone() for k, v in agent.world_model.named_buffers() if "running" in k}
    assert buffers
    agent.warm_up_behavior(data)
    assert all(torch.equal(v, dict(agent.world_model.named_buffers())[k]) for k, v in buffers.items())
    assert agent.world_model.training  # and the mode is restored


def test_reset_every_must_not_be_negative():
    with pytest.raises(UserError, match="reset_every must be >= 0"):
        ActorCriticConfig(reset_every=-1)


@pytest.mark.parametrize("core", ["s5", "gru"])
def test_the_actors_gradient_through_the_dynamics_computes_no_world_model_weight_gradients(core, monkeypatch):
    """With continuous actions the actor learns through the imagined dynamics; the world model's parameters are
    frozen while imagining, so that backward computes no gradient for them (the actor-critic step must not train
    them), and the actor-critic update equals the one with the parameters unfrozen."""
    import contextlib

    from ssmworld.dreamer import agent as agent_module

    def update(freeze: bool) -> tuple[Agent, int]:
        agent = make_agent(core, discrete=False)
        data = batch(continuous=True)
        torch.manual_seed(1)
        agent.update(data)  # one full update first: the world model is no longer at its initialisation
        computed = []
        for p in agent.world_model.parameters():
            p.register_post_accumulate_grad_hook(lambda _: computed.append(1))
        if not freeze:
            monkeypatch.setattr(agent_module, "frozen_parameters", lambda _: contextlib.nullcontext())
        torch.manual_seed(2)
        metrics = agent.warm_up_behavior(data)  # the actor-critic update alone
        monkeypatch.undo()
        assert metrics["grad_norm_actor"] > 0
        return agent, len(computed)

    frozen, computed_frozen = update(freeze=True)
    unfrozen, computed_unfrozen = update(freeze=False)
    assert computed_frozen == 0 and computed_unfrozen > 0  # the test sees the weight gradients where they are made
    for (name, p), q in zip(unfrozen.actor_critic.named_parameters(), frozen.actor_critic.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)
    for (name, p), q in zip(unfrozen.world_model.named_parameters(), frozen.world_model.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)
    assert all(p.requires_grad for p in frozen.world_model.parameters())  # restored after imagining


@pytest.mark.parametrize("core, discrete", [("s5", False), ("gru", True), ("mamba", True), ("mamba2", False)])
def test_compiled_imagination_updates_as_eager_and_compiles_once(core, discrete):
    """agent.compile_imagination: the same updates as without it (the same random draws: fallback_random), S5 in
    real arithmetic inside the graph, the actor's gradient through the compiled dynamics (continuous actions); the
    graphs of the first update serve the later ones."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, compiled = make_agent(core, discrete), make_agent(core, discrete, compile_imagination=True)
    batches = [batch(continuous=not discrete) for _ in range(3)]
    for i, data in enumerate(batches):
        results = []
        for agent in (eager, compiled):
            torch.manual_seed(i)
            results.append(agent.update(data))
        for key, value in results[0].items():
            if not key.startswith("seconds"):
                assert results[1][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        if i == 0:
            graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1 and counters["stats"]["unique_graphs"] == graphs
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_eager_imagination_steps_the_complex_core(monkeypatch):
    """Only a compiled step runs S5 in real arithmetic (for TorchInductor); eager imagination keeps the complex step,
    the faster one outside a graph."""
    agent, seen = make_agent("s5"), []
    rollout = agent.world_model.core.rollout
    monkeypatch.setattr(agent.world_model.core, "rollout", lambda compiled=False: seen.append(compiled) or rollout(
        compiled))
    agent.update(batch())
    assert seen == [False]


def test_compile_imagination_names_what_it_cannot_do(monkeypatch):
    with pytest.raises(UserError, match="not attention"):
        AgentConfig(world_model=WorldModelConfig(core="attention"), compile_imagination=True)
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler"):
        require_compiler(AgentConfig(compile_imagination=True))
    require_compiler(AgentConfig())  # nothing to compile: no compiler needed


def test_critic_clip_clips_the_critic_alone():
    """agent.critic_clip (R2I's Memory Maze: actor 200, critic 100): a clip near zero leaves the critic almost where it
    was (Adam scales a gradient of norm 1e-12 to ~1e-7 of a step) while the actor learns as before."""
    steps = {}
    for critic_clip in (None, 1e-12):
        agent = make_agent("gru")
        agent.cfg.critic_clip = critic_clip
        for p in agent.actor_critic.critic.parameters():  # a critic whose output layer is not at zero
            torch.nn.init.normal_(p, std=0.3)
        critic = [p.detach().clone() for p in agent.actor_critic.critic.parameters()]
        actor = [p.detach().clone() for p in agent.actor_critic.actor.parameters()]
        agent.update(batch())
        steps[critic_clip] = [max((p - q).abs().max().item() for p, q in zip(module.parameters(), before))
                              for module, before in ((agent.actor_critic.critic, critic),
                                                     (agent.actor_critic.actor, actor))]
    assert steps[None][0] > 1e-6 and steps[1e-12][0] < 1e-3 * steps[None][0]
    assert steps[1e-12][1] == pytest.approx(steps[None][1], rel=1e-4)  # the actor: untouched by the critic's clip
