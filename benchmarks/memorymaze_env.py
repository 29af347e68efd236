"""Memory Maze env steps/s with and without ``fast_contacts`` (the vectorised target activation), one thread.

    OMP_NUM_THREADS=1 python benchmarks/memorymaze_env.py [--task 9x9] [--steps 300] [--runs 3]
        [--json benchmarks/memorymaze_env.json]

Both variants are built in one process and timed interleaved (the order alternates each round), so load from other
jobs on a shared machine hits both alike; each run is ``--steps`` seeded random actions, the same for both variants;
we report each variant's median steps/s over the runs and the ratio of the medians.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy is imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402

import numpy as np  # noqa: E402

from ssmworld import envs  # noqa: E402

VARIANTS = {"original": False, "fast_contacts": True}


def timed_run(env, actions: np.ndarray) -> float:
    """Steps/s over ``actions`` (steps,) int; an episode end resets (rare: episodes last 1000 steps)."""
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("mujoco", "dm-control", "memory-maze", "numpy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="9x9")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    made = {name: envs.make(f"memorymaze:{args.task}", seed=args.seed, fast_contacts=fast)
            for name, fast in VARIANTS.items()}
    rng = np.random.default_rng(args.seed)
    for env in made.values():
        timed_run(env, rng.integers(6, size=10))  # warm-up: first renders, caches
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for run in range(args.runs):
        actions = rng.integers(6, size=args.steps)
        order = list(VARIANTS) if run % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            rates[name].append(timed_run(made[name], actions))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ratio = medians["fast_contacts"] / medians["original"]

    print(f"memorymaze:{args.task}, 1 env, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, random actions, "
          f"{args.runs} interleaved runs of {args.steps} steps")
    print(f"{'variant':<15} {'median steps/s':>15}   runs")
    for name in VARIANTS:
        print(f"{name:<15} {medians[name]:15.1f}   {', '.join(f'{r:.1f}' for r in rates[name])}")
    print(f"ratio fast/original {ratio:.2f}x")
    if args.json:
        record = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"host": platform.node(), "arch": platform.machine(), "cpu_count": os.cpu_count(),
                        "python": platform.python_version(), "load_avg_1m_before_after": [load_before[0],
                                                                                       os.getloadavg()[0]]},
            "versions": versions(),
            "command": "OMP_NUM_THREADS=1 python " + shlex.join(sys.argv),
            "task": f"memorymaze:{args.task}", "steps_per_run": args.steps, "runs": args.runs, "threads": 1,
            "steps_per_s": rates, "median_steps_per_s": medians, "ratio": ratio,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
