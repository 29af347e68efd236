"""`bsuite:<experiment>/<index>` (e.g. ``bsuite:memory_len/10``) through dm_env, as a gymnasium env.

Observations: the dm_env observation (any shape, or a dict/tuple of arrays) flattened and concatenated to
{"vector": (n,) float32}. Actions: a ``DiscreteArray`` spec becomes ``Discrete(num_values)``, a bounded array a ``Box``.
Episode ends: ``timestep.last()`` with discount == 0 is ``terminated``; ``last()`` with discount > 0 is ``truncated``
(a time-limit cut, which must keep bootstrapping). bsuite itself never truncates: every experiment ends its episodes
with ``dm_env.termination``, even mountain_car's 1000-step and cartpole's max_time limits.

Seeding (read from bsuite 0.3.6 and checked by running every experiment): bsuite envs take their seed only in the
constructor. Every loader except bandit, discounting_chain and deep_sea_stochastic accepts ``seed``; the sweep leaves it
at None (OS entropy), except memory_len, memory_size and umbrella_distract, whose loaders default to seed 0.
``reset(seed=s)`` therefore rebuilds the bsuite env with ``seed=s``, making the episode sequence after it
reproducible. bandit, discounting_chain, deep_sea and bandit_scale are deterministic given the sweep's
``mapping_seed`` (part of the task definition, so kept); rebuilding just restores their start state.
deep_sea_stochastic's loader drops the seed, so we build its ``DeepSea(deterministic=False)`` ourselves with it.
mnist* download MNIST when built, which fails offline.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, import_optional
from .rng_state import random_state_from_json, random_state_to_json

_SUCCESS_EXPERIMENTS = ("memory_len", "memory_size")  # binary recall tasks: final reward +1 right, -1 wrong


def _leaves(tree: Any) -> list:
    """The arrays (or specs) of a dm_env nest, dicts in key order."""
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    if isinstance(tree, (list, tuple)):
        return [leaf for value in tree for leaf in _leaves(value)]
    return [tree]


def _action_space(spec: Any) -> gym.Space:
    if hasattr(spec, "num_values"):  # dm_env.specs.DiscreteArray (checked by duck type: no dm_env import needed)
        return gym.spaces.Discrete(int(spec.num_values))
    if hasattr(spec, "minimum") and hasattr(spec, "maximum"):  # BoundedArray
        low = np.broadcast_to(np.asarray(spec.minimum, np.float32), spec.shape)
        high = np.broadcast_to(np.asarray(spec.maximum, np.float32), spec.shape)
        return gym.spaces.Box(low, high, dtype=np.float32)
    raise UserError(f"unsupported dm_env action spec {spec!r}; accepted: DiscreteArray, BoundedArray")


class DmEnvAdapter(gym.Env):
    """A dm_env.Environment as a gymnasium env with {"vector": (n,) float32} observations.

    ``build(seed)`` returns a fresh dm_env env; it is called with None at construction and again with ``s`` on every
    ``reset(seed=s)``, which is how dm_env envs (seeded only in their constructor) get reproducible episodes.
    ``success_info``: put ``info["success"] = final reward > 0`` on the last step of each episode.
    On the last step of each episode, ``info["bsuite/<key>"]`` holds what the episode added to each of the env's
    ``bsuite_info()`` counters (e.g. total_perfect, total_regret): per-episode deltas, so they survive the env being
    rebuilt (seeded resets, resume); ``ssmworld bsuite-score`` sums them into bsuite's own CSV columns.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, build: Callable[[int | None], Any], success_info: bool = False):
        self._build, self._success_info = build, success_info
        self._seed: int | None = None  # the seed the current env was built with (None: the default or OS entropy)
        self._env = build(None)
        self._counters: dict[str, float] = {}  # bsuite_info() at the start of the episode
        size = sum(int(np.prod(spec.shape)) for spec in _leaves(self._env.observation_spec()))
        self.observation_space = gym.spaces.Dict(
            {"vector": gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)})
        self.action_space = _action_space(self._env.action_spec())

    @property
    def dm_env(self) -> Any:
        """The wrapped dm_env env (replaced on every seeded reset)."""
        return self._env

    def _obs(self, observation: Any) -> dict[str, np.ndarray]:
        parts = [np.array(leaf, np.float32).reshape(-1) for leaf in _leaves(observation)]
        return {"vector": np.concatenate(parts) if len(parts) > 1 else parts[0]}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env, self._seed = self._build(seed), int(seed)
        observation = self._obs(self._start_episode().observation)
        self._counters = self._bsuite_info()
        return observation, {}

    def _start_episode(self) -> Any:
        """The dm_env reset of every episode (a subclass records what it needs to replay the episode)."""
        return self._env.reset()

    def _bsuite_info(self) -> dict[str, float]:
        info = getattr(self._env, "bsuite_info", None)
        return {k: float(v) for k, v in info().items()} if callable(info) else {}

    def step(self, action):
        if isinstance(self.action_space, gym.spaces.Discrete):
            action = int(action)
        timestep = self._env.step(action)
        reward = float(timestep.reward or 0.0)
        info: dict[str, Any] = {}
        terminated = truncated = False
        if timestep.last():
            # dm_env: discount 0 at the end = a true terminal; discount > 0 = cut short (bootstrap from the last obs).
            truncated = float(np.asarray(timestep.discount).reshape(-1)[0]) > 0
            terminated = not truncated
            if self._success_info:
                info["success"] = reward > 0
            counters = self._bsuite_info()
            info.update({f"bsuite/{k}": v - self._counters.get(k, 0.0) for k, v in counters.items()})
            self._counters = counters
        return self._obs(timestep.observation), reward, terminated, truncated, info


