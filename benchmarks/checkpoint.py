"""Checkpoint cost of a large replay: size on disk, first save, incremental save, and load (resume) time.

    python benchmarks/checkpoint.py --obs vector --steps 1000000 [--json benchmarks/checkpoint_vector.json]
    python benchmarks/checkpoint.py --obs image --steps 1000000  [--json benchmarks/checkpoint_image.json]

Vector steps: a 16-dim float32 observation; image steps: 64x64x3 uint8; both with a 4-dim action, reward and flags, in
chunks of 1024 steps (one env stream). "Incremental" saves after 1% more steps: only the changed chunks are written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import tempfile
import time

import numpy as np

from ssmworld.dreamer.replay import ReplayBuffer


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obs", choices=["vector", "image"], default="vector")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--dir", help="where to write (default: a temporary directory, removed afterwards)")
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape, dtype = ((16,), np.float32) if args.obs == "vector" else ((64, 64, 3), np.uint8)
    template = (rng.integers(0, 255, (1024, *shape)).astype(dtype))
    buffer = ReplayBuffer(args.steps * 2, chunk_length=1024)
    start = time.perf_counter()
    for t in range(args.steps):
        buffer.add({"obs/x": template[t % 1024], "action": np.zeros(4, np.float32), "reward": np.float32(0),
                    "is_first": np.bool_(t % 500 == 0), "is_last": np.bool_(False), "is_terminal": np.bool_(False)})
    fill = time.perf_counter() - start
    root = args.dir or tempfile.mkdtemp(prefix="ssmworld-ckpt-")
    path = os.path.join(root, "replay")
    try:
        start = time.perf_counter()
        buffer.save(path)
        first = time.perf_counter() - start
        size = dir_size(path)
        for t in range(args.steps // 100):
            buffer.add({"obs/x": template[t % 1024], "action": np.zeros(4, np.float32), "reward": np.float32(0),
                        "is_first": np.bool_(False), "is_last": np.bool_(False), "is_terminal": np.bool_(False)})
        start = time.perf_counter()
        buffer.save(path)
        incremental = time.perf_counter() - start
        lengths = buffer.lengths()
        del buffer
        start = time.perf_counter()
        restored = ReplayBuffer(args.steps * 2, chunk_length=1024)
        restored.load(path, lengths)
        load = time.perf_counter() - start
        assert len(restored) == args.steps + args.steps // 100
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(), "obs": args.obs,
              "steps": args.steps, "size_gb": size / 1e9, "fill_s": fill, "first_save_s": first,
              "incremental_save_s": incremental, "load_s": load, "peak_rss_gb": peak_gb}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
