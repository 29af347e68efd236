"""Saving an episode in progress by replaying it, for gymnasium envs whose randomness all comes from ``np_random``.

Such an env's episode is fixed by how it started (the seed of a seeded reset, or the Generator's state before an
unseeded one: rng_state.generator_start) and the actions since. ``EpisodeReplay`` records both; its ``get_state`` is
JSON-able (checkpoints keep it in state.json, never unpickled) and ``set_state`` resets the same way and steps the
actions again (runtime/acting_state.py). An env that also draws from elsewhere (Python's ``random``, ``np.random``, a
clock) replays to another observation than the saved one: ``set_state`` returns the observation it arrived at and the
trainer warns when it differs (acting_state.restore), instead of silently going on from another state.

Used by ``gym:`` envs (gymnasium's own draw from ``np_random``) and POPGym's (all but the navigation envs).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .rng_state import generator_start, reset_as_started


class EpisodeReplay(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """``env`` whose episode in progress can be saved by replaying it (see the module docstring).
    ``name`` names the env in errors."""

    def __init__(self, env: gym.Env, name: str):
        gym.utils.RecordConstructorArgs.__init__(self, name=name)  # env.spec can name this wrapper (check_env)
        gym.Wrapper.__init__(self, env)
        self.name = name
        self._episode_start: dict[str, Any] | None = None  # the episode in progress (get_state): set at every reset
        self._taken: list = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # how this episode starts: the seed, or the Generator's state before the reset draws from it
        start = generator_start(self.env, seed)
        out = self.env.reset(seed=seed, options=options)
        self._episode_start, self._taken = start, []
        return out

    def step(self, action):
        self._taken.append(np.asarray(action).tolist())  # an int, or a Box action's floats (exact in JSON)
        return self.env.step(action)

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values: how it started, its actions so far."""
        if self._episode_start is None:
            raise RuntimeError(f"{self.name}: get_state before the first reset")
        return {"start": self._episode_start, "actions": list(self._taken)}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode: the same reset, then its actions again. Returns the observation it arrives at
        (checked against the saved one: runtime/acting_state.restore)."""
        obs = reset_as_started(self, state["start"])[0]  # through this wrapper's reset: it records the start again
        for action in state["actions"]:
            obs = self.step(action if isinstance(action, int) else np.asarray(action, self.action_space.dtype))[0]
        return obs
