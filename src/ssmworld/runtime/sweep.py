"""`ssmworld sweep`: a grid of training runs (preset x size x env x seed), each run a Ray task.

Every run is ``python -m ssmworld train ... --quiet`` in a subprocess of a Ray worker, in its own run directory
``<root>/<preset>-<size>/<env, ':' and '/' -> '_'>/seed<k>``. What a (re-)launch does with a run is read from its
directory: ``summary.json`` (written last by a run that ended normally) -> skipped; ``config.yaml`` and a checkpoint ->
``train --resume``; anything else (nothing, or killed before its first checkpoint) -> cleared and started afresh. A
failed attempt (exit code other than 0 and 2, a signal, a lost Ray worker or node) is retried that way up to
``retries`` times; exit code 2 (bad input) is final. ``<root>/sweep.json`` holds every run's status and is rewritten
atomically as runs change; ``<root>/.sweep/`` holds each run's stderr log (all attempts) and, while it trains, its
process id (``<run>.pid``, which the tests use to kill a run the way a preemption would).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError, import_optional
from .run_files import RUN_FILES, root_lock
from .sweep_grid import RunSpec, validate


# ---- one run (the body of a Ray task) --------------------------------------------------------------------------------
@dataclass
class SweepSettings:
    """Everything `ssmworld sweep` was given besides the grid."""

    root: str
    steps: int | None = None
    overrides: list[str] = field(default_factory=list)
    address: str | None = None  # an existing Ray cluster ("auto" or host:port); None: a local one
    cpus_per_run: int = 1  # Ray CPUs of one run, and its torch and OpenMP threads
    gpus_per_run: float = 0.0
    local_cpus: int | None = None  # CPUs of the local cluster (default: all)
    retries: int = 2
    quiet: bool = False
    config: str | None = None  # --config: a file of config keys (absolute path) that every new run reads


def side_file(root: str, run: RunSpec, suffix: str) -> str:
    """``<root>/.sweep/<run name><suffix>``: the sweep's own files of a run, kept out of the run directory (a fresh
    `ssmworld train` needs an empty one)."""
    return os.path.join(root, ".sweep", run.name + suffix)


def latest_checkpoint_step(logdir: str) -> int | None:
    """Env step of the newest finished checkpoint in ``logdir``, None if there is none."""
    from .checkpoint import list_checkpoints, step_of

    found = list_checkpoints(os.path.join(logdir, "checkpoints"))
    return step_of(found[-1]) if found else None


def run_state(logdir: str) -> str:
    """"finished" (summary.json of a run that reached its steps or was solved), "resume" (config.yaml and a
    checkpoint: also a session that train.minutes ended early) or "fresh" (anything else)."""
    if os.path.exists(os.path.join(logdir, "summary.json")) and not _stopped_early(logdir):
        return "finished"
    if os.path.exists(os.path.join(logdir, "config.yaml")) and latest_checkpoint_step(logdir) is not None:
        return "resume"
    return "fresh"


def _stopped_early(logdir: str) -> bool:
    """Whether a run's summary.json is a session's end before the run's steps (train.minutes), not solved."""
    import yaml

    try:
        with open(os.path.join(logdir, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(logdir, "config.yaml")) as f:
            steps = (yaml.safe_load(f) or {}).get("train", {}).get("steps")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):  # unreadable: leave the run as it is
        return False
    return isinstance(steps, int) and summary.get("steps", steps) < steps and not summary.get("solved")


def clear_run_dir(logdir: str) -> None:
    """Delete what an unfinished, checkpoint-less `ssmworld train` left in ``logdir``; ValueError (not retried) if it
    holds anything else, so a wrong --root never deletes foreign files."""
    if not os.path.isdir(logdir):
        return
    foreign = sorted(name for name in os.listdir(logdir) if not RUN_FILES.fullmatch(name))
    if foreign:
        raise UserError(f"{logdir} holds files `ssmworld train` does not write ({', '.join(foreign[:3])}); "
                         "not clearing it")
    shutil.rmtree(logdir)


