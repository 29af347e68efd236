"""What train.context=episode costs: one agent update with and without the episode prefix, same batches.

    OMP_NUM_THREADS=1 python benchmarks/context_cost.py [--presets r2i,dreamerv3] [--env bsuite:memory_len/22]
        [--lengths 64,256] [--repeats 5] [--json benchmarks/context_cost.json]

Replay is filled with random-action episodes of the env (as after prefill); for each preset and sequence length T the
same sampled windows are updated with their episode prefix (the gradient-free recompute of the core state, as
training does) and without it. Reported: median seconds per update of each, the ratio, and the mean and largest
prefix length of the batches. The prefix pass is a forward pass without gradient over at most the episode so far, so
its cost grows with the episode length, not with the run's length.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer, batch_to_tensors
from ssmworld.tools.bench_harness import report_meta, write_json_atomic


def measure(preset: str, env: str, length: int, repeats: int, seed: int = 0) -> dict:
    cfg = load_config(preset, "small", env, [f"train.sequence_length={length}", f"train.seed={seed}"])
    trainer = Trainer(cfg, quiet=True)
    trainer.fill_replay(steps=2000)
    trainer.vec.close()
    times: dict[str, list[float]] = {"window": [], "episode": []}
    prefix_lengths = []
    for repeat in range(repeats + 1):  # the first round warms up
        arrays = trainer.replay.sample(cfg.train.batch_size, length, context=cfg.train.context_length)
        real = arrays["prefix/is_first"].shape[1] - np.argmax(arrays["prefix/is_first"], axis=1)
        prefix_lengths += [int(n) if arrays["prefix/is_first"][i].any() else 0 for i, n in enumerate(real)]
        for mode in ("window", "episode"):
            batch = batch_to_tensors(arrays if mode == "episode" else
                                     {k: v for k, v in arrays.items() if not k.startswith("prefix/")})
            if mode == "window":
                batch["is_first"][:, 0] = True  # as replay returns it without the context
            torch.manual_seed(repeat)
            start = time.perf_counter()
            trainer.agent.update(batch)
            if repeat:
                times[mode].append(time.perf_counter() - start)
    window, episode = (statistics.median(times[m]) for m in ("window", "episode"))
    return {"preset": preset, "env": env, "T": length, "window_s": window, "episode_s": episode,
            "ratio": episode / window, "prefix_mean": float(np.mean(prefix_lengths)),
            "prefix_max": int(max(prefix_lengths))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="r2i,dreamerv3")
    parser.add_argument("--env", default="bsuite:memory_len/22")
    parser.add_argument("--lengths", default="64,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [measure(p, args.env, int(t), args.repeats) for p in args.presets.split(",")
            for t in args.lengths.split(",")]
    print(f"{'preset':10s} {'T':>5s} {'window s':>9s} {'episode s':>10s} {'ratio':>6s} {'prefix mean/max':>16s}")
    for r in rows:
        print(f"{r['preset']:10s} {r['T']:5d} {r['window_s']:9.3f} {r['episode_s']:10.3f} {r['ratio']:6.2f} "
              f"{r['prefix_mean']:9.1f}/{r['prefix_max']}")
    if args.json:
        meta = report_meta("context_cost", " ".join(["python", *sys.argv]), threads=torch.get_num_threads(),
                           repeats=args.repeats)
        write_json_atomic(args.json, meta | {"rows": rows})


if __name__ == "__main__":
    main()
