"""S5 on the CPU: the blocked (linear-work) scan against the log-depth scan, and the S5 core against the GRU core.

    OMP_NUM_THREADS=1 python benchmarks/s5_scan.py [--lengths 256,1024,4096] [--repeats 5] [--json PATH]

Forward+backward, medians of ``repeats`` after a warm-up, all in one process (compare the ratios): the scan alone on
(B=16, T, P=64) complex coefficients with resets, and `ssmworld bench cores`' sizes (B=16, width 256; S5 2 layers,
P=64; GRU 8 blocks) with each scan method.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from unittest import mock

import torch

from ssmworld import sequence
from ssmworld.sequence import s5, scan
from ssmworld.tools.bench_cores import CORE_CONFIGS


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scan_alone(length: int, method: str, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.polar(0.9 + 0.1 * torch.rand(16, length, 64, generator=g), torch.rand(16, length, 64, generator=g))
    a[:, ::97] = 0  # resets
    a.requires_grad_()
    b = torch.randn(16, length, 64, dtype=torch.cfloat, generator=g, requires_grad=True)
    x0 = torch.zeros(16, 64, dtype=torch.cfloat)

    def run():
        scan.linear_scan(a, b, x0, 64, method).abs().sum().backward()
    return timed(run, repeats)


def core(name: str, length: int, repeats: int, method: str | None = None) -> float:
    torch.manual_seed(0)
    model = sequence.make(name, 256, width=256, **CORE_CONFIGS[name])
    x = torch.randn(16, length, 256, requires_grad=True)
    reset = torch.zeros(16, length, dtype=torch.bool)

    def run():
        y, _ = model(x, reset)
        y.square().mean().backward()
    if method is None:
        return timed(run, repeats)

    def patched(a, b, x0, chunk=scan.DEFAULT_CHUNK):
        return scan.linear_scan(a, b, x0, chunk, method)
    with mock.patch.object(s5, "linear_scan", patched):
        return timed(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="256,1024,4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"{'T':>5} {'scan log':>9} {'scan blk':>9} {'s5 log':>8} {'s5 blk':>8} {'gru':>8}  "
          "s5 blk vs log, gru / s5 blk")
    for length in (int(t) for t in args.lengths.split(",")):
        row = dict(T=length, scan_log=scan_alone(length, "log", args.repeats),
                   scan_blocked=scan_alone(length, "blocked", args.repeats),
                   s5_log=core("s5", length, args.repeats, "log"),
                   s5_blocked=core("s5", length, args.repeats, "blocked"), gru=core("gru", length, args.repeats))
        rows.append(row)
        print(f"{length:5d} {row['scan_log']:9.3f} {row['scan_blocked']:9.3f} {row['s5_log']:8.3f} "
              f"{row['s5_blocked']:8.3f} {row['gru']:8.3f}  {row['s5_log'] / row['s5_blocked']:.2f}x, "
              f"{row['gru'] / row['s5_blocked']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                       "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
