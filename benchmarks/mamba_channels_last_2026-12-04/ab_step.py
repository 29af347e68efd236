"""Mamba-1's step mode at Drama `small` imagination shapes (width 128, 2 layers, d_state 16, 128 rows, 16 steps, no
grad) from a given source tree: ``OMP_NUM_THREADS=1 python ab_step.py <repo>/src``. Prints the median of 20 rollouts."""

import statistics
import sys
import time

sys.path.insert(0, sys.argv[1])  # the source tree to measure, ahead of the installed package

import torch  # noqa: E402

from ssmworld import sequence  # noqa: E402
from ssmworld.runtime.process import tune_cpu_allocator  # noqa: E402

tune_cpu_allocator()
torch.set_num_threads(1)
torch.manual_seed(0)
core = sequence.make("mamba", 128, width=128, n_layers=2, d_state=16, expand=2)
rows, x = 128, torch.randn(128, 128)


def rollout() -> float:
    start, state = time.perf_counter(), core.initial(rows)
    with torch.no_grad():
        for _ in range(16):
            _, state = core.step(x, state)
    return time.perf_counter() - start


rollout()
print(sys.argv[1], f"16 steps B={rows}: {1e3 * statistics.median(rollout() for _ in range(20)):.2f} ms")