_SCALARS = (bool, int, float, np.generic)


def _levels(env: Any) -> list[tuple[str, Any]]:
    """A bsuite env and the envs it wraps (bsuite's reward wrappers keep theirs in ``_env``): [(path prefix, env)]."""
    levels, prefix = [], ""
    while env is not None:
        levels.append((prefix, env))
        env, prefix = getattr(env, "_env", None), prefix + "_env."
    return levels


def _carried(env: Any) -> dict[str, dict[str, list]]:
    """What a bsuite env carries from one episode into the next, as JSON-able values by level and attribute: the state
    of each numpy RNG, and each scalar (bsuite_info's counters such as a running best return, flags, settings)."""
    carried: dict[str, dict[str, list]] = {}
    for prefix, level in _levels(env):
        values = carried[prefix] = {}
        for name, value in sorted(vars(level).items()):
            if isinstance(value, np.random.RandomState):
                values[name] = ["random", random_state_to_json(value)]
            elif isinstance(value, _SCALARS) and np.ndim(value) == 0:
                if isinstance(value, np.generic):
                    values[name] = ["scalar", value.dtype.str, value.item()]
                else:  # the Python type it is an instance of (an IntEnum is saved, and comes back, as an int)
                    kind = next(t for t in (bool, int, float) if isinstance(value, t))
                    values[name] = ["scalar", kind.__name__, kind(value)]
    return carried


def _restore_carried(env: Any, carried: dict[str, dict[str, list]]) -> None:
    """Put ``_carried``'s values back into a freshly built env of the same experiment."""
    levels = dict(_levels(env))
    saved_rngs = {p + n for p, values in carried.items() for n, v in values.items() if v[0] == "random"}
    rngs = {p + n for p, level in levels.items() for n, v in vars(level).items()
            if isinstance(v, np.random.RandomState)}
    if saved_rngs != rngs:
        raise ValueError(f"bsuite env: the saved RNGs {sorted(saved_rngs)} are not this env's {sorted(rngs)}")
    python_types = {"bool": bool, "int": int, "float": float}
    for prefix, values in carried.items():
        for name, (kind, *value) in values.items():
            if kind == "random":
                random_state_from_json(getattr(levels[prefix], name), value[0])
            else:
                dtype, scalar = value
                convert = python_types.get(dtype) or np.dtype(dtype).type
                setattr(levels[prefix], name, convert(scalar))


