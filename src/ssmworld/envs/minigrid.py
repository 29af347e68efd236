"""`minigrid:<Name>` (e.g. ``minigrid:MemoryS7`` or ``minigrid:MiniGrid-MemoryS7-v0``): MiniGrid's partial view.

Any registered ``MiniGrid-*`` id; a short name picks its newest version ("MultiRoom-N4-S5" -> ...-v1). BabyAI ids are
not offered: their free-text missions are the task, and we do not encode text.
Options of ``make_minigrid``:
- ``obs="image"`` (default): the agent's egocentric 7x7-cell view as RGB, {"image": (size, size, 3) uint8}, ``size`` a
  power of two (default 64). MiniGrid's RGBImgPartialObsWrapper gives 56x56 (8-pixel tiles); we render the view with
  ceil(2 * size / 7)-pixel tiles (19: 133x133, at least twice the output) and area-resize it to size x size with
  cv2 INTER_AREA's overlap weights, done in numpy (no cv2 needed; identical pixels).
- ``obs="symbolic"``: the same view as MiniGrid's (object, colour, state) codes per cell, each one-hot
  (11 + 6 + 3 = 20 per cell): {"vector": (7 * 7 * 20,) = (980,) float32}, cells in MiniGrid's (x, y) order.
- ``direction=True`` adds {"direction": (4,) float32}, the one-hot compass heading (0 = east, clockwise). The view is
  egocentric, so the heading is extra information the agent would otherwise have to infer. The mission string is not
  encoded: it is fixed text in most MiniGrid envs (Memory, DoorKey, KeyCorridor, ...), but varies in GoToDoor,
  GoToObject, Fetch and PutNear, which are then ambiguous.
- ``actions="all"`` (default): Discrete(7), MiniGrid's left, right, forward, pickup, drop, toggle, done.
  ``actions="used"``: only the actions the env class's docstring does not mark "Unused" (Memory: left, right, forward,
  pickup, toggle -> Discrete(5); Empty, FourRooms, Crossing: Discrete(3)); an env without such a table keeps all 7.
  Index i of the smaller space is the i-th kept action, in MiniGrid's order.
- ``max_steps``: MiniGrid's step limit (default: the env's own, e.g. 5 * size**2 = 245 for MemoryS7). Reaching it is
  ``truncated=True`` (MiniGrid's own flag); ``terminated`` is MiniGrid's (goal, lava, the Memory choice). Note that
  MiniGrid's success reward 1 - 0.9 * step / max_steps depends on max_steps.
info: ``success`` = (terminated with reward > 0) on every step. Seeding: ``reset(seed=s)`` seeds MiniGrid's RNG, so
the same seed gives the same layouts and frames. Speed (MemoryS7, random actions, 1 core): ~1.0k steps/s with
``obs="image"`` at 64x64, ~5.7k with ``obs="symbolic"``.
An episode in progress can be saved (``get_state``, JSON-able: checkpoints keep it): MiniGrid draws its layouts (and
any randomness of its steps) from the env's numpy Generator, so the saved state is the seed of a seeded reset or the
Generator's state before an unseeded one, and the actions since; ``set_state`` resets the same way and replays them.
"""

from __future__ import annotations

import os
import re
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, import_optional
from .episode_replay import ActionLog
from .rng_state import generator_start, reset_as_started

_OBS_MODES = ("image", "symbolic")
_ACTION_SETS = ("all", "used")


def _minigrid(what: str = "minigrid:"):
    # pygame is imported by minigrid; keep it off any display and quiet (we never open a window).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return import_optional("minigrid", "minigrid", f"{what} needs the minigrid extra")  # registers MiniGrid-* ids


def minigrid_ids() -> dict[str, str]:
    """{short name: newest registered id}, e.g. {"MemoryS7": "MiniGrid-MemoryS7-v0", ...}."""
    _minigrid()
    newest: dict[str, tuple[int, str]] = {}
    for env_id in gym.registry:
        match = re.fullmatch(r"MiniGrid-(.+)-v(\d+)", env_id)
        if match and int(match[2]) >= newest.get(match[1], (-1, ""))[0]:
            newest[match[1]] = (int(match[2]), env_id)
    return {name: env_id for name, (_, env_id) in newest.items()}


def minigrid_tasks() -> list[str]:
    """Short names of every registered MiniGrid env, sorted (77 with minigrid 3.2)."""
    return sorted(minigrid_ids())


def _resolve(task: str) -> str:
    """Registered id for "MemoryS7", "memorys7", "MiniGrid-MemoryS7" or "MiniGrid-MemoryS7-v0"."""
    ids = minigrid_ids()
    if task in ids.values():
        return task
    by_key = {name.lower(): env_id for name, env_id in ids.items()}
    key = task.removeprefix("MiniGrid-").lower()
    if key not in by_key:
        raise UserError(f"minigrid:{task}: unknown MiniGrid env; accepted: a name such as MemoryS7, DoorKey-5x5 or "
                         "KeyCorridorS3R1 (or MiniGrid-MemoryS7-v0); list them with ssmworld list envs minigrid")
    return by_key[key]


