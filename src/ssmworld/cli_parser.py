"""The `ssmworld` command line's arguments (cli.py runs the commands). Built without importing torch, so that
`ssmworld --help` and argument errors are instant."""

from __future__ import annotations

import argparse
from typing import Any

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


def _preset_names() -> list[str]:
    """The presets' names, read without importing torch (config.preset_names does the same via the config module)."""
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files("ssmworld.presets").iterdir() if p.name.endswith(".yaml"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssmworld", description="State-space-model world models for RL.")
    parser.add_argument("--version", action="version", version=f"ssmworld {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_bench, _add_train, _add_sweep, _add_run_tools, _add_listing):
        add(commands)
    return parser


PRECISIONS = ("float32", "bfloat16")


def _add_bench(commands: Any) -> None:
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
    cores.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N")
    cores.add_argument("--precision", choices=PRECISIONS, default="float32", help="float32 (default) | bfloat16: "
                       "the forward pass under torch.autocast, as agent.precision")

    wm = bench_what.add_parser("world-model", help="one world-model update, s5 vs gru, over sequence lengths")
    wm.add_argument("--quick", action="store_true", help="small sizes, about a minute (a smoke run, not results)")
    wm.add_argument("--json", metavar="PATH", help="write the results as JSON")
    wm.add_argument("--threads", type=int, default=1, help="torch threads per measurement (default 1)")
    wm.add_argument("--cores", help="comma-separated cores (default: s5,gru)")
    wm.add_argument("--lengths", type=_int_list, help="comma-separated sequence lengths (default 256,1024)")
    wm.add_argument("--batch", type=int, help="batch size (default 4, R2I's 4 x 1024)")
    wm.add_argument("--width", type=int, help="width of the core and the world model (default 256)")
    wm.add_argument("--repeats", type=int, help="timed repeats after one warm-up (default 5)")
    wm.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N")
    wm.add_argument("--precision", choices=PRECISIONS, default="float32", help="float32 (default) | bfloat16: "
                    "forward passes under torch.autocast, as agent.precision")
    wm.add_argument("--imagination", choices=["posterior", "context"], help="imagination starts: posterior states "
                    "(R2I, default) or re-run context windows (Drama; needed for attention)")
    wm.add_argument("--context", type=int, help="real steps before each start with --imagination context (default 8)")
    wm.add_argument("--horizon", type=int, help="imagination steps (default 15)")
    wm.add_argument("--starts", type=int, help="imagination start states (default 256)")

    upd = bench_what.add_parser("update", help="one full agent update of a preset: seconds per part, GFLOP, "
                                "fraction of the sgemm rate")
    upd.add_argument("--preset", default="r2i", help="preset (default r2i)")
    upd.add_argument("--size", default="small", help="debug | small | paper (default small)")
    upd.add_argument("--env", default="dmc:cartpole_balance", help="env id (default dmc:cartpole_balance)")
    upd.add_argument("--repeats", type=int, default=5, help="timed updates after the warm-up (default 5)")
    upd.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    upd.add_argument("--json", metavar="PATH", help="write the report as JSON")
    upd.add_argument("overrides", nargs="*", metavar="key=value",
                     help="config overrides, e.g. agent.imagination.horizon=15")


CONFIG_HELP = ("a YAML file of config keys (nested or dotted; a run's config.yaml too), applied over the preset and "
               "under key=value overrides; its preset, size and train.env are used unless the flags are given")


def _add_train(commands: Any) -> None:
    train = commands.add_parser("train", help="train an agent (a new run, or --resume one)")
    train.add_argument("--preset", help=f"{' | '.join(_preset_names())} (default: the --config file's, else r2i; "
                       "`ssmworld list presets`)")
    train.add_argument("--size", help="debug | small | paper (default: the --config file's, else small: "
                       "CPU-practical)")
    train.add_argument("--env", help="suite:task, e.g. bsuite:memory_len/10 (see `ssmworld list envs`)")
    train.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    train.add_argument("--steps", type=int, help="env steps (default: the preset's)")
    train.add_argument("--seed", type=int, help="seed of everything in the run (default 0)")
    train.add_argument("--logdir", required=True, help="run directory: config.yaml, metrics.jsonl, checkpoints")
    train.add_argument("--resume", action="store_true", help="continue the run in --logdir from its last checkpoint")
    train.add_argument("--device", help="auto (default: cuda if available) | cpu | cuda | cuda:N")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.batch_size=32")


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser("sweep", help="train a grid of runs (preset x size x env x seed) as Ray tasks")
    sweep.add_argument("--preset", help="comma-separated presets (default: the --config file's, else r2i)")
    sweep.add_argument("--size", help="comma-separated sizes (default: the --config file's, else small)")
    sweep.add_argument("--env", required=True, help="env ids with bash-style braces, e.g. 'bsuite:memory_len/{0..22}'")
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per (preset, size, env): seed-start .. +N-1")
    sweep.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    sweep.add_argument("--steps", type=int, help="env steps of every run (default: the preset's)")
    sweep.add_argument("--config", metavar="FILE", help=CONFIG_HELP + "; every run reads it when it starts")
    sweep.add_argument("--root", required=True, help="sweep directory: <preset>-<size>/<env>/seed<k>, sweep.json")
    sweep.add_argument("--address", help="join this Ray cluster ('auto': the one `ray start` made here); default: "
                       "start a local one")
    sweep.add_argument("--cpus-per-run", type=int, default=1, help="Ray CPUs and torch threads of one run (default 1)")
    sweep.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray GPUs of one run, may be fractional "
                       "(default 0: runs see no GPU)")
    sweep.add_argument("--local-cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    sweep.add_argument("--retries", type=int, default=2, help="retries (with --resume) of a failed run (default 2)")
    sweep.add_argument("--quiet", action="store_true", help="print only the final JSON line")
    sweep.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")


def _add_run_tools(commands: Any) -> None:
    """Commands over finished or running runs: eval, plot, export, bsuite-score."""
    evaluate = commands.add_parser("eval", help="evaluate the latest checkpoint of a run; prints a JSON summary")
    evaluate.add_argument("--logdir", required=True)
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--seed", type=int, default=12345)
    evaluate.add_argument("--explore", action="store_true", help="sample actions instead of the greedy policy")
    evaluate.add_argument("--device", default="cpu", help="cpu (default) | auto | cuda | cuda:N")
    evaluate.add_argument("--video", metavar="PATH", help="also record one episode (.mp4 or .gif): real frames beside "
                          "the world model's open-loop imagination (image envs)")
    evaluate.add_argument("--context", type=int, default=5, help="real steps the model sees before imagining (video)")

    plot = commands.add_parser("plot", help="learning curves (mean, 95%% bootstrap CI over seeds) and aggregates")
    plot.add_argument("runs", nargs="+", help="run directories, or directories holding them such as a sweep root "
                      "(seeds of one env+preset are grouped)")
    plot.add_argument("--out", required=True, help="figure path (.png, .pdf, .svg)")
    plot.add_argument("--metric", default="episode/return", help="e.g. episode/success, eval/return_mean")
    plot.add_argument("--x", default="step", help="x axis: step or perf/seconds")
    plot.add_argument("--json", metavar="PATH", help="also write the plotted numbers as JSON")
    plot.add_argument("--group-by", metavar="KEY", help="also split the runs by this config key, e.g. train.sampler")

    export = commands.add_parser("export", help="write a run's latest checkpoint as safetensors + config + model card")
    export.add_argument("--logdir", required=True)
    export.add_argument("--out", required=True, help="export directory (replaced if it exists)")

    score = commands.add_parser("bsuite-score", help="bsuite's own scores of runs on bsuite: envs (its analysis "
                                "code, from CSV logs in its format)")
    score.add_argument("runs", nargs="+", help="run directories of `ssmworld train` on bsuite: envs")
    score.add_argument("--results-dir", default="bsuite_results", help="where the bsuite CSV logs are written "
                       "(one folder per run; default bsuite_results)")
    score.add_argument("--json", metavar="PATH", help="also write the scores as JSON")


def _add_listing(commands: Any) -> None:
    """What is available (list) and what a configuration resolves to (config)."""
    listing = commands.add_parser("list", help="list available components")
    listing.add_argument("what", choices=["cores", "envs", "presets", "keys"])
    listing.add_argument("suite", nargs="?", help="with `envs`: list the tasks of this suite")
    for name, text in (("--preset", "with `keys`: the preset whose values are shown (default r2i)"),
                       ("--size", "with `keys`: the size (default small)"),
                       ("--env", "with `keys`: the env id, which selects the suite overlay")):
        listing.add_argument(name, help=text)

    config = commands.add_parser("config", help="print the resolved configuration of a run, each value with the "
                                 "layer that set it (preset, size, suite overlay, --config file, command line)")
    config.add_argument("--preset", help="preset (default: the --config file's, else r2i)")
    config.add_argument("--size", help="debug | small | paper (default: the --config file's, else small)")
    config.add_argument("--env", help="suite:task (selects the suite overlay)")
    config.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    config.add_argument("--logdir", help="print this run's config.yaml instead (sources are not recorded)")
    config.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for train")
