"""train.context=episode: a training sequence starts from the core state its episode had at its first step.

Replay returns each sequence's episode prefix (hand-checked across chunks, episode starts, the length limit and
eviction); the world model's gradient-free pass over it gives, for every core, the state that one pass over the whole
episode has at that step (exact); the trainer runs with it under DFS and uniform sampling and Drama's replay contexts.
"""

import numpy as np
import pytest
import torch

from ssmworld.dreamer.replay import ReplayBuffer
from ssmworld.dreamer.world_model import WorldModel, WorldModelConfig
from ssmworld.nn import CategoricalLatent
from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer, batch_to_tensors

from .helpers import killed_after_checkpoint_then_resumed


def fill(buffer, n, episode_length, stream=0):
    for i in range(n):
        buffer.add(dict(index=np.int64(i), is_first=np.bool_(i % episode_length == 0)), stream=stream)


def test_episode_prefix_reaches_back_across_chunks_to_the_episode_start():
    buffer = ReplayBuffer(capacity=1000, chunk_length=8, seed=0)
    fill(buffer, 60, episode_length=25)  # episodes start at 0, 25, 50
    batch = buffer.sample(300, 6, context=100)
    for row in range(300):
        first = int(batch["index"][row, 0])
        episode_start = first - first % 25
        prefix_index = batch["prefix/index"][row]
        real = batch["prefix/is_first"][row].nonzero()[0]
        if first == episode_start:  # the sequence starts its episode: no prefix, starts from the initial state
            assert len(real) == 0 and batch["is_first"][row, 0]
            assert (prefix_index == 0).all()  # all pad
            continue
        start = int(real[0])  # left pad, then the episode's steps up to the one before the sequence
        np.testing.assert_array_equal(prefix_index[start:], np.arange(episode_start, first))
        assert (prefix_index[:start] == 0).all() and not batch["prefix/is_first"][row, :start].any()
        assert not batch["is_first"][row, 0]  # the real flag: the episode goes on
    assert batch["prefix/index"].shape[1] == max(int(i) % 25 for i in batch["index"][:, 0])


def test_episode_prefix_is_cut_at_the_limit_and_at_evicted_data():
    buffer = ReplayBuffer(capacity=1000, chunk_length=8, seed=0)
    fill(buffer, 40, episode_length=1000)  # one long episode
    chunk = buffer.chunks[-1]  # steps 32..39
    prefix = buffer.episode_prefix(chunk, 3, limit=10)  # before step 35: steps 25..34, the oldest starts fresh
    np.testing.assert_array_equal(prefix["index"], np.arange(25, 35))
    np.testing.assert_array_equal(prefix["is_first"], np.arange(25, 35) == 25)
    prefix = buffer.episode_prefix(chunk, -2, limit=100)  # before step 30: back to the episode's first step
    np.testing.assert_array_equal(prefix["index"], np.arange(0, 30))
    assert prefix["is_first"][0] and not prefix["is_first"][1:].any()
    small = ReplayBuffer(capacity=16, chunk_length=8, seed=0)
    fill(small, 40, episode_length=1000)  # steps 0..23 evicted
    prefix = small.episode_prefix(small.chunks[-1], 0, limit=100)
    np.testing.assert_array_equal(prefix["index"], np.arange(24, 32))
    assert prefix["is_first"][0]  # as far back as stored, from the initial state
    batch = small.sample(50, 4, context=100)
    assert batch["is_first"][batch["prefix/is_first"].sum(1) == 0, 0].all()


@pytest.mark.parametrize("sampler", ["uniform", "dfs"])
def test_samplers_give_the_same_windows_with_and_without_context(sampler):
    kwargs = dict(capacity=1000, chunk_length=8, seed=3, sampler=sampler)
    plain, with_context = ReplayBuffer(**kwargs), ReplayBuffer(**kwargs)
    for buffer in (plain, with_context):
        fill(buffer, 50, episode_length=12)
    a, b = plain.sample(10, 5), with_context.sample(10, 5, context=64)
    np.testing.assert_array_equal(a["index"], b["index"])  # the context changes what is returned, not what is drawn
    assert "prefix/index" not in a and "prefix/index" in b


CORE_CFGS = {
    "s5": dict(width=16, state_size=8, n_layers=2),
    "gru": dict(width=16, blocks=2),
    "mamba": dict(width=16, d_state=4, n_layers=2),
    "mamba2": dict(width=16, headdim=8, d_state=4, n_layers=2, chunk_size=4),
    "attention": dict(width=16, n_heads=2, n_layers=2),
}


