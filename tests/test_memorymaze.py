"""memorymaze: the dm_env -> gymnasium mapping on a stub (time limit = truncated), a few real steps, and the
fast_contacts option: the vectorised target activation must give the original's activation on every state and a
bit-identical episode (rewards, flags, frames)."""

import importlib
import importlib.util
import math
import sys
import types

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs
from ssmworld.envs import memorymaze_contacts
from ssmworld.envs.memorymaze import EPISODE_STEPS, MemoryMazeEnv, _tasks
from ssmworld.envs.memorymaze_contacts import fast_update_activation, install_fast_contacts, is_fast

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
    ("memorymaze:9x9", {"fast_contacts": "false"}, "fast_contacts must be true or false"),
])
def test_bad_ids_and_options_give_one_clear_error(bad, options, message):
    with pytest.raises(ValueError, match=message):
        envs.make(bad, **options)


def test_missing_extra_gives_pip_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "labmaze", None)  # as if not installed
    hint = r"memorymaze:9x9 needs the memorymaze extra: pip install -c constraints.txt -e '\.\[memorymaze\]'"
    with pytest.raises(ValueError, match=hint):
        envs.make("memorymaze:9x9")


def test_ids_listed():
    assert envs.list_tasks("memorymaze") == ["9x9", "11x11", "13x13", "15x15"]


# --- the real task: a handful of steps (~25 steps/s, ~5 s to build and reset) ---

ACTIONS = [1, 1, 2, 4]


def _needs_memory_maze() -> None:
    if any(importlib.util.find_spec(name) is None for name in ("memory_maze", "labmaze", "dm_control")):
        pytest.skip("memory-maze is not installed: pip install 'ssmworld[memorymaze]'")


def _target_sphere() -> types.ModuleType:
    """dm_control's target_sphere module, imported the adapter's way: MUJOCO_GL must be set before dm_control's
    first import, or a later test's rendering fails."""
    _needs_memory_maze()
    try:
        _tasks("test")
    except ValueError as err:
        pytest.skip(str(err))
    return importlib.import_module("dm_control.locomotion.props.target_sphere")


def _real(seed: int, **options) -> MemoryMazeEnv:
    """memorymaze:9x9 reset with ``seed``; skips the test without memory-maze or GL."""
    _needs_memory_maze()
    try:
        return envs.make("memorymaze:MemoryMaze-9x9-v0", seed=seed, **options)
    except ValueError as err:
        if "MUJOCO_GL" not in str(err):
            raise
        pytest.skip(f"MuJoCo rendering unavailable here: {err}")


@pytest.fixture(scope="module")
def maze():
    """memorymaze:9x9 with max_steps=3, seeded 0, and its first frames under ACTIONS[:2]; skipped without GL."""
    env = _real(0, max_steps=3)
    frames = [env.reset(seed=0)[0]["image"]] + [env.step(a)[0]["image"] for a in ACTIONS[:2]]
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


# --- fast_contacts: the vectorised TargetSphere._update_activation (memorymaze_contacts.py) ---

class _ContactTable:
    """Stands in for ``physics.data.contact``: iterates contacts with int geom1/geom2 (what the original reads) and
    has the (ncon,) int32 columns ``geom1``/``geom2`` (what the replacement reads)."""

    def __init__(self, pairs: np.ndarray):
        self.geom1, self.geom2 = pairs[:, 0].astype(np.int32), pairs[:, 1].astype(np.int32)

    def __iter__(self):
        return iter([types.SimpleNamespace(geom1=int(a), geom2=int(b)) for a, b in zip(self.geom1, self.geom2)])


class _Physics:
    """``data.contact`` and ``bind(material).rgba`` (one RGBA per material), all the activation touches."""

    def __init__(self, pairs: np.ndarray):
        self.data = types.SimpleNamespace(contact=_ContactTable(pairs))
        self.rgba: dict[str, np.ndarray] = {}

    def bind(self, material: str):
        return types.SimpleNamespace(rgba=self.rgba.setdefault(material, np.ones(4)))


def _activation(update, target: types.SimpleNamespace, pairs: np.ndarray) -> tuple[bool, float]:
    """(activated, material alpha) after ``update(target, physics)`` on a copy of ``target``."""
    target, physics = types.SimpleNamespace(**vars(target)), _Physics(pairs)
    update(target, physics)
    return target._activated, float(physics.bind(target._material).rgba[-1])


