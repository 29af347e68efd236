"""`memorymaze:<size>` (``9x9``, ``11x11``, ``13x13``, ``15x15``; ``MemoryMaze-9x9-v0`` is accepted too): Memory Maze.

Observations {"image": (64, 64, 3) uint8} (the egocentric camera with the current target's colour drawn as a border,
memory-maze's ``image_only_obs=True``); actions Discrete(6): noop, forward, left, right, forward+left, forward+right.
Episodes last 1000 / 2000 / 3000 / 4000 steps (4 Hz control; ``EPISODE_STEPS``) with 3 / 4 / 5 / 6 targets; the
reward is +1 per target reached. The time limit is dm_env's ``last()`` with discount 1, which we report as
``truncated=True, terminated=False``; a last step with discount 0 (dm_control's walker failure or diverged physics)
is ``terminated``.
``max_steps=k`` (default None) cuts episodes after k steps (``truncated``), e.g. for short tests.

Built without the old ``gym`` package: ``import memory_maze`` runs a package ``__init__`` that needs gym, so we put
the package module, made from its spec but never executed, in ``sys.modules`` and import ``memory_maze.tasks`` from
the installed folder. That bypassed ``__init__`` is also what would set ``MUJOCO_GL``, so we set ``MUJOCO_GL=egl``
(headless Mesa/EGL, works on CPU) when it is unset, before dm_control is first imported. Set it yourself (e.g.
``osmesa``) to override; a value set after dm_control or mujoco was imported has no effect.

Seeding: memory-maze takes its seed only in the task constructor, so ``reset(seed=s)`` rebuilds the task with ``s``
(same seed -> same mazes and frames); ``reset()`` continues the current task's episodes. The task is built lazily on
the first reset, so ``make(..., seed=s)`` builds once. Cost: ~3 s to build, ~2 s for the first reset.

``fast_contacts=True`` (the default; ``train.env_options.fast_contacts=false`` turns it off): speed. Unpatched, ~2/3
of a step is dm_control's ``TargetSphere._update_activation``, called after each of the 50 physics substeps for each
target; it walks ``physics.data.contact`` in Python, which costs ~0.1-0.2 ms per call even with one contact. We give
the task's target instances (not the class: other envs in the process are untouched) a numpy version that compares
the contacts' geom-id columns instead (memorymaze_contacts.py, written from the original's semantics): same contacts,
integer comparisons, so the same activation in the same substep and a bit-identical episode. Checked in
tests/test_memorymaze.py: identical rewards (with reward events forced by teleporting the ball to targets),
terminated/truncated flags and frames between the two variants, and the same activation as the original method on
every substep of such trajectories (also with ``specific_collision_geom_ids`` set). A dm_control whose method source
differs from the one reproduced keeps its own code. Speed on one core (benchmarks/memorymaze_env.py, random actions):
~37 steps/s unpatched vs ~130 patched, 3.5x; what is left is mostly rendering and MuJoCo itself.

An episode in progress can be saved (``SavableMemoryMazeEnv.get_state``: checkpoints keep it); a resume rebuilds the
task and replays the episode, 6-10 ms a step.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, install_hint
from .episode_replay import ActionLog
from .memorymaze_contacts import install_fast_contacts
from .rng_state import random_state_from_json, random_state_to_json

EPISODE_STEPS = {"9x9": 1000, "11x11": 2000, "13x13": 3000, "15x15": 4000}
IMAGE_SHAPE = (64, 64, 3)
NUM_ACTIONS = 6
_RENDER_FIX = ("use MUJOCO_GL=egl with apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 "
               "(or MUJOCO_GL=osmesa with libosmesa6), set before the first import of dm_control or mujoco")


class _QuietVelocityWarning(logging.Filter):
    """dm_control logs "Cannot set velocity on Entity with no free joint" on every Memory Maze reset."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Cannot set velocity on Entity with no free joint" not in record.getMessage()


