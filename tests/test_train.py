"""The training driver: replay conventions, vector envs, update schedule, checkpoints and resume."""

import json
import os

import numpy as np
import pytest
import torch

from ssmworld import envs
from ssmworld.dreamer.replay import ReplayBuffer
from ssmworld.runtime import checkpoint
from ssmworld.runtime import train as train_module
from ssmworld.runtime.config import load_config
from ssmworld.runtime.episodes import (
    Episode,
    episode_batch,
    evaluate,
    load_run,
    run_episode,
    to_env_actions,
    world_model_losses,
)
from ssmworld.runtime.logger import read_metrics
from ssmworld.runtime.train import Trainer, batch_to_tensors, train


def debug_config(env="builtin:recall/2", steps=80, **overrides):
    cfg = load_config("r2i", "debug", env, overrides or None)
    cfg.train.steps = steps
    return cfg


def test_train_runs_end_to_end_with_the_update_schedule():
    cfg = debug_config(steps=80, **{"train.prefill": 30, "train.train_ratio": 8, "train.eval_episodes": 3})
    trainer = Trainer(cfg, quiet=True)
    summary = trainer.run()
    # updates start once step >= prefill (30) and run at 8 / (2 * 8) = 0.5 per env step: steps 30..79 -> 25
    assert summary["updates"] == 25 and summary["steps"] == 80
    assert summary["episodes"] == 80 // 5  # recall/2: cue, 2 blanks, query, last obs = 5 stored steps
    assert summary["eval_episodes"] == 3 and summary["eval_success_rate"] in (0.0, 1 / 3, 2 / 3, 1.0)


def test_a_reset_actor_critic_warms_up_on_fresh_batches_before_it_acts(monkeypatch, tmp_path):
    cfg = debug_config(steps=80, **{"train.prefill": 30, "train.train_ratio": 8, "train.eval_episodes": 1,
                                    "agent.actor_critic.reset_every": 10, "agent.actor_critic.reset_warmup": 3})
    trainer = Trainer(cfg, str(tmp_path), quiet=True)
    calls, sampled = [], []
    sample = trainer.sample_batch
    monkeypatch.setattr(trainer, "sample_batch", lambda count=True: sampled.append(count) or sample(count))
    warm_up = trainer.agent.warm_up_behavior
    monkeypatch.setattr(trainer.agent, "warm_up_behavior",
                        lambda *a: calls.append((int(trainer.agent.updates), trainer.step)) or warm_up(*a))
    summary = trainer.run()
    assert summary["updates"] == 25  # warm-ups are not updates (as above)
    assert [u for u, _ in calls] == [10] * 3 + [20] * 3  # right after the resets, before the next env step
    assert len({step for _, step in calls[:3]}) == 1  # all before the next env step
    assert sampled.count(True) == 25 and sampled.count(False) == 6  # each its own batch, not counted by dfs
    rows = [r for r in read_metrics(str(tmp_path / "metrics.jsonl")) if "warmup/updates" in r]
    assert [r["warmup/updates"] for r in rows] == [3, 3]  # one row per reset: the warm-ups' mean losses
    assert all(np.isfinite(r["warmup/loss_actor"]) and np.isfinite(r["warmup/loss_critic"]) for r in rows)


def budget_running_out(now):
    """A WallClock stand-in: the train.minutes clock (made with 1 minute) has passed once ``now()`` is true; the
    checkpoint clock (other minutes) never passes."""
    class Budget:
        def __init__(self, minutes: float):
            self.minutes = minutes

        def passed(self) -> bool:
            return self.minutes == 1 and now()

        def restart(self) -> None:
            pass

    return Budget


