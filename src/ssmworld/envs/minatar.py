"""`minatar:<Game>` (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders): MinAtar, a miniature Atari (Young & Tian,
2019) that CPU research uses where Atari is too slow. The `minatar` package's game engine with its minimal action set
(as its ``MinAtar/<Game>-v1`` gymnasium ids), observations flattened to {"vector": (10 * 10 * C,) float32} of 0/1
(the frames are 10x10 with C binary channels; ssmworld's CNNs need 8 * 2^k pixels, so the vector MLP encoder reads
them). Random policy (20 episodes, seed 1): Asterix 0.35, Breakout 0.2, Freeway 0.25, Seaquest 0.1, SpaceInvaders
4.0; 8k-63k random steps/s on one core.

Options: ``sticky`` = the sticky-action probability (MinAtar's default 0.1), ``difficulty_ramping`` (default True, as
MinAtar), ``max_steps`` = a time limit (truncation; default none, as MinAtar). ``reset(seed=s)`` seeds the game.

An episode in progress can be saved (``get_state``, JSON-able: checkpoints keep it; not with ``max_steps``, whose
TimeLimit counts steps). A game's reset sets every piece of its state and draws the rest from numpy RandomStates (the
game's and, until it is seeded, the sticky actions' own), so the saved state is those RNGs and the last action (which
sticky actions repeat, kept across episodes) at the episode's start, and the actions since; ``set_state`` restores
them, resets and replays the actions (MinAtar steps at 8k-63k per second: a long episode replays in well under a
second).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, import_optional
from .episode_replay import ActionLog
from .rng_state import random_state_from_json, random_state_to_json

GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


def _environment(what: str = "minatar:"):
    return import_optional("minatar.environment", "minatar", f"{what} needs the minatar extra").Environment


def minatar_tasks() -> list[str]:
    _environment()
    return list(GAMES)


class MinAtarEnv(gym.Env):
    """One MinAtar game with its minimal action set; {"vector": the 10x10xC frame flattened, float32 0/1}."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, game: str, sticky: float = 0.1, difficulty_ramping: bool = True):
        module = "space_invaders" if game == "SpaceInvaders" else game.lower()
        self.game = _environment(f"minatar:{game}")(module, sticky_action_prob=sticky,
                                                    difficulty_ramping=difficulty_ramping)
        self.actions = self.game.minimal_action_set()
        size = int(np.prod(self.game.state_shape()))
        self.observation_space = gym.spaces.Dict({"vector": gym.spaces.Box(0.0, 1.0, (size,), np.float32)})
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self._start: dict[str, Any] | None = None  # the episode in progress (get_state): set at every reset
        self._actions = ActionLog()

    def _obs(self) -> dict[str, np.ndarray]:
        return {"vector": self.game.state().astype(np.float32).reshape(-1)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # the game draws from its own RandomState (sticky actions, spawns)
            self.game.seed(int(self.np_random.integers(2**31)))
        self._start_episode()
        return self._obs(), {}

    def step(self, action):
        self._actions.append(int(action))
        reward, done = self.game.act(self.actions[int(action)])
        return self._obs(), float(reward), bool(done), False, {}

    def _start_episode(self) -> None:
        game = self.game  # minatar.Environment: its sticky-action RNG; game.env: the game, with its own RNG
        self._start = {"random": random_state_to_json(game.random), "last_action": int(game.last_action),
                       # one RNG once seeded (Environment.seed shares it), two before
                       "game_random": None if game.env.random is game.random else random_state_to_json(game.env.random)}
        self._actions.clear()
        game.reset()

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values: the RNGs and last action at its start, its actions so far."""
        if self._start is None:
            raise RuntimeError(f"minatar:{self.game.env_name}: get_state before the first reset")
        return {"start": self._start, "actions": self._actions.saved()}

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue a saved episode: its start (RNGs, last action), a reset, then its actions again. Returns the
        observation it arrives at (checked against the saved one: runtime/acting_state.restore)."""
        start, game = state["start"], self.game
        random_state_from_json(game.random, start["random"])
        if start["game_random"] is None:
            game.env.random = game.random
        else:
            if game.env.random is game.random:
                game.env.random = np.random.RandomState()
            random_state_from_json(game.env.random, start["game_random"])
        game.last_action = start["last_action"]
        self._start_episode()
        for action in state["actions"]:
            self.step(action)
        return self._obs()


def make_minatar(task: str, sticky: float = 0.1, difficulty_ramping: bool = True,
                 max_steps: int | None = None) -> gym.Env:
    games = {g.lower(): g for g in GAMES}
    if task.lower() not in games:
        raise UserError(f"minatar:{task}: unknown game; accepted: {', '.join(GAMES)}")
    if not (isinstance(sticky, (int, float)) and 0 <= sticky < 1):
        raise UserError(f"minatar:{task}: sticky must be a probability in [0, 1), e.g. 0.1, got {sticky!r}")
    if max_steps is not None and not (isinstance(max_steps, int) and max_steps >= 1):
        raise UserError(f"minatar:{task}: max_steps must be an integer >= 1 or None, got {max_steps!r}")
    if not isinstance(difficulty_ramping, bool):  # a string "false" would be truthy
        raise UserError(f"minatar:{task}: difficulty_ramping must be true or false, got {difficulty_ramping!r}")
    env: gym.Env = MinAtarEnv(games[task.lower()], float(sticky), difficulty_ramping)
    return gym.wrappers.TimeLimit(env, max_steps) if max_steps else env
