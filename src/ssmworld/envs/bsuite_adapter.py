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
            self._env = self._build(seed)
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
    """``task`` = "<experiment>/<index>", e.g. "memory_len/10" (memory length 11)."""
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
        return DmEnvAdapter(build, success_info=experiment in _SUCCESS_EXPERIMENTS)
    except OSError as err:  # mnist* fetch their data set at construction
        raise UserError(f"bsuite:{task}: could not load the experiment's data ({err})") from None
