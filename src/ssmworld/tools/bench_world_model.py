"""`bench world-model`: one full world-model update and imagination per core and sequence length: S5 vs GRU (R2I's
speed claim, there 'up to 9x' on a GPU) and, with ``--cores mamba2,mamba,attention,gru``, Drama's O(n) claim.

Measured per core and sequence length T, each in a fresh worker process (its own peak memory), median of
``repeats`` after one warm-up:

- train step: ``WorldModel.loss(batch)`` forward, ``backward()``, ``clip_grad_norm_`` (1000, as Agent) and an Adam
  step, on a random batch of B sequences of T steps: a 16-dim "vector" observation, 4 discrete actions (one-hot),
  float rewards, ``is_first[:, 0] = True``. Reported as seconds, microseconds per token (B * T), the peak
  resident memory of the train steps above the memory after building the model and batch, and the step's GFLOP
  (torch.utils.flop_counter: matmuls) with the achieved GFLOP/s as a fraction of the fp32 sgemm rate measured in the
  same process: how close the step is to what this machine's matmuls allow.
- imagination: ``WorldModel.imagine`` in step mode (no grad) from ``imagine_starts`` start states of the same batch,
  ``horizon`` steps, uniformly random one-hot actions. Starts are posterior states (``imagination="posterior"``, R2I;
  not for attention, whose per-step states are not materialised) or Drama's ``context`` real steps re-run before
  each start (``imagination="context"``, included in the time). It does not depend on T.
- scaling: per core, the time per token at the longest T over that at the shortest (1 = linear cost in T); the
  check for mamba2 is Drama's claim (<= 2 from T=128 to T=512); attention's is expected to grow with T.

Same width for every core: ``WorldModelConfig(units=width)`` and the core's ``width=width``; latents 32 x 32 as R2I.
Core layouts are those of `bench cores` (bench.CORE_CONFIGS): S5 with P=64 complex states per layer and 2 layers
(R2I's S5 layout at a CPU-practical state size), GRU with 8 blocks (DreamerV3's block GRU).
The check: gru/s5 train-step time at the longest T >= ``target_speedup`` (R2I reports its S5 world model up to ~9x
faster than DreamerV3's at long sequences, on a GPU; docs/RESULTS.md). On a CPU this may well be missed; it is reported
as measured.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError
from .bench_cores import CORE_CONFIGS
from .bench_harness import (
    autocast,
    median_time,
    memory_baseline,
    peak_mb,
    peak_rss_mb,
    report_meta,
    run_worker,
    sgemm_rate,
    table_console,
    use_device,
    worker_main,
    write_json_atomic,
)

FAST, SLOW = "s5", "gru"  # the ratio reported is SLOW / FAST


@dataclass
class WorldModelBenchSettings:
    cores: list[str] = field(default_factory=lambda: [FAST, SLOW])
    lengths: list[int] = field(default_factory=lambda: [256, 1024])
    batch: int = 4  # R2I trains on 4 x 1024
    width: int = 256
    repeats: int = 5
    threads: int = 1
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "float32"  # float32 | bfloat16: forward passes under torch.autocast (agent.precision)
    obs_dim: int = 16
    action_dim: int = 4
    imagine_starts: int = 256
    horizon: int = 15
    # posterior | context (Drama's starts from the batch: agent.imagination.starts=batch; context 8, horizon 16, 1024)
    imagination: str = "posterior"
    context: int = 8
    all_states: bool = False  # True: loss(all_states=True), the variant Agent.update runs (imagination starts)
    target_speedup: float = 10.0
    target_scaling: float = 2.0  # Drama: mamba2 time per token at the longest T within 2x of the shortest
    budget_s: float = 120.0  # one timed repeat only once the warm-up step takes longer than this

    @classmethod
    def quick(cls, **overrides: Any) -> WorldModelBenchSettings:
        """A smoke run in about a minute: small sizes, one repeat (not results)."""
        return cls(**{**dict(lengths=[32, 64], width=64, repeats=1), **overrides})


def measure(core: str, length: int, s: dict[str, Any]) -> dict[str, Any]:
    """One core at one length: train-step and imagination times, peak memory. Runs in a worker process."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from ..dreamer.imagination import ImaginationConfig, choose_starts
    from ..dreamer.world_model import WorldModel, WorldModelConfig
    from ..runtime.process import tune_cpu_allocator

    tune_cpu_allocator()  # as `ssmworld train` does
    torch.set_num_threads(s["threads"])
    sync = use_device(s.get("device", "cpu"))
    torch.manual_seed(0)
    B, T, A, width = s["batch"], length, s["action_dim"], s["width"]
    cfg = WorldModelConfig.with_core(core, dict(width=width, **CORE_CONFIGS[core]), units=width)
    wm = WorldModel({"vector": s["obs_dim"]}, A, cfg)
    opt = torch.optim.Adam(wm.parameters(), 1e-4, eps=1e-8)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    batch = dict(obs={"vector": torch.randn(B, T, s["obs_dim"])},
                 action=nn.functional.one_hot(torch.randint(A, (B, T)), A).float(),
                 reward=torch.randn(B, T), is_first=is_first, is_terminal=torch.zeros(B, T, dtype=torch.bool))

    amp = s.get("precision", "float32")

    def train_step() -> None:
        with autocast(amp, is_first.device):
            loss, _, _ = wm.loss(batch, all_states=s["all_states"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(wm.parameters(), 1000.0)
        opt.step()

    base_mb = memory_baseline(s.get("device", "cpu"))
    median_s, times, warmup = median_time(train_step, s["repeats"], s["budget_s"], sync)
    peak = peak_mb(s.get("device", "cpu"), base_mb)
    with FlopCounterMode(display=False) as counter:  # after timing: the counter's dispatch overhead stays out
        train_step()
    gflop, rate = counter.get_total_flops() / 1e9, sgemm_rate()

    def policy(parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.one_hot(torch.randint(A, (parts["h"].shape[0],)), A).float()

    with torch.no_grad(), autocast(amp, is_first.device):
        context = s["imagination"] == "context"
        out = wm.observe(batch["obs"], batch["action"], batch["is_first"], all_states=not context)

        imagination = ImaginationConfig(s["horizon"], "batch" if context else "posterior", s["context"],
                                        s["imagine_starts"])

        def imagine() -> None:
            starts = choose_starts(wm, imagination, batch, out)
            wm.imagine(starts.h, starts.z, starts.state, policy, imagination.horizon)

        imagine_s, imagine_times, _ = median_time(imagine, s["repeats"], s["budget_s"], sync)
    return dict(core=core, length=length, median_s=median_s, times_s=times, warmup_s=warmup,
                us_per_token=median_s / (B * T) * 1e6, peak_mb=peak, peak_rss_mb=peak_rss_mb(),
                gflop=gflop, gflops=gflop / median_s, sgemm_gflops=rate, sgemm_fraction=gflop / median_s / rate,
                imagine_s=imagine_s, imagine_times_s=imagine_times,
                params=sum(p.numel() for p in wm.parameters()))


def speedups(results: list[dict[str, Any]], settings: WorldModelBenchSettings
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ratios SLOW/FAST per T for the train step and imagination, the target check at the longest T)."""
    done = {(r["core"], r["length"]): r for r in results if "median_s" in r}
    ratios = []
    for T in settings.lengths:
        fast, slow = done.get((FAST, T)), done.get((SLOW, T))
        if fast and slow:
            ratios.append(dict(length=T, train=slow["median_s"] / fast["median_s"],
                               imagine=slow["imagine_s"] / fast["imagine_s"]))
    checks = []
    longest = max(settings.lengths)
    for r in ratios:
        if r["length"] == longest:
            checks.append(dict(target=f"{SLOW}/{FAST} train step at T={longest} >= {settings.target_speedup:g}",
                               value=r["train"], ok=r["train"] >= settings.target_speedup))
    return ratios, checks


def scaling(results: list[dict[str, Any]], settings: WorldModelBenchSettings
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per core: time per token, imagination time and peak memory at the longest T over the shortest; the check
    that mamba2's time per token grows at most ``target_scaling`` times)."""
    done = {(r["core"], r["length"]): r for r in results if "median_s" in r}
    short, long = min(settings.lengths), max(settings.lengths)
    rows, checks = [], []
    if short == long:
        return rows, checks
    for core in settings.cores:
        a, b = done.get((core, short)), done.get((core, long))
        if a and b:
            rows.append(dict(core=core, lengths=[short, long], per_token=b["us_per_token"] / a["us_per_token"],
                             imagine=b["imagine_s"] / a["imagine_s"],
                             peak_mb=b["peak_mb"] / a["peak_mb"] if a["peak_mb"] > 0 else None))
    for r in rows:
        if r["core"] == "mamba2":
            checks.append(dict(target=f"mamba2 time per token at T={long} <= {settings.target_scaling:g}x T={short}",
                               value=r["per_token"], ok=r["per_token"] <= settings.target_scaling))
    return rows, checks


def bench_world_model(settings: WorldModelBenchSettings, json_path: str | None = None,
                      console: Any = None) -> dict[str, Any]:
    """Run the world-model benchmark, print a table and the check, optionally write JSON. Returns the report."""
    from rich.table import Table

    console = console or table_console()
    unknown = [c for c in settings.cores if c not in CORE_CONFIGS]
    if unknown:
        raise UserError(f"unknown core(s) {unknown}; available: {', '.join(CORE_CONFIGS)}")
    plan = [(c, T) for T in settings.lengths for c in settings.cores]
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with console.status("") as status:
        for i, (core, T) in enumerate(plan, 1):
            status.update(f"[{i}/{len(plan)}] {core} T={T}  ({time.perf_counter() - started:.0f} s)")
            results.append(run_worker(__name__, dict(core=core, length=T, settings=asdict(settings)),
                                      settings.threads))
    ratios, checks = speedups(results, settings)
    growth, scaling_checks = scaling(results, settings)
    checks += scaling_checks

    table = Table(title=f"world-model update (loss+backward+clip+Adam), B={settings.batch}, width "
                        f"{settings.width}, {settings.threads} thread(s), {settings.precision}; imagination: "
                        f"{settings.imagine_starts} starts x {settings.horizon} steps")
    for col in ("core", "T", "train s", "us/token", "GFLOP", "% sgemm", "peak MB", "imagine s"):
        table.add_column(col, justify="left" if col == "core" else "right")
    for r in results:
        if "median_s" in r:
            table.add_row(r["core"], str(r["length"]), f"{r['median_s']:.3f}", f"{r['us_per_token']:.1f}",
                          f"{r['gflop']:.1f}", f"{100 * r['sgemm_fraction']:.0f}", f"{r['peak_mb']:.0f}",
                          f"{r['imagine_s']:.3f}")
        else:
            table.add_row(r["core"], str(r["length"]), "-", "-", "-", "-", "-", r.get("error", "")[:40])
    console.print(table)
    for r in ratios:
        console.print(f"{SLOW}/{FAST} at T={r['length']}: train step {r['train']:.2f}x, imagination "
                      f"{r['imagine']:.2f}x")
    for r in growth:
        memory = f", peak memory {r['peak_mb']:.2f}x" if r["peak_mb"] is not None else ""
        console.print(f"{r['core']} T={r['lengths'][0]} -> T={r['lengths'][1]}: time per token {r['per_token']:.2f}x"
                      f"{memory}, imagination {r['imagine']:.2f}x")
    for c in checks:
        mark = "[green]ok[/green]" if c["ok"] else "[red]MISSED[/red]"
        console.print(f"{mark}  {c['target']}: {c['value']:.2f}")

    report = dict(
        meta=report_meta("world-model", wall_s=time.perf_counter() - started, settings=asdict(settings),
                         core_configs={c: CORE_CONFIGS[c] for c in settings.cores}),
        results=results, ratios=ratios, scaling=growth, checks=checks,
    )
    if json_path:
        write_json_atomic(json_path, report)
        console.print(f"wrote {json_path}")
    return report


if __name__ == "__main__":
    worker_main(lambda job: measure(job["core"], job["length"], job["settings"]))
