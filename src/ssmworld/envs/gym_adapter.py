"""`gym:<id>`: any registered gymnasium env with Box or Discrete spaces, observations as a dict."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def _converter(key: str, space: gym.Space):
    """(output key, output space, function raw -> array) for one observation component."""
    if isinstance(space, gym.spaces.Discrete):
        n, first = int(space.n), int(space.start)
        return key, gym.spaces.Box(0.0, 1.0, (n,), dtype=np.float32), lambda x: np.eye(n, dtype=np.float32)[
            int(x) - first]
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3:
        return ("image" if key == "vector" else key), space, lambda x: np.asarray(x, np.uint8)
    if isinstance(space, gym.spaces.Box):
        size = int(np.prod(space.shape))
        return key, gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32), lambda x: np.asarray(
            x, np.float32).reshape(-1)
    raise ValueError(f"unsupported observation space {type(space).__name__} for key {key!r}; "
                     "accepted: Box, Discrete, or a Dict of them")


class DictObservation(gym.ObservationWrapper):
    """Box observations -> {"vector": float32 flat}; Discrete -> one-hot; uint8 H x W x C images -> {"image"};
    a Dict of those -> per key."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        spaces = dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {"vector": space}
        self._parts = {key: _converter(key, sub) for key, sub in spaces.items()}
        self.observation_space = gym.spaces.Dict({out: sub for out, sub, _ in self._parts.values()})

    def observation(self, observation):
        raw = observation if isinstance(observation, dict) else {"vector": observation}
        return {out: convert(raw[key]) for key, (out, _, convert) in self._parts.items()}


def make_gym(task: str, **kwargs) -> gym.Env:
    try:
        env = gym.make(task, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"gym:{task}: {err}") from None
    if not isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise ValueError(f"gym:{task}: unsupported action space {type(env.action_space).__name__}; "
                         "accepted: Discrete, Box")
    return DictObservation(env)
