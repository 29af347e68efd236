"""Agent: one full update (world model + imagination + actor-critic) for every core, discrete and continuous;
acting carries the core state and matches the training pass."""

import pytest
import torch

from ssmworld.agent import Agent, AgentConfig
from ssmworld.behavior import ActorCriticConfig
from ssmworld.world_model import WorldModelConfig

from .test_world_model import CORE_CFGS, batch


def make_agent(core, discrete=True, policy_input="hidden", starts=None):
    torch.manual_seed(0)
    cfg = AgentConfig(
        world_model=WorldModelConfig(core=core, core_cfg=CORE_CFGS[core], units=32, latent_groups=4, latent_classes=4),
        actor_critic=ActorCriticConfig(units=32, layers=1), policy_input=policy_input, horizon=4,
        imagination_starts=starts)
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


def test_attention_core_needs_context_imagination():
    agent = make_agent("attention")
    with pytest.raises(NotImplementedError, match="context"):
        agent.update(batch())


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
