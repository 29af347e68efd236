"""The training loop runs end to end and writes replay in the documented convention."""

import numpy as np
import torch

from ssmworld.agent import AgentConfig
from ssmworld.behavior import ActorCriticConfig
from ssmworld.train import TrainConfig, batch_to_tensors, train
from ssmworld.world_model import WorldModelConfig


def tiny_agent(core="gru"):
    cfg = dict(gru=dict(width=16, blocks=2), s5=dict(width=16, state_size=8, n_layers=1))[core]
    return AgentConfig(world_model=WorldModelConfig(core=core, core_cfg=cfg, units=16, latent_groups=2,
                                                    latent_classes=4),
                       actor_critic=ActorCriticConfig(units=16, layers=1), horizon=3, imagination_starts=32)


def test_train_runs_end_to_end():
    result = train(TrainConfig(env="builtin:recall/2", steps=80, prefill=30, batch_size=2, sequence_length=8),
                   tiny_agent("s5"))
    assert result["updates"] == 25  # steps 30..79, every 2nd
    assert len(result["episodes"]) == 80 // 5  # recall/2: cue, 2 blanks, query, terminal obs = 5 steps
    assert all(success in (True, False) for _, _, success in result["episodes"])


def test_batch_conventions_from_replay():
    from ssmworld.replay import ReplayBuffer

    buffer = ReplayBuffer(100, 16)
    for t in range(5):
        buffer.add({"obs/vector": np.full(2, t, np.float32), "action": np.eye(2, dtype=np.float32)[t % 2],
                    "reward": np.float32(t), "is_first": np.bool_(t == 0), "is_terminal": np.bool_(t == 4)})
    batch = batch_to_tensors(buffer.sample(1, 5))
    assert batch["obs"]["vector"].shape == (1, 5, 2) and batch["action"].dtype == torch.float32
    assert batch["is_terminal"][0].tolist() == [False, False, False, False, True]
