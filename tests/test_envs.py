"""Env registry, the built-in memory task, and the gymnasium adapter."""

import json

import numpy as np
import pytest

from ssmworld import envs


def test_recall_task_rewards_and_observations():
    env = envs.make("builtin:recall/3", seed=0)
    obs, _ = env.reset(seed=1)
    cue = int(obs["vector"][:2].argmax())
    assert obs["vector"].shape == (3,) and obs["vector"][:2].sum() == 1 and obs["vector"][2] == 0
    for t in range(4):  # three blank delay steps, then the query
        assert t == 0 or obs["vector"].tolist() == [0, 0, 0]
        obs, reward, terminated, truncated, _ = env.step(0)
        assert reward == 0 and not terminated and not truncated
    assert obs["vector"].tolist() == [0, 0, 1]  # the query: the cue is gone
    obs, reward, terminated, truncated, info = env.step(cue)
    assert reward == 1.0 and terminated and not truncated and info["success"]
    env.reset()
    for _ in range(4):
        env.step(1)
    wrong = 1 - int(env.unwrapped._cue)
    _, reward, terminated, _, info = env.step(wrong)
    assert reward == -1.0 and terminated and not info["success"]


def test_recall_task_is_seeded():
    cues = [[int(envs.make("builtin:recall/2", seed=s).reset(seed=s)[0]["vector"][:2].argmax()) for s in range(20)]
            for _ in range(2)]
    assert cues[0] == cues[1] and 0 < sum(cues[0]) < 20


def test_gym_adapter_one_hot_and_vectors():
    env = envs.make("gym:CartPole-v1", seed=0)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"vector"} and obs["vector"].dtype == np.float32 and obs["vector"].shape == (4,)
    env = envs.make("gym:FrozenLake-v1", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["vector"].shape == (16,) and obs["vector"].sum() == 1.0


@pytest.mark.parametrize("bad,message", [
    ("nosuite:x", "unknown env suite 'nosuite'.*available: .*bsuite.*builtin.*gym"),
    ("recall", "must look like 'suite:task'"),
    ("builtin:nosuch/3", "unknown task 'nosuch'"),
    ("builtin:recall/x", "integers"),
    ("gym:NoSuchEnv-v0", "gym:NoSuchEnv-v0"),
    ("gym:nomodule_xyz:Foo-v0", "No module named 'nomodule_xyz' .gym:<module>:<env id> imports the module"),
    ("gym:NoSpace/Foo-v0", "an env another package registers: name it, e.g. gym:ale_py:NoSpace/Foo-v0"),
])
def test_bad_env_ids_give_one_clear_error(bad, message):
    from ssmworld.errors import UserError

    with pytest.raises(UserError, match=message):
        envs.make(bad)


@pytest.mark.parametrize("env_id,options,message", [
    ("gym:CartPole-v1", {"foo": 1}, "unexpected keyword argument 'foo'.*; drop the option from train.env_options"),
    ("minatar:Breakout", {"difficulty_ramping": "false"}, "difficulty_ramping must be true or false, got 'false'"),
    ("minigrid:MemoryS7", {"direction": "no"}, "direction must be true or false"),
    ("atari:Pong", {"sticky": "high"}, "sticky must be a probability in .0, 1."),
    ("atari:Pong", {"life_loss": "false"}, "life_loss must be true or false"),
])
def test_bad_env_options_give_one_clear_error(env_id, options, message):
    from ssmworld.errors import UserError

    pytest.importorskip({"gym": "gymnasium", "minatar": "minatar", "minigrid": "minigrid",
                         "atari": "ale_py"}[env_id.split(":")[0]])
    with pytest.raises(UserError, match=message):
        envs.make(env_id, **options)


def test_recall_image_task_draws_cue_and_query():
    env = envs.make("builtin:recall_image/1", seed=0)
    obs, _ = env.reset(seed=3)
    image = obs["image"]
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    cue = env.unwrapped._cue
    assert (image[:8, :8] == env.unwrapped.PALETTE[cue]).all() and image[8:].sum() == 0
    obs, *_ = env.step(0)
    assert obs["image"].sum() == 0  # the blank delay step
    obs, *_ = env.step(0)
    assert (obs["image"][-2:] == 255).all() and obs["image"][:-2].sum() == 0  # the query: the cue is gone
    _, reward, terminated, _, info = env.step(cue)
    assert reward == 1.0 and terminated and info["success"]
    assert envs.make("builtin:recall_image/2", size=32).observation_space["image"].shape == (32, 32, 3)


def test_gym_envs_save_their_episode_by_replaying_it():
    """gym: envs replay a saved episode from how it started (seed, or np_random's state) and its actions: Box actions
    too, and an unseeded reset's Generator state; the continued episode goes on as the original."""
    from ssmworld.runtime.acting_state import saver

    for env_id, steps in (("gym:Pendulum-v1", 12), ("gym:MountainCar-v0", 9)):
        original = envs.make(env_id, seed=3)
        original.step(original.action_space.sample())
        original.reset()  # unseeded: its episode starts from the Generator's state
        for _ in range(steps):
            original.step(original.action_space.sample())
        state = saver(original).get_state()
        assert "random" in state["start"] and len(state["actions"]) == steps
        copy = envs.make(env_id, seed=99)
        arrived = saver(copy).set_state(json.loads(json.dumps(state)))  # through JSON, as state.json
        action = original.action_space.sample()
        a, b = original.step(action), copy.step(action)
        assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0]) and a[1:4] == b[1:4]
        assert set(arrived) == {"vector"}
