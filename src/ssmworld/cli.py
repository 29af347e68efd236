"""The `ssmworld` command line. The only module that parses command lines.

    ssmworld bench cores [--quick] [--json PATH] [--threads N] [--cores s5,mamba] [--lengths 64,256]
    ssmworld list cores
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssmworld", description="State-space-model world models for RL.")
    parser.add_argument("--version", action="version", version=f"ssmworld {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="throughput and memory benchmarks")
    bench_what = bench.add_subparsers(dest="what", required=True)
    cores = bench_what.add_parser("cores", help="forward+backward time and peak memory of every sequence core")
    cores.add_argument("--quick", action="store_true", help="small sizes, about a minute (a smoke run, not results)")
    cores.add_argument("--json", metavar="PATH", help="write the results as JSON")
    cores.add_argument("--threads", type=int, default=1, help="torch threads per measurement (default 1: stable on"
                       " shared machines)")
    cores.add_argument("--cores", help="comma-separated subset of cores (default: all)")
    cores.add_argument("--lengths", type=_int_list, help="comma-separated sequence lengths")
    cores.add_argument("--batch", type=int, help="batch size (default 16)")
    cores.add_argument("--repeats", type=int, help="timed repeats after one warm-up (default 5)")

    listing = commands.add_parser("list", help="list available components")
    listing.add_argument("what", choices=["cores"])
    return parser


def _fail(message: str) -> int:
    print(f"ssmworld: error: {message}", file=sys.stderr)
    return 2


def _bench_cores(args: argparse.Namespace) -> int:
    from .bench import CORE_CONFIGS, BenchSettings, bench_cores

    settings = BenchSettings(threads=args.threads)
    if args.quick:
        settings = BenchSettings(threads=args.threads, lengths=[64, 256], batch=4, width=128, step_length=256)
    if args.cores:
        names = [c.strip() for c in args.cores.split(",") if c.strip()]
        unknown = [c for c in names if c not in CORE_CONFIGS]
        if unknown:
            return _fail(f"unknown core(s) {unknown}; available: {', '.join(CORE_CONFIGS)}")
        settings.cores = names
    if args.lengths:
        settings.lengths = args.lengths
        below = [t for t in args.lengths if t <= settings.step_length]
        settings.step_length = max(below) if below else min(args.lengths)
    for name in ("batch", "repeats"):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                return _fail(f"--{name} must be positive, got {value}")
            setattr(settings, name, value)
    if settings.threads <= 0:
        return _fail(f"--threads must be positive, got {settings.threads}")
    bench_cores(settings, json_path=args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .runtime import tune_cpu_allocator

    args = _parser().parse_args(argv)
    tune_cpu_allocator()
    if args.command == "bench" and args.what == "cores":
        return _bench_cores(args)
    if args.command == "list" and args.what == "cores":
        from .sequence import CORES

        print("\n".join(sorted(CORES)))
        return 0
    return _fail(f"unhandled command {args.command!r}")  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
