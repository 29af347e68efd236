"""Small softmaxes on the CPU: torch.softmax against ssmworld.nn.distributions.softmax over a narrow last dimension.

    OMP_NUM_THREADS=1 python benchmarks/small_softmax.py [--classes 2,4,8,16,32] [--repeats 30] [--json PATH]

Forward and forward+backward, medians of ``repeats`` after a warm-up, in one process (compare the ratios), on the
shapes the small presets use: the latents of a world-model pass (B=16 x T=1024 x groups x classes, 4 groups) and of
one imagination step (256 starts x 4 groups x classes). ``softmax`` takes its elementwise route below 16 classes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from typing import Callable

import torch

from ssmworld.nn.distributions import softmax
from ssmworld.tools.bench_harness import median_time


def timed(fn: Callable[[], object], repeats: int) -> float:
    return median_time(fn, repeats, budget_s=float("inf"))[0]


def measure(shape: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Seconds of torch's softmax and ours, forward and forward+backward, on one random tensor of ``shape``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1))

    def backward(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            fn(x).backward(grad)
            x.grad = None
        return run

    with torch.no_grad():
        row = dict(torch_forward=timed(lambda: x.softmax(-1), repeats), ours_forward=timed(lambda: softmax(x), repeats))
    row.update(torch_backward=timed(backward(lambda t: t.softmax(-1)), repeats),
               ours_backward=timed(backward(softmax), repeats))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="2,4,8,16,32")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"{'shape':>20} {'torch fwd':>10} {'ours fwd':>9} {'torch f+b':>10} {'ours f+b':>9}  speed-up fwd, f+b")
    for classes in (int(c) for c in args.classes.split(",")):
        for shape in ((16, 1024, 4, classes), (256, 4, classes)):
            row = dict(shape=list(shape), **measure(shape, args.repeats))
            rows.append(row)
            fwd, both = row["torch_forward"] / row["ours_forward"], row["torch_backward"] / row["ours_backward"]
            print(f"{str(shape):>20} {1e3 * row['torch_forward']:8.3f}ms {1e3 * row['ours_forward']:7.3f}ms "
                  f"{1e3 * row['torch_backward']:8.3f}ms {1e3 * row['ours_backward']:7.3f}ms  {fwd:.1f}x, {both:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                       "processor": platform.processor(), "threads": torch.get_num_threads(), "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
