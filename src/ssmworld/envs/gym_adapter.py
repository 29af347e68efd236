"""`gym:<id>`: any registered gymnasium env with Box or Discrete spaces, observations as a dict.

A user's own env: register it in a module and name the module, `gym:<module>:<id>` (gymnasium imports the module,
whose import registers the id), e.g. `gym:my_package.envs:MyEnv-v0`.

An episode in progress is saved with checkpoints by replaying it (episode_replay.EpisodeReplay): exact for envs that
draw their randomness from ``np_random`` only, as gymnasium's own envs do; an env that draws from elsewhere replays to
another observation, and a resumed run says so (a warning) and goes on from there."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from ..errors import UserError
from .episode_replay import EpisodeReplay


def _converter(key: str, space: gym.Space):
    """(output key, output space, function raw -> array) for one observation component."""
    if isinstance(space, gym.spaces.Discrete):
        n, first = int(space.n), int(space.start)
        return key, gym.spaces.Box(0.0, 1.0, (n,), dtype=np.float32), lambda x: np.eye(n, dtype=np.float32)[
            int(x) - first]
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3:
        return ("image" if key == "vector" else key), space, lambda x: np.asarray(x, np.uint8)
    if isinstance(space, gym.spaces.Box):  # flattened to a float32 vector, bounds kept
        low, high = (np.asarray(b, np.float32).reshape(-1) for b in (space.low, space.high))
        return key, gym.spaces.Box(low, high, dtype=np.float32), lambda x: np.asarray(x, np.float32).reshape(-1)
    where = "the observation" if key == "vector" else f"observation key {key!r}"
    raise UserError(f"unsupported observation space {type(space).__name__} for {where}; accepted: Box, Discrete, "
                    "or a Dict of them (for other spaces wrap the env, e.g. gymnasium.wrappers.FlattenObservation, "
                    "and register it: gym:<module>:<id>)")


def observation_converter(space: gym.Space) -> tuple[gym.spaces.Dict, Callable[[Any], dict[str, np.ndarray]]]:
    """(the ssmworld Dict space, raw observation -> its dict) for a Box, Discrete or Dict observation ``space``."""
    spaces = dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {"vector": space}
    parts = {key: _converter(key, sub) for key, sub in spaces.items()}

    def convert(observation: Any) -> dict[str, np.ndarray]:
        raw = observation if isinstance(observation, dict) else {"vector": observation}
        return {out: fn(raw[key]) for key, (out, _, fn) in parts.items()}

    return gym.spaces.Dict({out: sub for out, sub, _ in parts.values()}), convert


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A Box, Discrete or Dict space as JSON-able data (export's spaces.json)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, gym.spaces.Box):
        return {"type": "box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": np.asarray(space.low, np.float64).reshape(-1).tolist(),
                "high": np.asarray(space.high, np.float64).reshape(-1).tolist()}
    raise UserError(f"cannot describe space {space}; accepted: Box, Discrete, Dict")


def space_from_json(data: dict[str, Any]) -> gym.Space:
    if data["type"] == "discrete":
        return gym.spaces.Discrete(data["n"], start=data["start"])
    if data["type"] == "dict":
        return gym.spaces.Dict({k: space_from_json(v) for k, v in data["spaces"].items()})
    shape, dtype = tuple(data["shape"]), np.dtype(data.get("dtype", "float32"))
    return gym.spaces.Box(np.array(data["low"]).reshape(shape).astype(dtype),
                          np.array(data["high"]).reshape(shape).astype(dtype), shape, dtype)


class DictObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Box observations -> {"vector": float32 flat}; Discrete -> one-hot; uint8 H x W x C images -> {"image"};
    a Dict of those -> per key."""

    stateless = True  # keeps no state between steps (acting_state.savable)

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self.observation_space, self._convert = observation_converter(env.observation_space)

    def observation(self, observation):
        return self._convert(observation)


def make_gym(task: str, **kwargs) -> gym.Env:
    try:
        env = gym.make(task, **kwargs)
    except gym.error.Error as err:
        hint = (f" (an env another package registers: name it, e.g. gym:ale_py:{task})"
                if isinstance(err, gym.error.NamespaceNotFound) else "")
        raise UserError(f"gym:{task}: {err}{hint}") from None
    except ModuleNotFoundError as err:  # "module:EnvId": the module that registers the env, or one it needs, is missing
        raise UserError(f"gym:{task}: {str(err).split('.')[0]} (gym:<module>:<env id> imports the module that "
                        "registers the env; install it)") from None
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise  # a bug inside the env's constructor: its traceback
        raise UserError(f"gym:{task}: {err}; drop the option from train.env_options") from None
    if not isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise UserError(f"gym:{task}: unsupported action space {type(env.action_space).__name__}; "
                         "accepted: Discrete, Box")
    return EpisodeReplay(DictObservation(env), f"gym:{task}")