def test_a_time_budget_that_ends_at_an_evaluation_does_not_repeat_it(tmp_path, monkeypatch):
    cfg = debug_config(steps=80, **{"train.prefill": 30, "train.eval_every": 20, "train.eval_episodes": 1,
                                    "train.minutes": 1})
    trainer = Trainer(cfg, str(tmp_path), quiet=True)

    # train.minutes runs out right after the evaluation at step 40 (the checkpoint clock never does)
    monkeypatch.setattr(train_module, "WallClock", budget_running_out(lambda: trainer.step >= 40))
    steps = []
    evaluate = trainer._evaluate
    monkeypatch.setattr(trainer, "_evaluate", lambda *a, **k: steps.append(trainer.step) or evaluate(*a, **k))
    summary = trainer.run()
    assert summary["steps"] == 40 and steps == [20, 40]  # the evaluation at step 40 is the final one
    rows = [r for r in read_metrics(str(tmp_path / "metrics.jsonl")) if "eval/episodes" in r]
    assert [r["step"] for r in rows] == [20, 40] and summary["eval_return_mean"] == rows[-1]["eval/return_mean"]


def test_a_session_ended_by_its_time_budget_resumes_exactly(tmp_path, monkeypatch):
    """train.minutes ends a session mid-episode (a preemptible job's case): its last checkpoint holds the episode in
    progress, its final evaluation leaves the training's random numbers alone, and the resumed run writes the rows of
    the uninterrupted one (besides that session's final evaluation)."""
    from .helpers import metric_rows

    overrides = {"train.prefill": 30, "train.eval_every": 0, "train.eval_episodes": 1, "train.log_every": 10}
    whole = str(tmp_path / "whole")
    Trainer(debug_config("builtin:recall/100", 120, **overrides), whole, quiet=True).run()

    # train.minutes runs out at step 53, inside the first 102-step episode
    monkeypatch.setattr(train_module, "WallClock", budget_running_out(lambda: cut.step >= 53))
    cut_dir = str(tmp_path / "cut")
    cut = Trainer(debug_config("builtin:recall/100", 120, **overrides, **{"train.minutes": 1}), cut_dir, quiet=True)
    assert cut.run()["steps"] == 53
    monkeypatch.undo()
    state = json.loads(open(os.path.join(cut_dir, "checkpoints", "step-000000000053", "state.json")).read())
    assert state["acting"] is not None  # the episode in progress was saved
    Trainer(debug_config("builtin:recall/100", 120, **overrides), cut_dir, resume=True, quiet=True).run()
    rows = [r for r in metric_rows(cut_dir) if not (r["step"] == 53 and "eval/episodes" in r)]
    assert rows == metric_rows(whole) and any("train/loss_model" in r for r in rows)


def test_a_finished_run_given_more_steps_continues_exactly(tmp_path):
    """A run to 60 steps resumed to 120 writes the rows of a run to 120 (besides the first one's end: its train/ row
    and final evaluation at step 60, which also stands for the periodic one there: no second evaluation at the
    resume): its episode in progress, random streams and metric window carry on."""
    from .helpers import metric_rows

    overrides = {"train.prefill": 30, "train.eval_every": 20, "train.eval_episodes": 1, "train.log_every": 50}
    whole, extended = str(tmp_path / "whole"), str(tmp_path / "extended")
    Trainer(debug_config("builtin:recall/100", 120, **overrides), whole, quiet=True).run()
    Trainer(debug_config("builtin:recall/100", 60, **overrides), extended, quiet=True).run()
    Trainer(debug_config("builtin:recall/100", 120, **overrides), extended, resume=True, quiet=True).run()
    rows = metric_rows(extended)
    assert [r["step"] for r in rows if r["step"] == 60] == [60, 60]  # the first session's last train/ and eval rows
    assert [r for r in rows if r["step"] != 60] == [r for r in metric_rows(whole) if r["step"] != 60]
    assert [r["step"] for r in rows if "eval/return_mean" in r] == [20, 40, 60, 80, 100, 120]
    assert any(r["step"] == 100 and "train/loss_model" in r for r in rows)  # the window 50..100, as uninterrupted


