"""`popgym:<Name>` (e.g. ``popgym:RepeatPreviousEasy``, or the gym id ``popgym-RepeatPreviousEasy-v0``).

Observations -> {"vector": (n,) float32}: Discrete one-hot; MultiDiscrete one one-hot per component, concatenated;
Box flattened; Tuple the concatenation of its parts in order. E.g. AutoencodeEasy's Tuple(Discrete(2), Discrete(4))
obs (1, 2) -> [0, 1, 0, 0, 1, 0].
Actions: Discrete and Box unchanged; MultiDiscrete(nvec) -> Discrete(prod(nvec)), decoded mixed-radix with the last
component fastest (``np.unravel_index`` order): MultiDiscrete([4, 4]) action 6 -> (1, 2).
popgym's own terminated/truncated are passed through unmerged. popgym envs impose their own episode limits
(gym registration adds no TimeLimit); the ones that truncate are Battleship, Concentration, MineSweeper (when the step
budget runs out), MultiarmedBandit (always) and the Position/Velocity-only and noisy control tasks (at their limit).
Envs are built from their classes, not gym.make: popgym's wrappers need the raw POPGymEnv, and it skips gymnasium's
env checker (which warns about popgym's shared info dicts).
An episode in progress can be saved (episode_replay.EpisodeReplay, JSON-able: checkpoints keep it): popgym envs draw
their randomness (decks, boards, noise, bandit arms) from their gymnasium Generator, ``np_random``, so the saved
state is the seed of a seeded reset or that Generator's state before an unseeded one, and the actions since;
``set_state`` resets the same way and replays them. Not the navigation envs (LabyrinthEscape, LabyrinthExplore:
popgym[navigation]), whose mazes come from the process-wide ``random`` and ``np.random``: they get the plain adapter,
and a resume starts them on fresh episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, import_optional
from .episode_replay import EpisodeReplay

Encoder = Callable[[Any], np.ndarray]


def _encoder(space: gym.Space) -> tuple[np.ndarray, np.ndarray, Encoder]:
    """(low, high, raw observation -> flat float32 vector) for one popgym observation space."""
    if isinstance(space, gym.spaces.Discrete):
        n, start = int(space.n), int(space.start)
        return np.zeros(n, np.float32), np.ones(n, np.float32), lambda x: np.eye(n, dtype=np.float32)[int(x) - start]
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec, start = space.nvec.reshape(-1).astype(np.int64), space.start.reshape(-1).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])  # where each component's one-hot block begins
        size = int(nvec.sum())

        def multi_one_hot(x) -> np.ndarray:
            out = np.zeros(size, np.float32)
            out[offsets + np.asarray(x, np.int64).reshape(-1) - start] = 1.0
            return out
        return np.zeros(size, np.float32), np.ones(size, np.float32), multi_one_hot
    if isinstance(space, gym.spaces.Box):
        return (space.low.reshape(-1).astype(np.float32), space.high.reshape(-1).astype(np.float32),
                lambda x: np.array(x, np.float32).reshape(-1))  # a copy: envs may reuse buffers
    if isinstance(space, gym.spaces.Tuple):
        parts = [_encoder(sub) for sub in space.spaces]
        return (np.concatenate([low for low, _, _ in parts]), np.concatenate([high for _, high, _ in parts]),
                lambda x: np.concatenate([encode(item) for (_, _, encode), item in zip(parts, x)]))
    raise UserError(f"unsupported popgym observation space {space}; accepted: Discrete, MultiDiscrete, Box, Tuple")


def decode_multi_discrete(action: int, nvec: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Flat index in [0, prod(nvec)) -> MultiDiscrete action, mixed radix with the last component fastest."""
    digits = np.asarray(np.unravel_index(int(action), tuple(int(n) for n in nvec)), np.int64)
    return digits if start is None else digits + start


class PopgymAdapter(gym.Wrapper):
    """A raw POPGymEnv with {"vector"} observations and Discrete/Box actions (see the module docstring)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high, self._encode = _encoder(env.observation_space)
        self.observation_space = gym.spaces.Dict({"vector": gym.spaces.Box(low, high, dtype=np.float32)})
        space = env.action_space
        self._nvec: np.ndarray | None = None
        if isinstance(space, gym.spaces.MultiDiscrete):
            self._nvec, self._start = space.nvec.reshape(-1), space.start.reshape(-1)
            self.action_space = gym.spaces.Discrete(int(np.prod(self._nvec)))
        elif not isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise UserError(f"unsupported popgym action space {space}; accepted: Discrete, MultiDiscrete, Box")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return {"vector": self._encode(obs)}, info

    def step(self, action):
        if self._nvec is not None:
            action = decode_multi_discrete(action, self._nvec, self._start)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {"vector": self._encode(obs)}, float(reward), bool(terminated), bool(truncated), info


def _envs_module(what: str) -> Any:
    return import_optional("popgym.envs", "popgym", f"{what} needs the popgym extra")


def _gym_id_name(spec: dict) -> str:
    return spec["id"].removeprefix("popgym-").removesuffix("-v0")


def popgym_tasks() -> list[str]:
    """Every registered popgym env by the name in its gym id (42 ids; 48 with popgym[navigation])."""
    return [_gym_id_name(spec) for spec in _envs_module("popgym:").ALL.values()]


def make_popgym(task: str) -> gym.Env:
    """``task`` = "RepeatPreviousEasy" or "popgym-RepeatPreviousEasy-v0"."""
    # Accept the gym id's name ("VelocityOnlyCartpoleEasy") and the class name ("VelocityOnlyCartPoleEasy").
    registry = {}
    for cls, spec in _envs_module(f"popgym:{task}").ALL.items():
        registry[cls.__name__] = registry[_gym_id_name(spec)] = cls
    name = task.removeprefix("popgym-").removesuffix("-v0")
    if name not in registry:
        raise UserError(f"popgym:{task}: unknown env; available: {', '.join(popgym_tasks())}")
    cls = registry[name]
    # the navigation envs draw their mazes from the process-wide RNGs, which one env cannot save
    navigation = any(base.__name__ == "MazeEnv" for base in cls.__mro__)
    return PopgymAdapter(cls()) if navigation else EpisodeReplay(PopgymAdapter(cls()), f"popgym:{task}")
