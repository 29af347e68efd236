"""dmc / dmc_vision: spaces, action rescaling, action repeat, time-limit truncation, seeding, rendering, bad ids."""

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs
from ssmworld.envs.dmc import rescale_action

pytest.importorskip("dm_control")
dm_env = pytest.importorskip("dm_env")


def _rollout(env: gym.Env, seed: int, steps: int) -> tuple[np.ndarray, list[float]]:
    """Observations (reset included) and rewards of a fixed action sequence after ``reset(seed=seed)``."""
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape))
    obs = [env.reset(seed=seed)[0]["vector"]]
    rewards = []
    for action in actions:
        o, r, *_ = env.step(action)
        obs.append(o["vector"])
        rewards.append(r)
    return np.stack(obs), rewards


def test_walker_spaces_dtypes_reset_and_step():
    env = envs.make("dmc:walker_walk", seed=0)
    assert env.observation_space == gym.spaces.Dict({"vector": gym.spaces.Box(-np.inf, np.inf, (24,), np.float32)})
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs["vector"].dtype == np.float32 and obs in env.observation_space and info == {}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float) and not (terminated or truncated)
    # the vector is the dm_env dict flattened in key order: orientations (14), height (1), velocity (9)
    raw = env.unwrapped.dm_env.task.get_observation(env.unwrapped.dm_env.physics)
    assert list(raw) == ["orientations", "height", "velocity"]
    np.testing.assert_allclose(obs["vector"], np.concatenate([np.ravel(v) for v in raw.values()]), rtol=1e-6)


def test_actions_are_rescaled_onto_the_spec_bounds():
    low, high = np.array([-1.0, -0.8, 0.0, -np.inf, -1e10]), np.array([1.1, 0.8, 2.0, np.inf, 1e10])
    action = np.array([0.5, -1.0, 3.0, 0.25, -0.5])  # 3.0 is clipped to 1; the last two pass through
    np.testing.assert_allclose(rescale_action(action, low, high), [0.575, -0.8, 2.0, 0.25, -0.5])
    env = envs.make("dmc:quadruped_walk", seed=0)  # bounds per joint: [-1, 1], [-1, 1.1], [-0.8, 0.8]
    sent = []
    dm = env.unwrapped.dm_env
    step = dm.step
    dm.step = lambda a: (sent.append(np.array(a)), step(a))[1]
    action = np.tile([1.0, 0.0, -0.5], 4).astype(np.float32)
    env.step(action)
    expected = np.tile([1.0, 0.05, -0.4], 4)  # low + (a + 1) / 2 * (high - low), by hand
    assert len(sent) == 2  # repeat 2
    for a in sent:
        np.testing.assert_allclose(a, expected, atol=1e-6)


def test_repeat_sums_rewards_of_raw_dm_control_steps():
    from dm_control import suite
    env = envs.make("dmc:cartpole_swingup")
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 3})
    obs, _ = env.reset(seed=3)
    timestep = raw.reset()
    np.testing.assert_allclose(obs["vector"], np.concatenate([v.ravel() for v in timestep.observation.values()]),
                               rtol=1e-6)
    for action in (0.3, -0.7, 1.0):
        obs, reward, *_ = env.step(np.array([action], np.float32))
        first, second = raw.step([action]), raw.step([action])
        assert reward == pytest.approx(first.reward + second.reward) and first.reward > 0
        np.testing.assert_allclose(obs["vector"], np.concatenate([v.ravel() for v in second.observation.values()]),
                                   rtol=1e-6)


@pytest.mark.parametrize("repeat,steps", [(2, 500), (3, 334)])
def test_episode_ends_truncated_by_the_1000_step_time_limit(repeat, steps):
    env = envs.make("dmc:cartpole_balance", seed=0, repeat=repeat)
    env.reset(seed=0)
    for step in range(1, steps + 1):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        if truncated:
            break
    assert truncated and step == steps
    assert env.unwrapped.dm_env._step_count == 1000


def test_a_task_termination_is_terminated_and_stops_the_repeat():
    env = envs.make("dmc:cartpole_balance", seed=0, repeat=4)
    obs, _ = env.reset(seed=0)
    calls = []
    raw_obs = env.unwrapped.dm_env.task.get_observation(env.unwrapped.dm_env.physics)

    def terminal_step(action):
        calls.append(action)
        return dm_env.termination(reward=1.0, observation=raw_obs)
    env.unwrapped.dm_env.step = terminal_step
    _, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
    assert terminated and not truncated and reward == 1.0 and len(calls) == 1


def test_seeded_resets_are_reproducible():
    env = envs.make("dmc:cheetah_run", seed=0)
    obs_a, rewards_a = _rollout(env, 5, 20)
    obs_b, rewards_b = _rollout(envs.make("dmc:cheetah_run"), 5, 20)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert rewards_a == rewards_b
    obs_c, _ = _rollout(env, 6, 0)
    assert not np.array_equal(obs_a[0], obs_c[0])
    # an unseeded reset continues the seeded env's RNG: a new, different start
    assert not np.array_equal(env.reset()[0]["vector"], obs_c[0])


