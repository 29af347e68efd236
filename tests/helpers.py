"""Shared test helpers."""

import torch


def step_loop(core, x, reset, state):
    """Run ``core.step`` over x (B, T, D), resetting where reset (B, T) is True. Returns (y (B, T, out), state)."""
    ys = []
    for t in range(x.shape[1]):
        y, state = core.step(x[:, t], state, reset=reset[:, t])
        ys.append(y)
    return torch.stack(ys, 1), state


def metric_rows(logdir):
    """metrics.jsonl without wall-clock values (perf/*, seconds_*): what an exact resume must reproduce."""
    import json
    import os

    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("perf/") and "seconds_" not in k}
                for line in f]


def killed_after_checkpoint_then_resumed(make_trainer, tmp_path, monkeypatch, saved_episodes=False):
    """Run ``make_trainer(logdir, resume)`` to its end once; run it again but kill it right after its first
    checkpoint, then resume it. Returns (rows of the whole run, rows of the killed-and-resumed one).
    ``saved_episodes``: also assert that the checkpoint held the episodes in progress."""
    import pytest

    from ssmworld.runtime.train import Trainer

    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    make_trainer(whole, False).run()
    save = Trainer.save_checkpoint

    def save_then_die(self, acting=False):
        saved = save(self, acting)
        assert saved or not saved_episodes
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(cut, False).run()
    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    make_trainer(cut, True).run()
    return metric_rows(whole), metric_rows(cut)


def assert_resume_mid_episode_is_exact(tmp_path, monkeypatch, preset, env, overrides=()):
    """A ``preset`` debug run on ``env`` (one env, episodes longer than 90 steps), killed right after its checkpoint
    at step 90 and resumed, writes the same metrics as the uninterrupted run, and its checkpoint held the 90 actions
    of the episode in progress, which the resumed run replayed."""
    import json

    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    overrides = ["train.steps=160", "train.checkpoint_every=90", "train.prefill=40", "train.log_every=10",
                 "train.eval_every=0", "train.eval_episodes=0", *overrides]

    def make_trainer(logdir, resume):
        return Trainer(load_config(preset, "debug", env, overrides), logdir, resume=resume, quiet=True)

    whole, cut = killed_after_checkpoint_then_resumed(make_trainer, tmp_path, monkeypatch, saved_episodes=True)
    assert cut == whole and any("train/loss_model" in r for r in whole)
    saved = json.loads((tmp_path / "cut" / "checkpoints" / "step-000000000090" / "state.json").read_text())
    assert len(saved["acting"]["envs"][0]["actions"]) == 90


def seeded_generator(seed):
    """A torch.Generator on the default device (the GPU under benchmarks/gpu_check.sh's SSMWORLD_TEST_DEVICE: a CPU
    generator cannot draw CUDA tensors), seeded."""
    return torch.Generator(device=torch.get_default_device()).manual_seed(seed)
