"""The bsuite: and popgym: adapters and list_tasks. Tests needing an extra skip without it."""

import sys

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs
from ssmworld.envs.popgym_adapter import _encoder, decode_multi_discrete


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _rollout(env: gym.Env, seed: int, steps: int = 60) -> np.ndarray:
    """Observations and rewards of a fixed action sequence over several episodes, concatenated."""
    env.reset(seed=seed)
    env.action_space.seed(0)
    out = []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        out += [obs["vector"], [reward]]
        if terminated or truncated:
            out.append(env.reset()[0]["vector"])
    return np.concatenate(out)


# --- spaces and dtypes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id,obs_size,action_space", [
    ("bsuite:memory_len/0", 3, gym.spaces.Discrete(2)),
    ("bsuite:memory_size/3", 6, gym.spaces.Discrete(2)),  # 4 bits + time + query
    ("bsuite:discounting_chain/0", 2, gym.spaces.Discrete(5)),
    ("bsuite:catch/0", 50, gym.spaces.Discrete(3)),  # a 10 x 5 board, flattened
    ("popgym:RepeatPreviousEasy", 4, gym.spaces.Discrete(4)),
    ("popgym:popgym-RepeatPreviousEasy-v0", 4, gym.spaces.Discrete(4)),
    ("popgym:AutoencodeEasy", 6, gym.spaces.Discrete(4)),
    ("popgym:CountRecallEasy", 4, gym.spaces.Discrete(27)),
    ("popgym:ConcentrationEasy", 3 * 52, gym.spaces.Discrete(52)),
    ("popgym:MineSweeperEasy", 3, gym.spaces.Discrete(16)),
    ("popgym:NoisyPositionOnlyPendulumEasy", 2, gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
    ("popgym:VelocityOnlyCartPoleEasy", 2, gym.spaces.Discrete(2)),  # class name; the gym id says "Cartpole"
])
def test_spaces_dtypes_reset_step(env_id, obs_size, action_space):
    pytest.importorskip(env_id.split(":")[0])
    env = envs.make(env_id, seed=0)
    assert env.observation_space == gym.spaces.Dict({"vector": env.observation_space["vector"]})
    assert env.observation_space["vector"].shape == (obs_size,) and env.observation_space["vector"].dtype == np.float32
    assert env.action_space == action_space
    obs, info = env.reset(seed=1)
    assert isinstance(info, dict) and obs["vector"].dtype == np.float32 and env.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and isinstance(reward, float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        if terminated or truncated:
            env.reset()


# --- bsuite ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("right", [True, False])
def test_bsuite_memory_len_full_episode(right):
    pytest.importorskip("bsuite")
    env = envs.make("bsuite:memory_len/0", seed=3)  # memory length 1: reset, one blank step, then the answer
    obs, _ = env.reset()
    chain = env.unwrapped.dm_env  # bsuite MemoryChain: the answer is its hidden context bit at the queried index
    answer = int(chain._context[chain._query])
    assert obs["vector"][2] == 2 * answer - 1  # the cue shown at t=0 is that bit as -1/+1
    _, reward, terminated, truncated, info = env.step(0)
    assert reward == 0.0 and not terminated and not truncated and "success" not in info
    _, reward, terminated, truncated, info = env.step(answer if right else 1 - answer)
    assert terminated and not truncated
    assert (reward, info["success"]) == ((1.0, True) if right else (-1.0, False))


def test_bsuite_discounting_chain_runs():
    pytest.importorskip("bsuite")
    env = envs.make("bsuite:discounting_chain/0", seed=0)
    env.reset()
    rewards, terminated, steps = [], False, 0
    while not terminated:
        _, reward, terminated, truncated, info = env.step(2)  # arm 2 pays 1.0 after 10 steps
        rewards.append(reward)
        steps += 1
        assert not truncated and "success" not in info
    assert steps == 100 and rewards[9] == 1.0 and sum(rewards) == 1.0


class _StubDmEnv:
    """A 3-step dm_env whose episodes end by time limit (discount 1 at last()) unless ``terminal``."""

    def __init__(self, terminal: bool):
        self.terminal, self.t = terminal, 0

    def observation_spec(self):
        import dm_env.specs
        return {"a": dm_env.specs.Array((2, 2), np.float32), "b": dm_env.specs.Array((), np.int32)}

    def action_spec(self):
        import dm_env.specs
        return dm_env.specs.DiscreteArray(3)

    def _obs(self):
        return {"a": np.full((2, 2), self.t, np.float32), "b": np.int32(-self.t)}

    def reset(self):
        import dm_env
        self.t = 0
        return dm_env.restart(self._obs())

    def step(self, action):
        import dm_env
        self.t += 1
        if self.t < 3:
            return dm_env.transition(0.0, self._obs())
        end = dm_env.termination if self.terminal else dm_env.truncation
        return end(1.0, self._obs())


@pytest.mark.parametrize("terminal", [True, False])
def test_dm_env_last_step_discount_decides_terminated_vs_truncated(terminal):
    pytest.importorskip("dm_env")
    from ssmworld.envs.bsuite_adapter import DmEnvAdapter
    env = DmEnvAdapter(lambda seed: _StubDmEnv(terminal), success_info=True)
    assert env.observation_space["vector"].shape == (5,) and env.action_space == gym.spaces.Discrete(3)
    obs, _ = env.reset()
    assert obs["vector"].tolist() == [0, 0, 0, 0, 0]
    env.step(0)
    env.step(0)
    obs, reward, terminated, truncated, info = env.step(0)
    assert obs["vector"].tolist() == [3, 3, 3, 3, -3] and reward == 1.0 and info["success"]
    assert (terminated, truncated) == (terminal, not terminal)


def test_bsuite_seeded_reset_reproduces_episodes():
    pytest.importorskip("bsuite")
    env = envs.make("bsuite:memory_size/3")
    first, again, other = _rollout(env, 7), _rollout(env, 7), _rollout(env, 8)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # Two separately built envs with one seed agree too.
    assert np.array_equal(_rollout(envs.make("bsuite:catch/0", seed=5), 5),
                          _rollout(envs.make("bsuite:catch/0", seed=5), 5))


def _play(env: gym.Env, actions: np.ndarray) -> list:
    """(obs, reward, terminated, truncated, info) of each action, resetting (unseeded) after every episode's end."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(int(action))
        out.append((obs["vector"].tolist(), reward, terminated, truncated, info))
        if terminated or truncated:
            out.append(env.reset()[0]["vector"].tolist())
    return out


# Every kind of bsuite env: the base envs and the reward wrappers (cartpole_noise, catch_scale: an RNG of their own).
@pytest.mark.parametrize("task", ["memory_len/5", "memory_size/3", "catch/0", "cartpole/0", "mountain_car/0",
                                  "deep_sea/0", "deep_sea_stochastic/0", "discounting_chain/0", "umbrella_distract/0",
                                  "bandit_noise/0", "cartpole_noise/0", "catch_scale/0"])
def test_a_saved_bsuite_episode_continues_identically_in_a_fresh_env(task):
    """get_state/set_state (checkpoints keep the episode in progress): a fresh env, built with another seed and given
    the saved state, continues the episode and the ones after it (their starts drawn from the restored RNGs) with the
    same observations, rewards, flags and bsuite counter deltas."""
    pytest.importorskip("bsuite")
    import json

    from ssmworld.runtime.acting_state import savable

    env = envs.make(f"bsuite:{task}", seed=3)
    assert savable(env)
    actions = np.random.default_rng(1).integers(0, env.action_space.n, 1200)  # mountain_car: 1000-step episodes
    _play(env, actions[:150])  # several episodes for the short tasks
    one_step_episodes = task.startswith("bandit")  # saved at an episode's start: only the RNGs carry it
    steps = 0
    while steps < 3 or (env.unwrapped.get_state()["actions"] == [] and not one_step_episodes):  # into an episode
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
        if terminated or truncated:
            env.reset()
    state = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-able, as in a checkpoint's state.json
    assert state["seed"] == 3 and state["start"][""] and (state["actions"] or one_step_episodes)
    expected = _play(env, actions[150:])
    fresh = envs.make(f"bsuite:{task}", seed=99)
    _play(fresh, actions[:7])  # another episode, replaced by the saved one
    fresh.unwrapped.set_state(state)
    assert _play(fresh, actions[150:]) == expected
    assert any(isinstance(row, tuple) and (row[2] or row[3]) for row in expected)  # into the episodes after it


def test_bsuite_set_state_refuses_another_experiments_state():
    pytest.importorskip("bsuite")
    state = envs.make("bsuite:catch_scale/0", seed=1).unwrapped.get_state()  # a reward wrapper's RNG as well
    with pytest.raises(ValueError, match="saved RNGs"):
        envs.make("bsuite:catch/0", seed=1).unwrapped.set_state(state)


def test_bsuite_resume_mid_episode_is_exact(tmp_path, monkeypatch):
    """memory_len/22's episodes (101 steps) outlast the checkpoint interval: the checkpoint keeps the episode in
    progress, and a run killed right after it and resumed writes the same metrics as the uninterrupted run."""
    pytest.importorskip("bsuite")
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    from .helpers import killed_after_checkpoint_then_resumed

    overrides = ["train.steps=260", "train.checkpoint_every=150", "train.prefill=20", "train.log_every=10",
                 "train.eval_every=0", "train.eval_episodes=0"]

    def make_trainer(logdir, resume):  # killed right after the checkpoint at step 150, mid-episode (101..202)
        return Trainer(load_config("r2i", "debug", "bsuite:memory_len/22", overrides), logdir, resume=resume,
                       quiet=True)

    whole, cut = killed_after_checkpoint_then_resumed(make_trainer, tmp_path, monkeypatch, saved_episodes=True)
    assert cut == whole and any("train/loss_model" in r for r in whole)
    assert any("episode/return" in r for r in whole if r.get("step", 0) > 202)  # the saved episode ended


# --- popgym ---------------------------------------------------------------------------------------------------------
def test_popgym_keeps_truncation_apart_from_termination():
    pytest.importorskip("popgym")
    env = envs.make("popgym:MultiarmedBanditEasy", seed=0)  # never terminates; truncated at its 200-step limit
    env.reset()
    for step in range(1, 201):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated and truncated == (step == 200)
    env = envs.make("popgym:RepeatPreviousEasy", seed=0)  # ends by termination after its 52-card deck
    env.reset()
    ends = [env.step(0)[2:4] for _ in range(51)]
    assert ends[-1] == (True, False) and not any(any(end) for end in ends[:-1])


def test_popgym_seeded_reset_reproduces_episodes():
    pytest.importorskip("popgym")
    for name in ("RepeatPreviousEasy", "CountRecallEasy"):
        env = envs.make(f"popgym:{name}")
        first, again, other = _rollout(env, 7), _rollout(env, 7), _rollout(env, 8)
        assert np.array_equal(first, again) and not np.array_equal(first, other)


def _play_popgym(env: gym.Env, actions: list) -> list:
    """(obs, reward, terminated, truncated) of each action, resetting (unseeded) after every episode's end."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs["vector"].tolist(), reward, terminated, truncated))
        if terminated or truncated:
            out.append(env.reset()[0]["vector"].tolist())
    return out


# One env of every popgym family: decks, boards, noise, bandit arms, control tasks, Box actions (Pendulum)
@pytest.mark.parametrize("name", ["AutoencodeEasy", "RepeatPreviousEasy", "RepeatFirstEasy", "CountRecallEasy",
                                  "HigherLowerEasy", "ConcentrationEasy", "BattleshipEasy", "MineSweeperEasy",
                                  "MultiarmedBanditEasy", "PositionOnlyCartPoleEasy", "VelocityOnlyCartPoleEasy",
                                  "NoisyPositionOnlyCartPoleEasy", "PositionOnlyPendulumEasy",
                                  "NoisyPositionOnlyPendulumEasy"])
@pytest.mark.parametrize("seeded_episode", [True, False])
def test_a_saved_popgym_episode_continues_identically_in_a_fresh_env(name, seeded_episode):
    """get_state/set_state of the adapter (checkpoints keep the episode in progress): a fresh env given the saved
    state continues the episode and the ones after it identically, whether the saved episode began with a seeded
    reset or not."""
    pytest.importorskip("popgym")
    import json

    from ssmworld.runtime.acting_state import saver

    env = envs.make(f"popgym:{name}")
    assert saver(env) is env  # the adapter saves (it replays the raw env it wraps)
    env.action_space.seed(1)
    actions = [env.action_space.sample() for _ in range(700)]
    env.reset(seed=3)
    if not seeded_episode:  # into a later, unseeded episode
        while env.get_state()["start"].get("seed") is not None:
            _play_popgym(env, actions[:1])
    _play_popgym(env, [actions[1]])  # one step into it (a new episode if that step ended one: then unseeded)
    state = json.loads(json.dumps(env.get_state()))  # JSON-able, as in a checkpoint's state.json
    assert ("seed" in state["start"]) == (seeded_episode and bool(state["actions"]))
    expected = _play_popgym(env, actions[2:])
    fresh = envs.make(f"popgym:{name}")
    fresh.reset(seed=99)
    fresh.set_state(state)
    assert _play_popgym(fresh, actions[2:]) == expected
    assert any(isinstance(row, tuple) and (row[2] or row[3]) for row in expected)  # into the episodes after it


def test_popgym_resume_mid_episode_is_exact(tmp_path, monkeypatch):
    """A run killed right after a checkpoint, mid-episode (MultiarmedBandit's episodes last 200 steps), and resumed
    writes the same metrics as the uninterrupted run: the adapter's saved state goes through the checkpoint."""
    pytest.importorskip("popgym")
    from .helpers import assert_resume_mid_episode_is_exact

    assert_resume_mid_episode_is_exact(tmp_path, monkeypatch, "r2i", "popgym:MultiarmedBanditEasy")


def test_popgym_navigation_envs_are_not_saved(monkeypatch):
    """LabyrinthEscape/Explore (popgym[navigation]) draw mazes from the process-wide RNGs: the plain adapter, so a
    checkpoint says it cannot save them instead of saving what would not replay."""
    import types

    from ssmworld.envs import popgym_adapter
    from ssmworld.runtime.acting_state import savable

    class MazeEnv(gym.Env):  # stands for popgym.core.maze.MazeEnv (mazelib is not installed here)
        observation_space, action_space = gym.spaces.Discrete(3), gym.spaces.Discrete(4)

    class LabyrinthEscape(MazeEnv):
        pass

    class RepeatPrevious(gym.Env):
        observation_space, action_space = gym.spaces.Discrete(3), gym.spaces.Discrete(4)

    registry = {LabyrinthEscape: {"id": "popgym-LabyrinthEscape-v0"}, RepeatPrevious: {"id": "popgym-Rp-v0"}}
    monkeypatch.setattr(popgym_adapter, "_envs_module", lambda what: types.SimpleNamespace(ALL=registry))
    assert not savable(popgym_adapter.make_popgym("LabyrinthEscape"))
    assert savable(popgym_adapter.make_popgym("Rp"))


def test_one_hot_encoding_by_hand():
    tuple_encode = _encoder(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(4))))[2]
    assert tuple_encode((1, 2)).tolist() == [0, 1, 0, 0, 1, 0]
    assert tuple_encode((0, 3)).tolist() == [1, 0, 0, 0, 0, 1]
    multi_encode = _encoder(gym.spaces.MultiDiscrete([2, 3], start=[0, 1]))[2]
    assert multi_encode(np.array([1, 1])).tolist() == [0, 1, 1, 0, 0]


