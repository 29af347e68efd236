"""The `ssmworld` command line. The only module that parses command lines.

    ssmworld train --preset r2i [--size small] --env bsuite:memory_len/10 [--steps N] --logdir runs/x [a.b=value ...]
    ssmworld train --config experiment.yaml [--seed 1] --logdir runs/y [a.b=value ...]
    ssmworld train --logdir runs/x --resume [--steps N]
    ssmworld eval --logdir runs/x [--episodes 20]
    ssmworld export --logdir runs/x --out DIR
    ssmworld sweep [--preset r2i,dreamerv3] [--size small] --env 'bsuite:memory_len/{0..22}' [--seeds 5] [--config F]
        --root runs/sweep [--steps N] [--address auto] [--cpus-per-run 1] [--gpus-per-run 0] [--retries 2] [a.b=v ...]
    ssmworld plot runs/a runs/b ... --out fig.png [--metric episode/return] [--x step]
    ssmworld bench cores [--quick] [--json PATH] [--threads N] [--cores s5,mamba] [--lengths 64,256]
    ssmworld bench world-model [--quick] [--json PATH] [--lengths 256,1024] [--batch 4] [--width 256]
                               [--cores mamba2,attention] [--imagination context] [--horizon 16] [--starts 1024]
    ssmworld bench update [--preset r2i] [--size small] [--env dmc:cartpole_balance] [--json PATH] [a.b=value ...]
    ssmworld list cores|envs|presets [suite]
    ssmworld list keys [--preset P] [--size S] [--env E]
    ssmworld bsuite-score runs/a runs/b ... [--results-dir DIR] [--json PATH]
    ssmworld config [--preset P] [--size S] [--env E] [--config FILE] [a.b=value ...] | --logdir runs/x
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import warnings
from typing import TYPE_CHECKING, Any

from .cli_bench import bench_cores_command, bench_update_command, bench_world_model_command
from .cli_parser import build_parser
from .errors import Interrupted, UserError, check_output_path, file_in_the_way

if TYPE_CHECKING:
    from .runtime.config import Config


def _fail(message: str) -> int:
    one_line = " ".join(message.split())  # a message that quotes a library's multi-line text stays one line
    print(f"ssmworld: error: {one_line}", file=sys.stderr)
    return 2


def _train(args: argparse.Namespace) -> int:
    import json

    from .runtime.distributed import setup
    from .runtime.run_files import clear_unstarted
    from .runtime.train import Trainer

    if args.threads is not None:
        if args.threads <= 0:
            return _fail(f"--threads must be positive, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    blocked = file_in_the_way(args.logdir)
    if blocked:
        return _fail(f"--logdir {args.logdir}: {blocked} is a file; give a directory (it is created if missing)")
    if args.resume:
        cfg = _resume_config(args)
        if isinstance(cfg, str):
            return _fail(cfg)
        group = setup(cfg.train.device)  # data-parallel ranks under torchrun; a single process otherwise
        fresh = not _has_checkpoint(args.logdir)
        if fresh and os.path.exists(os.path.join(args.logdir, "summary.json")):
            return _fail(f"--resume: {args.logdir} holds a finished run without checkpoints (deleted?): nothing to "
                         "continue from; start a new run in another --logdir")
        if fresh and group.main:  # stopped before its first checkpoint: start it again, from its own config
            print(f"ssmworld: {args.logdir} has no checkpoint yet: starting the run again from step 0", file=sys.stderr)
            clear_unstarted(args.logdir)
        group.barrier()
        trainer = Trainer(cfg, args.logdir, resume=not fresh, quiet=args.quiet, group=group)
    else:
        if os.path.isdir(args.logdir) and os.listdir(args.logdir):
            return _fail(f"logdir {args.logdir} is not empty; continue its run with `ssmworld train --logdir "
                         f"{args.logdir} --resume`, or choose another --logdir (or delete it: rm -r {args.logdir})")
        cfg = _new_config(args)
        if args.steps is not None:
            cfg.train.steps = args.steps
        if args.seed is not None:
            cfg.train.seed = args.seed
        if args.device:
            cfg.train.device = args.device
        group = setup(cfg.train.device)
        group.barrier()  # every rank has checked the logdir before rank 0 creates it
        trainer = Trainer(cfg, quiet=args.quiet, group=group)  # validates env, spaces, options before the logdir
        os.makedirs(args.logdir, exist_ok=True)
        trainer.logdir = args.logdir
    summary = trainer.run(handle_signals=True)
    if group.main:
        print(json.dumps(summary))
        if not args.quiet:
            print(f"ssmworld: run in {args.logdir} (metrics.jsonl, checkpoints). Next: ssmworld eval --logdir "
                  f"{args.logdir} | ssmworld plot {args.logdir} --out {os.path.join(args.logdir, 'curves.png')} | "
                  f"ssmworld export --logdir {args.logdir} --out exported/ | more steps: ssmworld train --logdir "
                  f"{args.logdir} --resume --steps N", file=sys.stderr)
    return 0


def _new_config(args: argparse.Namespace, sources: dict[str, str] | None = None) -> Config:
    """The config of a new run from the preset flags, --config (a file) and the key=value overrides."""
    if args.config:
        from .runtime.config_file import load_config_with_file

        return load_config_with_file(args.config, args.preset, args.size, args.env, args.overrides, sources)
    from .runtime.config import load_config

    return load_config(args.preset or "r2i", args.size or "small", args.env, args.overrides, sources)


# What --resume may change: how long this session runs (its minutes, the evaluation score that ends it) and how it
# checkpoints, never what the run learns.
RESUME_OVERRIDES = ("train.minutes", "train.stop_at", "train.checkpoint_minutes", "train.keep_checkpoints")


def _resume_config(args: argparse.Namespace) -> Config | str:
    """The config of the run in --logdir with the changes --resume allows, or the one-line error."""
    from .runtime.config import apply_overrides
    from .runtime.config_file import load_yaml

    path = os.path.join(args.logdir, "config.yaml")
    if not os.path.exists(path):
        return f"--resume: {path} not found; start a new run without --resume"
    given = [f"--{name}" for name in ("preset", "size", "env", "seed", "config") if getattr(args, name) is not None]
    given += [o for o in args.overrides if o.split("=", 1)[0] not in RESUME_OVERRIDES]
    if given:
        return (f"--resume keeps the run's config ({', '.join(given)} given); only --steps, --device, --threads and "
                f"{', '.join(k + '=' for k in RESUME_OVERRIDES)} may change")
    cfg = apply_overrides(load_yaml(path), args.overrides, origin="--resume")
    if args.steps is not None:
        cfg.train.steps = args.steps
    if args.device:  # a run may move between machines
        cfg.train.device = args.device
    return cfg


def _has_checkpoint(logdir: str) -> bool:
    from .runtime.checkpoint import list_checkpoints

    return bool(list_checkpoints(os.path.join(logdir, "checkpoints")))


def _sweep(args: argparse.Namespace) -> int:
    import json
    import os

    from .runtime.sweep import SweepSettings, sweep
    from .runtime.sweep_grid import make_grid

    for name, low in (("seeds", 1), ("seed_start", 0), ("cpus_per_run", 1), ("gpus_per_run", 0), ("retries", 0),
                      ("local_cpus", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            return _fail(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.address and args.local_cpus:
        return _fail("--local-cpus sizes a local cluster; with --address the cluster's own resources are used")
    blocked = file_in_the_way(args.root)
    if blocked:
        return _fail(f"--root {args.root}: {blocked} is a file; give a directory (it is created if missing)")
    root = os.path.abspath(args.root)  # Ray workers (maybe on other nodes of a shared filesystem) get absolute paths
    from .runtime.config_file import choose, read_config_file

    config = os.path.abspath(args.config) if args.config else None
    layer = read_config_file(config) if config else {}  # the file's preset and size where the flags are not given
    chosen, _ = choose(layer, {"preset": args.preset, "size": args.size}, f"--config {config}")
    presets, sizes = ([chosen[key]] if given is None else [v.strip() for v in given.split(",") if v.strip()]
                      for key, given in (("preset", args.preset), ("size", args.size)))  # the flags: comma lists
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    runs = make_grid(root, presets, sizes, args.env, seeds)
    settings = SweepSettings(root, args.steps, args.overrides, args.address, args.cpus_per_run, args.gpus_per_run,
                             args.local_cpus, args.retries, args.quiet, config)
    summary = sweep(runs, settings)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


def _eval(args: argparse.Namespace) -> int:
    import json

    from .runtime.episodes import evaluate, load_run

    if args.episodes <= 0:
        return _fail(f"--episodes must be positive, got {args.episodes}")
    if args.seed < 0:
        return _fail(f"--seed must be >= 0, got {args.seed}")
    if args.video:
        check_output_path(args.video, "--video", ("mp4", "gif"))
    cfg, agent, step = load_run(args.logdir, args.device)
    result = evaluate(agent, cfg.train.env, args.episodes, seed=args.seed, explore=args.explore,
                      env_options=cfg.train.env_options)
    if args.video:
        from .tools.video import record_episode

        result["video"] = dict(path=args.video, **record_episode(
            agent, cfg.train.env, args.video, seed=args.seed, context=args.context, explore=args.explore,
            env_options=cfg.train.env_options))
    # the keys of train's summary: env, steps, eval_<metric>
    print(json.dumps({"logdir": args.logdir, "env": cfg.train.env, "steps": step,
                      **{f"eval_{k}" if k != "video" else k: v for k, v in result.items()}}))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .tools.plots import check_figure_path, plot_runs

    check_figure_path(args.out)
    if args.json:
        check_output_path(args.json, "--json")
    result = plot_runs(args.runs, args.out, metric=args.metric, x=args.x, group_by=args.group_by)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        _write_json(args.json, result)
    for preset, entry in ((result["aggregates"] or {}).get("presets") or {}).items():  # normalised, 95% CIs
        print(f"{preset} over {len(entry['tasks'])} tasks: " + ", ".join(
            f"{name} {entry[key]['value']:.3f} [{entry[key]['low']:.3f}, {entry[key]['high']:.3f}]" for key, name in
            (("mean", "mean"), ("median", "median"), ("iqm", "IQM"), ("optimality_gap", "optimality gap"))))
    print(args.out)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .tools.export import export_run

    print(export_run(args.logdir, args.out))
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.what == "cores":
        import dataclasses

        from .runtime.config_docs import field_descriptions
        from .sequence import CORES, core_class

        for name in sorted(CORES):  # each core's options: sequence.make(name, input_dim, **options)
            cls = core_class(name).Config
            print(f"{name}:  (in a config: agent.world_model.{name}.<option>)")
            for f in dataclasses.fields(cls):
                print(f"  {f.name} = {f.default!r}  # {field_descriptions(cls).get(f.name, '')}")
    elif args.what == "presets":
        from .runtime.config import preset_names, read_preset

        for name in preset_names():
            print(f"{name:12s} {read_preset(name).get('description', '')}")
    elif args.what == "keys":
        from .runtime.config import load_config
        from .runtime.config_docs import config_rows

        cfg = load_config(args.preset or "r2i", args.size or "small", args.env)
        print(f"# keys of {cfg.preset}/{cfg.size} on {cfg.train.env}: key = value  # description")
        for key, value, _, description in config_rows(cfg):
            print(f"{key} = {value!r}  # {description}")
        print("# the other cores' options: agent.world_model.<core>.<option> (`ssmworld list cores`)")
    else:
        from .envs import SUITES, list_tasks

        for suite in [args.suite] if args.suite else sorted(SUITES):
            try:
                tasks = list_tasks(suite)
            except UserError as err:  # e.g. an optional extra is not installed
                if args.suite:
                    raise
                print(f"{suite}:  ({err})")
                continue
            if args.suite:  # one id per line: greppable
                print("\n".join(f"{suite}:{task}" for task in tasks))
                continue
            shown = tasks[:5] + ([f"... {len(tasks) - 5} more"] if len(tasks) > 5 else [])
            print(f"{suite}:  " + "  ".join(shown))
    return 0


def _bsuite_score(args: argparse.Namespace) -> int:
    from .tools.bsuite_score import bsuite_score

    if args.json:
        check_output_path(args.json, "--json")
    scores = bsuite_score(args.runs, args.results_dir)
    width = max(len(s["run"]) for s in scores)
    print(f"{'run':{width}}  {'bsuite_id':20s} episodes  score  finished  (bsuite's analysis; CSVs in "
          f"{args.results_dir})")
    for s in scores:  # finished: the run has bsuite's full number of episodes for the experiment
        score = "-" if s["score"] is None else f"{s['score']:.2f}"  # "-": no finished episode yet
        print(f"{s['run']:{width}}  {s['bsuite_id']:20s} {s['episodes']:8d}  {score:>5s}   {s['finished']}")
    if args.json:
        _write_json(args.json, scores)
    return 0


def _write_json(path: str, data: Any) -> None:
    """JSON to ``path`` (checked with check_output_path; missing directories created), atomically."""
    from .tools.bench_harness import write_json_atomic

    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomic(path, data)


def _config(args: argparse.Namespace) -> int:
    from .runtime.config_docs import config_rows
    from .runtime.config_file import load_yaml

    sources: dict[str, str] = {}
    if args.logdir:
        if args.preset or args.size or args.env or args.config or args.overrides:
            return _fail("--logdir prints a run's config; it takes no --preset, --size, --env, --config or overrides")
        path = os.path.join(args.logdir, "config.yaml")
        if not os.path.exists(path):
            return _fail(f"{path} not found: is {args.logdir} a run directory?")
        cfg = load_yaml(path)
        sources = {"": path}
    else:
        cfg = _new_config(args, sources)
    rows = config_rows(cfg, sources)
    width = max(len(f"{key} = {value!r}") for key, value, _, _ in rows)
    for key, value, source, _ in rows:
        print(f"{f'{key} = {value!r}':{width}}  # {source if source != 'default' or not args.logdir else path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .runtime.process import tune_cpu_allocator

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting key=value overrides at the first option after them: take the later ones too
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    tune_cpu_allocator()
    with warnings.catch_warnings():  # (restores the process's own showwarning: main() may run inside a test)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        return _run(args)


def _one_line_warnings(default: Any) -> Any:
    """ssmworld's own warnings as one line, like its errors (without the source line Python adds); others as usual."""
    def show(message, category, filename, lineno, file=None, line=None):
        if f"{os.sep}ssmworld{os.sep}" in filename:
            print(f"ssmworld: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def _run(args: argparse.Namespace) -> int:
    """The command, with bad input as one line and exit 2, and the other endings of a run (see the handlers)."""
    commands = {"train": _train, "sweep": _sweep, "eval": _eval, "export": _export, "plot": _plot, "list": _list,
                "config": _config, "bsuite-score": _bsuite_score}
    benches = {"cores": bench_cores_command, "world-model": bench_world_model_command, "update": bench_update_command}
    try:
        return benches[args.what](args) if args.command == "bench" else commands[args.command](args)
    except UserError as err:  # bad input: config, env id, spaces, files; anything else is a bug: a traceback
        return _fail(str(err))
    except Interrupted as err:  # SIGINT / SIGTERM during training: a checkpoint was written
        print(f"ssmworld: interrupted: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print("ssmworld: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `ssmworld list envs | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except FloatingPointError as err:  # a diverged run: not bad input, but one clear line too
        print(f"ssmworld: error: training diverged: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno == errno.ENOSPC:
            intact = ("; the last complete checkpoint is intact (checkpoints are written to a temporary name and "
                      "renamed)") if args.command == "train" else ""
            print(f"ssmworld: error: disk full while writing {err.filename or 'the output'}{intact}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