def train_command(run: RunSpec, settings: SweepSettings, resume: bool) -> list[str]:
    """The `ssmworld train` command line of one attempt. The worker's own interpreter: it imported this module, so
    it can import ssmworld (on a cluster node the driver's path may not exist)."""
    command = [sys.executable, "-m", "ssmworld", "train", "--logdir", run.logdir, "--quiet",
               "--threads", str(settings.cpus_per_run)]
    if resume:  # the run's own config.yaml, its steps included (docs/DISTRIBUTED.md)
        return command + ["--resume"]
    if settings.steps is not None:
        command += ["--steps", str(settings.steps)]
    if settings.config:
        command += ["--config", settings.config]
    return command + ["--preset", run.preset, "--size", run.size, "--env", run.env, "--seed", str(run.seed),
                      *settings.overrides]


def _die_with_parent() -> Callable[[], Any] | None:
    """A preexec_fn (Linux) asking the kernel to SIGKILL the trainer when the Ray worker that started it dies, so a
    crashed or force-cancelled task leaves no trainer writing into the directory its retry will use."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork: the child only makes the call
    return lambda: prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _last_line(path: str, offset: int) -> str:
    """The last non-empty line an attempt wrote to its stderr log (from ``offset`` on)."""
    with open(path, errors="replace") as f:
        f.seek(offset)
        lines = deque((line.strip() for line in f if line.strip()), maxlen=1)
    return lines[0] if lines else ""


STOP_SECONDS = 120  # how long a cancelled run may take to checkpoint and exit after SIGTERM


def execute_run(run: RunSpec, settings: SweepSettings) -> dict[str, Any]:
    """One attempt at one run, in a Ray worker: resume, or start afresh, `ssmworld train` in a subprocess and wait.
    Returns {"returncode", "seconds", "resumed_from" (checkpoint step or None), "stderr" (its last line)}."""
    started = time.monotonic()
    resume = run_state(run.logdir) == "resume"
    resumed_from = latest_checkpoint_step(run.logdir) if resume else None
    if not resume:
        try:
            clear_run_dir(run.logdir)
        except ValueError as err:
            return {"returncode": 2, "seconds": 0.0, "resumed_from": None, "stderr": str(err)}
    command = train_command(run, settings, resume)
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.cpus_per_run))
    if not settings.gpus_per_run:  # a run that asked Ray for no GPU must not take one (device auto would)
        env["CUDA_VISIBLE_DEVICES"] = ""
    log_path, pid_path = side_file(settings.root, run, ".stderr"), side_file(settings.root, run, ".pid")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'start'}: "
                  f"{' '.join(command[1:])}\n")
        log.flush()
        offset = log.tell()
        # A new session: a Ctrl-C in the driver's terminal reaches only the driver, which cancels the tasks.
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent())
        try:
            with open(pid_path + ".tmp", "w") as f:
                f.write(str(proc.pid))
            os.replace(pid_path + ".tmp", pid_path)
            returncode = proc.wait()
        finally:  # also on a Ray cancellation (a KeyboardInterrupt in this worker): SIGTERM, so that the trainer
            if proc.poll() is None:  # finishes its step and writes a checkpoint; SIGKILL if it takes too long
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if os.path.exists(pid_path):
                os.remove(pid_path)
    return {"returncode": returncode, "seconds": round(time.monotonic() - started, 1), "resumed_from": resumed_from,
            "stderr": _last_line(log_path, offset)}


# ---- the driver -----------------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """The driver's view of one run; a row of sweep.json."""

    logdir: str
    status: str = "pending"  # pending | running | done | failed | skipped | interrupted
    attempts: int = 0
    seconds: float = 0.0  # wall time of all attempts of this launch
    returncode: int | None = None
    resumed_from: int | None = None  # checkpoint step the last attempt resumed from
    stderr: str = ""  # last stderr line of the last attempt


def counts(records: dict[RunSpec, RunRecord]) -> dict[str, int]:
    """Number of runs per status (every status, zeros included)."""
    statuses = ("done", "running", "pending", "failed", "skipped", "interrupted")
    return {s: sum(r.status == s for r in records.values()) for s in statuses}


