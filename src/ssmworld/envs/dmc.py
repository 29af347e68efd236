"""`dmc:<domain>_<task>` (proprioceptive) and `dmc_vision:<domain>_<task>` (pixels): the DeepMind Control Suite.

Ids: every task of ``dm_control.suite.ALL_TASKS`` (51 with dm_control 1.0.50) as ``<domain>_<task>``, e.g.
``dmc:walker_walk``, ``dmc:ball_in_cup_catch``, ``dmc_vision:cheetah_run`` (matched case-insensitively, so
``humanoid_cmu_walk`` works too).
- ``dmc:`` observations: the task's observation dict flattened and concatenated in its key order to
  {"vector": (n,) float32}.
- ``dmc_vision:`` observations: {"image": (size, size, 3) uint8} rendered from ``camera`` (default: 0, or 2 for
  quadruped, as DreamerV3), no vector. Rendering is dm_control's default (shadows, anti-aliasing): ~25 ms per frame
  on CPU (quadruped ~50 ms), so 20-40 agent steps/s with repeat 2.
- Actions: ``Box(-1, 1)`` mapped linearly onto the action spec's bounds (they differ for quadruped); out-of-range
  actions are clipped first. Unbounded dimensions (lqr's +-1e10 count as such) get the clipped action unchanged.
- ``repeat`` (default 2, as DreamerV3 and R2I): one agent step = the action applied for ``repeat`` control steps,
  rewards summed, stopping early when the episode ends.
- Episode ends (dm_control 1.0.50 ``control.Environment.step``): every task stops after ``time_limit /
  control_timestep`` control steps (1000 for all suite tasks but lqr, which has none) with discount 1.0 ->
  ``truncated=True, terminated=False`` (500 agent steps with repeat 2). A task's own termination (only lqr's, when
  the state norm is ~0) comes with discount 0 -> ``terminated``.
- Seeding: dm_control tasks take their RNG in the constructor (``task_kwargs={"random": seed}``), so
  ``reset(seed=s)`` rebuilds the env with seed ``s``; the episodes after it are reproducible.
- An episode in progress can be saved (``get_state``, JSON-able: checkpoints keep it): the seed the task was built
  with (lqr draws its model from it), the task RNG's state at the episode's start and the actions since. ``set_state``
  rebuilds the task if its seed differs, restores that RNG, resets and replays the actions (physics only, no
  rendering): MuJoCo is deterministic, so the episode continues exactly (tests/test_dmc.py). Replaying a
  500-step episode took 0.3 s (cartpole, walker) to 1.1 s (humanoid) on a busy 2-core CPU: once per resume.

Rendering: unless ``MUJOCO_GL`` is already set, it is set to ``egl`` (headless, Mesa or GPU) before dm_control is
first imported. Override it by exporting ``MUJOCO_GL=osmesa`` (needs libosmesa6) or ``glfw`` (needs a display)
before the first dmc env is made (dm_control reads it once, at import); proprioceptive ``dmc:`` envs also run with
``MUJOCO_GL=disable``. A backend that fails raises one UserError naming the fix (a machine setup to change, as
memorymaze's).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, install_hint
from .bsuite_adapter import DmEnvAdapter
from .episode_replay import ActionLog
from .rng_state import random_state_from_json, random_state_to_json

_GL_FIX = ("fix: MUJOCO_GL=egl with the EGL libraries (apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri "
           "libgl1), or MUJOCO_GL=osmesa with libosmesa6; dmc: without pixels also runs with MUJOCO_GL=disable")


def _gl_error(what: str, err: BaseException) -> UserError:
    """One line naming the backend in use, the error and the fix."""
    return UserError(f"{what}: OpenGL backend MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} failed "
                      f"({type(err).__name__}: {err}); {_GL_FIX}")


def _suite(what: str):
    """dm_control.suite, imported with MUJOCO_GL defaulting to egl (must be set before the first import)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
    except ImportError as err:
        if getattr(err, "name", "") and err.name.split(".")[0] in ("dm_control", "mujoco"):
            raise UserError(f"{what} needs the dmc extra: {install_hint('dmc')}") from None
        raise _gl_error(what, err) from None
    except (RuntimeError, AttributeError, OSError) as err:  # an unknown MUJOCO_GL, or osmesa without libOSMesa
        raise _gl_error(what, err) from None
    return suite


def dmc_tasks() -> list[str]:
    """Every suite task as ``<domain>_<task>``, in dm_control's order: ["acrobot_swingup", ..., "walker_run"]."""
    return [f"{domain}_{task}" for domain, task in _suite("dmc:").ALL_TASKS]


