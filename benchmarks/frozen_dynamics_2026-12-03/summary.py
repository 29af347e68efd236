"""Medians over the rounds of commands.sh: per configuration the update and its parts before and after, and the
speed-ups. Run from the repository root: python benchmarks/frozen_dynamics_2026-12-03/summary.py"""

import glob
import json
import statistics

OUT = "benchmarks/frozen_dynamics_2026-12-03"
PARTS = {"update": lambda r: r["seconds"], "world_model": lambda r: r["parts"]["world_model"],
         "imagination": lambda r: r["parts"]["imagination"], "actor_critic": lambda r: r["parts"]["actor_critic"],
         "gflop": lambda r: r["gflop"], "sgemm_fraction": lambda r: r["sgemm_fraction"]}


def medians(config: str, variant: str) -> dict[str, float]:
    runs = [json.load(open(path)) for path in sorted(glob.glob(f"{OUT}/{config}_{variant}_*.json"))]
    return {key: statistics.median(get(r) for r in runs) for key, get in PARTS.items()}


if __name__ == "__main__":
    for config in ("r2i_small", "dreamerv3_small", "model06"):
        before, after = medians(config, "before"), medians(config, "after")
        print(config, {k: f"{before[k]:.3f} -> {after[k]:.3f}" for k in PARTS})
        print(f"  update {before['update'] / after['update']:.2f}x, actor-critic "
              f"{before['actor_critic'] / after['actor_critic']:.2f}x")
