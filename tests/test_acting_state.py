"""runtime/acting_state.py: the episodes in progress through capture and restore, and the check that a replayed
episode arrives where it was saved."""

import copy
import re

import gymnasium as gym
import numpy as np
import pytest

from ssmworld import envs
from ssmworld.runtime import acting_state

# Every env that replays its saved episode (set_state returns the observation it arrives at), with its extra
REPLAYING = [("minatar:Freeway", "minatar", {}), ("bsuite:catch/0", "bsuite", {}),
             ("popgym:RepeatPreviousEasy", "popgym", {}), ("minigrid:MemoryS7", "minigrid", {"obs": "symbolic"}),
             ("dmc:cartpole_balance", "dm_control", {}), ("gym:MountainCar-v0", "gymnasium", {}),
             ("gym:Pendulum-v1", "gymnasium", {})]


def _vec(env_id: str, options: dict, seed: int | None = None) -> gym.vector.SyncVectorEnv:
    """Two envs as the trainer steps them; reset with ``seed`` unless None."""
    vec = gym.vector.SyncVectorEnv([lambda: envs.make(env_id, **options) for _ in range(2)],
                                   autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    if seed is not None:
        vec.reset(seed=seed)
    return vec


def _advance(vec: gym.vector.SyncVectorEnv, steps: int) -> dict:
    """Reset (seeded), take ``steps`` random actions; the trainer's arrays after them (obs and the rest)."""
    obs, _ = vec.reset(seed=4)
    vec.action_space.seed(0)
    reward = np.zeros(2, np.float32)
    for _ in range(steps):
        obs, reward, _, _, _ = vec.step(vec.action_space.sample())
    return {"obs": dict(obs), "reward": reward}


def _freeway_trainer(logdir, resume: bool, quiet: bool):
    """Drama (debug) on minatar:Freeway for 60 steps with a checkpoint at step 50, mid-episode (Freeway's episodes
    last 2,500 steps)."""
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    config = load_config("drama", "debug", "minatar:Freeway", [
        "train.steps=60", "train.checkpoint_every=50", "train.prefill=40", "train.eval_every=0",
        "train.eval_episodes=0"])
    return Trainer(config, str(logdir), resume=resume, quiet=quiet)


def _stop_after_first_checkpoint(logdir, monkeypatch, saves_episodes: bool) -> None:
    """Run ``_freeway_trainer`` until its checkpoint at step 50, then stop as if killed; ``saves_episodes``: whether
    that checkpoint must hold the episodes in progress."""
    from ssmworld.runtime.train import Trainer

    save = Trainer.save_checkpoint

    def save_then_die(self, acting=False):
        assert save(self, acting) == saves_episodes
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _freeway_trainer(logdir, resume=False, quiet=True).run()
    monkeypatch.setattr(Trainer, "save_checkpoint", save)


@pytest.mark.parametrize("env_id,extra,options", REPLAYING)
def test_a_restored_episode_arrives_where_it_was_saved_and_a_wrong_one_is_reported(env_id, extra, options):
    pytest.importorskip(extra)
    vec = _vec(env_id, options)
    tensors, state = acting_state.capture(vec, _advance(vec, 7), None)
    fresh = _vec(env_id, options, seed=11)
    arrays, policy, astray = acting_state.restore(fresh, tensors, copy.deepcopy(state))
    assert astray == [] and policy is None and set(arrays) == {"obs", "reward"}
    for _ in range(5):  # both vector envs go on alike (the autoreset flags came back too)
        actions = vec.action_space.sample()
        for a, b in zip(vec.step(actions)[:4], fresh.step(actions)[:4], strict=True):
            if isinstance(a, dict):
                assert all(np.array_equal(a[k], b[k]) for k in a)
            else:
                np.testing.assert_array_equal(a, b)
    # the same state with env 1's episode cut to its first half: its replay ends elsewhere, and restore says so
    wrong = copy.deepcopy(state)
    actions = wrong["envs"][1]["actions"]
    assert len(actions) == 7, "env 1 should be 7 steps into its first episode"
    del actions[3:]
    assert acting_state.restore(_vec(env_id, options, seed=12), tensors, wrong)[2] == [1]


@pytest.mark.parametrize("quiet", [False, True])
def test_a_resume_whose_replay_goes_astray_says_so(tmp_path, capsys, monkeypatch, quiet):
    """A checkpoint whose saved episode no longer replays to its saved observation (here: actions cut from
    state.json; in practice another env or MuJoCo version) resumes with a one-line warning, not silently: on the
    console, or as a Python warning where the run is quiet (the train() API, the other ranks)."""
    pytest.importorskip("minatar")
    import json

    _stop_after_first_checkpoint(tmp_path, monkeypatch, saves_episodes=True)
    state_path = tmp_path / "checkpoints" / "step-000000000050" / "state.json"
    state = json.loads(state_path.read_text())
    del state["acting"]["envs"][0]["actions"][25:]
    state_path.write_text(json.dumps(state))
    capsys.readouterr()
    message = "env(s) [0] replayed their saved episodes to other observations"
    if quiet:
        with pytest.warns(RuntimeWarning, match=re.escape(message)):
            _freeway_trainer(tmp_path, resume=True, quiet=True).run()
    else:
        _freeway_trainer(tmp_path, resume=True, quiet=False).run()
        assert f"warning: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("env_id,extra,options", [r for r in REPLAYING if r[1] != "bsuite"])  # bsuite: no actions
def test_an_episode_longer_than_the_action_log_keeps_is_not_saved(env_id, extra, options, monkeypatch):
    """Past MAX_REPLAYED_ACTIONS an episode is not saved (capture says why); the next episode is again."""
    pytest.importorskip(extra)
    from ssmworld.envs import episode_replay

    monkeypatch.setattr(episode_replay, "MAX_REPLAYED_ACTIONS", 5)
    vec = _vec(env_id, options)
    assert acting_state.capture(vec, _advance(vec, 6), None) == (
        "an episode in progress is longer than 5 actions, too long to save by replaying it")
    tensors, state = acting_state.capture(vec, _advance(vec, 5), None)  # _advance resets: a new episode
    assert [len(env["actions"]) for env in state["envs"]] == [5, 5]


def test_a_resume_from_a_checkpoint_without_the_episodes_says_why(tmp_path, capsys, monkeypatch):
    """A checkpoint written mid-episode whose episodes could not be saved (here: longer than the action log keeps)
    records why; the resumed run says so in one line and starts fresh episodes."""
    pytest.importorskip("minatar")
    from ssmworld.envs import episode_replay

    monkeypatch.setattr(episode_replay, "MAX_REPLAYED_ACTIONS", 20)  # Freeway's episodes last 2,500 steps
    _stop_after_first_checkpoint(tmp_path, monkeypatch, saves_episodes=False)
    capsys.readouterr()
    resumed = _freeway_trainer(tmp_path, resume=True, quiet=False)
    assert resumed.saved_acting is None and resumed.step == 50
    resumed.run()
    assert ("note: the checkpoint's episodes in progress are not continued (minatar:Freeway: an episode in progress "
            "is longer than 20 actions, too long to save by replaying it)") in capsys.readouterr().err


@pytest.mark.parametrize("core", ["attention", "mamba2", "s5", "gru"])
def test_an_acting_state_is_recognised_mid_episode_and_an_old_layout_is_not(core):
    """same_layout accepts a core's state after some steps (the attention cache has grown since its initial state)
    and rejects the Mamba-2 state as saved before 2026-12-04 (layers stacked under "conv" and "ssm")."""
    import torch

    from ssmworld import sequence

    model = sequence.make(core, 6, width=16, **({"headdim": 8} if core == "mamba2" else {}))
    with torch.no_grad():
        _, state = model(torch.randn(2, 5, 6))
    assert acting_state.same_layout({"core": state}, {"core": model.initial(1)})
    if core == "mamba2":
        old = {"conv": torch.stack([state["conv_0"], state["conv_1"]], 1).transpose(2, 3),
               "ssm": torch.stack([state["ssm_0"], state["ssm_1"]], 1)}
        assert not acting_state.same_layout({"core": old}, {"core": model.initial(1)})


def test_a_resume_whose_saved_agent_state_has_another_layout_starts_fresh_episodes(tmp_path, capsys, monkeypatch):
    """An acting state saved by a version that laid the core's state out otherwise (here: the Mamba-2 state as it
    was before 2026-12-04, the layers stacked under "conv" and "ssm") is not fed to the agent: the resumed run says
    so in one line and starts fresh episodes."""
    pytest.importorskip("minatar")
    import hashlib
    import json

    import torch

    _stop_after_first_checkpoint(tmp_path, monkeypatch, saves_episodes=True)
    folder = tmp_path / "checkpoints" / "step-000000000050"
    tensors = torch.load(folder / "tensors.pt", weights_only=True)
    core = tensors["acting"]["policy"]["core"]
    tensors["acting"]["policy"]["core"] = {"conv": core["conv_0"].transpose(1, 2)[:, None],
                                           "ssm": core["ssm_0"][:, None]}  # the old layout (debug: 1 layer)
    torch.save(tensors, folder / "tensors.pt")
    state = json.loads((folder / "state.json").read_text())
    state["tensors_sha256"] = hashlib.sha256((folder / "tensors.pt").read_bytes()).hexdigest()
    (folder / "state.json").write_text(json.dumps(state))
    capsys.readouterr()
    resumed = _freeway_trainer(tmp_path, resume=True, quiet=False)
    assert resumed.policy_state is None and resumed.is_first.all()
    resumed.run()
    assert ("note: the checkpoint's episodes in progress are not continued (minatar:Freeway: the agent's state in "
            "them is laid out as another ssmworld version saved it)") in capsys.readouterr().err