def _resolve(suite_name: str, name: str) -> tuple[str, str]:
    """"ball_in_cup_catch" -> ("ball_in_cup", "catch"): split against the suite's list, as domains hold underscores."""
    tasks = {f"{d}_{t}".lower(): (d, t) for d, t in _suite(f"{suite_name}:{name}").ALL_TASKS}
    if name.lower() not in tasks:
        raise UserError(f"{suite_name}:{name}: unknown DMC task; expected <domain>_<task> of dm_control.suite, e.g. "
                         "walker_walk, cartpole_balance, cheetah_run or ball_in_cup_catch; list them with "
                         f"ssmworld list envs {suite_name}")
    return tasks[name.lower()]


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [low, high] per dimension (clipped first); a dimension with a bound beyond +-1e6 passes through."""
    action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    # lqr's spec says +-1e10: scaling onto that would turn any policy output into an enormous force.
    bounded = (np.abs(low) < 1e6) & (np.abs(high) < 1e6)
    with np.errstate(invalid="ignore", over="ignore"):  # inf bounds give nan/inf here, dropped by the where
        scaled = low + (action + 1.0) / 2.0 * (high - low)
    return np.where(bounded, scaled, action)


class DmcEnv(DmEnvAdapter):
    """One DMC task with the conventions of the module docstring; ``vision`` selects pixel observations."""

    def __init__(self, domain: str, task: str, repeat: int = 2, vision: bool = False, size: int = 64,
                 camera: int | None = None):
        name = f"{'dmc_vision' if vision else 'dmc'}:{domain}_{task}"
        if not isinstance(repeat, int) or repeat < 1:
            raise UserError(f"{name}: repeat must be an integer >= 1, got {repeat!r}")
        if vision and (not isinstance(size, int) or not 8 <= size <= 480):
            raise UserError(f"{name}: size must be an integer in 8..480, got {size!r}")
        self.name, self.domain, self.task, self.repeat = name, domain, task, repeat
        self.vision, self.size = vision, size
        self.camera = (2 if domain == "quadruped" else 0) if camera is None else camera
        self._suite = _suite(name)
        self._env = None
        self._start_random: list | None = None  # the episode in progress (get_state): set at every reset
        self._actions = ActionLog()
        try:
            super().__init__(self._load)
        except AttributeError as err:  # mujoco 4 with dm_control 1.0.50: "MjModel has no attribute flex_vertedge"
            raise UserError(f"{name}: dm_control could not load the model ({err}); pin mujoco<4 "
                             f"({install_hint('dmc')})") from None
        spec = self._env.action_spec()
        self._low = np.broadcast_to(np.asarray(spec.minimum, np.float64), spec.shape)
        self._high = np.broadcast_to(np.asarray(spec.maximum, np.float64), spec.shape)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, dtype=np.float32)
        if vision:
            cameras = self._env.physics.model.ncam
            if not isinstance(self.camera, int) or not -1 <= self.camera < cameras:
                raise UserError(f"{name}: camera must be an integer in -1..{cameras - 1} (-1: the free camera), "
                                 f"got {camera!r}")
            self.observation_space = gym.spaces.Dict(
                {"image": gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)})
            self._render()  # fail here, with the fix, rather than at the first reset

    def _start_episode(self) -> Any:
        self._start_random = random_state_to_json(self._env.task.random)  # before the reset draws the start
        self._actions.clear()
        return super()._start_episode()

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values: the seed the task was built with, the task RNG at the
        episode's start and its actions so far."""
        if self._start_random is None:
            raise RuntimeError(f"{self.name}: get_state before the first reset")
        return {"seed": self._seed, "random": self._start_random, "actions": self._actions.saved()}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode: the same start (the task RNG), then its actions again (see the docstring).
        Returns the observation it arrives at (checked against the saved one: runtime/acting_state.restore)."""
        seed = state.get("seed", self._seed)  # (checkpoints before 2026-12-03 did not save it)
        if seed != self._seed:  # a task may draw its model from the construction seed (lqr's stiffness, damping)
            self._env, self._seed = self._build(seed), seed
        random_state_from_json(self._env.task.random, state["random"])
        timestep = self._start_episode()
        for action in state["actions"]:
            timestep, _ = self._physics_step(action)
        return self._obs(timestep.observation)

    def _physics_step(self, action: Any) -> tuple[Any, float]:
        """One agent step without an observation: (the last dm_env timestep, the summed reward)."""
        self._actions.append([float(a) for a in np.asarray(action, np.float64).reshape(-1)])  # exact in JSON
        control = rescale_action(action, self._low, self._high)
        reward = 0.0
        for _ in range(self.repeat):
            timestep = self._env.step(control)
            reward += float(timestep.reward or 0.0)
            if timestep.last():
                break
        return timestep, reward

    def _load(self, seed: int | None) -> Any:
        if self._env is not None:  # free the old physics' GL contexts now rather than whenever it is collected
            self._env.physics.free()
        return self._suite.load(self.domain, self.task, task_kwargs={"random": seed})

    def _render(self) -> np.ndarray:
        try:
            return self._env.physics.render(self.size, self.size, camera_id=self.camera)
        except Exception as err:  # mujoco.FatalError, RuntimeError("No OpenGL rendering backend"), GL errors
            raise _gl_error(f"{self.name}: rendering failed", err) from None

    def _obs(self, observation: Any) -> dict[str, np.ndarray]:
        return {"image": self._render()} if self.vision else super()._obs(observation)

    def step(self, action):
        timestep, reward = self._physics_step(action)
        terminated = truncated = False
        if timestep.last():
            # dm_control: the time limit ends with discount 1.0 (truncated); a task's own termination with 0.
            truncated = float(timestep.discount) > 0
            terminated = not truncated
        return self._obs(timestep.observation), reward, terminated, truncated, {}

    def close(self) -> None:
        if self._env is not None:
            self._env.physics.free()
            self._env = None


def make_dmc(task: str, *, repeat: int = 2) -> gym.Env:
    """``dmc:<domain>_<task>``: proprioceptive observations {"vector"}; ``repeat`` = action repeat."""
    return DmcEnv(*_resolve("dmc", task), repeat=repeat)


def make_dmc_vision(task: str, *, repeat: int = 2, size: int = 64, camera: int | None = None) -> gym.Env:
    """``dmc_vision:<domain>_<task>``: {"image": (size, size, 3) uint8} from ``camera`` (None: 0, quadruped 2)."""
    return DmcEnv(*_resolve("dmc_vision", task), repeat=repeat, vision=True, size=size, camera=camera)


__all__ = ["DmcEnv", "dmc_tasks", "make_dmc", "make_dmc_vision", "rescale_action"]
