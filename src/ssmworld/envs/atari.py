"""`atari:<Game>` (e.g. ``atari:Pong``, ``atari:MontezumaRevenge``, ``atari:ALE/Pong-v5``) with the Atari 100k protocol.

Protocol (as Drama runs it on ale-py ``ALE/<Game>-v5`` with ``frameskip=1``):
- one agent step = the action repeated for 4 emulator frames, rewards summed, stopping early when the game ends;
  the observation is the pixel-wise max of the last two RGB frames (Atari sprites flicker between frames), resized
  to ``size`` x ``size`` with cv2 INTER_AREA: {"image": (size, size, 3) uint8} (the reset observation: the one
  screen after reset and noops);
- minimal action set, Discrete(n) (Pong 6, Breakout 4); no reward clipping, no grayscale, no frame stacking;
- sticky actions off (``sticky=0.0``); ``sticky=0.25`` is the Machado et al. setting;
- ``noop_max=k`` (default 0) starts each episode with U{1..k} NOOP emulator frames (raw frames, as gymnasium's
  AtariPreprocessing counts them), drawn from the env's seeded ``np_random``;
- ``info["life_loss"]`` is True on a step where the life counter dropped. The episode goes on: it is a termination
  target for the world model only. ``life_loss=False`` keeps the key but always False (eval protocol);
- an episode is cut after ``max_frames`` emulator frames (default 108,000 = 27,000 agent steps, the v5 cap), counted
  by ALE from the reset and including noop-start frames: ``truncated=True``, ``terminated=False``. Tests use a small
  ``max_frames`` (e.g. 400 = 100 steps).
info on reset and step: ``lives``, ``life_loss``, ``episode_frame_number`` (ALE's per-episode frame counter).
Seeding: ``reset(seed=s)`` reseeds ALE (which reloads the ROM) and the noop draw, so same seed -> same frames.

Scores: ``ATARI_SCORES[game] = (random, human)`` for the 26 Atari 100k games (Drama's atari_performance.csv, rounded
to integers there), ``human_normalized(game, score) = (score - random) / (human - random)``.
"""

from __future__ import annotations

import base64
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError, import_optional, install_hint

FRAME_SKIP = 4

ATARI100K_GAMES = [
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown"]
_RANDOM = [228, 6, 222, 210, 14, 2360, 0, 2, 811, 10780, 152, 0, 65, 258, 1027, 29, 52, 1598, 258, 307, -21, 25, 164,
           12, 68, 533]
_HUMAN = [7128, 1720, 742, 8503, 753, 37188, 12, 30, 7388, 35829, 1971, 30, 4335, 2412, 30826, 303, 3035, 2666, 22736,
          6952, 15, 69571, 13455, 7845, 42055, 11693]
ATARI_SCORES: dict[str, tuple[float, float]] = {
    game: (float(r), float(h)) for game, r, h in zip(ATARI100K_GAMES, _RANDOM, _HUMAN, strict=True)}


def _key(name: str) -> str:
    """Game name or id -> lookup key: "ALE/MontezumaRevenge-v5", "montezuma_revenge" -> "montezumarevenge"."""
    name = re.sub(r"-v\d+$", "", name.removeprefix("ALE/"))
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)  # the old v0/v4 ids
    return re.sub(r"[^0-9a-z]", "", name.lower())


def human_normalized(game: str, score: float) -> float:
    """(score - random) / (human - random) with the Atari 100k reference scores; ``game`` as in ``atari:<Game>``."""
    names = {_key(name): name for name in ATARI_SCORES}
    if _key(game) not in names:
        raise UserError(f"no reference scores for {game!r}; accepted: the Atari 100k games {', '.join(ATARI_SCORES)}")
    random, human = ATARI_SCORES[names[_key(game)]]
    return (float(score) - random) / (human - random)


