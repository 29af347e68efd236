"""A small dependency-free memory task: recall a cue after a delay.

At t=0 the observation shows one of ``n_cues`` cues; then ``delay`` blank steps follow; at the last step a query
flag is raised and the action must name the cue (+1 if right, -1 if wrong, 0 on every other step). An agent without
memory scores 2/n_cues - 1 on average (0 for two cues); one that remembers scores +1.
Observation: {"vector": (n_cues + 1,) float32} = cue one-hot (t=0 only) ++ query flag.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError


class RecallCue(gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, delay: int = 5, n_cues: int = 2):
        if delay < 0 or n_cues < 2:
            raise UserError(f"memory task: need delay >= 0 and n_cues >= 2, got delay={delay}, n_cues={n_cues}")
        self.delay, self.n_cues = delay, n_cues
        self.observation_space = gym.spaces.Dict(
            {"vector": gym.spaces.Box(0.0, 1.0, (n_cues + 1,), dtype=np.float32)})
        self.action_space = gym.spaces.Discrete(n_cues)
        self._cue, self._t = 0, 0

    def _obs(self) -> dict[str, np.ndarray]:
        vector = np.zeros(self.n_cues + 1, dtype=np.float32)
        if self._t == 0:
            vector[self._cue] = 1.0
        if self._t == self.delay + 1:
            vector[-1] = 1.0
        return {"vector": vector}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue, self._t = int(self.np_random.integers(self.n_cues)), 0
        return self._obs(), {}

    def get_state(self) -> dict[str, Any]:
        """The episode in progress as JSON-able values (checkpoints save it, so an episode is not cut)."""
        return {"cue": self._cue, "t": self._t, "rng": self.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self._cue, self._t = int(state["cue"]), int(state["t"])
        self.np_random.bit_generator.state = state["rng"]

    def step(self, action):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"memory task: action must be in [0, {self.n_cues}), got {action!r}")
        if self._t == self.delay + 1:  # the query step: answer
            success = int(action) == self._cue
            return self._obs(), 1.0 if success else -1.0, True, False, {"success": success}
        self._t += 1
        return self._obs(), 0.0, False, False, {}


class RecallCueImage(RecallCue):
    """The same task from pixels: {"image": (size, size, 3) uint8}. The cue is a coloured square in the top-left
    quarter (cue k: colour k of a fixed palette), the query a white bar along the bottom, blank steps are black.
    Small enough (16 x 16 by default) for a pixel learning test on a CPU."""

    PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
                       np.uint8)

    def __init__(self, delay: int = 5, n_cues: int = 2, size: int = 16):
        if n_cues > len(self.PALETTE):
            raise UserError(f"image memory task: at most {len(self.PALETTE)} cues, got {n_cues}")
        if size < 8 or size & (size - 1):
            raise UserError(f"image memory task: size must be a power of two >= 8, got {size}")
        super().__init__(delay, n_cues)
        self.size = size
        self.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)})

    def _obs(self) -> dict[str, np.ndarray]:
        vector = super()._obs()["vector"]
        image = np.zeros((self.size, self.size, 3), np.uint8)
        quarter = self.size // 2
        if vector[: self.n_cues].any():
            image[:quarter, :quarter] = self.PALETTE[int(vector[: self.n_cues].argmax())]
        if vector[-1]:
            image[-2:, :] = 255
        return {"image": image}