def write_report(root: str, records: dict[RunSpec, RunRecord], summary: dict[str, Any]) -> None:
    """``<root>/sweep.json``: {"summary": ..., "runs": {run name: record}}, written atomically."""
    path = os.path.join(root, "sweep.json")
    report = {"summary": summary, "runs": {run.name: asdict(rec) for run, rec in records.items()}}
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)


def summarize(records: dict[RunSpec, RunRecord], seconds: float) -> dict[str, Any]:
    """The final line: counts, wall seconds of this launch (validation and Ray start included) and the runs it
    trained to the end per hour."""
    by_status = counts(records)
    return {"runs": len(records), **by_status, "seconds": round(seconds, 1),
            "runs_per_hour": round(3600 * by_status["done"] / seconds, 2) if seconds > 0 else 0.0}


class Display:
    """Progress on stderr: a live line on a terminal, otherwise one line per finished attempt; nothing when quiet."""

    def __init__(self, quiet: bool, started: float):
        from rich.console import Console

        self.console, self.quiet, self.started, self.live = Console(stderr=True), quiet, started, None
        if not quiet and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=2, transient=False)
            self.live.start()

    def line(self, records: dict[RunSpec, RunRecord]) -> str:
        c, elapsed = counts(records), int(time.monotonic() - self.started)
        return (f"sweep: {c['done']} done | {c['running']} running | {c['pending']} pending | {c['failed']} failed | "
                f"{c['skipped']} skipped | {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}")

    def update(self, records: dict[RunSpec, RunRecord], event: str | None = None) -> None:
        if self.quiet:
            return
        if event:
            self.console.print(event, highlight=False, soft_wrap=True)
        if self.live is not None:
            self.live.update(self.line(records))
        elif event:
            self.console.print(self.line(records), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _import_ray() -> Any:
    """The ray module; ValueError (exit code 2) when the optional extra is not installed."""
    return import_optional("ray", "distributed", "ray is not installed")


def _start_ray(ray: Any, settings: SweepSettings) -> None:
    """Connect to the cluster at ``settings.address``, or start a local one."""
    import logging

    quiet = {"log_to_driver": False, "logging_level": logging.ERROR if settings.quiet else logging.WARNING}
    if settings.address:
        ray.init(address=settings.address, **quiet)
    else:  # "local": a new instance even when `ray start` left one (or a stale address file) on this machine;
        # runs pass only small dicts through Ray, so a small object store spares the machine's memory
        ray.init(address="local", num_cpus=settings.local_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=100 * 2**20, **quiet)


def _room(ray: Any, settings: SweepSettings) -> int:
    """How many runs the cluster's CPUs and GPUs fit at once."""
    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 0) / settings.cpus_per_run + 1e-9)  # 1.0 // 0.1 is 9.0 in floating point
    if settings.gpus_per_run > 0:
        fits = min(fits, int(resources.get("GPU", 0) / settings.gpus_per_run + 1e-9))
    return fits


def _finish(record: RunRecord, outcome: dict[str, Any], retries: int) -> str:
    """Fold one attempt's outcome into ``record``; returns "done", "retry" or "failed"."""
    record.seconds = round(record.seconds + outcome["seconds"], 1)
    record.returncode, record.resumed_from = outcome["returncode"], outcome["resumed_from"]
    record.stderr = outcome["stderr"]
    if record.returncode == 0:
        return "done"
    return "retry" if record.returncode != 2 and record.attempts <= retries else "failed"


def _event(run: RunSpec, record: RunRecord, verdict: str, retries: int) -> str:
    """One console line about a finished attempt."""
    if verdict == "done":
        return f"done: {run.name} ({record.seconds:.0f} s, {record.attempts} attempt(s))"
    code = record.returncode
    why = "Ray lost it" if code is None else f"exit code {code}" if code >= 0 else f"signal {-code}"
    action = f"retrying (attempt {record.attempts + 1} of {retries + 1})" if verdict == "retry" else "failed"
    return f"{action}: {run.name}: {why}" + (f": {record.stderr}" if record.stderr else "")