def test_popgym_autoencode_tuple_observation_is_one_hot():
    pytest.importorskip("popgym")
    env = envs.make("popgym:AutoencodeEasy", seed=0)
    obs, _ = env.reset(seed=4)
    raw = env.unwrapped
    mode, suit = int(raw.mode.value), int(raw.deck.suits_idx[raw.deck["system"][-1]])  # what popgym shows: a Tuple
    expected = np.zeros(6, np.float32)
    expected[mode], expected[2 + suit] = 1.0, 1.0
    assert obs["vector"].tolist() == expected.tolist()


def test_multi_discrete_action_decoding_by_hand():
    assert decode_multi_discrete(6, np.array([4, 4])).tolist() == [1, 2]
    assert decode_multi_discrete(23, np.array([2, 3, 4])).tolist() == [1, 2, 3]  # 23 = 1*12 + 2*4 + 3
    assert decode_multi_discrete(0, np.array([2, 2]), np.array([1, 5])).tolist() == [1, 5]


def test_popgym_minesweeper_flat_action_clicks_the_decoded_square():
    pytest.importorskip("popgym")
    env = envs.make("popgym:MineSweeperEasy", seed=0)
    env.reset(seed=2)
    raw = env.unwrapped
    row, col = [(r, c) for r in range(4) for c in range(4) if raw.hidden_grid[r, c] == 0][-1]  # a safe square
    obs, reward, terminated, _, _ = env.step(row * 4 + col)
    assert raw.hidden_grid[row, col] == 2 and reward > 0 and not terminated  # 2 = VIEWED
    assert obs["vector"].argmax() == raw.neighbor_grid[row, col]  # the mine count there, one-hot