def test_fast_activation_matches_original_on_random_contact_sets():
    """5000 random contact sets, target ids (also -1, the id before the first episode), specific-id filters
    (None, empty, list, tuple, set, containing the target itself) and start states: same result as dm_control's."""
    target_sphere = _target_sphere()
    original = target_sphere.TargetSphere._update_activation
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(5000):
        pairs = rng.integers(0, 8, size=(rng.integers(0, 7), 2))
        specific = [None, [], list(rng.choice(8, rng.integers(1, 4), replace=False)), (3,), {1, 5}][rng.integers(5)]
        target = types.SimpleNamespace(_activated=bool(rng.random() < 0.2), _geom_id=int(rng.integers(-1, 8)),
                                       _specific_collision_geom_ids=specific, _material="m")
        expected = _activation(original, target, pairs)
        assert _activation(fast_update_activation, target, pairs) == expected, (pairs, target)
        outcomes.add((target._activated, specific is None, expected[0]))
    assert len(outcomes) == 6  # every case met: activated before / not, filtered / not, touched / not


def test_install_patches_only_plain_target_spheres_of_the_known_version(monkeypatch):
    target_sphere = _target_sphere()
    plain, two_touch = target_sphere.TargetSphere(), target_sphere.TargetSphereTwoTouch()
    task = types.SimpleNamespace(_targets=[plain, two_touch])
    assert memorymaze_contacts.original_is_known()  # the dm_control version this was written and tested against
    monkeypatch.setattr(memorymaze_contacts, "original_is_known", lambda: False)  # as if dm_control changed it
    assert install_fast_contacts(task) == 0 and not is_fast(plain)
    monkeypatch.undo()
    assert install_fast_contacts(task) == 1 and is_fast(plain) and not is_fast(two_touch)  # other semantics


def _teleport(env: MemoryMazeEnv, rng: np.random.Generator) -> None:
    """Put the ball within 1.2 m of a target (the current one half the time) so targets get touched and rewarded."""
    task, physics = env.dm_env.task, env.dm_env.physics
    index = task._current_target_ix if rng.random() < 0.5 else int(rng.integers(len(task._targets)))
    angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0, 1.2)
    goal = physics.bind(task._targets[index].geom).xpos[:2] + distance * np.array([np.cos(angle), np.sin(angle)])
    # the ball's root joints slide along world x and y: shifting their qpos moves it by the same amount
    physics.bind(task._walker._root_joints[:2]).qpos += goal - physics.bind(task._walker.root_body).xpos[:2]


def _play(env: MemoryMazeEnv, steps: int, seed: int) -> tuple[list, np.ndarray]:
    """``steps`` seeded random actions with a teleport every 8 steps and a plain reset after each episode end:
    ([(reward, terminated, truncated)] per step, frames (1 + steps + resets, 64, 64, 3))."""
    rng = np.random.default_rng(seed)
    results, frames = [], [env.reset()[0]["image"]]
    for t in range(steps):
        if t % 8 == 0:
            _teleport(env, rng)
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(6)))
        results.append((reward, terminated, truncated))
        frames.append(obs["image"])
        if (terminated or truncated) and t < steps - 1:
            frames.append(env.reset()[0]["image"])
    return results, np.stack(frames)


def test_fast_contacts_option_patches_this_envs_targets_on_every_build():
    target_sphere = _target_sphere()
    env = _real(3)  # fast_contacts defaults to True
    assert len(env.dm_env.task._targets) == 3 and all(is_fast(t) for t in env.dm_env.task._targets)
    assert target_sphere.TargetSphere._update_activation.__module__ == target_sphere.__name__  # the class: untouched
    assert install_fast_contacts(env.dm_env.task) == 0  # already patched: nothing to do
    env.reset(seed=4)  # a seeded reset builds a new task: patched too
    assert all(is_fast(t) for t in env.dm_env.task._targets)
    env.close()


