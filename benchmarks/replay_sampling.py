"""Replay sampling against the buffer's size: milliseconds per batch of each sampler.

    python benchmarks/replay_sampling.py [--steps 100000,1000000,10000000] [--samplers uniform,recency,dfs]
                                         [--chunk 256] [--batch 16] [--length 64] [--repeats 9] [--json PATH]

The buffer holds ``steps`` steps of 4 env streams (a small vector observation, an action, reward and flags) in full
chunks, built directly (writing 10^7 steps through ``ReplayBuffer.add`` would take minutes); then ``repeats`` batches
of ``batch`` x ``length`` are drawn (median). "after a new chunk" is the first batch after a stream opens a chunk (the
sampler's view of the chunks is rebuilt then, about once per ``chunk`` / streams env steps). DFS draws are skipped
above ``--dfs-max`` steps (its probabilities cover every stored step: O(steps) per batch by definition).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ssmworld.dreamer.replay import Chunk, ReplayBuffer
from ssmworld.tools.bench_harness import report_meta, write_json_atomic

STREAMS = 4


def step(t: int) -> dict[str, np.ndarray]:
    return {"obs/vector": np.full(8, t, np.float32), "action": np.zeros(4, np.float32), "reward": np.float32(0),
            "is_first": np.bool_(t == 0), "is_last": np.bool_(False), "is_terminal": np.bool_(False)}


def filled(steps: int, chunk: int, sampler: str) -> ReplayBuffer:
    """A buffer of ``steps`` // chunk full chunks, written by STREAMS streams in turn."""
    buffer = ReplayBuffer(capacity=steps + chunk * STREAMS, chunk_length=chunk, sampler=sampler, seed=0)
    for stream in range(STREAMS):
        buffer.add(step(0), stream=stream)  # the stream's first chunk, through the public path
    template, prev = buffer.chunks[0], {}
    for stream in range(STREAMS):
        for t in range(1, chunk):
            buffer.add(step(t), stream=stream)
        prev[stream] = buffer.current[stream]
    for uid in range(STREAMS, steps // chunk):
        stream = uid % STREAMS
        data = {k: v.copy() for k, v in template.data.items()}
        full = Chunk(uid, stream, data, length=chunk, prev=prev[stream], visits=np.zeros(chunk, np.int64),
                     contexts=np.zeros(chunk, np.int64))
        buffer.chunks.append(full)
        buffer.current[stream] = prev[stream] = full
        buffer.steps += chunk
        buffer.next_uid = uid + 1
    return buffer


def measure(steps: int, sampler: str, args: argparse.Namespace) -> dict[str, float]:
    buffer = filled(steps, args.chunk, sampler)
    buffer.sample(args.batch, args.length)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        buffer.sample(args.batch, args.length)
        times.append(time.perf_counter() - start)
    for t in range(args.chunk):  # stream 0 fills its chunk; the next step opens a new one
        if buffer.current[0].length == args.chunk:
            break
        buffer.add(step(t), stream=0)
    buffer.add(step(0), stream=0)
    start = time.perf_counter()
    buffer.sample(args.batch, args.length)
    return dict(steps=steps, sampler=sampler, ms=1e3 * statistics.median(times),
                ms_after_new_chunk=1e3 * (time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100000,1000000,10000000")
    parser.add_argument("--samplers", default="uniform,recency,dfs")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dfs-max", type=int, default=1_000_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"{'steps':>10} {'sampler':>8} {'ms per batch':>13} {'after a new chunk':>18}")
    for steps in (int(s) for s in args.steps.split(",")):
        for sampler in args.samplers.split(","):
            if sampler == "dfs" and steps > args.dfs_max:
                continue
            row = measure(steps, sampler, args)
            rows.append(row)
            print(f"{steps:>10} {sampler:>8} {row['ms']:>13.2f} {row['ms_after_new_chunk']:>18.2f}")
    if args.json:
        write_json_atomic(args.json, dict(meta=report_meta("replay_sampling", command="python benchmarks/"
                                                           "replay_sampling.py " + " ".join(
                                                               f"--{k.replace('_', '-')} {v}" for k, v in
                                                               vars(args).items() if k != "json")),
                                          rows=rows))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