def _used_actions(env_class: type) -> list[int]:
    """Action indices the env class's docstring table does not mark "Unused" (all 7 without such a table)."""
    for cls in env_class.__mro__:  # subclasses without docs (ObstructedMaze_Full) inherit their parent's table
        unused = re.findall(r"\|\s*(\d)\s*\|\s*\w+\s*\|\s*Unused", cls.__doc__ or "")
        if "Action Space" in (cls.__doc__ or ""):
            return [a for a in range(7) if str(a) not in unused]
    return list(range(7))


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an area resize: output pixel o averages the input span [o, o + 1) * n_in / n_out,
    each input pixel weighted by its overlap (what cv2's INTER_AREA does when shrinking)."""
    edges = np.arange(n_out + 1) * n_in / n_out
    pixels = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    return (np.clip(overlap, 0, None) * n_out / n_in).astype(np.float32)


class MiniGridTask(gym.Env):
    """One MiniGrid env with the observation and action options of the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: str, obs: str = "image", size: int = 64, direction: bool = False,
                 actions: str = "all", max_steps: int | None = None):
        if obs not in _OBS_MODES:
            raise UserError(f"minigrid:{task}: obs must be one of {', '.join(_OBS_MODES)}, got {obs!r}")
        if not isinstance(size, int) or not 8 <= size <= 256 or size & (size - 1):
            raise UserError(f"minigrid:{task}: size must be a power of two in 8..256, got {size!r}")
        if actions not in _ACTION_SETS:
            raise UserError(f"minigrid:{task}: actions must be one of {', '.join(_ACTION_SETS)}, got {actions!r}")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise UserError(f"minigrid:{task}: max_steps must be an integer >= 1 or None, got {max_steps!r}")
        if not isinstance(direction, bool):  # a string "false" would be truthy
            raise UserError(f"minigrid:{task}: direction must be true or false, got {direction!r}")
        _minigrid(f"minigrid:{task}")
        from minigrid.core import constants
        self.env_id = _resolve(task)
        self.env = gym.make(self.env_id, disable_env_checker=True).unwrapped
        if max_steps is not None:
            self.env.max_steps = max_steps  # read by MiniGrid's step (truncation) and its success reward
        self.obs_mode, self.size, self.direction = obs, size, direction
        self.view = int(self.env.agent_view_size)
        self._actions = _used_actions(type(self.env)) if actions == "used" else list(range(7))
        self.action_space = gym.spaces.Discrete(len(self._actions))
        # one-hot layout per cell: [object | colour | state]
        self._widths = (len(constants.OBJECT_TO_IDX), len(constants.COLOR_TO_IDX), len(constants.STATE_TO_IDX))
        self._offsets = np.cumsum((0,) + self._widths[:-1])
        self._tile = -(-2 * size // self.view)  # ceil: render at >= 2x the output resolution, then area-resize
        self._resize = _area_weights(self.view * self._tile, size)
        spaces: dict[str, gym.Space] = {}
        if obs == "image":
            spaces["image"] = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        else:
            spaces["vector"] = gym.spaces.Box(0.0, 1.0, (self.view * self.view * sum(self._widths),), np.float32)
        if self.direction:
            spaces["direction"] = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self._start: dict[str, Any] | None = None  # the episode in progress (get_state): set at every reset
        self._taken = ActionLog()

    @property
    def max_steps(self) -> int:
        """The step limit after which MiniGrid truncates."""
        return int(self.env.max_steps)

    def _image(self) -> np.ndarray:
        big = self.env.get_pov_render(tile_size=self._tile).astype(np.float32)
        # rows, then columns, of the area resize: out = R @ big @ R^T per channel (~0.5 ms at 64x64)
        small = np.einsum("ij,jkc,lk->ilc", self._resize, big, self._resize, optimize=True)
        return (small + 0.5).astype(np.uint8)

    def _symbolic(self, grid: np.ndarray) -> np.ndarray:
        codes = grid.reshape(-1, 3).astype(np.int64) + self._offsets  # (cells, 3) positions within a cell's block
        vector = np.zeros((codes.shape[0], sum(self._widths)), np.float32)
        np.put_along_axis(vector, codes, 1.0, axis=1)
        return vector.reshape(-1)

    def _obs(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {"image": self._image()} if self.obs_mode == "image" else {"vector": self._symbolic(raw["image"])}
        if self.direction:
            out["direction"] = np.eye(4, dtype=np.float32)[int(raw["direction"])]
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # how this episode starts (get_state): the seed, or the Generator's state before the reset draws the layout
        self._start = generator_start(self.env, seed)
        self._taken.clear()
        raw, info = self.env.reset(seed=seed)
        return self._obs(raw), dict(info, success=False)

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values: how it started, its actions so far."""
        if self._start is None:
            raise RuntimeError(f"minigrid:{self.env_id}: get_state before the first reset")
        return {"start": self._start, "actions": self._taken.saved()}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode: the same reset, then its actions again (MiniGrid steps, one rendering at the
        end). Returns the observation it arrives at (checked against the saved one: runtime/acting_state.restore)."""
        raw, _ = reset_as_started(self.env, state["start"])
        self._start = state["start"]
        self._taken.clear()
        for action in state["actions"]:
            self._taken.append(int(action))
            raw = self.env.step(self._actions[int(action)])[0]
        return self._obs(raw)

    def step(self, action):
        self._taken.append(int(action))
        raw, reward, terminated, truncated, info = self.env.step(self._actions[int(action)])
        reward = float(reward)
        return self._obs(raw), reward, bool(terminated), bool(truncated), dict(info, success=terminated and reward > 0)

    def close(self) -> None:
        self.env.close()


def make_minigrid(task: str, *, obs: str = "image", size: int = 64, direction: bool = False, actions: str = "all",
                  max_steps: int | None = None) -> gym.Env:
    """``task`` = a MiniGrid name or id; the options are MiniGridTask's (see the module docstring)."""
    return MiniGridTask(task, obs=obs, size=size, direction=direction, actions=actions, max_steps=max_steps)


__all__ = ["MiniGridTask", "make_minigrid", "minigrid_ids", "minigrid_tasks"]
