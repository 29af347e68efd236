"""How imagination's time grows with the number of starts: what part of it is a fixed cost per imagined step.

    OMP_NUM_THREADS=1 python benchmarks/imagination_scaling.py [--starts 1,16,64,256,1024] [--repeats 7]
        [--json benchmarks/imagination_scaling.json]

For each configuration (a preset at ``small`` on an env, as training builds it; replay filled with random-action
episodes) the world model imagines ``horizon`` steps from N posterior start states with the current actor, and, where
the actor learns through the dynamics (continuous actions), the backward pass of the imagined trajectory runs too.
Reported per N: median milliseconds and microseconds per start. The time at the smallest N (1 by default) is the part
that does not shrink with the batch (operator dispatch, Python, per-op set-up: the same number of ops at any N);
``bound`` = t(N) / (t(N) - t(N_min)) is the speed-up that removing all of it (fusing every op, no Python) would give
at the configuration's own N, the most any overhead work can win there. Times on a GPU wait for its queued kernels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch

from ssmworld.dreamer.imagination import Starts, choose_starts
from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer
from ssmworld.tools.bench_harness import report_meta, write_json_atomic

CONFIGS = {  # name: (preset, env, overrides)
    "r2i small, dmc:cartpole_balance": ("r2i", "dmc:cartpole_balance", []),
    "r2i small, bsuite:memory_len/22": ("r2i", "bsuite:memory_len/22", []),
    "dreamerv3 small, dmc:cartpole_balance": ("dreamerv3", "dmc:cartpole_balance", []),
    "issue 16's 0.6M model (dreamerv3, 512-wide GRU, 32x4 latents), dmc:cartpole_balance": (
        "dreamerv3", "dmc:cartpole_balance",
        ["agent.world_model.units=64", "agent.world_model.encoder_layers=3", "agent.world_model.head_layers=3",
         "agent.world_model.gru.width=512", "agent.world_model.gru.blocks=8", "agent.world_model.latent_groups=32",
         "agent.world_model.latent_classes=4", "agent.actor_critic.units=64", "agent.actor_critic.layers=3",
         "agent.imagination.count=1024"]),
}


def prepared(preset: str, env: str, overrides: list[str], size: str = "small") -> tuple[Any, Starts]:
    """(agent, the posterior starts of one replay batch) after a random-action prefill."""
    cfg = load_config(preset, size, env, overrides)
    trainer = Trainer(cfg, quiet=True)
    trainer.fill_replay(steps=max(cfg.train.prefill, 4 * cfg.train.sequence_length, 2 * cfg.train.batch_size))
    trainer.vec.close()
    agent = trainer.agent
    batch, contexts = trainer.sample_batch()
    with torch.no_grad():
        out = agent.world_model.observe_batch(batch, all_states=True)
        starts = choose_starts(agent.world_model, agent.cfg.imagination, batch, out, contexts)
    return agent, starts


def imagine(agent: Any, starts: Starts, n: int) -> None:
    """One imagination from the first n starts (repeated when there are fewer), with its backward where the actor
    learns through the dynamics."""
    index = torch.arange(n) % starts.h.shape[0]
    ac, wm = agent.actor_critic, agent.world_model

    def policy(parts: dict[str, torch.Tensor]) -> torch.Tensor:
        dist = ac.policy(agent.features(parts).detach())
        return dist.sample() if agent.discrete else dist.sample_in_bounds()

    with torch.set_grad_enabled(ac.backprop_dynamics):
        traj = wm.imagine(starts.h[index], starts.z[index], {k: v[index] for k, v in starts.state.items()}, policy,
                          agent.cfg.imagination.horizon)
    if ac.backprop_dynamics:
        (traj["reward"].sum() + traj["h"].sum()).backward()
        agent.zero_grad(set_to_none=True)


def chosen_configs(indices: str | None) -> list[tuple[str, tuple[str, str, list[str]]]]:
    """CONFIGS' items at the comma-separated ``indices`` ("0,3"), or all of them."""
    items = list(CONFIGS.items())
    return [items[int(i)] for i in indices.split(",")] if indices else items


def measure(preset: str, env: str, overrides: list[str], counts: list[int], repeats: int, size: str = "small"
            ) -> dict[str, Any]:
    agent, starts = prepared(preset, env, overrides, size)
    own = agent.cfg.imagination.count or starts.h.shape[0]  # the configuration's own starts per update
    counts = sorted(set(counts) | {own})
    times: dict[int, list[float]] = {n: [] for n in counts}
    device = starts.h.device
    for repeat in range(repeats + 1):  # interleaved; the first round warms up
        for n in counts:
            start = time.perf_counter()
            imagine(agent, starts, n)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat:
                times[n].append(time.perf_counter() - start)
    ms = {n: 1e3 * statistics.median(v) for n, v in times.items()}
    return {"preset": preset, "env": env, "overrides": overrides, "own_starts": own,
            "horizon": agent.cfg.imagination.horizon, "dynamics_backprop": agent.actor_critic.backprop_dynamics,
            "ms": ms, "us_per_start": {n: 1e3 * t / n for n, t in ms.items()},
            "fixed_share": ms[min(counts)] / ms[own], "bound": ms[own] / max(ms[own] - ms[min(counts)], 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", default="1,16,64,256,1024", help="numbers of start states")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--configs", default=None, help="comma-separated indices into CONFIGS (default: all)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    counts = [int(n) for n in args.starts.split(",")]
    results = []
    print(f"threads {torch.get_num_threads()}; milliseconds per imagination (median of {args.repeats})")
    for name, (preset, env, overrides) in chosen_configs(args.configs):
        r = measure(preset, env, overrides, counts, args.repeats)
        results.append({"name": name, **r})
        row = "  ".join(f"N={n}: {t:.1f}" for n, t in r["ms"].items())
        print(f"{name} (own N={r['own_starts']}, H={r['horizon']}, backward: {r['dynamics_backprop']}): {row}; "
              f"fixed share {r['fixed_share']:.0%}, bound {r['bound']:.2f}x")
    if args.json:
        meta = report_meta("imagination_scaling", " ".join(["python", *sys.argv]), threads=torch.get_num_threads(),
                           repeats=args.repeats)
        write_json_atomic(args.json, {**meta, "results": results})


if __name__ == "__main__":
    main()