@pytest.mark.parametrize("core", sorted(CORE_CFGS))
def test_episode_context_gives_the_state_of_a_pass_over_the_whole_episode(core, monkeypatch):
    # deterministic latents (the mode), so both passes see the same z
    monkeypatch.setattr(CategoricalLatent, "sample", lambda self: self.mode())
    torch.manual_seed(0)
    cfg = WorldModelConfig.with_core(core, CORE_CFGS[core], units=16, latent_groups=2, latent_classes=4,
                           encoder_layers=1, head_layers=1)
    wm = WorldModel({"vector": 3}, 2, cfg)
    B, L = 3, 20
    obs, action = torch.randn(B, L, 3), torch.randn(B, L, 2)
    is_first = torch.zeros(B, L, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 4] = True  # row 1: a new episode starts inside the prefix
    is_first[2, 14] = True  # row 2: the window starts an episode (its prefix is cut off by the reset)
    whole = wm.observe({"vector": obs}, action, is_first)
    start = 14  # the window: steps 14..19
    pad = 3  # replay left-pads prefixes: garbage before the first real step must not matter
    prefix_obs = torch.cat([torch.randn(B, pad, 3) * 5, obs[:, :start]], 1)
    prefix_action = torch.cat([torch.randn(B, pad, 2), action[:, :start]], 1)
    prefix = dict(obs={"vector": prefix_obs}, action=prefix_action,
                  is_first=torch.cat([torch.zeros(B, pad, dtype=torch.bool), is_first[:, :start]], 1),
                  is_terminal=torch.zeros(B, pad + start, dtype=torch.bool))
    state, prev = wm.episode_context(prefix)
    window = wm.observe({"vector": obs[:, start:]}, action[:, start:], is_first[:, start:], state, prev=prev)
    torch.testing.assert_close(window["h"], whole["h"][:, start:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(wm.core.features(window["state"]), wm.core.features(whole["state"]), atol=1e-5,
                               rtol=1e-4)
    # and without the context the window differs (the test can fail)
    cold = wm.observe({"vector": obs[:, start:]}, action[:, start:], is_first[:, start:])
    assert (cold["h"][:2] - whole["h"][:2, start:]).abs().max() > 1e-3


@pytest.mark.parametrize("preset, overrides", [
    ("r2i", ["train.sampler=uniform"]),
    ("dreamerv3", ["train.sampler=dfs"]),
])
def test_trainer_runs_with_episode_context(preset, overrides):
    cfg = load_config(preset, "debug", "builtin:recall/20",
                      ["train.context=episode", "train.steps=150", "train.eval_episodes=1", *overrides])
    summary = Trainer(cfg, quiet=True).run()
    assert summary["updates"] > 0


def test_drama_replay_contexts_get_their_episode_context():
    cfg = load_config("drama", "debug", "builtin:recall/20", ["train.context=episode", "train.steps=150",
                                                               "train.eval_episodes=1"])
    trainer = Trainer(cfg, quiet=True)
    assert cfg.agent.imagination.starts == "replay"
    summary = trainer.run()
    assert summary["updates"] > 0
    windows = batch_to_tensors(trainer.replay.sample_contexts(4, 3, context=64))
    assert "prefix" in windows and windows["prefix"]["is_first"].shape[0] == 4


def test_episode_context_with_batch_contexts_is_refused():
    cfg = load_config("drama", "debug", "builtin:recall/20", ["train.context=episode",
                                                               "agent.imagination.starts=batch"])
    with pytest.raises(ValueError, match="needs agent.imagination.starts posterior or replay"):
        Trainer(cfg, quiet=True)


def test_stop_at_ends_the_run_at_the_first_evaluation_that_meets_it():
    common = ["train.steps=400", "train.eval_every=100", "train.eval_episodes=2", "train.stop_metric=return_mean"]
    cfg = load_config("r2i", "debug", "builtin:recall/2", [*common, "train.stop_at=-1.0"])  # any return is >= -1
    summary = Trainer(cfg, quiet=True).run()
    assert summary["solved"] and summary["steps"] == 100 and summary["eval_return_mean"] >= -1
    cfg = load_config("r2i", "debug", "builtin:recall/2", [*common, "train.stop_at=2.0"])  # unreachable (max +1)
    summary = Trainer(cfg, quiet=True).run()
    assert not summary["solved"] and summary["steps"] == 400
    cfg = load_config("r2i", "debug", "builtin:recall/2", [*common, "train.eval_every=1000", "train.stop_at=-1.0"])
    summary = Trainer(cfg, quiet=True).run()  # no evaluation before the end: the final one meets it
    assert summary["solved"] and summary["steps"] == 400
    with pytest.raises(ValueError, match="stop_metric"):
        Trainer(load_config("r2i", "debug", "builtin:recall/2", ["train.stop_at=1", "train.stop_metric=loss"]))


@pytest.mark.parametrize("preset", ["r2i", "dreamerv3"])
def test_resume_with_episode_context_is_exact(tmp_path, preset, monkeypatch):
    overrides = ["train.context=episode", "train.steps=160", "train.checkpoint_every=80", "train.prefill=30",
                 "train.log_every=20", "train.eval_every=0", "train.eval_episodes=1",
                 "agent.actor_critic.reset_every=16",  # resets before and after the cut: exact too
                 "agent.actor_critic.reset_warmup=2",  # with their warm-up batches
                 "agent.act_epsilon=0.3"]  # and random actions while collecting

    def make_trainer(logdir, resume):  # killed right after the checkpoint at step 80 (mid-episode)
        return Trainer(load_config(preset, "debug", "builtin:recall/20", overrides), logdir, resume=resume, quiet=True)

    whole, cut = killed_after_checkpoint_then_resumed(make_trainer, tmp_path, monkeypatch)
    assert cut == whole and any("train/loss_model" in r for r in whole)
