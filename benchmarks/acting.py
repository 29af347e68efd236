"""Acting cost per env step: carrying the core state in step mode (ssmworld) vs re-encoding the last 16 real steps
at every step (Drama's official acting), for the drama preset on 64x64 images.

    OMP_NUM_THREADS=1 python benchmarks/acting.py [--size paper] [--steps 100] [--json benchmarks/acting.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from ssmworld.dreamer.agent import Agent
from ssmworld.runtime.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config("drama", args.size, "atari:Pong")
    agent = Agent({"image": (64, 64, 3)}, 6, True, cfg.agent).eval()
    wm = agent.world_model
    frames = torch.randint(0, 256, (1, args.steps + args.context, 64, 64, 3), dtype=torch.uint8)

    def carried() -> list[float]:
        times, state = [], None
        for t in range(args.steps):
            start = time.perf_counter()
            _, state = agent.act({"image": frames[:, t]}, torch.tensor([t == 0]), state)
            times.append(time.perf_counter() - start)
        return times

    @torch.no_grad()
    def reencoded() -> list[float]:
        times, actions = [], torch.zeros(1, args.steps + args.context, 6)
        first = torch.zeros(1, args.context, dtype=torch.bool)
        first[:, 0] = True
        for t in range(args.context, args.context + args.steps):
            start = time.perf_counter()
            window = slice(t - args.context + 1, t + 1)
            out = wm.observe({"image": frames[:, window]}, actions[:, window], first)
            parts = {"h": out["h"][:, -1], "z": out["z"][:, -1], "x": wm.core.features(out["state"])}
            actions[:, t] = agent.actor_critic.policy(agent.features(parts)).sample()
            times.append(time.perf_counter() - start)
        return times

    carried(), reencoded()  # warm-up
    a, b = statistics.median(carried()), statistics.median(reencoded())
    print(f"drama/{args.size}, 1 env, 1 thread, median of {args.steps} steps")
    print(f"{'carried state (step mode)':<34} {a * 1e3:8.2f} ms/step")
    print(f"{f're-encode last {args.context} steps (Drama)':<34} {b * 1e3:8.2f} ms/step")
    print(f"speed-up {b / a:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
                       "size": args.size, "steps": args.steps, "context": args.context, "threads": 1,
                       "carried_ms": a * 1e3, "reencoded_ms": b * 1e3, "speedup": b / a}, f, indent=1)


if __name__ == "__main__":
    main()
