"""The answers a bsuite memory_len run gave at the query of its training episodes, by cue, from its replay.

    python benchmarks/query_answers.py RUN [RUN ...] [--blocks 10] [--json out.json]

memory_len shows a cue (+1 or -1, the observation's third entry at the first step) and pays +1 or -1 for the answer
at the last step. For each block of consecutive training episodes (replay order): the success rate and, per cue, the
share of answer 1. A policy that uses the memory answers differently per cue; one that committed to a single answer
gives the same share (0 or 1) for both, and its replay then holds no example of the other answer, from which the world
model could learn what it pays. Runs with one env (train.envs=1: one replay stream).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from ssmworld.errors import UserError
from ssmworld.runtime.config_file import load_yaml


def episodes(logdir: str) -> list[tuple[float, int, float]]:
    """(cue, answer, reward) of every complete episode in the run's replay, in order."""
    path = os.path.join(logdir, "config.yaml")
    if not os.path.exists(path):
        raise UserError(f"{path} not found: is {logdir} a run directory?")
    cfg = load_yaml(path)
    if not cfg.train.env.startswith("bsuite:memory_len") or cfg.train.envs != 1:
        raise UserError(f"{logdir}: needs a bsuite:memory_len run with train.envs=1, got {cfg.train.env} with "
                        f"{cfg.train.envs} envs")
    directory = os.path.join(logdir, "replay")
    if not os.path.isdir(directory):
        raise UserError(f"{directory} not found: the run has not written replay yet")
    names = sorted((n for n in os.listdir(directory) if n.endswith(".npz")), key=lambda n: int(n.split(".")[0]))
    chunks = [np.load(os.path.join(directory, n)) for n in names]
    obs, action, reward, first, last = (np.concatenate([c[k] for c in chunks]) for k in
                                        ("obs/vector", "action", "reward", "is_first", "is_last"))
    found = []
    for start in np.flatnonzero(first):
        ends = np.flatnonzero(last[start:])
        if not len(ends):
            break  # the episode in progress
        end = start + ends[0]
        # action[t] is taken after o_t: the answer is the action before the last observation
        found.append((float(obs[start, 2]), int(action[end - 1].argmax()), float(reward[end])))
    return found


def blocks(found: list[tuple[float, int, float]], count: int) -> list[dict[str, Any]]:
    """Per block of consecutive episodes: episodes, success, and per cue the number and share of answer 1."""
    rows, begin = [], 0
    for part in np.array_split(np.array(found), min(count, len(found))):
        row = {"episodes": [begin, begin + len(part)], "success": float((part[:, 2] > 0).mean())}
        begin += len(part)
        for cue in (-1.0, 1.0):
            answers = part[part[:, 0] == cue, 1]
            row[f"cue{cue:+.0f}"] = {"n": len(answers), "answer1": float(answers.mean()) if len(answers) else None}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report = {}
    for run in args.runs:
        found = episodes(run)
        report[run] = rows = blocks(found, args.blocks)
        print(f"{run}: {len(found)} episodes; per block: success | share of answer 1 for cue -1, cue +1")
        for row in rows:
            shares = [row[k]["answer1"] for k in ("cue-1", "cue+1")]
            text = " ".join("-" if s is None else f"{s:.2f}" for s in shares)
            print(f"  episodes {row['episodes'][0]:4d}-{row['episodes'][1]:4d}: {row['success']:.2f} | {text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # bad input: one line, exit 2
        print(f"query_answers: {e}", file=sys.stderr)
        sys.exit(2)
