"""`ssmworld bench cores | world-model | update`: the benchmark subcommands of the command line (cli.py); bad input
raises UserError (one line, exit 2)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import UserError


def failed_measurements(report: dict[str, Any]) -> int:
    """Exit code of a bench command: 1 if a measurement's worker failed (a bug: its last error line is in the table
    and the JSON), else 0. Rows skipped for the time budget are not failures."""
    failed = [r for r in report["results"] if "error" in r and not r["error"].startswith("skipped")]
    if failed:
        print(f"ssmworld: error: {len(failed)} measurement(s) failed, e.g. {failed[0].get('core')} at "
              f"T={failed[0].get('length')}: {failed[0]['error']}", file=sys.stderr)
    return 1 if failed else 0


def _apply_positive(args: argparse.Namespace, settings: object, names: tuple[str, ...]) -> str | None:
    """Copy the given integer options onto the bench settings; an error message if one (or threads) is not > 0."""
    for name in names:
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                return f"--{name} must be positive, got {value}"
            setattr(settings, name, value)
    threads = getattr(settings, "threads")
    return None if threads > 0 else f"--threads must be positive, got {threads}"


def bench_cores_command(args: argparse.Namespace) -> int:
    from .tools.bench_cores import CORE_CONFIGS, BenchSettings, bench_cores

    settings = BenchSettings(threads=args.threads, device=args.device, precision=args.precision)
    if args.quick:
        settings = BenchSettings(threads=args.threads, device=args.device, precision=args.precision, lengths=[64, 256],
                                 batch=4, width=128, step_length=256)
    if args.cores:
        names = [c.strip() for c in args.cores.split(",") if c.strip()]
        unknown = [c for c in names if c not in CORE_CONFIGS]
        if unknown:
            raise UserError(f"unknown core(s) {unknown}; available: {', '.join(CORE_CONFIGS)}")
        settings.cores = names
    if args.lengths:
        settings.lengths = args.lengths
        below = [t for t in args.lengths if t <= settings.step_length]
        settings.step_length = max(below) if below else min(args.lengths)
    error = _apply_positive(args, settings, ("batch", "repeats"))
    if error:
        raise UserError(error)
    return failed_measurements(bench_cores(settings, json_path=args.json))


def bench_world_model_command(args: argparse.Namespace) -> int:
    from .tools.bench_world_model import WorldModelBenchSettings, bench_world_model

    settings = WorldModelBenchSettings.quick() if args.quick else WorldModelBenchSettings()
    settings.threads, settings.device, settings.precision = args.threads, args.device, args.precision
    if args.cores:
        settings.cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    if args.lengths:
        settings.lengths = args.lengths
    if args.imagination:
        settings.imagination = args.imagination
    if args.starts is not None:
        if args.starts <= 0:
            raise UserError(f"--starts must be positive, got {args.starts}")
        settings.imagine_starts = args.starts
    error = _apply_positive(args, settings, ("batch", "width", "repeats", "context", "horizon"))
    if error:
        raise UserError(error)
    return failed_measurements(bench_world_model(settings, json_path=args.json))


def bench_update_command(args: argparse.Namespace) -> int:
    from .tools.bench_update import bench_update

    if args.repeats <= 0 or args.threads <= 0:
        raise UserError("--repeats and --threads must be positive")
    bench_update(args.preset, args.size, args.env, args.overrides, args.repeats, threads=args.threads,
                 json_path=args.json)
    return 0
