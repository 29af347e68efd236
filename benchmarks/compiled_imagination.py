"""What ``agent.compile_imagination`` buys on this machine: full updates with and without it, interleaved, one process.

    OMP_NUM_THREADS=1 python benchmarks/compiled_imagination.py [--configs 0,1,3] [--repeats 9]
        [--json benchmarks/compiled_imagination.json]

Issue 16 asked for imagination 1.5x faster. ``imagination_scaling.py`` bounds what removing per-step overhead can win;
what it does not bound is fusing the elementwise work (layer norms, gates, softmaxes) that grows with the starts, which
is what TorchInductor does to the compiled step (``Agent._imagine_step``: policy, core step, prior sample; S5 in real
arithmetic there, ``S5Layer.step_real``, since Inductor generates no code for complex tensors).

Per configuration (``imagination_scaling.CONFIGS``) two trainers are built from the same config and seed, one with the
option: the same initial weights and the same random-action replay. The compiled one's first two updates (its compile:
the forward graph, and the backward one where the actor learns through the dynamics) are timed apart; then the two
agents update in turn for ``repeats`` rounds, each on its own replay's batches. Reported per variant: medians of the
update's seconds and of its imagination and actor-critic parts (the actor-critic part holds imagination's backward).
Imagined trajectories are compared in ``tests/test_agent.py``, not here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch

from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer
from ssmworld.tools.bench_harness import report_meta, write_json_atomic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imagination_scaling import chosen_configs  # noqa: E402

PARTS = ("update", "imagination", "actor_critic")


def filled_trainer(preset: str, env: str, overrides: list[str], size: str, compiled: bool) -> Trainer:
    cfg = load_config(preset, size, env, [*overrides, f"agent.compile_imagination={str(compiled).lower()}"])
    trainer = Trainer(cfg, quiet=True)
    tc = cfg.train
    trainer.fill_replay(steps=max(tc.prefill, 4 * tc.sequence_length, 2 * tc.batch_size))
    trainer.vec.close()
    return trainer


def timed_update(trainer: Trainer) -> dict[str, float]:
    start = time.perf_counter()
    metrics = trainer.agent.update(*trainer.sample_batch())
    return {"update": time.perf_counter() - start, "imagination": metrics["seconds_imagination"],
            "actor_critic": metrics["seconds_actor_critic"]}


def measure(preset: str, env: str, overrides: list[str], repeats: int, size: str = "small") -> dict[str, Any]:
    trainers = {name: filled_trainer(preset, env, overrides, size, name == "compiled")
                for name in ("eager", "compiled")}
    begin = time.perf_counter()
    for _ in range(2):
        timed_update(trainers["compiled"])
    compile_seconds = time.perf_counter() - begin
    timed_update(trainers["eager"])  # the same number of updates before the timed rounds
    timed_update(trainers["eager"])
    times = {name: {part: [] for part in PARTS} for name in trainers}
    for _ in range(repeats):
        for name, trainer in trainers.items():
            for part, seconds in timed_update(trainer).items():
                times[name][part].append(seconds)
    ms = {name: {part: 1e3 * statistics.median(v) for part, v in parts.items()} for name, parts in times.items()}
    agent, tc = trainers["eager"].agent, trainers["eager"].tc
    return {"preset": preset, "env": env, "overrides": overrides, "size": size,
            "starts": agent.cfg.imagination.number(tc.batch_size, tc.sequence_length),
            "dynamics_backprop": agent.actor_critic.backprop_dynamics, "compile_seconds": compile_seconds, "ms": ms,
            "speedup": {part: ms["eager"][part] / ms["compiled"][part] for part in PARTS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--configs", default=None, help="comma-separated indices into imagination_scaling.CONFIGS")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    print(f"threads {torch.get_num_threads()}; milliseconds per update (median of {args.repeats})")
    results = []
    for name, (preset, env, overrides) in chosen_configs(args.configs):
        r = measure(preset, env, overrides, args.repeats)
        results.append({"name": name, **r})
        print(f"{name} (N={r['starts']}, backward through the dynamics: {r['dynamics_backprop']}; compile "
              f"{r['compile_seconds']:.0f} s):", flush=True)
        for part in PARTS:
            print(f"  {part}: eager {r['ms']['eager'][part]:.1f}, compiled {r['ms']['compiled'][part]:.1f} "
                  f"({r['speedup'][part]:.2f}x)", flush=True)
    if args.json:
        meta = report_meta("compiled_imagination", " ".join(["python", *sys.argv]), threads=torch.get_num_threads(),
                           repeats=args.repeats)
        write_json_atomic(args.json, {**meta, "results": results})


if __name__ == "__main__":
    main()
