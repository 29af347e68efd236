"""minigrid: ids, image and symbolic views, action subsets, truncation vs termination, seeding."""

import sys

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs

pytest.importorskip("minigrid")

from ssmworld.envs.minigrid import MiniGridTask, minigrid_ids  # noqa: E402


def _frames(env: gym.Env, seed: int, steps: int = 6) -> list[dict]:
    obs = [env.reset(seed=seed)[0]]
    for action in [2, 0, 2, 1, 2, 2][:steps]:
        obs.append(env.step(action)[0])
    return obs


def test_ids_resolve_and_list():
    tasks = envs.list_tasks("minigrid")
    assert "MemoryS7" in tasks and "KeyCorridorS3R1" in tasks and not any(t.startswith("BabyAI") for t in tasks)
    assert minigrid_ids()["MultiRoom-N4-S5"] == "MiniGrid-MultiRoom-N4-S5-v1"  # a short name picks the newest version
    for name in ["MemoryS7", "memorys7", "MiniGrid-MemoryS7", "MiniGrid-MemoryS7-v0"]:
        assert MiniGridTask(name).env_id == "MiniGrid-MemoryS7-v0"


def test_image_observation_spaces_and_steps():
    env = envs.make("minigrid:MemoryS7", seed=0, direction=True)
    assert env.observation_space == gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
        "direction": gym.spaces.Box(0.0, 1.0, (4,), np.float32)})
    assert env.action_space == gym.spaces.Discrete(7)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and obs["image"].std() > 0 and info["success"] is False
    assert obs["direction"].tolist() == [1, 0, 0, 0]  # Memory starts facing east
    obs, reward, terminated, truncated, info = env.step(1)  # turn right: now facing south
    assert obs in env.observation_space and obs["direction"].tolist() == [0, 1, 0, 0]
    assert isinstance(reward, float) and not terminated and not truncated


def test_image_is_an_area_resize_of_the_agent_view():
    cv2 = pytest.importorskip("cv2")
    env = MiniGridTask("MemoryS7", size=32)
    obs, _ = env.reset(seed=1)
    view = env.env.get_pov_render(tile_size=env._tile)
    assert view.shape == (70, 70, 3)  # 7 tiles of ceil(2 * 32 / 7) = 10 pixels
    assert np.array_equal(obs["image"], cv2.resize(view, (32, 32), interpolation=cv2.INTER_AREA))


def test_symbolic_view_is_one_hot_of_minigrid_codes():
    env = envs.make("minigrid:MemoryS7", obs="symbolic")
    assert env.observation_space == gym.spaces.Dict({"vector": gym.spaces.Box(0.0, 1.0, (980,), np.float32)})
    obs, _ = env.reset(seed=2)
    codes = env.unwrapped.env.gen_obs()["image"].reshape(-1, 3)  # (49, 3): object, colour, state
    cells = obs["vector"].reshape(49, 20)
    assert obs["vector"].dtype == np.float32 and (cells.sum(axis=1) == 3).all()
    decoded = np.stack([cells[:, :11].argmax(1), cells[:, 11:17].argmax(1), cells[:, 17:].argmax(1)], axis=1)
    assert np.array_equal(decoded, codes)


def test_used_actions_follow_the_env_docs():
    memory = MiniGridTask("MemoryS7", actions="used")
    assert memory.action_space == gym.spaces.Discrete(5)  # drop and done are "Unused" in MemoryEnv's docs
    assert memory._actions == [0, 1, 2, 3, 5]
    assert MiniGridTask("Empty-5x5", actions="used").action_space == gym.spaces.Discrete(3)
    assert MiniGridTask("Empty-5x5").action_space == gym.spaces.Discrete(7)


def test_step_limit_is_truncation_and_goal_is_termination():
    env = envs.make("minigrid:MemoryS7", max_steps=3)
    env.reset(seed=0)
    results = [env.step(0)[2:4] for _ in range(3)]  # turning in place: never terminates
    assert results == [(False, False), (False, False), (False, True)]
    env = envs.make("minigrid:Empty-5x5", actions="used")  # agent at (1, 1) facing east, goal at (3, 3)
    env.reset(seed=0)
    for action in [2, 2, 1, 2]:
        assert env.step(action)[2:4] == (False, False)
    _, reward, terminated, truncated, info = env.step(2)
    assert terminated and not truncated and reward > 0 and info["success"]


