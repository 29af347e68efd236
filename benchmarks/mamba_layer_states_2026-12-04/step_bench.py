"""Drama small's imagination shapes through one Mamba core: an 8-step context in parallel mode, then 16 steps.

    OMP_NUM_THREADS=1 PYTHONPATH=<src> python step_bench.py mamba2|mamba

B=128 rows, width 128, 2 layers, d_state 16, expand 2 (Mamba-2: headdim 32), input 160 wide. Prints the median of 12
timed runs (after 3 warm-ups) without gradients (as imagination for discrete actions) and with a backward through the
steps (as dynamics backprop for continuous actions).
"""

import statistics
import sys
import time

import torch

from ssmworld.runtime.process import tune_cpu_allocator
from ssmworld.sequence import make

tune_cpu_allocator()
torch.set_num_threads(1)
torch.manual_seed(0)
name = sys.argv[1] if len(sys.argv) > 1 else "mamba2"
sizes = {"mamba2": dict(width=128, n_layers=2, d_state=16, expand=2, headdim=32),
         "mamba": dict(width=128, n_layers=2, d_state=16, expand=2)}
core = make(name, 160, **sizes[name])
batch, horizon = 128, 16


def run(grad: bool) -> None:
    x = torch.randn(batch, horizon, 160, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        _, state = core(torch.randn(batch, 8, 160))
        ys = []
        for t in range(horizon):
            y, state = core.step(x[:, t], state)
            ys.append(y)
        if grad:
            torch.stack(ys).square().mean().backward()


for grad in (False, True):
    times = []
    for _ in range(15):
        start = time.perf_counter()
        run(grad)
        times.append(time.perf_counter() - start)
    print(name, "grad" if grad else "no_grad", f"{statistics.median(times[3:]) * 1e3:.1f} ms")
