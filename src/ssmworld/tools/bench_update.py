"""`ssmworld bench update`: one full agent update of a preset (world model + imagination + actor-critic), where the
time goes and how close it runs to this machine's matmul rate.

The run's agent and replay are built as `ssmworld train` builds them (preset, size, env, overrides); replay is filled
with random-action steps; then ``repeats`` updates are timed after ``warmup`` ones. Reported per update: seconds of
each part (Agent.update's own split; on CUDA it synchronises), GFLOP of one update (torch.utils.flop_counter, counted
on one extra update), the achieved GFLOP/s, and that as a fraction of the fp32 sgemm rate measured in the same
process at the same thread count (a square matmul large enough to reach it). Medians; a JSON report with --json.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .bench_harness import report_meta, sgemm_rate, write_json_atomic


def _print(report: dict[str, Any], repeats: int) -> None:
    r = report
    print(f"update of {r['preset']}/{r['size']} on {r['env']} ({r['parameters'] / 1e6:.2f}M parameters, B={r['batch']} "
          f"x T={r['length']}, {r['meta']['threads']} thread(s), {r['meta']['device']}, {r['precision']}):")
    print(f"  {r['seconds']:.3f} s per update (median of {repeats}): " + ", ".join(
        f"{k} {v:.3f} s" for k, v in r["parts"].items()) + f", replay sampling {r['sample_seconds']:.3f} s")
    print(f"  {r['gflop']:.2f} GFLOP, {r['gflops']:.1f} GFLOP/s = {100 * r['sgemm_fraction']:.0f}% of the fp32 sgemm "
          f"rate ({r['sgemm_gflops']:.1f} GFLOP/s)")


def bench_update(preset: str, size: str, env: str, overrides: list[str], repeats: int = 5, warmup: int = 2,
                 threads: int = 1, json_path: str | None = None) -> dict[str, Any]:
    """Measure and print; returns the report (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..runtime.config import load_config
    from ..runtime.process import tune_cpu_allocator
    from ..runtime.train import Trainer

    tune_cpu_allocator()
    torch.set_num_threads(threads)
    cfg = load_config(preset, size, env, overrides)
    tc = cfg.train
    trainer = Trainer(cfg, quiet=True)
    trainer.fill_replay(steps=max(tc.prefill, 4 * tc.sequence_length, tc.batch_size * 2))
    trainer.vec.close()

    def update() -> dict[str, float]:
        return trainer.agent.update(*trainer.sample_batch())

    for _ in range(warmup):
        update()
    parts: dict[str, list[float]] = {"world_model": [], "imagination": [], "actor_critic": []}
    totals = []
    for _ in range(repeats):
        start = time.perf_counter()
        metrics = update()
        totals.append(time.perf_counter() - start)
        for name in parts:
            parts[name].append(metrics[f"seconds_{name}"])
    with FlopCounterMode(display=False) as counter:
        update()
    gflop = counter.get_total_flops() / 1e9
    seconds = statistics.median(totals)
    with torch.device(trainer.device):  # the matmul rate of the device the update ran on
        rate = sgemm_rate()
    params = sum(p.numel() for p in trainer.agent.parameters())
    report = dict(
        meta=report_meta("update", threads=threads, device=str(trainer.device)),
        preset=preset, size=size, env=env, overrides=overrides, precision=cfg.agent.precision, parameters=params,
        batch=tc.batch_size, length=tc.sequence_length, seconds=seconds,
        parts={k: statistics.median(v) for k, v in parts.items()},
        sample_seconds=statistics.median(t - sum(p) for t, *p in zip(totals, *parts.values())),  # replay -> tensors
        gflop=gflop, gflops=gflop / seconds, sgemm_gflops=rate, sgemm_fraction=gflop / seconds / rate)
    _print(report, repeats)
    if json_path:
        write_json_atomic(json_path, report)
        print(f"wrote {json_path}")
    return report
