"""A checkpoint falls back to the previous one (a crash while saving, a corrupt newest copy) together with the replay
content that one records: files of evicted chunks go only when no retained checkpoint records them."""

import os
from types import SimpleNamespace

import pytest
import torch

from ssmworld.runtime import checkpoint, run_state
from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer


def small_replay_config(steps: int):
    """Replay of 40 steps in chunks of 8, a checkpoint every 40 steps: every checkpoint evicts chunks."""
    cfg = load_config("r2i", "debug", "builtin:recall/2", {
        "train.prefill": 30, "train.train_ratio": 8, "train.eval_episodes": 0, "train.eval_every": 0,
        "train.replay_capacity": 40, "train.replay_chunk": 8, "train.checkpoint_every": 40, "train.envs": 1})
    cfg.train.steps = steps
    return cfg


def chunk_files(logdir: str) -> set[str]:
    return {n for n in os.listdir(os.path.join(logdir, "replay")) if n.endswith(".npz")}


def test_a_crash_while_saving_a_checkpoint_resumes_from_the_previous_one(tmp_path, monkeypatch):
    logdir = str(tmp_path / "run")
    real, calls = checkpoint.save, []

    def killed_on_the_second_save(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:  # the replay of step 80 is on disk, its checkpoint is not
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(run_state.checkpoint, "save", killed_on_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        Trainer(small_replay_config(200), logdir, quiet=True).run()
    monkeypatch.undo()
    assert [checkpoint.step_of(p) for p in checkpoint.list_checkpoints(os.path.join(logdir, "checkpoints"))] == [40]
    resumed = Trainer(small_replay_config(200), logdir, resume=True, quiet=True)
    assert resumed.step == 40 and len(resumed.replay) == 40
    resumed.run()
    assert resumed.step == 200


def test_a_corrupt_newest_checkpoint_falls_back_with_its_replay_and_unneeded_files_go(tmp_path):
    logdir = str(tmp_path / "run")
    first = Trainer(small_replay_config(120), logdir, quiet=True)
    first.run()
    paths = checkpoint.list_checkpoints(os.path.join(logdir, "checkpoints"))
    assert [checkpoint.step_of(p) for p in paths] == [80, 120]  # keep_checkpoints = 2
    needed = {f"{uid}.npz" for p in paths for uid in checkpoint.read_state(p)["replay_lengths"]}
    assert chunk_files(logdir) == needed  # the files of chunks no checkpoint records are gone
    assert len(needed) > len(first.replay.chunks)  # step 80's evicted chunks stay for its fallback
    with open(os.path.join(paths[-1], "tensors.pt"), "r+b") as f:
        f.seek(10)
        f.write(b"garbage")
    with pytest.warns(UserWarning, match="trying the previous checkpoint"):
        resumed = Trainer(small_replay_config(160), logdir, resume=True, quiet=True)
    assert resumed.step == 80 and len(resumed.replay) == 40
    assert [checkpoint.step_of(p) for p in checkpoint.list_checkpoints(os.path.join(logdir, "checkpoints"))] == [
        80]  # the corrupt one is gone: the run saves its own step 120 again


def test_keeping_every_checkpoint_keeps_the_replay_of_the_newest_two(tmp_path):
    logdir = str(tmp_path / "run")
    cfg = small_replay_config(200)
    cfg.train.keep_checkpoints = 0
    Trainer(cfg, logdir, quiet=True).run()
    paths = checkpoint.list_checkpoints(os.path.join(logdir, "checkpoints"))
    assert [checkpoint.step_of(p) for p in paths] == [40, 80, 120, 160, 200]
    needed = {f"{uid}.npz" for p in paths[-2:] for uid in checkpoint.read_state(p)["replay_lengths"]}
    assert chunk_files(logdir) == needed


class TwoRanks:
    """Rank 0 of a two-rank group whose other rank has checkpoints ``other_steps`` and loads every one."""
    active, world_size, rank = True, 2, 0

    def __init__(self, other_steps):
        self.other_steps = other_steps

    def gather(self, obj):
        return [obj, self.other_steps if isinstance(obj, list) else True]


def test_data_parallel_resume_falls_back_to_the_newest_step_every_rank_loads(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (40, 80, 120):
        checkpoint.save(str(root), step, {"x": torch.full((1,), float(step))}, {"world_size": 2}, keep=0)
    with open(root / "step-000000000080" / "tensors.pt", "r+b") as f:
        f.seek(10)
        f.write(b"garbage")
    trainer = SimpleNamespace(state_dir=lambda: str(tmp_path), logdir=str(tmp_path), group=TwoRanks([40, 80]))
    with pytest.warns(UserWarning, match="trying the previous checkpoint"):
        tensors, state = run_state._load(trainer)  # 120: not on the other rank; 80: corrupt here
    assert state["step"] == 40 and tensors["x"].item() == 40.0


def test_unfinished_copies_of_other_steps_do_not_pile_up(tmp_path):
    (tmp_path / "step-000000000007.tmp").mkdir()  # a process killed while saving step 7
    (tmp_path / "step-000000000007.tmp" / "tensors.pt").write_bytes(b"partial")
    checkpoint.save(str(tmp_path), 9, {"x": torch.ones(1)}, {})
    assert sorted(os.listdir(tmp_path)) == ["step-000000000009"]
