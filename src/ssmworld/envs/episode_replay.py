"""Saving an episode in progress by replaying it, for gymnasium envs whose randomness all comes from ``np_random``.

Such an env's episode is fixed by how it started (the seed of a seeded reset, or the Generator's state before an
unseeded one: rng_state.generator_start) and the actions since. ``EpisodeReplay`` records both; its ``get_state`` is
JSON-able (checkpoints keep it in state.json, never unpickled) and ``set_state`` resets the same way and steps the
actions again (runtime/acting_state.py). An env that also draws from elsewhere (Python's ``random``, ``np.random``, a
clock) replays to another observation than the saved one: ``set_state`` returns the observation it arrived at and the
trainer warns when it differs (acting_state.restore), instead of silently going on from another state.

Used by ``gym:`` envs (gymnasium's own draw from ``np_random``) and POPGym's (all but the navigation envs). Every env
that saves its episode by replaying it (these, DMC, MinAtar, MiniGrid, Memory Maze) keeps the actions in an
``ActionLog``, which gives up on an episode longer than MAX_REPLAYED_ACTIONS: such an episode is not saved.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .rng_state import generator_start, reset_as_started

# The most actions an episode in progress is saved with. Beyond, its actions would grow every checkpoint without
# bound (an env without a time limit, a MinAtar game played well) and a resume would replay them all (100,000 steps:
# seconds for MinAtar or a gym: classic-control env, minutes for a rendered one): the episode is not saved.
MAX_REPLAYED_ACTIONS = 100_000


class EpisodeTooLong(Exception):
    """``get_state`` of an episode longer than its ActionLog keeps: not saved, so a resume from that checkpoint starts
    fresh episodes (runtime/acting_state.capture)."""


class ActionLog:
    """The JSON-able actions of the episode in progress, at most ``limit`` of them (default MAX_REPLAYED_ACTIONS, read
    when the log is made)."""

    def __init__(self, limit: int | None = None):
        self.limit = MAX_REPLAYED_ACTIONS if limit is None else limit
        self._actions: list | None = []  # None: the episode outgrew the limit (its actions are dropped)

    def clear(self) -> None:
        """A new episode starts."""
        self._actions = []

    def append(self, action: Any) -> None:
        if self._actions is not None:
            self._actions.append(action)
            if len(self._actions) > self.limit:
                self._actions = None

    def saved(self) -> list:
        """The actions so far; raises EpisodeTooLong past the limit."""
        if self._actions is None:
            raise EpisodeTooLong(f"an episode in progress is longer than {self.limit} actions, too long to save by "
                                 "replaying it")
        return list(self._actions)


class EpisodeReplay(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """``env`` whose episode in progress can be saved by replaying it (see the module docstring).
    ``name`` names the env in errors."""

    def __init__(self, env: gym.Env, name: str):
        gym.utils.RecordConstructorArgs.__init__(self, name=name)  # env.spec can name this wrapper (check_env)
        gym.Wrapper.__init__(self, env)
        self.name = name
        self._episode_start: dict[str, Any] | None = None  # the episode in progress (get_state): set at every reset
        self._taken = ActionLog()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # how this episode starts: the seed, or the Generator's state before the reset draws from it
        start = generator_start(self.env, seed)
        out = self.env.reset(seed=seed, options=options)
        self._episode_start = start
        self._taken.clear()
        return out

    def step(self, action):
        self._taken.append(np.asarray(action).tolist())  # an int, or a Box action's floats (exact in JSON)
        return self.env.step(action)

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values: how it started, its actions so far (EpisodeTooLong past
        MAX_REPLAYED_ACTIONS)."""
        if self._episode_start is None:
            raise RuntimeError(f"{self.name}: get_state before the first reset")
        return {"start": self._episode_start, "actions": self._taken.saved()}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode: the same reset, then its actions again. Returns the observation it arrives at
        (checked against the saved one: runtime/acting_state.restore)."""
        obs = reset_as_started(self, state["start"])[0]  # through this wrapper's reset: it records the start again
        for action in state["actions"]:
            obs = self.step(action if isinstance(action, int) else np.asarray(action, self.action_space.dtype))[0]
        return obs