def _ale_py(what: str = "atari:"):
    ale_py = import_optional("ale_py", "atari", f"{what} needs the atari extra")
    import_optional("cv2", "atari", f"{what} needs the atari extra")  # here, not as an error mid-episode
    gym.register_envs(ale_py)
    return ale_py


def atari_games() -> dict[str, str]:
    """{game name: ALE rom id} of every registered ``ALE/<Game>-v5``, e.g. {"MontezumaRevenge": "montezuma_revenge"}."""
    _ale_py()
    return {env_id[4:-3]: spec.kwargs["game"] for env_id, spec in gym.registry.items()
            if env_id.startswith("ALE/") and env_id.endswith("-v5") and spec.kwargs.get("obs_type", "rgb") == "rgb"}


def atari_tasks() -> list[str]:
    """Every ALE game name, sorted (104 with ale-py 0.12)."""
    return sorted(atari_games())


def _resolve(game: str) -> tuple[str, str]:
    """(game name, rom id) for "Pong", "pong", "MontezumaRevenge", "montezuma_revenge" or "ALE/Pong-v5"."""
    games = atari_games()
    by_key = {_key(name): name for name in games} | {_key(rom): name for name, rom in games.items()}
    if _key(game) not in by_key:
        raise UserError(f"atari:{game}: unknown Atari game; accepted: an ALE game name such as Pong, Breakout or "
                         "MontezumaRevenge (or ALE/Pong-v5); list them with ssmworld list envs atari")
    name = by_key[_key(game)]
    ale_py = _ale_py()
    with warnings.catch_warnings():  # get_rom_path warns and returns None for an unknown rom
        warnings.simplefilter("ignore")
        try:
            path = ale_py.roms.get_rom_path(games[name])
        except OSError:  # missing folder or a ROM whose hash does not match
            path = None
    if path is None or not path.exists():
        raise UserError(f"atari:{game}: ROM {games[name]}.bin not found; install ale-py>=0.9, whose wheels ship the "
                         f"ROMs ({install_hint('atari')}), or set ALE_ROMS_DIR to a folder that holds it")
    return name, games[name]


