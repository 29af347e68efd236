"""Forward+backward time of one sequence core from a given source tree, for before/after comparisons in separate
processes: ``OMP_NUM_THREADS=1 python ab_core.py <repo>/src mamba 1024`` (B=16, width 256, `bench cores` configs).
Prints the medians of 3 passes after a warm-up."""

import statistics
import sys
import time

sys.path.insert(0, sys.argv[1])  # the source tree to measure, ahead of the installed package

import torch  # noqa: E402

from ssmworld import sequence  # noqa: E402
from ssmworld.runtime.process import tune_cpu_allocator  # noqa: E402
from ssmworld.tools.bench_cores import CORE_CONFIGS  # noqa: E402

tune_cpu_allocator()
torch.set_num_threads(1)
torch.manual_seed(0)
name, length = sys.argv[2], int(sys.argv[3])
core = sequence.make(name, 256, width=256, **CORE_CONFIGS[name])
x = torch.randn(16, length, 256, requires_grad=True)
reset = torch.zeros(16, length, dtype=torch.bool)


def run() -> tuple[float, float]:
    start = time.perf_counter()
    y, _ = core(x, reset, core.initial(16))
    mid = time.perf_counter()
    y.square().mean().backward()
    return mid - start, time.perf_counter() - mid


run()
runs = [run() for _ in range(3)]
fwd, bwd = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
total = statistics.median(sum(r) for r in runs)
print(sys.argv[1], name, f"fwd {fwd:.3f} bwd {bwd:.3f} total {total:.3f}", flush=True)
