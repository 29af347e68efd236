"""atari: the Atari 100k protocol on real ROMs (Pong, Breakout): frame skip, max-pool, life loss, cap, seeding."""

import sys

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs
from ssmworld.envs.atari import ATARI100K_GAMES, ATARI_SCORES, human_normalized

ale_py = pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")
gym.register_envs(ale_py)


def _resize(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)


def _rollout(env: gym.Env, seed: int, steps: int) -> np.ndarray:
    """Images of a fixed random action sequence (reset included), stacked: (steps + 1, 64, 64, 3)."""
    actions = np.random.default_rng(0).integers(env.action_space.n, size=steps)
    frames = [env.reset(seed=seed)[0]["image"]]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs["image"])
        assert not (terminated or truncated)
    return np.stack(frames)


def test_pong_spaces_and_four_ale_frames_per_step():
    env = envs.make("atari:Pong", seed=0)
    assert env.observation_space == gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)})
    assert env.action_space == gym.spaces.Discrete(len(env.ale.getMinimalActionSet())) == gym.spaces.Discrete(6)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert info["episode_frame_number"] == env.ale.getEpisodeFrameNumber() == 0
    for step in range(1, 51):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.ale.getEpisodeFrameNumber() == info["episode_frame_number"] == 4 * step
        assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8 and isinstance(reward, float)
        assert not terminated and not truncated
    assert obs["image"].std() > 0  # a real screen, not a blank buffer


def test_observation_is_max_of_last_two_raw_frames():
    """Step a raw frameskip=1 ALE env alongside with the same seed and actions: obs = resize(max(f[-2], f[-1]))."""
    env = envs.make("atari:Pong")
    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False).unwrapped
    obs, _ = env.reset(seed=3)
    frame, _ = raw.reset(seed=3)
    assert np.array_equal(obs["image"], _resize(frame))
    rng = np.random.default_rng(1)
    pooling_mattered = 0
    for _ in range(80):
        action = int(rng.integers(6))
        frames, reward = [], 0.0
        for _ in range(4):
            frame, r, *_ = raw.step(action)
            frames.append(frame)
            reward += r
        obs, env_reward, *_ = env.step(action)
        expected = _resize(np.maximum(frames[-2], frames[-1]))
        assert np.array_equal(obs["image"], expected) and env_reward == reward
        pooling_mattered += not np.array_equal(expected, _resize(frames[-1]))
    assert pooling_mattered > 10  # the ball and paddles move, so the max differs from the last frame


def test_breakout_life_loss_flag_and_episode_goes_on():
    env = envs.make("atari:Breakout", seed=0)
    _, info = env.reset(seed=0)
    lives = info["lives"]
    assert lives == 5 and not info["life_loss"]
    rng = np.random.default_rng(0)
    actions = []
    for _ in range(2000):
        actions.append(int(rng.integers(4)))
        _, _, terminated, truncated, info = env.step(actions[-1])
        assert not truncated
        if info["life_loss"]:
            break
        assert info["lives"] == lives and not terminated
    else:
        pytest.fail("no life lost in 2000 random steps")
    assert info["lives"] == lives - 1 and not terminated
    assert not any(env.step(1)[2] for _ in range(3))  # the episode continues after the lost life
    quiet = envs.make("atari:Breakout", seed=0, life_loss=False)  # same seed, same actions: flag never raised
    quiet.reset(seed=0)
    infos = [quiet.step(a)[4] for a in actions]
    assert infos[-1]["lives"] == lives - 1 and not any(i["life_loss"] for i in infos)


def test_truncation_at_frame_cap_not_termination():
    assert envs.make("atari:Pong").ale.getInt("max_num_frames_per_episode") == 108_000  # default cap
    env = envs.make("atari:Pong", seed=0, max_frames=400)  # 100 agent steps
    env.reset(seed=0)
    for _ in range(99):
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated and not truncated
    _, _, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and info["episode_frame_number"] == 400
    env.reset()
    assert not any(env.step(0)[3] for _ in range(5))  # a new episode starts its own count


@pytest.mark.parametrize("options", [{}, {"sticky": 0.25, "noop_max": 30}])
def test_same_seed_same_frames(options):
    first = _rollout(envs.make("atari:Breakout", **options), seed=7, steps=60)
    again = _rollout(envs.make("atari:Breakout", **options), seed=7, steps=60)
    assert np.array_equal(first, again)


def test_sticky_and_noop_options():
    assert envs.make("atari:Pong").ale.getFloat("repeat_action_probability") == 0.0  # off by default
    env = envs.make("atari:Breakout", noop_max=30)
    noops = {env.reset(seed=s)[1]["episode_frame_number"] for s in range(8)}
    assert noops <= set(range(1, 31)) and len(noops) > 1  # 1..30 noop frames, drawn per seed
    # Breakout without sticky actions is deterministic: other seeds, same frames; with them the seeds diverge
    plain = envs.make("atari:Breakout")
    assert np.array_equal(_rollout(plain, seed=1, steps=60), _rollout(plain, seed=2, steps=60))
    sticky = envs.make("atari:Breakout", sticky=0.25)
    assert sticky.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert not np.array_equal(_rollout(sticky, seed=1, steps=60), _rollout(sticky, seed=2, steps=60))


