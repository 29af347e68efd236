"""The long-memory figure: greedy success and env steps to solve vs memory length, beside R2I's published numbers.

    python benchmarks/memory_figure.py RUN_OR_SWEEP_DIR... --out docs/figures/memory_length.png \
        [--json benchmarks/learning/memory_length.json]

Reads `ssmworld train` run directories on `bsuite:memory_len/N` (memory length from bsuite's sweep settings) and
`builtin:recall/D` (memory length D). Runs are grouped by preset and setting (the training window T and
`train.context`); within a group, runs of one length are seeds. Per run: the env steps and wall seconds of its last
row, whether it stopped solved (summary.json, `train.stop_at`), and its last greedy evaluation's success. Left panel:
the mean last-evaluation success per group and length, with R2I's and DreamerV3's published BSuite success
(docs/REFERENCE.md r2i.md §6; their x is bsuite's memory_length + 1). Right panel: env steps per run, filled where the
run was solved, hollow where it stopped unsolved (at its last step). A markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from typing import Any

from ssmworld.errors import UserError
from ssmworld.tools.plots import Run, find_runs, load_run

# R2I paper, BSuite memory_len success (docs/REFERENCE.md r2i.md §6), keyed by bsuite memory_length (x - 1).
PUBLISHED = {
    "R2I (paper)": {17: 0.97, 20: 0.97, 25: 0.97, 30: 0.97, 40: 0.95, 50: 0.93, 60: 0.85, 70: 0.88, 80: 0.75,
                    90: 0.81, 100: 0.01},
    "DreamerV3 (R2I paper)": {17: 0.98, 20: 0.03, 25: 0.0, 30: 0.0, 40: 0.0, 50: 0.0, 60: 0.0, 70: 0.0, 80: 0.0,
                              90: 0.0, 100: 0.0},
}


def memory_length(env: str) -> int | None:
    """bsuite:memory_len/N -> its memory_length; builtin:recall/D (or recall_image/D) -> D; anything else None."""
    suite, _, task = env.partition(":")
    name, _, index = task.partition("/")
    if suite == "bsuite" and name == "memory_len" and index.isdigit():
        from bsuite.experiments.memory_len import sweep  # bsuite extra; only needed for bsuite runs

        return int(sweep.SETTINGS[int(index)]["memory_length"])
    if suite == "builtin" and name.startswith("recall") and index.isdigit():
        return int(index)
    return None


def run_point(run: Run) -> dict[str, Any]:
    """What one run shows: its length, setting, steps, seconds, solved, last greedy-evaluation success."""
    evals = [r for r in run.rows if "eval/success_rate" in r]
    summary = run.summary or {}  # a run still going is read from its rows
    timed = [r for r in run.rows if "perf/seconds" in r]
    seconds = summary.get("seconds", timed[-1]["perf/seconds"] if timed else 0.0)
    return {"path": run.path, "env": run.env, "preset": run.preset, "seed": run.seed,
            "memory_length": memory_length(run.env),
            "setting": f"T={run.setting('train.sequence_length')} {run.setting('train.context')}",
            "steps": int(summary.get("steps", run.rows[-1]["step"] if run.rows else 0)),
            "minutes": round(float(seconds) / 60, 1),
            "solved": run.solved, "eval_success": evals[-1]["eval/success_rate"] if evals else None}


def table(points: list[dict[str, Any]]) -> str:
    lines = ["| memory length | preset | setting | seed | env steps | minutes | solved | last greedy success |",
             "|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p["memory_length"], p["preset"], p["setting"], p["seed"])):
        success = "-" if p["eval_success"] is None else f"{p['eval_success']:.2f}"
        lines.append(f"| {p['memory_length']} | {p['preset']} | {p['setting']} | {p['seed']} | {p['steps']:,} | "
                     f"{p['minutes']} | {'yes' if p['solved'] else 'no'} | {success} |")
    return "\n".join(lines)


def draw(points: list[dict[str, Any]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        groups[(p["preset"], p["setting"])].append(p)
    settings = sorted({setting for _, setting in groups})  # one colour per setting, one marker per preset
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, published), style in zip(PUBLISHED.items(), ("k--", "k:")):
        left.plot(list(published), list(published.values()), style, label=name)
    for (preset, setting), members in sorted(groups.items()):
        colour, name = f"C{settings.index(setting)}", f"{preset} {setting}"
        marker, line = ("s", "--") if preset == "dreamerv3" else ("o", "-")
        by_length: dict[int, list[float]] = defaultdict(list)
        for p in members:
            if p["eval_success"] is not None:
                by_length[p["memory_length"]].append(p["eval_success"])
            right.scatter([p["memory_length"]], [p["steps"]], color=colour, marker=marker,
                          facecolors=colour if p["solved"] else "none")
        lengths = sorted(by_length)
        left.plot(lengths, [sum(by_length[n]) / len(by_length[n]) for n in lengths], marker + line, color=colour,
                  label=name)
        right.scatter([], [], color=colour, marker=marker, label=name)
    left.set(xlabel="memory length", ylabel="greedy success (last evaluation)", ylim=(-0.05, 1.05),
             title="success vs memory length")
    right.set(xlabel="memory length", ylabel="env steps", yscale="log",
              title="env steps to solve (hollow: stopped unsolved)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", required=True, help="figure path (.png, .pdf, .svg)")
    parser.add_argument("--json", help="also write the points as JSON")
    args = parser.parse_args(argv)
    try:
        points = [run_point(load_run(path)) for path in find_runs(args.runs)]
    except UserError as e:
        print(f"memory_figure: {e}", file=sys.stderr)
        return 2
    points = [p for p in points if p["memory_length"] is not None]
    if not points:
        print("memory_figure: no bsuite:memory_len or builtin:recall runs among the given directories",
              file=sys.stderr)
        return 2
    print(table(points))
    draw(points, args.out)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"published": PUBLISHED, "runs": points}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
