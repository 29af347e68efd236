"""The drama preset reproduces Drama's world-model layout: parameter counts per part as in spec drama.md §1."""

import pytest

from ssmworld.agent import Agent
from ssmworld.config import load_config


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