def test_replay_stream_follows_the_convention():
    cfg = debug_config(steps=12, **{"train.prefill": 100})
    trainer = Trainer(cfg, quiet=True)
    trainer.run()
    data = trainer.replay.sample(1, 10)  # the stream holds steps 0..11: cue at 0, last obs at 4, next episode at 5
    buffer = trainer.replay
    chunk = buffer.chunks[0].data
    first, last, terminal = chunk["is_first"][:12], chunk["is_last"][:12], chunk["is_terminal"][:12]
    assert first.tolist()[:6] == [True, False, False, False, False, True]
    assert last.tolist()[:6] == [False, False, False, False, True, False] and (terminal[:12] == last[:12]).all()
    assert chunk["reward"][4] in (-1.0, 1.0) and (chunk["reward"][:4] == 0).all() and chunk["reward"][5] == 0
    assert (chunk["action"][4] == 0).all() and (chunk["action"][:4].sum(-1) == 1).all()
    assert data["is_first"][0, 0]


def test_fill_replay_acts_at_random_without_updates_until_steps_or_episodes(monkeypatch):
    trainer = Trainer(debug_config(steps=1000, **{"train.prefill": 0}), quiet=True)  # past the prefill: still random
    monkeypatch.setattr(trainer.agent, "act", lambda *a: pytest.fail("fill_replay must not ask the agent"))
    trainer.fill_replay(steps=12)
    assert trainer.step == 12 and len(trainer.replay) == 12 and trainer.updates == 0 and trainer.episodes == 2
    trainer.fill_replay(episodes=5)  # episodes of 5 observations: the k-th ends at step 5k - 1
    assert trainer.episodes == 5 and trainer.step == 24
    with pytest.raises(ValueError, match="exactly one"):
        trainer.fill_replay(steps=30, episodes=6)
    with pytest.raises(ValueError, match="exactly one"):
        trainer.fill_replay()
    trainer.vec.close()


def test_vector_envs_write_one_stream_each():
    cfg = debug_config(steps=40, **{"train.envs": 2, "train.prefill": 100})
    trainer = Trainer(cfg, quiet=True)
    trainer.run()
    assert trainer.step == 40 and sorted(trainer.replay.current) == [0, 1]
    for stream in (0, 1):
        data = trainer.replay.current[stream].data
        assert data["is_first"][0] and data["is_first"][5] and not data["is_first"][1:5].any()


def test_truncation_is_not_termination():
    cfg = debug_config("gym:CartPole-v1", steps=60, **{"train.prefill": 100})
    cfg.train.eval_episodes = 0
    import gymnasium as gym

    trainer = Trainer(cfg, quiet=True)
    trainer.vec = gym.vector.SyncVectorEnv(
        [lambda: __import__("ssmworld.envs", fromlist=["x"]).gym_adapter.DictObservation(
            gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 3))],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    trainer.obs, _ = trainer.vec.reset(seed=0)
    trainer.run()
    data = trainer.replay.chunks[0].data
    ends = np.flatnonzero(data["is_last"][:60])
    assert len(ends) > 0 and not data["is_terminal"][ends].any()  # cut by the time limit: not terminal


