"""Does a world model read a memory task's cue, or memorise its replay? Its reward head on new episodes while the
world model alone trains on a fixed replay.

    OMP_NUM_THREADS=1 python benchmarks/wm_generalisation.py --episodes 150 --updates 4000 --every 500 \
        [agent.model_weight_decay=0.1 ...] --json benchmarks/learning/wm_generalisation.json

1. a Trainer (``--preset``, ``--size``, ``--env``: r2i small on ``bsuite:memory_len/22`` by default, with the
   overrides) fills its replay with ``episodes`` episodes of uniformly random actions, or with ``--committed EPS``
   those of a policy committed to action 0 that explores with act_epsilon EPS (every step action 0, or with
   probability EPS a uniformly random one): the replay of a run whose actor answers the same whatever the cue;
2. only the world model trains, ``updates`` updates on batches of that replay sampled as in a run (its sampler, its
   episode context); no new data arrives, as early in a run, when each episode is replayed hundreds of times;
3. every ``every`` updates: on training batches, the share of answer steps (reward != 0) whose predicted reward has
   the right sign (the fit), and on ``heldout`` new episodes the share where the reward head, one imagined step from
   the query, prefers the rewarded action (actor_plasticity.py's check: does it generalise), with the ridge probe of
   the cue from the carried state.
A world model that reads the cue is right on both; one that memorised is right on its replay and at chance (or worse)
on new episodes (docs/RESULTS.md, "Memorised, not read"). Comparing options here (weight decay, more episodes) takes
minutes, where a training run takes most of an hour to show the same.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from ssmworld.errors import UserError
from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer
from ssmworld.tools.bench_harness import report_meta, write_json_atomic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from actor_plasticity import answer_signs, play, world_model_probe  # noqa: E402  (a sibling script)


class CommittedActions:
    """Stands in for the Trainer's random-action generator: action 0, or with probability ``epsilon`` a uniformly
    random one."""

    def __init__(self, rng: np.random.Generator, epsilon: float):
        self.rng, self.epsilon = rng, epsilon

    def integers(self, high: int, size: int) -> np.ndarray:
        return np.where(self.rng.random(size) < self.epsilon, self.rng.integers(high, size=size), 0)


def filled_trainer(preset: str, size: str, env: str, episodes: int, overrides: list[str],
                   committed: float | None = None) -> Trainer:
    """A Trainer whose replay holds ``episodes`` finished episodes of uniformly random actions (``committed``:
    see CommittedActions)."""
    cfg = load_config(preset, size, env, [*overrides, "train.envs=1"])
    if not (cfg.train.env.startswith("bsuite:memory_len")):
        raise UserError(f"needs bsuite:memory_len/N, got {cfg.train.env}")
    trainer = Trainer(cfg, quiet=True)
    if committed is not None:
        trainer.rng = CommittedActions(trainer.rng, committed)
    trainer.fill_replay(episodes=episodes)
    trainer.vec.close()
    return trainer


def train_world_model(trainer: Trainer) -> float:
    """One world-model update (Agent.update's first half, without its learning-rate warm-up: agent.model_warmup is 0
    in the r2i and dreamerv3 presets); returns its reward loss."""
    agent = trainer.agent
    wm, opt = agent.world_model, agent.model_opt
    batch, _ = trainer.sample_batch()
    loss, metrics, _ = wm.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(wm.parameters(), agent.cfg.model_clip)
    opt.step()
    return float(metrics["loss_reward"])


def measure(preset: str, size: str, env: str, episodes: int, updates: int, every: int, heldout: int,
            overrides: list[str], committed: float | None = None) -> dict[str, Any]:
    trainer = filled_trainer(preset, size, env, episodes, overrides, committed)
    torch.manual_seed(trainer.cfg.train.seed)
    curve, losses = [], []
    for update in range(updates + 1):
        if update % every == 0:
            with torch.no_grad():
                trainer.agent.world_model.eval()
                fresh = world_model_probe(trainer.agent, play(trainer.agent, env, heldout, seed=10**6))
                trainer.agent.world_model.train()
            curve.append({"update": update, "replay_fit": answer_signs(trainer, 10)["replay_reward_sign_right"],
                          "heldout_prefers_rewarded": fresh["reward_head_prefers_rewarded_action"],
                          "heldout_ridge_probe": fresh["ridge_probe_accuracy"],
                          "loss_reward": sum(losses) / max(len(losses), 1)})
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in curve[-1].items()),
                  flush=True)
            losses = []
        if update < updates:
            losses.append(train_world_model(trainer))
    return {"preset": preset, "size": size, "env": env, "episodes": episodes, "committed": committed,
            "replay_steps": len(trainer.replay),
            "overrides": overrides, "heldout": heldout, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    parser.add_argument("--preset", default="r2i")
    parser.add_argument("--size", default="small")
    parser.add_argument("--env", default="bsuite:memory_len/22")
    parser.add_argument("--episodes", type=int, default=150, help="random-action episodes in the fixed replay")
    parser.add_argument("--updates", type=int, default=4000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--committed", type=float, metavar="EPS",
                        help="replay of a policy committed to action 0 exploring with probability EPS")
    parser.add_argument("--heldout", type=int, default=100, help="new episodes for the held-out check")
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        result = measure(args.preset, args.size, args.env, args.episodes, args.updates, args.every, args.heldout,
                         args.overrides, args.committed)
    except UserError as error:  # a bad key, value or env: one line, exit code 2
        parser.error(str(error))
    if args.json:
        meta = report_meta("wm_generalisation", " ".join(["python", *sys.argv]), threads=torch.get_num_threads())
        write_json_atomic(args.json, meta | result)


if __name__ == "__main__":
    main()