def _outcome(ray: Any, ref: Any) -> dict[str, Any]:
    """The result of a finished task; a lost worker or node, a cancellation or an error in the task as a failed
    attempt without a return code."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        return {"returncode": None, "seconds": 0.0, "resumed_from": None,
                "stderr": f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"}


def _drive(ray: Any, records: dict[RunSpec, RunRecord], pending: deque[RunSpec], settings: SweepSettings,
           started: float) -> None:
    """Submit runs as the cluster has room, wait for them, resubmit failed ones, until none is pending or running.
    On KeyboardInterrupt cancels the tasks in flight and marks their runs "interrupted"."""
    task = ray.remote(execute_run).options(num_cpus=settings.cpus_per_run, num_gpus=settings.gpus_per_run,
                                           max_retries=0)  # every retry is the driver's, so attempts are counted
    in_flight: dict[Any, RunSpec] = {}
    display, changed = Display(settings.quiet, started), True
    # Ctrl-C only sets a flag that the loop checks (at least once a second): a KeyboardInterrupt raised inside one of
    # Ray's callbacks can be swallowed there (seen as a flaky test), so the interrupt is handled here, in one place.
    interrupted = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        while pending or in_flight:
            if interrupted.is_set():
                raise KeyboardInterrupt
            room = max(_room(ray, settings), 1)  # at least 1: a cluster joined with --address may autoscale
            while pending and len(in_flight) < room:
                run = pending.popleft()
                records[run].status, records[run].attempts, changed = "running", records[run].attempts + 1, True
                in_flight[task.remote(run, settings)] = run
            if changed:
                write_report(settings.root, records, summarize(records, time.monotonic() - started))
            display.update(records)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            changed = bool(ready)
            for ref in ready:
                run = in_flight.pop(ref)
                verdict = _finish(records[run], _outcome(ray, ref), settings.retries)
                records[run].status = {"done": "done", "failed": "failed", "retry": "pending"}[verdict]
                if verdict == "retry":
                    pending.appendleft(run)
                display.update(records, _event(run, records[run], verdict, settings.retries))
    except KeyboardInterrupt:
        for ref, run in in_flight.items():
            ray.cancel(ref)
            records[run].status = "interrupted"
        if previous is not None:  # a second Ctrl-C stops the wait (and SIGKILLs the trainers with Ray)
            signal.signal(signal.SIGINT, previous)
            previous = None
        display.update(records, f"sweep: interrupted; {len(in_flight)} run(s) writing their checkpoints (up to "
                                f"{STOP_SECONDS} s; Ctrl-C again to stop at once)")
        ray.wait(list(in_flight), num_returns=len(in_flight), timeout=STOP_SECONDS + 10)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        display.close()


def sweep(runs: list[RunSpec], settings: SweepSettings) -> dict[str, Any]:
    """Train every run of the grid on Ray: validate them all first, skip finished runs (Ray is not even started when
    all are), retry failed ones, keep ``<root>/sweep.json`` current. Returns the summary (see ``summarize``). On
    KeyboardInterrupt records the runs in flight as "interrupted", prints the summary on stdout and re-raises."""
    started = time.monotonic()
    ray = _import_ray()
    validate(runs, settings.steps, settings.overrides, settings.config)
    records = {run: RunRecord(run.logdir, "skipped" if run_state(run.logdir) == "finished" else "pending")
               for run in runs}
    pending = deque(run for run in runs if records[run].status == "pending")
    if pending:
        _start_ray(ray, settings)
        try:
            if not settings.address and _room(ray, settings) == 0:  # its tasks would wait forever
                raise UserError(f"one run needs more than the local cluster has ({settings.cpus_per_run} CPUs, "
                                 f"{settings.gpus_per_run:g} GPUs per run); see --local-cpus and --gpus-per-run")
            os.makedirs(settings.root, exist_ok=True)
            with root_lock(settings.root):
                _drive(ray, records, pending, settings, started)
        except KeyboardInterrupt:
            summary = summarize(records, time.monotonic() - started)
            if os.path.isdir(settings.root):  # not yet when interrupted while Ray starts
                write_report(settings.root, records, summary)
            print(json.dumps(summary), flush=True)
            raise
        finally:
            ray.shutdown()
    summary = summarize(records, time.monotonic() - started)
    write_report(settings.root, records, summary)
    return summary


__all__ = ["RunRecord", "SweepSettings", "execute_run", "run_state", "summarize", "sweep", "train_command"]
