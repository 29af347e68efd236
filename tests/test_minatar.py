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


def _play(env, actions) -> list:
    """(frame, reward, terminated) of each action, resetting after every episode's end (and that reset's frame)."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        out.append((obs["vector"].tolist(), reward, terminated or truncated))
        if terminated or truncated:
            out.append(env.reset()[0]["vector"].tolist())
    return out


@pytest.mark.parametrize("game", ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"])
@pytest.mark.parametrize("seeded", [True, False])
def test_a_saved_episode_continues_identically_in_a_fresh_env(game, seeded):
    """get_state/set_state (checkpoints keep the episode in progress): a fresh env given the saved state continues
    the episode and the ones after it (drawn from the restored RNGs, sticky actions included) identically. Unseeded,
    the game and its sticky actions draw from two RNGs; seeded, from one."""
    import json

    from ssmworld.runtime.acting_state import savable

    env = envs.make(f"minatar:{game}")
    env.reset(seed=3 if seeded else None)
    assert savable(env)
    actions = np.random.default_rng(1).integers(0, env.action_space.n, 3000)
    _play(env, actions[:400])
    state = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-able, as in a checkpoint's state.json
    expected = _play(env, actions[400:])
    fresh = envs.make(f"minatar:{game}")
    fresh.reset(seed=None if seeded else 99)
    _play(fresh, actions[:7])
    fresh.unwrapped.set_state(state)
    assert _play(fresh, actions[400:]) == expected
    assert sum(isinstance(row, tuple) and row[2] for row in expected) >= 1  # into the episodes after it


def test_resume_mid_episode_is_exact(tmp_path, monkeypatch):
    """Drama on MinAtar (its CPU benchmark): a run killed right after a checkpoint, mid-episode (Freeway's episodes
    last 2,500 steps), and resumed writes the same metrics as the uninterrupted run."""
    from .helpers import assert_resume_mid_episode_is_exact

    assert_resume_mid_episode_is_exact(tmp_path, monkeypatch, "drama", "minatar:Freeway")


def test_a_time_limit_makes_the_episode_unsavable():
    """TimeLimit counts steps (not stateless): the checkpoint must not claim to save what it would lose."""
    from ssmworld.runtime.acting_state import saver

    plain = envs.make("minatar:Breakout")
    assert saver(plain) is plain and saver(envs.make("minatar:Breakout", max_steps=5)) is None
