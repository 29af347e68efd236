"""What every `ssmworld bench` shares: one measurement per worker process, timing, memory and the report's header.

Each measurement (a core at one length, a world model at one length) runs in a fresh Python process with its own
thread count, so that allocator state, compiled kernels and memory peaks of one do not leak into the next:

    result = run_worker("ssmworld.tools.bench_cores", job, threads)     # the parent
    if __name__ == "__main__": worker_main(lambda job: measure(**job))  # the module, as `python -m MODULE --worker JOB`
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable


def table_console() -> Any:
    """A rich console on stdout for a benchmark's table. Piped to a file or a CI log, rich assumes 80 columns and
    would cut the table's cells short ("parall…"); a report is read there as often as in a terminal, so it gets room."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def run_worker(module: str, job: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run ``python -m module --worker JOB`` with ``threads`` torch threads; its last stdout line is the result (a
    JSON object). A failed worker gives ``{**job fields that name it, "error": its last stderr line}``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", module, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**{k: v for k, v in job.items() if k != "settings"}, "error": error}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The worker side: ``--worker JOB`` on the command line -> print ``measure(job)`` as one JSON line."""
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(measure(json.loads(sys.argv[2]))))


def median_time(fn: Callable[[], Any], repeats: int, budget_s: float, sync: Callable[[], Any] = lambda: None
                ) -> tuple[float, list[float], float]:
    """(median, times, warm-up) of ``fn`` in seconds, one warm-up call first (a single timed call if the warm-up
    took longer than ``budget_s``); ``sync`` waits for queued device work."""
    def timed() -> float:
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    warmup = timed()
    times = [timed() for _ in range(repeats if warmup < budget_s else 1)]
    return statistics.median(times), times, warmup


def use_device(name: str) -> Callable[[], Any]:
    """Make ``name`` the default device of this (worker) process; returns a function that waits for its queued work
    (CUDA kernels run asynchronously), so that wall-clock times are real."""
    import torch

    device = torch.device(name)
    torch.set_default_device(device)
    if device.type == "cuda":  # (peak memory: memory_baseline, once the model exists)
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def autocast(precision: str, device: Any) -> Any:
    """The context of a benchmark's forward passes: torch.autocast to bfloat16 for ``precision="bfloat16"`` (as
    ``agent.precision``), a no-op for float32."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def sgemm_rate(size: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of a (size x size) @ (size x size) fp32 matmul on the default device, median of ``repeats``: the rate
    that matmul-bound work can reach, against which `bench update` and `bench cores` report their GFLOP/s."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    sync = (lambda: torch.cuda.synchronize(a.device)) if a.is_cuda else (lambda: None)
    a @ b
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def memory_baseline(device: str) -> float:
    """The memory in use now (MB), once the model and inputs exist: resident memory on the CPU; on a GPU the CUDA
    allocator's, whose peak counter starts again here. ``peak_mb`` reports the growth over it on both."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))
        torch.cuda.reset_peak_memory_stats(torch.device(device))
        return torch.cuda.memory_allocated(torch.device(device)) / 2**20
    return rss_mb()


def peak_mb(device: str, base_mb: float) -> float:
    """Peak memory (MB) over ``base_mb`` (memory_baseline): resident memory on the CPU, the CUDA allocator's on a
    GPU; the same measure on both, so memory-growth ratios compare."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20 - base_mb
    return peak_rss_mb() - base_mb


def cpu_name_and_flags() -> tuple[str, set[str]]:
    """The first CPU's model name and feature flags from /proc/cpuinfo (Linux; platform.processor() is empty there);
    elsewhere platform's name and no flags."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return name, flags


def cpu_model() -> str:
    """The CPU's model name and its vector extensions that change matmul speed (AVX-512, AMX: bfloat16 runs on AMX
    only where it exists), e.g. "AMD EPYC (avx2)"; the same machine label varies between hosts of a cloud, so every
    report says which CPU it ran on."""
    name, flags = cpu_name_and_flags()
    extensions = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(extensions)})" if extensions else name


def report_meta(benchmark: str, command: str | None = None, **fields: Any) -> dict[str, Any]:
    """The header of every benchmark report: what ran, where, when, with which versions and command (default: the
    ``ssmworld`` subcommand that is running; a script under benchmarks/ passes its own)."""
    import torch

    return dict(benchmark=benchmark, date=datetime.datetime.now().isoformat(timespec="seconds"), host=platform.node(),
                machine=platform.machine(), processor=cpu_model(), cpu_count=os.cpu_count(),
                python=platform.python_version(), torch=torch.__version__,
                command=command or " ".join(["ssmworld"] + sys.argv[1:]), **fields)


def write_json_atomic(path: str, data: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
