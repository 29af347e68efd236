"""memorymaze: the dm_env -> gymnasium mapping on a stub (time limit = truncated), and a few real steps."""

import importlib.util
import math
import sys

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs
from ssmworld.envs.memorymaze import EPISODE_STEPS, MemoryMazeEnv

dm_env = pytest.importorskip("dm_env")


class StubMaze:
    """A dm_env task that ends after ``limit`` steps with ``end_discount`` (1 = time limit, 0 = terminal)."""

    def __init__(self, seed: int, limit: int = 3, end_discount: float = 1.0):
        self.seed, self.limit, self.end_discount, self.t, self.closed = seed, limit, end_discount, 0, False

    def _image(self) -> np.ndarray:
        return np.full((64, 64, 3), (self.seed + self.t) % 256, np.uint8)

    def reset(self):
        self.t = 0
        return dm_env.restart(self._image())

    def step(self, action):
        self.t += 1
        if self.t < self.limit:
            return dm_env.transition(float(action), self._image())
        return dm_env.TimeStep(dm_env.StepType.LAST, 1.0, self.end_discount, self._image())

    def close(self):
        self.closed = True


def _stub_env(max_steps=None, **stub_options) -> tuple[MemoryMazeEnv, list[StubMaze]]:
    built: list[StubMaze] = []

    def build(seed: int) -> StubMaze:
        built.append(StubMaze(seed, **stub_options))
        return built[-1]
    return MemoryMazeEnv(build, episode_steps=3, max_steps=max_steps), built


def test_time_limit_discount_one_is_truncation_not_termination():
    env, _ = _stub_env()
    env.reset(seed=0)
    assert [env.step(1)[2:4] for _ in range(3)] == [(False, False), (False, False), (False, True)]
    env, _ = _stub_env(end_discount=0.0)
    env.reset(seed=0)
    assert [env.step(1)[2:4] for _ in range(3)] == [(False, False), (False, False), (True, False)]


def test_max_steps_cuts_episodes_early():
    env, _ = _stub_env(max_steps=2, limit=10)
    env.reset(seed=0)
    assert [env.step(0)[2:4] for _ in range(2)] == [(False, False), (False, True)]
    env.reset()
    assert env.step(0)[2:4] == (False, False)  # the count starts again


def test_seeded_reset_rebuilds_and_plain_reset_reuses():
    env, built = _stub_env()
    assert env.dm_env is None and not built  # lazy: nothing built before the first reset
    obs, _ = env.reset(seed=5)
    assert obs["image"].dtype == np.uint8 and obs["image"][0, 0, 0] == 5 and built[-1].seed == 5
    env.reset()
    assert len(built) == 1
    env.reset(seed=9)
    assert len(built) == 2 and built[0].closed and built[1].seed == 9
    with pytest.raises(RuntimeError, match="reset"):
        _stub_env()[0].step(0)


@pytest.mark.parametrize("bad,options,message", [
    ("memorymaze:8x8", {}, r"memorymaze:8x8: unknown maze; accepted: 9x9, 11x11, 13x13, 15x15"),
    ("memorymaze:big", {}, "unknown maze"),
    ("memorymaze:9x9", {"max_steps": 0}, "max_steps must be an integer >= 1"),
    ("memorymaze:9x9", {"size": 32}, "does not take option"),
])
def test_bad_ids_and_options_give_one_clear_error(bad, options, message):
    with pytest.raises(ValueError, match=message):
        envs.make(bad, **options)


def test_missing_extra_gives_pip_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "labmaze", None)  # as if not installed
    hint = r"memorymaze:9x9 needs the memorymaze extra: pip install 'ssmworld\[memorymaze\]'"
    with pytest.raises(ValueError, match=hint):
        envs.make("memorymaze:9x9")


def test_ids_listed():
    assert envs.list_tasks("memorymaze") == ["9x9", "11x11", "13x13", "15x15"]


# --- the real task: a handful of steps (~25 steps/s, ~5 s to build and reset) ---

ACTIONS = [1, 1, 2, 4]


@pytest.fixture(scope="module")
def maze():
    """memorymaze:9x9 with max_steps=3, seeded 0, and its first frames under ACTIONS[:2]; skipped without GL."""
    if any(importlib.util.find_spec(name) is None for name in ("memory_maze", "labmaze", "dm_control")):
        pytest.skip("memory-maze is not installed: pip install 'ssmworld[memorymaze]'")
    try:
        env = envs.make("memorymaze:MemoryMaze-9x9-v0", max_steps=3)
        frames = [env.reset(seed=0)[0]["image"]] + [env.step(a)[0]["image"] for a in ACTIONS[:2]]
    except ValueError as err:
        if "MUJOCO_GL" not in str(err):
            raise
        pytest.skip(f"MuJoCo rendering unavailable here: {err}")
    yield env, frames
    env.close()


def test_real_spaces_and_steps(maze):
    env, frames = maze
    assert env.observation_space == gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)})
    assert env.action_space == gym.spaces.Discrete(6)
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames) and frames[0].std() > 0
    assert not np.array_equal(frames[0], frames[2])  # moving forward changes the view


def test_real_time_limit_and_max_steps(maze):
    env, _ = maze
    task = env.dm_env  # composer.Environment behind memory-maze's wrappers: its limit in seconds / step length
    assert math.ceil(task._time_limit / task.control_timestep()) == EPISODE_STEPS["9x9"] == env.episode_steps == 1000
    env.reset()
    results = [env.step(action)[1:4] for action in ACTIONS[:3]]
    assert [r[1:] for r in results] == [(False, False), (False, False), (False, True)]
    assert all(isinstance(r[0], float) for r in results)


def test_real_same_seed_same_frames(maze):
    env, frames = maze
    again = [env.reset(seed=0)[0]["image"]] + [env.step(a)[0]["image"] for a in ACTIONS[:2]]
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    assert not np.array_equal(env.reset(seed=1)[0]["image"], frames[0])  # another maze