def test_dmc_vision_renders_changing_64x64_frames():
    try:
        env = envs.make("dmc_vision:cartpole_swingup", seed=0)
    except ValueError as err:
        if "rendering failed" in str(err):
            pytest.skip(f"no OpenGL rendering here: {err}")
        raise
    assert env.observation_space == gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)})
    assert env.unwrapped.camera == 0
    frames = [env.reset(seed=0)[0]["image"]]
    for _ in range(3):
        frames.append(env.step(np.ones(1, np.float32))[0]["image"])
    for frame in frames:
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5
    assert not np.array_equal(frames[0], frames[-1])  # the cart moved
    again = envs.make("dmc_vision:cartpole_swingup", seed=0, size=32, camera=1).reset(seed=0)[0]["image"]
    assert again.shape == (32, 32, 3)
    assert envs.make("dmc_vision:quadruped_walk").unwrapped.camera == 2  # DreamerV3's choice


def test_task_list_and_case_insensitive_ids():
    tasks = envs.list_tasks("dmc")
    assert len(tasks) == 51 and "ball_in_cup_catch" in tasks and "walker_walk" in tasks
    assert envs.list_tasks("dmc_vision") == tasks
    env = envs.make("dmc:Ball_In_Cup_Catch")
    assert (env.unwrapped.domain, env.unwrapped.task) == ("ball_in_cup", "catch")


@pytest.mark.parametrize("env_id,options,message", [
    ("dmc:walker_fly", {}, r"dmc:walker_fly: unknown DMC task; .*e\.g\. walker_walk, cartpole_balance"),
    ("dmc:walker", {}, "unknown DMC task"),
    ("dmc_vision:nosuch_task", {}, "dmc_vision:nosuch_task: unknown DMC task.*list envs dmc_vision"),
    ("dmc:walker_walk", {"repeat": 0}, "repeat must be an integer >= 1"),
    ("dmc:walker_walk", {"camera": 1}, "does not take option.*camera"),
    ("dmc_vision:walker_walk", {"size": 4}, "size must be an integer"),
    ("dmc_vision:walker_walk", {"camera": 9}, r"camera must be an integer in -1\.\.1"),
])
def test_bad_ids_and_options_give_one_clear_error(env_id, options, message):
    with pytest.raises(ValueError, match=message):
        envs.make(env_id, **options)


@pytest.mark.parametrize("env_id", ["dmc:walker_walk", "dmc:ball_in_cup_catch", "dmc:lqr_lqr_2_1"])
def test_a_saved_episode_continues_identically_in_a_fresh_env(env_id):
    """get_state/set_state (checkpoints keep the episode in progress): the task RNG at the episode's start and its
    actions, replayed in another env, give the same observations, rewards and flags for the same actions after it.
    ball_in_cup draws its initial state with rejection sampling: the RNG, not only the physics, must be restored;
    lqr draws its springs and dampers from the seed it is built with: the task must be rebuilt with it."""
    import json

    from ssmworld.runtime.acting_state import savable

    env = envs.make(env_id)
    assert savable(env)
    actions = np.random.default_rng(1).uniform(-1, 1, (80, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=3)
    env.reset()  # an unseeded episode: its start comes from the RNG's running state
    for action in actions[:40]:
        env.step(action)
    state = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-able, as in a checkpoint's state.json

    def play(e):
        return [(o["vector"], r, t, u) for o, r, t, u, _ in (e.step(a) for a in actions[40:])]

    expected = play(env)
    fresh = envs.make(env_id)
    fresh.reset(seed=99)  # another episode entirely, then replaced by the saved one
    fresh.unwrapped.set_state(state)
    for (o1, r1, t1, u1), (o2, r2, t2, u2) in zip(expected, play(fresh), strict=True):
        assert np.array_equal(o1, o2) and (r1, t1, u1) == (r2, t2, u2)
    assert len(fresh.unwrapped.get_state()["actions"]) == 80  # the replayed and the new actions


def test_resume_mid_episode_is_exact(tmp_path, monkeypatch):
    """A DMC episode (500 agent steps) outlasts the checkpoint interval: the checkpoint keeps it, and a run killed
    right after the checkpoint and resumed writes the same metrics as the uninterrupted run."""
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    from .helpers import killed_after_checkpoint_then_resumed

    overrides = ["train.steps=60", "train.checkpoint_every=30", "train.prefill=20", "train.log_every=10",
                 "train.eval_every=0", "train.eval_episodes=0"]

    def make_trainer(logdir, resume):  # killed right after the checkpoint at step 30, mid-episode
        return Trainer(load_config("r2i", "debug", "dmc:cartpole_balance", overrides), logdir, resume=resume,
                       quiet=True)

    whole, cut = killed_after_checkpoint_then_resumed(make_trainer, tmp_path, monkeypatch, saved_episodes=True)
    assert cut == whole and any("train/loss_model" in r for r in whole)