# --- errors and listing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,message", [
    ("bsuite:nosuch/0", r"unknown experiment 'nosuch'.*memory_len"),
    ("bsuite:memory_len/23", r"integer in 0\.\.22"),
    ("bsuite:memory_len", r"integer in 0\.\.22"),
    ("popgym:NoSuchEnv", r"unknown env; available: .*RepeatPreviousEasy"),
])
def test_bad_suite_ids_give_one_clear_error(bad, message):
    pytest.importorskip(bad.split(":")[0])
    with pytest.raises(ValueError, match=message):
        envs.make(bad)


@pytest.mark.parametrize("env_id,module", [
    ("bsuite:memory_len/0", "bsuite"), ("popgym:RepeatPreviousEasy", "popgym.envs")])
def test_missing_extra_gives_pip_hint(monkeypatch, env_id, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if it were not installed
    extra = env_id.split(":")[0]
    with pytest.raises(ValueError, match=rf"needs the {extra} extra: pip install -c constraints.txt "
                                         rf"-e '\.\[{extra}\]'"):
        envs.make(env_id)


def test_list_tasks():
    assert "recall/5" in envs.list_tasks("builtin")
    assert "CartPole-v1" in envs.list_tasks("gym")
    with pytest.raises(ValueError, match="unknown env suite 'nosuch'"):
        envs.list_tasks("nosuch")
    if _importable("bsuite"):
        tasks = envs.list_tasks("bsuite")
        assert len(tasks) == 468 and "memory_len/0" in tasks and "memory_len/22" in tasks
    if _importable("popgym"):
        tasks = envs.list_tasks("popgym")
        assert len(tasks) >= 42 and "RepeatPreviousEasy" in tasks and "MineSweeperHard" in tasks