def _tasks(what: str):
    """memory_maze.tasks, imported without memory_maze/__init__.py (which needs the old gym package)."""
    needed = ("memory_maze", "labmaze", "dm_control", "mujoco")
    if any(importlib.util.find_spec(name) is None for name in needed):
        raise UserError(f"{what} needs the memorymaze extra: {install_hint('memorymaze')}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    if "memory_maze" not in sys.modules:
        # the package module made from its real spec but never executed: submodules import from its folder
        sys.modules["memory_maze"] = importlib.util.module_from_spec(importlib.util.find_spec("memory_maze"))
    try:
        tasks = importlib.import_module("memory_maze.tasks")
    except Exception as err:  # a GL backend that cannot load fails inside PyOpenGL at import time
        raise UserError(f"{what}: could not load MuJoCo rendering with MUJOCO_GL={os.environ['MUJOCO_GL']} "
                         f"({type(err).__name__}: {err}); {_RENDER_FIX}") from None
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietVelocityWarning) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietVelocityWarning())
    return tasks


def memorymaze_tasks() -> list[str]:
    """The four maze sizes: ["9x9", "11x11", "13x13", "15x15"]."""
    return list(EPISODE_STEPS)


def _size(task: str) -> str:
    match = re.fullmatch(r"(?:memorymaze-)?(\d+x\d+)(?:-v0)?", task.lower())
    if not match or match[1] not in EPISODE_STEPS:
        raise UserError(f"memorymaze:{task}: unknown maze; accepted: {', '.join(EPISODE_STEPS)} "
                         "(or MemoryMaze-9x9-v0)")
    return match[1]


