"""Every suite's adapter passes gymnasium's own env checker (spaces, seeding, reset/step contract, bounds)."""

import warnings

import pytest
from gymnasium.utils.env_checker import check_env

from ssmworld import envs

ENV_IDS = [
    "builtin:recall/3", "builtin:recall_image/2", "gym:CartPole-v1", "gym:Pendulum-v1", "bsuite:memory_len/0",
    "bsuite:catch/0", "popgym:RepeatPreviousEasy", "atari:Pong", "dmc:cartpole_balance", "dmc_vision:cartpole_balance",
    "minigrid:MemoryS7", pytest.param("memorymaze:9x9", marks=pytest.mark.slow),  # ~30 s: builds the maze
    "minatar:Breakout", "minatar:SpaceInvaders",
]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_adapter_passes_gymnasiums_check_env(env_id):
    env = envs.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite bounds of physical quantities are warnings, not failures
        check_env(env, skip_render_check=True)
    env.close()


def test_gym_adapter_keeps_the_bounds_of_box_observations():
    space = envs.make("gym:Pendulum-v1").observation_space["vector"]
    assert space.low.tolist() == [-1.0, -1.0, -8.0] and space.high.tolist() == [1.0, 1.0, 8.0]