def test_same_seed_same_frames():
    env = envs.make("minigrid:MemoryS7")
    first, again = _frames(env, 7), _frames(env, 7)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))
    starts = {env.reset(seed=s)[0]["image"].tobytes() for s in range(8)}
    assert len(starts) > 1  # the start object and position vary with the seed


@pytest.mark.parametrize("bad,options,message", [
    ("minigrid:NoSuchGrid", {}, "minigrid:NoSuchGrid: unknown MiniGrid env"),
    ("minigrid:BabyAI-GoToRedBall-v0", {}, "unknown MiniGrid env"),
    ("minigrid:MemoryS7", {"obs": "rgb"}, "obs must be one of image, symbolic"),
    ("minigrid:MemoryS7", {"size": 60}, "size must be a power of two"),
    ("minigrid:MemoryS7", {"actions": "minimal"}, "actions must be one of all, used"),
    ("minigrid:MemoryS7", {"max_steps": 0}, "max_steps must be an integer >= 1"),
    ("minigrid:MemoryS7", {"sticky": 0.1}, "does not take option"),
])
def test_bad_ids_and_options_give_one_clear_error(bad, options, message):
    with pytest.raises(ValueError, match=message):
        envs.make(bad, **options)


def test_missing_extra_gives_pip_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "minigrid", None)  # as if not installed
    hint = r"minigrid:MemoryS7 needs the minigrid extra: pip install -c constraints.txt -e '\.\[minigrid\]'"
    with pytest.raises(ValueError, match=hint):
        envs.make("minigrid:MemoryS7")


def _play(env, actions) -> list:
    """(obs, reward, terminated, truncated) of each action, resetting (unseeded) after every episode's end."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        out.append(({k: v.tolist() for k, v in obs.items()}, reward, terminated, truncated))
        if terminated or truncated:
            out.append(env.reset()[0]["vector"].tolist())
    return out


# Memory: a random layout per episode; Dynamic-Obstacles: random moves at every step, from the same Generator
@pytest.mark.parametrize("task", ["MemoryS7", "Dynamic-Obstacles-5x5", "MultiRoom-N2-S4"])
@pytest.mark.parametrize("seeded_episode", [True, False])
def test_a_saved_episode_continues_identically_in_a_fresh_env(task, seeded_episode):
    """get_state/set_state (checkpoints keep the episode in progress): a fresh env given the saved state continues
    the episode and the ones after it identically, whether the saved episode began with a seeded reset or not."""
    import json

    from ssmworld.runtime.acting_state import savable

    env = envs.make(f"minigrid:{task}", obs="symbolic", max_steps=40)
    env.reset(seed=3)
    assert savable(env)
    actions = np.random.default_rng(1).integers(0, env.action_space.n, 400)
    if not seeded_episode:
        _play(env, actions[:57])  # into a later, unseeded episode
    for _ in range(5):  # into the episode: turning left ends none (Dynamic-Obstacles' obstacles still move)
        assert not any(env.step(0)[2:4])
    state = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-able, as in a checkpoint's state.json
    assert ("seed" in state["start"]) == seeded_episode and len(state["actions"]) >= 5
    expected = _play(env, actions[62:])
    fresh = envs.make(f"minigrid:{task}", obs="symbolic", max_steps=40)
    fresh.reset(seed=99)
    fresh.unwrapped.set_state(state)
    assert _play(fresh, actions[62:]) == expected
    assert sum(isinstance(row, tuple) and (row[2] or row[3]) for row in expected) >= 2  # into the episodes after it


def test_resume_mid_episode_is_exact(tmp_path, monkeypatch):
    """A run killed right after a checkpoint, mid-episode (Empty-16x16 with a 300-step limit: a random policy rarely
    reaches its goal), and resumed writes the same metrics as the uninterrupted run: the trainer's path through
    get_state and set_state (restoring the Generator is tested above, on envs that draw from it)."""
    from .helpers import assert_resume_mid_episode_is_exact

    assert_resume_mid_episode_is_exact(tmp_path, monkeypatch, "r2i", "minigrid:Empty-16x16",
                                       ["train.env_options={obs: symbolic, max_steps: 300}"])
