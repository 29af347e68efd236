"""Learning smoke test: the r2i agent recalls a cue after 6 steps; the same agent without memory cannot.

builtin:recall/5 shows one of two cues at t=0, then 5 blank steps, then asks for the cue (+1 right, -1 wrong). The
agent is the r2i preset at the debug size widened to 64 units (S5, 2 layers, P=32; a 2 x 8 categorical latent; a
normal-initialised reward head so that the cue x action interaction is learnable, see WorldModelConfig.reward_init).
The control is the same agent with its memory removed: the policy sees z only and the core is reset at every step.
Both train for the same number of env steps; the greedy policy is then evaluated on fresh episodes.
The pixel test: builtin:recall_image/3 shows the cue as a coloured square in a 16x16 RGB frame (uint8 in replay) and
asks for it 4 steps later; the same agent learns it through the DreamerV3-style CNN encoder/decoder (depth 8).
"""

import pytest

from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer

STEPS = 6000
AGENT = ["agent.world_model.units=64", "agent.world_model.s5.width=64", "agent.world_model.s5.state_size=32",
         "agent.world_model.s5.n_layers=2", "agent.world_model.latent_groups=2",
         "agent.world_model.latent_classes=8", "agent.world_model.reward_init=1.0", "agent.actor_critic.units=64",
         "agent.imagination.horizon=10", "agent.imagination.count=256", "agent.model_lr=1e-3", "agent.actor_lr=3e-4",
         "agent.critic_lr=3e-4", "train.batch_size=16", "train.sequence_length=32", "train.train_ratio=256",
         "train.prefill=1000", "train.eval_every=0", "train.eval_episodes=50", "train.log_every=1000"]
CONTROL = ["agent.policy_input=latent", "agent.world_model.memory=false"]


def run(overrides: list[str], seed: int = 0, env: str = "builtin:recall/5") -> dict:
    cfg = load_config("r2i", "debug", env, AGENT + overrides + [f"train.seed={seed}"])
    cfg.train.steps = STEPS
    return Trainer(cfg, quiet=True).run()


@pytest.mark.learning
def test_r2i_recalls_a_cue_after_six_steps():
    summary = run([])
    assert summary["eval_success_rate"] >= 0.9, summary


@pytest.mark.learning
def test_without_memory_the_same_agent_stays_at_chance():
    summary = run(CONTROL)
    assert 0.2 <= summary["eval_success_rate"] <= 0.8, summary


@pytest.mark.learning
def test_r2i_recalls_a_cue_from_pixels():
    summary = run(["agent.world_model.cnn_depth=8"], env="builtin:recall_image/3")
    assert summary["eval_success_rate"] >= 0.9, summary
