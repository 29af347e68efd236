"""Learning test: memory longer than the training window (train.context=episode).

builtin:recall/20 shows a cue at t=0 and asks for it at t=21; training windows are T=8 steps, so no window ever holds
both the cue and the question (the memory is 2.5 windows long). With ``train.context=episode`` every window starts from
the core state its episode had at its first step (a gradient-free pass over the episode so far), so the world model
reads the cue from the state it carried in, and the agent learns the task; with ``train.context=window`` every window
starts from the initial state, the reward is unpredictable from inside a window, and the same agent stays at chance.
The agent is tests/test_learning.py's (r2i debug widened to 64 units, S5, 64 imagination starts) with B=32; gradients
never cross a window boundary, so the cue is carried by the S5 state's slowly decaying modes, not learned through
time. When it is learned varies with the exact float trajectory (seed, and the host's kernels): with evaluations every
2k env steps, seed 0 first reached >= 0.9 at 6k and seed 1 at 14k (2026-12-02, an AVX-512 AMD EPYC host), and the
earlier fixed budget of 8k failed on that host without evaluations. So both runs evaluate every 2k steps up to 16k
and stop at the first evaluation >= 0.9 (train.stop_at): the episode run must get there, the window run, on the same
budget, must not.

The window run (at chance over all 16k steps: 579 s on an AVX-512 host, 1109 s on an AVX2 one) is marked long and runs
with ``pytest --long``; CI checks instead why it cannot learn: under ``window`` no training window that holds the
query carries anything of the cue (exact), under ``episode`` every one does.
"""

import pytest
import torch

from ssmworld.nn import CategoricalLatent
from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer

from .test_learning import AGENT

STEPS = 16000  # at most: both runs stop at the first evaluation (every 2k steps) with success >= 0.9
# 64 imagination starts of the B*T = 256 posterior states: 1.7x faster per update than all 256, same result
SETTINGS = ["train.sequence_length=8", "train.batch_size=32", "train.context_length=64", "agent.imagination.count=64",
            "train.eval_every=2000", "train.stop_at=0.9"]


def trainer(context: str, seed: int = 0) -> Trainer:
    cfg = load_config("r2i", "debug", "builtin:recall/20", AGENT + SETTINGS + [f"train.context={context}",
                                                                               f"train.seed={seed}"])
    cfg.train.steps = STEPS
    return Trainer(cfg, quiet=True)


def run(context: str, seed: int = 0) -> dict:
    return trainer(context, seed).run()


@pytest.mark.learning
def test_episode_context_learns_a_memory_longer_than_the_window():
    summary = run("episode")
    assert summary["solved"] and summary["eval_success_rate"] >= 0.9, summary


@pytest.mark.parametrize("context", ["window", "episode"])
def test_only_with_episode_context_does_the_update_see_the_cue_at_the_query(context, monkeypatch):
    """Why the window run stays at chance, exactly: swapping the cue in every observation of the data an update gets
    (the batch and, under ``episode``, its episode prefix) leaves the world model's h at every query step of the batch
    unchanged under ``window`` (the cue, 21 steps earlier, is in none of its T=8 windows), so its reward prediction
    there is one for both cues; under ``episode`` it changes h at every query. Imagination cannot bridge the gap
    either: from a window that holds a cue (episode steps 0-7) its horizon of 10 steps ends before step 21."""
    # z = the probabilities: the same for the same input, and unlike a one-hot sample or mode of the untrained
    # encoder they keep the cue's small effect (a swapped cue often has the same mode)
    monkeypatch.setattr(CategoricalLatent, "sample", lambda self: self.probs)
    run = trainer(context)
    cfg, wm = run.cfg, run.agent.world_model
    assert cfg.train.sequence_length - 1 + cfg.agent.imagination.horizon < 21
    run.fill_replay(episodes=40)
    batch, _ = run.sample_batch()
    assert ("prefix" in batch) == (context == "episode")
    swapped = {**batch, "obs": {"vector": batch["obs"]["vector"][..., [1, 0, 2]]}}
    if context == "episode":
        swapped["prefix"] = {**batch["prefix"], "obs": {"vector": batch["prefix"]["obs"]["vector"][..., [1, 0, 2]]}}
    query = batch["obs"]["vector"][..., 2] == 1  # (B, T): the query steps (and the final steps after them)
    assert query.sum() >= 8
    with torch.no_grad():
        h, h_swapped = (wm.observe_batch(b)["h"][query] for b in (batch, swapped))
    if context == "window":
        assert torch.equal(h, h_swapped)
    else:  # by 6e-5 to 9e-5 (2026-12-02), far above float32 rounding; the same inputs give exactly the same h
        assert ((h - h_swapped).abs().amax(-1) > 1e-6).all()


@pytest.mark.learning
@pytest.mark.long
def test_window_context_stays_at_chance():
    summary = run("window")
    assert not summary["solved"] and summary["steps"] == STEPS, summary
    assert 0.2 <= summary["eval_success_rate"] <= 0.8, summary