def test_env_actions_conversion():
    import gymnasium as gym

    assert to_env_actions(np.eye(3)[[2, 0]], gym.spaces.Discrete(3)).tolist() == [2, 0]
    assert to_env_actions(np.eye(3)[[1]], gym.spaces.Discrete(3, start=-1)).tolist() == [0]
    box = gym.spaces.Box(np.array([0.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32))
    np.testing.assert_allclose(to_env_actions(np.array([[-1.0, 0.5]]), box), [[0.0, 1.0]])


def test_checkpoint_resume_and_eval(tmp_path):
    logdir = str(tmp_path / "run")
    os.makedirs(logdir)
    cfg = debug_config(steps=60, **{"train.prefill": 20, "train.sampler": "dfs"})
    first = Trainer(cfg, logdir, quiet=True)
    first.run()
    assert len(checkpoint.list_checkpoints(os.path.join(logdir, "checkpoints"))) == 1
    with open(os.path.join(logdir, "summary.json")) as f:  # the marker of a run that ended normally
        assert json.load(f)["steps"] == 60
    cfg.train.steps = 100
    with open(os.path.join(logdir, "metrics.jsonl"), "a") as f:  # rows of a killed run after its last checkpoint
        f.write(json.dumps({"step": 75, "episode/return": 1.0}) + "\n" + '{"step": 8')
    resumed = Trainer(cfg, logdir, resume=True, quiet=True)
    assert max(r["step"] for r in read_metrics(os.path.join(logdir, "metrics.jsonl"))) == 60
    assert (resumed.step, resumed.updates, len(resumed.replay)) == (60, first.updates, len(first.replay))
    visits = {k: v.tolist() for k, v in first.replay.sampler_state().items()}
    assert {k: v.tolist() for k, v in resumed.replay.sampler_state().items()} == visits
    assert sum(map(sum, visits.values())) == first.updates * cfg.train.batch_size  # dfs counters are restored
    for a, b in zip(resumed.agent.state_dict().values(), first.agent.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.agent.model_opt.state_dict()["state"][0]["step"] == first.agent.model_opt.state_dict()["state"][0][
        "step"]
    resumed.run()
    with open(os.path.join(logdir, "summary.json")) as f:
        assert json.load(f)["steps"] == 100
    rows = read_metrics(os.path.join(logdir, "metrics.jsonl"))
    assert rows[-1]["step"] == 100 and any("train/loss_model" in r for r in rows)
    assert any("perf/fps" in r for r in rows) and any("eval/return_mean" in r for r in rows)
    seconds = [r["perf/seconds"] for r in rows if "perf/seconds" in r]
    assert seconds == sorted(seconds) and seconds[0] > 0  # wall time continues across the resume
    cfg2, agent, step = load_run(logdir)
    assert step == 100 and cfg2.train.env == cfg.train.env


def test_corrupt_checkpoint_falls_back_with_a_warning(tmp_path):
    root = str(tmp_path)
    checkpoint.save(root, 1, {"x": torch.ones(3)}, {"a": 1}, keep=3)
    newest = checkpoint.save(root, 2, {"x": torch.zeros(3)}, {"a": 2}, keep=3)
    with open(os.path.join(newest, "tensors.pt"), "r+b") as f:
        f.seek(10)
        f.write(b"garbage")
    with pytest.warns(UserWarning, match="checksum"):
        path, tensors, state = checkpoint.load_latest(root)
    assert state["a"] == 1 and torch.equal(tensors["x"], torch.ones(3))
    with open(os.path.join(path, "tensors.pt"), "r+b") as f:  # every copy corrupt: one line saying what to do
        f.seek(10)
        f.write(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(checkpoint.CheckpointError, match="all 2 are corrupt.*another "
                                                                                      "--logdir"):
        checkpoint.load_latest(root)
    for step in (3, 4, 5):
        checkpoint.save(root, step, {"x": torch.ones(1)}, {}, keep=2)
    assert [os.path.basename(p) for p in checkpoint.list_checkpoints(root)] == ["step-000000000004",
                                                                               "step-000000000005"]


def test_checkpoints_load_without_unpickling_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = checkpoint.save(str(tmp_path), 1, {"x": torch.ones(1)}, {})
    torch.save({"x": Evil()}, os.path.join(path, "tensors.pt"))
    state = json.load(open(os.path.join(path, "state.json")))
    state["tensors_sha256"] = checkpoint._sha256(os.path.join(path, "tensors.pt"))
    json.dump(state, open(os.path.join(path, "state.json"), "w"))
    with pytest.raises(checkpoint.CheckpointError, match="holds objects other than tensors"):
        checkpoint.load(path)


def test_a_step_saved_again_replaces_its_checkpoint_without_a_gap(tmp_path, monkeypatch):
    """An interrupt right after a periodic checkpoint saves the same step again: until the new copy is in place the
    old one stays (as step-N.old, listed when step-N is missing), so a crash in between leaves a checkpoint."""
    root = str(tmp_path)
    checkpoint.save(root, 5, {"x": torch.zeros(1)}, {"a": 1}, keep=1)
    replace = os.replace

    def crash_after_moving_the_old_copy(src, dst):
        replace(src, dst)
        if dst.endswith(".old"):
            raise OSError("killed")

    monkeypatch.setattr(checkpoint.os, "replace", crash_after_moving_the_old_copy)
    with pytest.raises(OSError, match="killed"):
        checkpoint.save(root, 5, {"x": torch.ones(1)}, {"a": 2}, keep=1)
    monkeypatch.undo()
    assert sorted(os.listdir(root)) == ["step-000000000005.old", "step-000000000005.tmp"]
    path, tensors, state = checkpoint.load_latest(root)  # the earlier copy is the checkpoint; .tmp is unfinished
    assert checkpoint.step_of(path) == 5 and state["a"] == 1 and tensors["x"].item() == 0
    checkpoint.save(root, 5, {"x": torch.ones(1)}, {"a": 2}, keep=1)
    assert sorted(os.listdir(root)) == ["step-000000000005"]
    assert checkpoint.load_latest(root)[2]["a"] == 2


def test_replay_load_restores_the_checkpointed_content(tmp_path):
    buffer = ReplayBuffer(100, 4)
    for t in range(6):
        buffer.add({"x": np.float32(t), "is_first": np.bool_(t == 0)})
    buffer.save(str(tmp_path))
    lengths = buffer.lengths()
    for t in range(6, 10):  # written after the checkpoint: must not come back
        buffer.add({"x": np.float32(t), "is_first": np.bool_(False)})
    buffer.save(str(tmp_path))
    restored = ReplayBuffer(100, 4)
    restored.load(str(tmp_path), lengths)
    assert len(restored) == 6 and restored.chunks[-1].data["x"][:2].tolist() == [4.0, 5.0]


def test_batch_conventions_from_replay():
    buffer = ReplayBuffer(100, 16)
    for t in range(5):
        buffer.add({"obs/vector": np.full(2, t, np.float32), "action": np.eye(2, dtype=np.float32)[t % 2],
                    "reward": np.float32(t), "is_first": np.bool_(t == 0), "is_terminal": np.bool_(t == 4)})
    batch = batch_to_tensors(buffer.sample(1, 5))
    assert batch["obs"]["vector"].shape == (1, 5, 2) and batch["action"].dtype == torch.float32
    assert batch["is_terminal"][0].tolist() == [False, False, False, False, True]


def test_a_recorded_episode_is_batched_exactly_as_the_replay_stores_it():
    cfg = debug_config(steps=12, **{"train.prefill": 100})  # random actions: steps 0..4 are one whole episode
    trainer = Trainer(cfg, quiet=True)
    trainer.run()
    stored = {k: v[:5] for k, v in trainer.replay.chunks[0].data.items()}
    episode = Episode(length=4, terminated=True, observations=[{"vector": o} for o in stored["obs/vector"]],
                      actions=[torch.as_tensor(a) for a in stored["action"][:4]], rewards=stored["reward"][1:].tolist())
    batch, replayed = episode_batch(episode), batch_to_tensors({k: v[None] for k, v in stored.items()})
    for key in ("action", "reward", "is_first", "is_terminal"):
        assert torch.equal(batch[key], replayed[key]), key
    assert torch.equal(batch["obs"]["vector"], replayed["obs"]["vector"])
    cut = episode_batch(episode, rows=3)  # the first rows only: a cut episode has no terminal step
    assert cut["reward"].shape == (1, 3) and not cut["is_terminal"].any()
    assert torch.equal(cut["action"], replayed["action"][:, :3])


def test_evaluation_reports_held_out_world_model_losses_without_touching_training():
    cfg = debug_config(steps=30, **{"train.prefill": 20})
    trainer = Trainer(cfg, quiet=True)
    trainer.run()
    agent = trainer.agent.train()
    torch.manual_seed(1)
    before = torch.get_rng_state()
    result = evaluate(agent, cfg.train.env, 2, seed=5)
    assert torch.equal(torch.get_rng_state(), before)  # the evaluation draws from its own seeded stream
    assert agent.world_model.training  # eval mode only while the losses are computed
    torch.manual_seed(5)  # the same episodes again, by hand (that stream: seeded with the seed): the losses are their
    # per-step mean
    env, total, steps = envs.make(cfg.train.env, seed=5), 0.0, 0
    for index in range(2):
        episode = run_episode(agent, env, 5 + index, record=True)
        rng = torch.get_rng_state()
        losses, rows = world_model_losses(agent, episode)
        total, steps = total + losses["loss_reward"] * rows, steps + rows
        assert rows == episode.length + 1
        assert torch.equal(torch.get_rng_state(), rng)  # a forked random stream: acting and training go on unchanged
    assert result["wm_loss_reward"] == pytest.approx(total / steps)
    assert all(np.isfinite(result[f"wm_{k}"]) for k in ("loss_reward", "loss_decoder", "loss_cont"))
    assert result["wm_loss_reward"] > 0 and result["wm_loss_cont"] > 0


def test_recording_only_the_first_rows_of_an_episode_plays_it_to_the_end():
    cfg = debug_config(steps=30, **{"train.prefill": 20})
    trainer = Trainer(cfg, quiet=True)
    trainer.run()
    env = envs.make(cfg.train.env, seed=5)
    episodes = []
    for rows in (None, 3):  # the same episode twice: recorded whole, then its first 3 rows
        torch.manual_seed(3)
        episodes.append(run_episode(trainer.agent, env, 5, record=True, record_rows=rows))
    whole, short = episodes
    assert short.length == whole.length > 3 and short.total == whole.total
    assert len(short.observations) == 3 and len(short.actions) == 3 and len(short.rewards) == 2
    kept, cut = episode_batch(short), episode_batch(whole, rows=3)
    for key in ("action", "reward", "is_first", "is_terminal"):
        assert torch.equal(kept[key], cut[key]), key
    assert torch.equal(kept["obs"]["vector"], cut["obs"]["vector"])


def test_train_function_returns_a_summary():
    summary = train(debug_config(steps=40))
    assert summary["steps"] == 40 and summary["preset"] == "r2i" and summary["size"] == "debug"


def test_unsupported_spaces_are_named():
    import gymnasium as gym

    from ssmworld.runtime.episodes import space_dims

    grid = gym.spaces.Dict({"grid": gym.spaces.Box(0, 1, (8, 8), np.float32)})
    with pytest.raises(ValueError, match="observation 'grid'.*not supported; accepted: flat vectors .* uint8 images"):
        space_dims(grid, gym.spaces.Discrete(2))
    image = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
    assert space_dims(image, gym.spaces.Discrete(2)) == ({"image": (8, 8, 3)}, 2, True)
    vector = gym.spaces.Dict({"vector": gym.spaces.Box(-1, 1, (3,), np.float32)})
    with pytest.raises(ValueError, match="action space .* not supported; accepted: Discrete, Box"):
        space_dims(vector, gym.spaces.MultiBinary(3))
    assert space_dims(vector, gym.spaces.Box(-1, 1, (2, 2), np.float32)) == ({"vector": (3,)}, 4, False)


class LifeLossEnv(__import__("gymnasium").Env):
    """Loses a life at step 3, ends at step 6."""

    def __init__(self):
        import gymnasium as gym

        self.observation_space = gym.spaces.Dict({"vector": gym.spaces.Box(0, 10, (1,), np.float32)})
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"vector": np.zeros(1, np.float32)}, {"life_loss": False}

    def step(self, action):
        self.t += 1
        return {"vector": np.full(1, self.t, np.float32)}, 0.0, self.t == 6, False, {"life_loss": self.t == 3}


@pytest.mark.parametrize("flag", [True, False])
def test_life_loss_is_a_world_model_termination_target_only(flag):
    import gymnasium as gym

    cfg = debug_config(steps=14, **{"train.prefill": 100, "train.life_loss_terminal": flag, "train.eval_episodes": 0})
    trainer = Trainer(cfg, quiet=True)
    trainer.vec = gym.vector.SyncVectorEnv([LifeLossEnv], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    trainer.obs, _ = trainer.vec.reset(seed=0)
    trainer._evaluate = lambda *args, **kwargs: {}
    trainer.run()
    data = trainer.replay.chunks[0].data
    assert data["is_last"][:14].tolist() == [t in (6, 13) for t in range(14)]  # the episode went on after the loss
    assert data["is_terminal"][:14].tolist() == [t in (6, 13) or (flag and t in (3, 10)) for t in range(14)]


def test_a_non_finite_loss_stops_the_run_naming_the_term(tmp_path, capsys):
    from ssmworld.cli import main

    logdir = tmp_path / "run"
    code = main(["train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "60", "--logdir", str(logdir),
                 "--quiet", "train.prefill=20", "agent.model_lr=1e30", "agent.model_clip=1e30"])
    err = capsys.readouterr().err
    assert code == 1 and "training diverged: non-finite" in err and "at update" in err and err.count("\n") == 1
    snapshot = next((logdir / "debug").iterdir())
    data = torch.load(snapshot, weights_only=True)
    assert set(data) == {"batch", "agent", "metrics"}


def test_disk_full_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    from ssmworld.cli import main
    from ssmworld.runtime import checkpoint as ckpt

    logdir = tmp_path / "run"
    args = ["train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "60", "--logdir", str(logdir),
            "--quiet", "train.prefill=20", "train.checkpoint_every=20", "train.eval_episodes=0"]
    real_save, calls = ckpt.save, []

    def save(root, step, *rest, **kw):
        calls.append(step)
        if len(calls) == 2:  # the second checkpoint hits a full disk half-way
            open(os.path.join(root, f"step-{step:012d}.tmp"), "w").write("partial")
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(root, "tensors.pt"))
        return real_save(root, step, *rest, **kw)

    monkeypatch.setattr(ckpt, "save", save)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "disk full" in err and err.count("\n") == 1
    path, _, state = ckpt.load_latest(str(logdir / "checkpoints"))  # the first checkpoint is intact and loadable
    assert state["step"] == 20


def test_checkpoints_do_not_cut_the_episodes_of_envs_that_cannot_be_saved(tmp_path):
    """MinAtar under a TimeLimit (max_steps: a stateful wrapper) cannot save its state mid-episode; a checkpoint every
    5 steps still must not cut episodes (they used to restart at every checkpoint, so that no episode longer than the
    interval was ever completed)."""
    logdir = str(tmp_path / "run")
    cfg = debug_config(env="minatar:Breakout", steps=200, **{"train.prefill": 200, "train.checkpoint_every": 5,
                                                             "train.eval_episodes": 0,
                                                             "train.env_options": {"max_steps": 1000}})
    from ssmworld.runtime import acting_state

    assert not acting_state.savable(envs.make(cfg.train.env, **cfg.train.env_options))
    Trainer(cfg, logdir, quiet=True).run()
    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        lengths = [row["episode/length"] for row in map(json.loads, f) if "episode/length" in row]
    assert lengths and max(lengths) > 5, lengths
    assert len(checkpoint.list_checkpoints(os.path.join(logdir, "checkpoints"))) >= 1
    cfg.train.steps = 260  # a resumed run starts fresh episodes and goes on
    Trainer(cfg, logdir, resume=True, quiet=True).run()
    with open(os.path.join(logdir, "summary.json")) as f:
        assert json.load(f)["steps"] == 260


def test_a_gym_env_resumes_mid_episode_exactly(tmp_path, monkeypatch):
    """gym:Pendulum-v1 (200-step episodes, Box actions): its episode in progress is saved by replaying it."""
    from .helpers import assert_resume_mid_episode_is_exact

    assert_resume_mid_episode_is_exact(tmp_path, monkeypatch, "r2i", "gym:Pendulum-v1")