@pytest.mark.parametrize("name", ["Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_game_names(name):
    assert envs.make(f"atari:{name}").game == "Pong"


def test_montezuma_and_size_option():
    env = envs.make("atari:montezuma_revenge", size=32)
    assert env.game == "MontezumaRevenge" and env.action_space.n == 18
    assert env.reset(seed=0)[0]["image"].shape == (32, 32, 3)


@pytest.mark.parametrize("env_id,options,message", [
    ("atari:NoSuchGame", {}, r"atari:NoSuchGame: unknown Atari game; accepted: .*Pong"),
    ("atari:Pong", {"size": 48}, r"size must be a power of two"),
    ("atari:Pong", {"sticky": 1.5}, r"sticky must be a probability"),
    ("atari:Pong", {"frameskip": 2}, r"does not take option\(s\) frameskip; accepted: size, sticky, noop_max"),
    ("builtin:recall/3", {"sticky": 0.25}, r"'builtin' does not take option\(s\) sticky; accepted: size"),
])
def test_bad_ids_and_options(env_id, options, message):
    with pytest.raises(ValueError, match=message):
        envs.make(env_id, **options)


def test_scores_and_human_normalized():
    assert len(ATARI100K_GAMES) == len(ATARI_SCORES) == 26 and list(ATARI_SCORES) == ATARI100K_GAMES
    assert ATARI_SCORES["Alien"] == (228, 7128) and ATARI_SCORES["UpNDown"] == (533, 11693)
    assert ATARI_SCORES["Pong"] == (-21, 15) and ATARI_SCORES["MsPacman"] == (307, 6952)
    assert human_normalized("Pong", 0.0) == pytest.approx(21 / 36)  # (0 - -21) / (15 - -21)
    assert human_normalized("breakout", 16) == pytest.approx(0.5)  # (16 - 2) / (30 - 2)
    assert human_normalized("ALE/Pong-v5", 15) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no reference scores for 'Tetris'"):
        human_normalized("Tetris", 1.0)


def test_list_tasks_has_every_atari100k_game():
    tasks = envs.list_tasks("atari")
    assert set(ATARI100K_GAMES) <= set(tasks) and "MontezumaRevenge" in tasks
    for game in ATARI100K_GAMES:
        assert envs.make(f"atari:{game}").game == game  # each ROM loads


def test_missing_rom_or_extra_names_the_fix(monkeypatch):
    monkeypatch.setattr(ale_py.roms, "get_rom_path", lambda name: None)  # as ale-py answers for a ROM it lacks
    with pytest.raises(ValueError, match=r"atari:Pong: ROM pong\.bin not found; install ale-py>=0\.9"):
        envs.make("atari:Pong")
    monkeypatch.setitem(sys.modules, "ale_py", None)  # `import ale_py` fails as if not installed
    with pytest.raises(ValueError, match=r"atari:Pong needs the atari extra: pip install -c constraints.txt "
                                         r"-e '\.\[atari\]'"):
        envs.make("atari:Pong")


def test_a_saved_game_continues_identically_in_a_fresh_env():
    """get_state/set_state (checkpoints keep the episode in progress): the same actions after a restore give the same
    frames, rewards and flags, sticky actions (ALE's RNG) included; the wrapper stack stays savable."""
    import json

    from ssmworld.runtime.acting_state import savable

    options = {"sticky": 0.25, "noop_max": 30}
    env = envs.make("atari:Breakout", **options)
    assert savable(env)
    actions = np.random.default_rng(1).integers(env.action_space.n, size=120)
    env.reset(seed=3)
    for action in actions[:60]:
        env.step(action)
    state = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-able, as in a checkpoint's state.json

    def play(e):
        return [(o["image"], r, t, u, i["lives"]) for o, r, t, u, i in (e.step(a) for a in actions[60:])]

    expected = play(env)
    fresh = envs.make("atari:Breakout", **options)
    fresh.reset(seed=99)  # another game entirely, then replaced by the saved one
    fresh.unwrapped.set_state(state)
    for (o1, r1, t1, u1, l1), (o2, r2, t2, u2, l2) in zip(expected, play(fresh), strict=True):
        assert np.array_equal(o1, o2) and (r1, t1, u1, l1) == (r2, t2, u2, l2)


def test_resume_mid_game_is_exact(tmp_path, monkeypatch):
    """A Pong game outlasts the checkpoint interval: the checkpoint keeps it, and a run killed right after the
    checkpoint and resumed writes the same metrics as the uninterrupted run."""
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    from .helpers import killed_after_checkpoint_then_resumed

    overrides = ["train.steps=60", "train.checkpoint_every=30", "train.prefill=20", "train.log_every=10",
                 "train.eval_every=0", "train.eval_episodes=0", "agent.world_model.cnn_depth=4"]

    def make_trainer(logdir, resume):  # killed right after the checkpoint at step 30, mid-game
        return Trainer(load_config("r2i", "debug", "atari:Pong", overrides), logdir, resume=resume, quiet=True)

    whole, cut = killed_after_checkpoint_then_resumed(make_trainer, tmp_path, monkeypatch, saved_episodes=True)
    assert cut == whole and any("train/loss_model" in r for r in whole)