class MemoryMazeEnv(gym.Env):
    """A Memory Maze dm_env task as a gymnasium env (see the module docstring).

    ``build(seed)`` returns a fresh dm_env task seeded with ``seed``; tests pass a stub. ``episode_steps`` is the
    task's own time limit in steps (informational); ``max_steps`` cuts episodes earlier.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, build: Callable[[int], Any], episode_steps: int, max_steps: int | None = None,
                 name: str = "memorymaze"):
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise UserError(f"{name}: max_steps must be an integer >= 1 or None, got {max_steps!r}")
        self._build, self.name = build, name
        self.episode_steps, self.max_steps = episode_steps, max_steps
        self.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, IMAGE_SHAPE, dtype=np.uint8)})
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._env: Any = None
        self._steps = 0

    @property
    def dm_env(self) -> Any:
        """The wrapped dm_env task (None before the first reset; replaced on every seeded reset)."""
        return self._env

    def _rendering(self, call: Callable[[], Any]) -> Any:
        """Run ``call``; a GL failure (mujoco.FatalError or a PyOpenGL error) becomes one line naming the fix."""
        try:
            return call()
        except Exception as err:
            gl = type(err).__module__.split(".")[0] in ("mujoco", "OpenGL") or "OpenGL" in str(err)
            if not gl:
                raise
            raise UserError(f"{self.name}: MuJoCo rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                             f"({type(err).__name__}: {err}); {_RENDER_FIX}") from None

    def _obs(self, timestep: Any) -> dict[str, np.ndarray]:
        return {"image": np.array(timestep.observation, dtype=np.uint8)}  # a copy: dm_control reuses its buffers

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._env is None:
            # unseeded first reset: a seed from gymnasium's np_random (OS entropy unless seeded before)
            self._build_task(seed if seed is not None else int(self.np_random.integers(2**31)))
        timestep = self._rendering(self._start_episode)
        self._steps = 0
        return self._obs(timestep), {}

    def _build_task(self, task_seed: int) -> None:
        if self._env is not None:
            self._env.close()
        self._env = self._rendering(lambda: self._build(task_seed))

    def _start_episode(self) -> Any:
        """The dm_env reset of every episode (a subclass records what it needs to replay the episode)."""
        return self._env.reset()

    def step(self, action):
        if self._env is None:
            raise RuntimeError(f"{self.name}: call reset() before step()")
        timestep = self._env.step(int(action))
        self._steps += 1
        terminated = truncated = False
        if timestep.last():
            # dm_env: discount 0 = a true terminal; discount > 0 = the time limit (keep bootstrapping)
            truncated = float(np.asarray(timestep.discount).reshape(-1)[0]) > 0
            terminated = not truncated
        elif self.max_steps is not None and self._steps >= self.max_steps:
            truncated = True
        return self._obs(timestep), float(timestep.reward or 0.0), terminated, truncated, {}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


class _MazeCounter:
    """Counts a Memory Maze task's maze generations. Its maze generator (labmaze) draws each layout from an RNG kept in
    C++ that cannot be saved, only advanced: a replay rebuilds the task from its seed and generates as many mazes."""

    def __init__(self, env: Any):
        composer_env = env
        while "env" in vars(composer_env):  # memory-maze's wrappers keep the env they wrap in .env
            composer_env = composer_env.env
        self.random: np.random.RandomState = composer_env.random_state  # everything else the task draws
        self._maze = composer_env.task._maze_arena._maze
        self._regenerate = self._maze.regenerate
        self.generated = 0
        self._maze.regenerate = self._counted

    def _counted(self) -> None:
        self.generated += 1
        self._regenerate()

    def advance(self, generations: int) -> None:
        """Generate ``generations`` mazes after the ones so far (a fresh task: as many as the saved one had)."""
        for _ in range(generations):
            self._counted()


class SavableMemoryMazeEnv(MemoryMazeEnv):
    """MemoryMazeEnv whose episode in progress can be saved (checkpoints keep it: runtime/acting_state.py).

    ``get_state``: the task's seed, at the episode's start the composer env's RandomState and the number of mazes
    generated so far (_MazeCounter), and the actions since. ``set_state`` rebuilds the task, generates that many
    mazes, restores the RandomState, resets and replays the actions, rendering each step as the env does. Measured
    on one core: ~2 s to rebuild, then 5.7 ms a step (9x9) to 10 ms (15x15): a whole 1000-step 9x9 episode in ~8 s,
    a 4000-step 15x15 one in ~40 s, per env, once per resume.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._task_seed = 0
        self._counter: _MazeCounter | None = None
        self._start: dict[str, Any] | None = None  # the episode in progress (get_state): set at every reset
        self._actions = ActionLog()

    def _build_task(self, task_seed: int) -> None:
        super()._build_task(task_seed)
        self._task_seed, self._counter = task_seed, _MazeCounter(self._env)

    def _start_episode(self) -> Any:
        self._start = {"random": random_state_to_json(self._counter.random), "generated": self._counter.generated}
        self._actions.clear()
        return super()._start_episode()

    def step(self, action):
        self._actions.append(int(action))
        return super().step(action)

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values: the task's seed, its start, its actions so far."""
        if self._start is None:
            raise RuntimeError(f"{self.name}: get_state before the first reset")
        return {"task_seed": self._task_seed, "start": self._start, "actions": self._actions.saved()}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode (see the class docstring). Returns the observation it arrives at (checked
        against the saved one: runtime/acting_state.restore)."""
        self._build_task(int(state["task_seed"]))
        self._counter.advance(state["start"]["generated"])
        random_state_from_json(self._counter.random, state["start"]["random"])
        obs = self._obs(self._rendering(self._start_episode))
        self._steps = 0
        for action in state["actions"]:
            obs = self.step(action)[0]
        return obs


def make_memorymaze(task: str, *, max_steps: int | None = None, fast_contacts: bool = True) -> gym.Env:
    """``task`` = "9x9", "11x11", "13x13" or "15x15"; ``fast_contacts`` = the vectorised target activation (see the
    module docstring)."""
    size = _size(task)
    name = f"memorymaze:{task}"
    if not isinstance(fast_contacts, bool):  # a string "false" would be truthy
        raise UserError(f"{name}: fast_contacts must be true or false, got {fast_contacts!r}")
    tasks = _tasks(name)
    constructor = getattr(tasks, f"memory_maze_{size}")

    def build(seed: int) -> Any:
        env = constructor(image_only_obs=True, seed=seed)
        # targets are made once per task (we never pass randomize_colors, which would remake them per episode)
        if fast_contacts and not install_fast_contacts(env.task):
            logging.getLogger(__name__).warning(
                "%s: fast_contacts not applied: the installed dm_control's TargetSphere._update_activation is not "
                "the one memorymaze_contacts.py reproduces; using dm_control's (slower, same rewards)", name)
        return env
    return SavableMemoryMazeEnv(build, EPISODE_STEPS[size], max_steps=max_steps, name=name)


__all__ = ["EPISODE_STEPS", "MemoryMazeEnv", "SavableMemoryMazeEnv", "make_memorymaze", "memorymaze_tasks"]