class AtariEnv(gym.Env):
    """One ALE game with the Atari 100k protocol of the module docstring; observations {"image": (size, size, 3)}."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, game: str, size: int = 64, sticky: float = 0.0, noop_max: int = 0, life_loss: bool = True,
                 max_frames: int = 108_000):
        if not isinstance(size, int) or not 8 <= size <= 256 or size & (size - 1):
            raise UserError(f"atari:{game}: size must be a power of two in 8..256, got {size!r}")
        if not (isinstance(sticky, (int, float)) and not isinstance(sticky, bool) and 0.0 <= sticky < 1.0):
            raise UserError(f"atari:{game}: sticky must be a probability in [0, 1), e.g. 0.25, got {sticky!r}")
        if not isinstance(noop_max, int) or noop_max < 0:
            raise UserError(f"atari:{game}: noop_max must be an integer >= 0, got {noop_max!r}")
        if not isinstance(max_frames, int) or max_frames < 1:
            raise UserError(f"atari:{game}: max_frames must be an integer >= 1, got {max_frames!r}")
        if not isinstance(life_loss, bool):  # a string "false" would be truthy
            raise UserError(f"atari:{game}: life_loss must be true or false, got {life_loss!r}")
        self.game, rom = _resolve(game)
        import cv2
        self._cv2 = cv2
        self.size, self.sticky, self.noop_max = size, float(sticky), noop_max
        self.life_loss, self.max_frames = bool(life_loss), max_frames
        # frameskip=1: the skip and max-pool are ours; ALE applies the sticky actions and the frame cap per frame.
        self._atari = gym.make(f"ALE/{self.game}-v5", frameskip=1, repeat_action_probability=self.sticky,
                               full_action_space=False, max_num_frames_per_episode=max_frames).unwrapped
        self.ale = self._atari.ale
        self._actions = list(self.ale.getMinimalActionSet())
        self.action_space = gym.spaces.Discrete(len(self._actions))
        self.observation_space = gym.spaces.Dict(
            {"image": gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)})
        height, width = self.ale.getScreenDims()
        self._frames = np.zeros((2, height, width, 3), np.uint8)  # the last two emulator frames, a ring
        self._newest = 0
        self._lives = 0

    def _grab(self) -> None:
        """Copy the current screen into the ring's older slot, which becomes the newest."""
        self._newest ^= 1
        self.ale.getScreenRGB(self._frames[self._newest])

    def _obs(self) -> dict[str, np.ndarray]:
        pooled = np.maximum(self._frames[0], self._frames[1])  # (210, 160, 3): max over the last two frames
        image = self._cv2.resize(pooled, (self.size, self.size), interpolation=self._cv2.INTER_AREA)
        return {"image": image}

    def _info(self, life_lost: bool) -> dict[str, Any]:
        return {"lives": self._lives, "life_loss": life_lost and self.life_loss,
                "episode_frame_number": int(self.ale.getEpisodeFrameNumber())}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._atari.reset(seed=seed)  # with a seed: reseeds ALE's RNG (sticky actions, game randomness)
        if self.noop_max:
            for _ in range(int(self.np_random.integers(1, self.noop_max + 1))):
                self.ale.act(self._actions[0])  # the minimal set starts with NOOP
                if self.ale.game_over():  # (never seen in practice) start again rather than hand out an ended game
                    self.ale.reset_game()
        self._grab()
        self._frames[self._newest ^ 1] = self._frames[self._newest]  # reset obs = this one screen, unpooled
        self._lives = int(self.ale.lives())
        return self._obs(), self._info(False)

    def step(self, action):
        ale_action = self._actions[int(action)]
        reward = 0.0
        for _ in range(FRAME_SKIP):
            reward += self.ale.act(ale_action)
            self._grab()
            if self.ale.game_over():  # a real game over or the frame cap: stop repeating either way
                break
        terminated = bool(self.ale.game_over(with_truncation=False))
        truncated = bool(self.ale.game_truncated()) and not terminated
        lives = int(self.ale.lives())
        life_lost, self._lives = lives < self._lives, lives
        return self._obs(), reward, terminated, truncated, self._info(life_lost)

    def get_state(self) -> dict[str, Any]:
        """The game in progress as JSON-able values (a checkpoint saves it, so a resumed run continues the same game):
        ALE's state with its RNG (sticky actions) and frame counters, serialised by ALE itself (no pickle), the last
        two screens (the next observation max-pools over them), lives and the no-op RNG."""
        return {"ale": base64.b64encode(self.ale.cloneState(include_rng=True).serialize()).decode("ascii"),
                "frames": base64.b64encode(self._frames.tobytes()).decode("ascii"), "newest": self._newest,
                "lives": self._lives, "rng": self.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        import ale_py

        self.ale.restoreState(ale_py.ALEState(base64.b64decode(state["ale"])))
        frames = np.frombuffer(base64.b64decode(state["frames"]), np.uint8)
        self._frames[...] = frames.reshape(self._frames.shape)
        self._newest, self._lives = int(state["newest"]), int(state["lives"])
        self.np_random.bit_generator.state = state["rng"]

    def close(self) -> None:
        self._atari.close()


def make_atari(task: str, *, size: int = 64, sticky: float = 0.0, noop_max: int = 0, life_loss: bool = True,
               max_frames: int = 108_000) -> gym.Env:
    """``task`` = a game name or ALE id; the options are AtariEnv's (see the module docstring)."""
    _ale_py(f"atari:{task}")
    return AtariEnv(task, size=size, sticky=sticky, noop_max=noop_max, life_loss=life_loss, max_frames=max_frames)


__all__ = ["ATARI100K_GAMES", "ATARI_SCORES", "AtariEnv", "atari_games", "atari_tasks", "human_normalized",
           "make_atari"]
