"""Throughput and memory benchmarks behind `ssmworld bench`.

`bench cores`: for each sequence core, forward+backward time (median of repeats after a warm-up) and peak memory of
parallel mode over sequence lengths, and each recurrent core's parallel mode against its own step loop. Parallel mode
also reports its GFLOP per forward+backward (torch.utils.flop_counter: matmuls and convolutions) and the achieved
GFLOP/s as a fraction of the fp32 sgemm rate measured in the same process: two cores that differ in time may differ
in work, in how fast they do it, or both.
Every measurement runs in a fresh subprocess, so that its peak resident memory is its own and one slow or
memory-hungry configuration cannot disturb the next.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .bench_harness import (
    autocast,
    memory_baseline,
    peak_mb,
    report_meta,
    run_worker,
    sgemm_rate,
    table_console,
    use_device,
    worker_main,
    write_json_atomic,
)

# Shared sizes: width 256 everywhere, 2 layers; S5 P=64 per layer; Mamba d_state 16, expand 2.
CORE_CONFIGS: dict[str, dict[str, Any]] = {
    "s5": dict(state_size=64, n_layers=2),
    "mamba": dict(d_state=16, expand=2, n_layers=2),
    "mamba2": dict(d_state=16, expand=2, headdim=64, n_layers=2),
    "gru": dict(blocks=8),
    "attention": dict(n_heads=4, n_layers=2),
}
SSM_CORES = ("s5", "mamba", "mamba2")  # cores whose parallel mode should beat their step loop


@dataclass
class BenchSettings:
    cores: list[str] = field(default_factory=lambda: list(CORE_CONFIGS))
    lengths: list[int] = field(default_factory=lambda: [64, 256, 1024, 4096])
    batch: int = 16
    width: int = 256
    repeats: int = 5
    step_length: int = 1024  # T at which parallel mode is compared with the step loop
    threads: int = 1
    device: str = "cpu"  # cpu | cuda | cuda:N: where the cores run (peak memory: the GPU's allocator on CUDA)
    precision: str = "float32"  # float32 | bfloat16: forward under torch.autocast (agent.precision)
    budget_s: float = 60.0  # skip longer lengths of a core once one forward+backward takes longer than this
    # The checks printed under the table (what an O(T) parallel core should show; docs/RESULTS.md "Sequence cores"):
    min_step_ratio: float = 5.0  # step loop / parallel mode at step_length, at least
    max_token_growth: float = 2.0  # time per token, longest T / shortest T, at most (SSM cores)
    max_memory_growth: float = 4.5  # peak memory for 4x the tokens, at most (linear or better)


def measure(core_name: str, length: int, mode: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Time forward+backward of one core at one length. mode: "parallel" or "step". Runs in a worker process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .. import sequence
    from ..runtime.process import tune_cpu_allocator

    tune_cpu_allocator()  # as `ssmworld train` does: measure what users run
    torch.set_num_threads(settings["threads"])
    sync = use_device(settings.get("device", "cpu"))
    torch.manual_seed(0)
    width, batch = settings["width"], settings["batch"]
    core = sequence.make(core_name, width, width=width, **CORE_CONFIGS[core_name])
    x = torch.randn(batch, length, width, requires_grad=True)
    reset = torch.zeros(batch, length, dtype=torch.bool)

    def run() -> float:
        start = time.perf_counter()
        with autocast(settings.get("precision", "float32"), x.device):
            if mode == "parallel":
                y, _ = core(x, reset)
            else:
                state, ys = core.initial(batch), []
                for t in range(length):
                    y_t, state = core.step(x[:, t], state)
                    ys.append(y_t)
                y = torch.stack(ys, 1)
        y.float().square().mean().backward()
        core.zero_grad(set_to_none=True)
        x.grad = None
        sync()
        return time.perf_counter() - start

    base_mb = memory_baseline(settings.get("device", "cpu"))
    warmup = run()
    repeats = settings["repeats"] if warmup < settings["budget_s"] else 1
    times = [run() for _ in range(repeats)]
    result = dict(core=core_name, length=length, mode=mode, median_s=statistics.median(times), times_s=times,
                  warmup_s=warmup, peak_mb=peak_mb(settings.get("device", "cpu"), base_mb))
    if mode == "parallel":  # counted after timing: the counter's dispatch overhead must not enter the times
        with FlopCounterMode(display=False) as counter:
            run()
        rate = sgemm_rate()
        gflop = counter.get_total_flops() / 1e9
        result.update(gflop=gflop, gflops=gflop / result["median_s"], sgemm_gflops=rate,
                      sgemm_fraction=gflop / result["median_s"] / rate)
    return result


def check_targets(results: list[dict[str, Any]], settings: BenchSettings) -> list[dict[str, Any]]:
    """The issue's targets, as ratios within this one run."""
    def get(core: str, length: int, mode: str = "parallel") -> dict[str, Any] | None:
        for r in results:
            if (r["core"], r["length"], r["mode"]) == (core, length, mode) and "median_s" in r:
                return r
        return None

    checks = []
    lo, hi = 256, max(settings.lengths)
    for core in settings.cores:
        par, step = get(core, settings.step_length), get(core, settings.step_length, "step")
        if core in SSM_CORES and par and step:
            ratio = step["median_s"] / par["median_s"]
            checks.append(dict(core=core, target=f"step/parallel at T={settings.step_length} >= "
                               f"{settings.min_step_ratio:g}", value=ratio, ok=ratio >= settings.min_step_ratio))
        a, b = get(core, lo), get(core, hi)
        if a and b and hi > lo:
            ratio = (b["median_s"] / hi) / (a["median_s"] / lo)
            if core in SSM_CORES:
                checks.append(dict(core=core, target=f"time/token T={hi} vs T={lo} <= {settings.max_token_growth:g}",
                                   value=ratio, ok=ratio <= settings.max_token_growth))
            elif core == "attention":
                checks.append(dict(core=core, target=f"time/token T={hi} vs T={lo} grows (> 1.5)", value=ratio,
                                   ok=ratio > 1.5))
        c = get(core, hi // 4) if hi >= 1024 else None
        if core in SSM_CORES and b and c and c["peak_mb"] > 0:  # 4x the tokens: at most ~4x the memory
            ratio = b["peak_mb"] / c["peak_mb"]
            checks.append(dict(core=core, target=f"peak memory T={hi} / T={hi // 4} <= {settings.max_memory_growth:g} "
                               "(linear or better)", value=ratio, ok=ratio <= settings.max_memory_growth))
    return checks


def bench_cores(settings: BenchSettings, json_path: str | None = None, console: Any = None) -> dict[str, Any]:
    """Run the core benchmark, print a table, optionally write JSON. Returns the report."""
    from rich.table import Table

    console = console or table_console()
    plan = [(c, t, "parallel") for c in settings.cores for t in settings.lengths]
    # The step loop is compared for the SSM cores only: gru's parallel mode is itself a loop, and attention's step
    # loop with gradients keeps every growing KV cache (O(T^2) memory).
    plan += [(c, settings.step_length, "step") for c in settings.cores if c in SSM_CORES]
    results: list[dict[str, Any]] = []
    too_slow: set[str] = set()
    started = time.perf_counter()
    with console.status("") as status:
        for i, (core, length, mode) in enumerate(plan, 1):
            status.update(f"[{i}/{len(plan)}] {core} T={length} {mode}  ({time.perf_counter() - started:.0f} s)")
            if mode == "parallel" and core in too_slow:
                results.append(dict(core=core, length=length, mode=mode, error="skipped: over the time budget"))
                continue
            result = run_worker(__name__, dict(core=core, length=length, mode=mode, settings=asdict(settings)),
                                settings.threads)
            results.append(result)
            if mode == "parallel" and result.get("warmup_s", 0) > settings.budget_s:
                too_slow.add(core)
    checks = check_targets(results, settings)

    table = Table(title=f"sequence cores, forward+backward, B={settings.batch}, width {settings.width}, "
                        f"{settings.threads} thread(s), {settings.precision}")
    for col in ("core", "T", "mode", "median s", "us/token", "peak MB", "GFLOP", "GFLOP/s", "% sgemm"):
        table.add_column(col, justify="right" if col not in ("core", "mode") else "left")
    for r in results:
        if "median_s" in r:
            us = r["median_s"] / (settings.batch * r["length"]) * 1e6
            rates = ([f"{r['gflop']:.1f}", f"{r['gflops']:.1f}", f"{100 * r['sgemm_fraction']:.0f}"] if "gflop" in r
                     else ["-"] * 3)
            table.add_row(r["core"], str(r["length"]), r["mode"], f"{r['median_s']:.3f}", f"{us:.1f}",
                          f"{r['peak_mb']:.0f}", *rates)
        else:
            table.add_row(r["core"], str(r["length"]), r["mode"], "-", "-", r.get("error", "")[:40])
    console.print(table)
    for c in checks:
        mark = "[green]ok[/green]" if c["ok"] else "[red]MISSED[/red]"
        console.print(f"{mark}  {c['core']:<9} {c['target']}: {c['value']:.2f}")

    report = dict(
        meta=report_meta("cores", wall_s=time.perf_counter() - started, settings=asdict(settings)),
        results=results, checks=checks,
    )
    if json_path:
        write_json_atomic(json_path, report)
        console.print(f"wrote {json_path}")
    return report


if __name__ == "__main__":
    worker_main(lambda job: measure(job["core"], job["length"], job["mode"], job["settings"]))
