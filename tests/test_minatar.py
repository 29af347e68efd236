"""The minatar: suite: spaces, seeding, options and errors (gymnasium's check_env: test_check_env.py)."""

import numpy as np
import pytest

from ssmworld import envs

pytest.importorskip("minatar")


@pytest.mark.parametrize("game,size,actions", [("Asterix", 400, 5), ("Breakout", 400, 3), ("Freeway", 700, 3),
                                               ("Seaquest", 1000, 6), ("SpaceInvaders", 600, 4)])
def test_spaces_are_flat_binary_frames_and_minimal_actions(game, size, actions):
    env = envs.make(f"minatar:{game}", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["vector"].shape == (size,) and obs["vector"].dtype == np.float32
    assert set(np.unique(obs["vector"])) <= {0.0, 1.0} and env.action_space.n == actions


def rollout(env, seed):
    obs, _ = env.reset(seed=seed)
    frames, rng = [obs["vector"]], np.random.default_rng(0)
    for _ in range(50):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(np.append(obs["vector"], reward))
        if terminated or truncated:
            frames.append(env.reset()[0]["vector"])
    return np.concatenate(frames)


def test_seeded_resets_reproduce_episodes_with_sticky_actions():
    a, b = envs.make("minatar:Breakout"), envs.make("minatar:Breakout")
    np.testing.assert_array_equal(rollout(a, 3), rollout(b, 3))
    assert not np.array_equal(rollout(a, 3), rollout(a, 4))


def test_max_steps_truncates():
    env = envs.make("minatar:Freeway", max_steps=5)
    env.reset(seed=0)
    results = [env.step(0) for _ in range(5)]
    assert [r[3] for r in results] == [False] * 4 + [True] and not any(r[2] for r in results)


@pytest.mark.parametrize("task,options,message", [("Pong", {}, "unknown game"), ("Breakout", {"sticky": 1.5}, "sticky"),
                                                  ("Breakout", {"max_steps": 0}, "max_steps"),
                                                  ("Breakout", {"frameskip": 4}, "does not take option")])
def test_bad_ids_and_options_give_one_clear_error(task, options, message):
    with pytest.raises(ValueError, match=message):
        envs.make(f"minatar:{task}", **options)


def test_listed():
    assert envs.list_tasks("minatar") == ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"]
