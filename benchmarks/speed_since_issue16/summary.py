"""Medians over the rounds of commands.sh and each variant's speed-up against `before` (the issue's start; also
the summary of benchmarks/frozen_dynamics_2026-12-03, whose files are named the same way).

    python benchmarks/speed_since_issue16/summary.py speed_out [--json summary.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import statistics

PARTS = ("seconds", "world_model", "imagination", "actor_critic")


def load(folder: pathlib.Path) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(config, variant): {part: [seconds per round]}} from files named config_variant_round.json."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for path in sorted(folder.glob("*.json")):
        config, variant, _round = path.stem.rsplit("_", 2)
        report = json.loads(path.read_text())
        cell = cells[config, variant]
        cell["seconds"].append(report["seconds"])
        for part in PARTS[1:]:
            cell[part].append(report["parts"][part])
        cell["sgemm_fraction"].append(report["sgemm_fraction"])
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    medians = {key: {k: statistics.median(v) for k, v in cell.items()} | {"rounds": len(cell["seconds"])}
               for key, cell in load(args.folder).items()}
    print("| configuration | variant | rounds | update | world model | imagination | actor-critic | % of sgemm "
          "| update speed-up | imagination speed-up | actor-critic speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    order = {"before": 0, "eager": 1, "compiled": 2}
    for (config, variant), m in sorted(medians.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 3), kv[0][1])):
        base = medians.get((config, "before"))
        speed = (" | ".join(f"{base[p] / m[p]:.2f}x" for p in ("seconds", "imagination", "actor_critic"))
                 if base else "- | - | -")
        print(f"| {config} | {variant} | {m['rounds']} | " + " | ".join(f"{m[p]:.3f}" for p in PARTS)
              + f" | {100 * m['sgemm_fraction']:.0f}% | {speed} |")
    if args.json:
        args.json.write_text(json.dumps({f"{c}/{v}": m for (c, v), m in medians.items()}, indent=1))


if __name__ == "__main__":
    main()