@pytest.mark.slow
def test_fast_contacts_gives_the_same_episodes():
    """Same seed, same actions and teleports: identical rewards (with reward events), flags and frames."""
    results, frames = {}, {}
    for fast in (False, True):
        env = _real(7, fast_contacts=fast, max_steps=120)
        assert [is_fast(t) for t in env.dm_env.task._targets] == [fast] * 3
        results[fast], frames[fast] = _play(env, 240, seed=7)
        env.close()
    rewards = [r for r, _, _ in results[False]]
    assert sum(rewards) >= 3, "the teleports should make the agent reach targets; otherwise this proves nothing"
    assert sum(truncated for _, _, truncated in results[False]) == 2  # max_steps=120: two episodes
    assert results[True] == results[False]
    assert frames[True].shape == frames[False].shape and np.array_equal(frames[True], frames[False])  # bit-exact


@pytest.mark.slow
def test_fast_activation_matches_original_on_every_real_substep():
    """On an unpatched env, each target's activation runs dm_control's method and the replacement (from the same
    state, also with specific_collision_geom_ids filters) after every substep and checks they agree."""
    target_sphere = _target_sphere()
    original = target_sphere.TargetSphere._update_activation
    env = _real(11, fast_contacts=False)
    counts = {"calls": 0, "activations": 0, "filtered": 0}

    def state(target, physics) -> tuple[bool, float]:
        return target._activated, float(physics.bind(target._material).rgba[-1])

    def both(target, physics, specific) -> bool:
        """Run the original, then the replacement from the same state; the original's activation (state kept)."""
        start, target._specific_collision_geom_ids = state(target, physics), specific
        original(target, physics)
        expected = state(target, physics)
        target._activated, physics.bind(target._material).rgba[-1] = start
        fast_update_activation(target, physics)
        assert state(target, physics) == expected, (specific, physics.data.contact.geom)
        target._activated, physics.bind(target._material).rgba[-1] = start
        target._specific_collision_geom_ids = None
        return expected[0]

    def checked(target, physics) -> None:
        counts["calls"] += 1
        geoms = physics.data.contact.geom  # (ncon, 2)
        if target._geom_id in geoms and not target._activated:  # where a filter can change the decision
            other = [int(g) for g in geoms.ravel() if g != target._geom_id]
            for specific in ([], [0], other[:1], [target._geom_id]):
                counts["filtered"] += both(target, physics, specific) != both(target, physics, None)
        counts["activations"] += both(target, physics, None) and not target._activated
        original(target, physics)  # the episode goes on with dm_control's own result

    for target in env.dm_env.task._targets:  # (the physics is rebuilt on every reset: use the one passed in)
        target._update_activation = types.MethodType(checked, target)
    rewards = sum(r for r, _, _ in _play(env, 120, seed=11)[0])
    env.close()
    assert counts["calls"] >= 120 * 50 * 3 and counts["activations"] >= 10 and counts["filtered"] > 0, counts
    assert rewards >= 1


def _play_unseeded(env, actions) -> list:
    """(frame, reward, terminated, truncated) of each action, resetting (unseeded) after every episode's end."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        out.append((obs["image"].tobytes(), reward, terminated, truncated))
        if terminated or truncated:
            out.append(env.reset()[0]["image"].tobytes())
    return out


def test_real_saved_episode_continues_identically_in_a_fresh_env():
    """get_state/set_state (checkpoints keep the episode in progress): saved in the task's third episode (mazes
    generated by an RNG that only advances), a fresh env built with another seed continues it and the episode after it
    with the same frames, rewards and flags; the returned observation is the saved env's."""
    import json

    from ssmworld.runtime.acting_state import savable

    env = _real(2, max_steps=12)
    assert savable(env)
    actions = np.random.default_rng(0).integers(0, 6, 60)
    _play_unseeded(env, actions[:29])  # two 12-step episodes and 5 steps into the third
    now = env.step(1)[0]["image"]
    state = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-able, as in a checkpoint's state.json
    assert state["start"]["generated"] == 2 and len(state["actions"]) == 6  # its maze: the third generated
    expected = _play_unseeded(env, actions[29:45])
    fresh = _real(5, max_steps=12)
    replayed = fresh.unwrapped.set_state(state)
    np.testing.assert_array_equal(replayed["image"], now)
    assert _play_unseeded(fresh, actions[29:45]) == expected
    assert sum(isinstance(row, tuple) and row[3] for row in expected) == 1
    env.close()
    fresh.close()