class BsuiteEnv(DmEnvAdapter):
    """A bsuite experiment whose episode in progress can be saved (checkpoints keep it: runtime/acting_state.py).

    A bsuite env's dynamics follow from its constructor's arguments (the sweep's settings and the seed) and its numpy
    RNGs; besides those it carries scalars from episode to episode (bsuite_info's counters, e.g. cartpole's best
    return so far). So ``get_state`` holds the seed the env was built with, the RNGs' states and the scalars at the
    episode's start (of the env and of a reward wrapper around it) and the actions since; ``set_state`` rebuilds the
    env, restores those and replays the actions (a few numpy ops per step: a 1000-step episode replays in
    milliseconds).
    """

    def __init__(self, build: Callable[[int | None], Any], success_info: bool = False):
        self._start: dict[str, dict[str, list]] | None = None  # _carried() at the episode's start
        self._actions: list = []
        super().__init__(build, success_info)

    def _start_episode(self) -> Any:
        self._start = _carried(self._env)
        self._actions = []
        return super()._start_episode()

    def step(self, action):
        discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self._actions.append(int(action) if discrete else np.asarray(action).tolist())  # (bsuite's are all discrete)
        return super().step(action)

    def get_state(self) -> dict[str, Any]:
        """The episode in progress, JSON-able: the env's seed, what it carried into the episode, the actions."""
        if self._start is None:
            raise RuntimeError("bsuite env: get_state before the first reset")
        return {"seed": self._seed, "start": self._start, "actions": list(self._actions)}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode: the env rebuilt with its seed and its start values, its actions again. Returns
        the observation it arrives at (checked against the saved one: runtime/acting_state.restore)."""
        self._seed = state["seed"]
        self._env = self._build(self._seed)
        _restore_carried(self._env, state["start"])
        obs = self._obs(self._start_episode().observation)
        self._counters = self._bsuite_info()
        for action in state["actions"]:
            obs = self.step(action if isinstance(action, int) else np.asarray(action, self.action_space.dtype))[0]
        return obs


def _import_bsuite(what: str):
    return (import_optional("bsuite", "bsuite", f"{what} needs the bsuite extra"),
            import_optional("bsuite.sweep", "bsuite", f"{what} needs the bsuite extra"))


def bsuite_tasks() -> list[str]:
    """All 468 bsuite ids, e.g. ["bandit/0", ..., "umbrella_length/22"]."""
    return list(_import_bsuite("bsuite:")[1].SWEEP)


def _loader(bsuite, experiment: str, settings: dict) -> Callable[[int | None], Any]:
    """seed -> fresh env of this setting; the seed overrides the sweep's where the constructor accepts one."""
    if experiment == "deep_sea_stochastic":  # its loader hard-codes an unseeded DeepSea: build it ourselves
        deep_sea = importlib.import_module("bsuite.environments.deep_sea")
        episodes = importlib.import_module("bsuite.experiments.deep_sea_stochastic.sweep").NUM_EPISODES

        def build_deep_sea(seed: int | None):
            env = deep_sea.DeepSea(deterministic=False, seed=seed, **settings)
            env.bsuite_num_episodes = episodes
            return env
        return build_deep_sea
    load = importlib.import_module("bsuite.bsuite").EXPERIMENT_NAME_TO_ENVIRONMENT[experiment]
    takes_seed = "seed" in inspect.signature(load).parameters

    def build(seed: int | None):
        kwargs = dict(settings, seed=seed) if takes_seed and seed is not None else dict(settings)
        # bsuite.load, not load_from_id: the latter prints a banner on every build.
        return bsuite.load(experiment, kwargs)
    return build


def make_bsuite(task: str) -> gym.Env:
    """``task`` = "<experiment>/<index>", e.g. "memory_len/10" (memory length 12: the index into bsuite's sweep)."""
    bsuite, sweep = _import_bsuite(f"bsuite:{task}")
    experiment, _, index = task.partition("/")
    experiments = sorted({bsuite_id.split("/")[0] for bsuite_id in sweep.SWEEP})
    if experiment not in experiments:
        raise UserError(f"bsuite:{task}: unknown experiment {experiment!r}; expected <experiment>/<index> with "
                         f"experiment one of {', '.join(experiments)}")
    count = sum(1 for bsuite_id in sweep.SWEEP if bsuite_id.split("/")[0] == experiment)
    if not index.isdigit() or int(index) >= count:
        raise UserError(f"bsuite:{task}: index must be an integer in 0..{count - 1} for {experiment}")
    build = _loader(bsuite, experiment, dict(sweep.SETTINGS[f"{experiment}/{int(index)}"]))
    try:
        return BsuiteEnv(build, success_info=experiment in _SUCCESS_EXPERIMENTS)
    except OSError as err:  # mnist* fetch their data set at construction
        raise UserError(f"bsuite:{task}: could not load the experiment's data ({err})") from None
