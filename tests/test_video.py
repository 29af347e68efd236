"""Evaluation videos: real frames beside the world model's open-loop imagination."""

import numpy as np
import pytest
import torch

from ssmworld.runtime.config import load_config
from ssmworld.runtime.episodes import build_agent


def test_video_of_real_and_imagined_frames(tmp_path):
    pytest.importorskip("minigrid")
    imageio = pytest.importorskip("imageio.v2")
    from ssmworld import envs
    from ssmworld.tools.video import record_episode

    cfg = load_config("r2i", "debug", "minigrid:MemoryS7", ["agent.world_model.cnn_depth=4"])
    options = {"max_steps": 12, "size": 16}
    torch.manual_seed(0)  # the untrained agent: whether it ends the episode early must not depend on test order
    agent = build_agent(cfg.agent, envs.make("minigrid:MemoryS7", **options))
    path = str(tmp_path / "episode.gif")
    info = record_episode(agent, "minigrid:MemoryS7", path, seed=0, context=4, env_options=options)
    frames = np.stack(list(imageio.get_reader(path)))
    assert info["frames"] == 13 and info["context"] == 4  # 12 steps: 13 observations
    assert frames.shape[0] == 13 and frames.shape[2] == 2 * frames.shape[1]  # real | imagined, upscaled 4x
    # an episode no longer than the context (here 3 steps, context 5): the model's reconstruction only, no crash
    short = {"max_steps": 3, "size": 16}
    info = record_episode(agent, "minigrid:MemoryS7", path, seed=0, context=5, env_options=short)
    assert info["frames"] == 4 and info["context"] == 4 and len(list(imageio.get_reader(path))) == 4


def test_video_needs_image_observations(tmp_path):
    from ssmworld import envs
    from ssmworld.tools.video import record_episode

    cfg = load_config("r2i", "debug", "builtin:recall/2")
    agent = build_agent(cfg.agent, envs.make("builtin:recall/2"))
    with pytest.raises(ValueError, match="video needs image observations"):
        record_episode(agent, "builtin:recall/2", str(tmp_path / "x.mp4"))
