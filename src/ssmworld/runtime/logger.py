"""Run logging: ``metrics.jsonl`` (always), TensorBoard events (when tensorboard is installed) and the console.

Every metrics row is one JSON object: ``{"step": <env steps>, "<namespace>/<name>": value, ...}`` with namespaces
``episode/`` (return, length, success), ``train/`` (losses, means over the updates since the last row), ``eval/``,
``perf/`` (fps, updates per second), ``replay/`` and ``warmup/`` (after an actor-critic reset: the mean metrics of its
agent.actor_critic.reset_warmup updates and their number).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn


def _json_value(value: Any) -> Any:
    value = float(value) if not isinstance(value, (bool, int, str)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class Logger:
    """Writes metric rows to ``logdir/metrics.jsonl`` and TensorBoard, and shows a progress line.

    The progress line (a rich progress bar on a terminal, a plain line every ``print_every`` seconds otherwise) shows
    env steps, FPS, updates/s, ETA and the mean of the recent episode returns."""

    def __init__(self, logdir: str | None, total_steps: int, start_step: int = 0, console: Console | None = None,
                 tensorboard: bool = True, print_every: float = 30.0, quiet: bool = False, learning_starts: int = 0):
        self.logdir, self.total = logdir, total_steps
        # random-action prefill runs far faster than learning: no ETA until learning starts, then from its pace
        self.learning_starts = learning_starts
        self.console = console or Console(stderr=True)
        self.quiet, self.print_every = quiet, print_every
        self.returns: deque[float] = deque(maxlen=20)
        self.successes: deque[float] = deque(maxlen=20)
        self._file = open(os.path.join(logdir, "metrics.jsonl"), "a") if logdir else None
        self._tb = None
        if logdir and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                # a resumed session hides what a killed one logged past the checkpoint (as metrics.jsonl is cut;
                # TensorBoard purges steps >= purge_step, and the checkpoint's own step was logged before it)
                self._tb = SummaryWriter(os.path.join(logdir, "tensorboard"),
                                         purge_step=start_step + 1 if start_step else None)
        self._progress: Progress | None = None
        self._last_print = 0.0
        self.fps: float | None = None  # None until the first rate window has been measured
        self.updates_per_second = 0.0
        self.step = start_step
        self._rate_mark: tuple[float, int, int] | None = None  # (time, step, updates) at the start of a rate window
        if not quiet and self.console.is_terminal:
            self._progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), console=self.console, transient=False)
            self._task = self._progress.add_task("train", total=total_steps, completed=start_step, info="")
            self._progress.start()

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one row ``{"step": step, **metrics}``."""
        row = {"step": int(step), **{k: _json_value(v) for k, v in metrics.items()}}
        if self._file:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        if self._tb:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)
        if "episode/return" in metrics:
            self.returns.append(float(metrics["episode/return"]))
        if metrics.get("episode/success") is not None:
            self.successes.append(float(metrics["episode/success"]))

    def status(self) -> str:
        if self.step < self.learning_starts:
            parts = [f"collecting data before learning starts at step {self.learning_starts}"]
        elif self.fps is None:
            parts = ["measuring speed"]
        else:
            parts = [f"{self.fps:.0f} fps", f"{self.updates_per_second:.1f} upd/s"]
            if self.fps > 0:
                parts.append(f"ETA {_duration((self.total - self.step) / self.fps)}")
        if self.returns:
            parts.append(f"return {sum(self.returns) / len(self.returns):.3g}")
        if self.successes:
            parts.append(f"success {sum(self.successes) / len(self.successes):.2f}")
        return " | ".join(parts)

    def progress(self, step: int, updates: int = 0) -> None:
        """Advance the progress display to ``step`` env steps (``updates`` so far: for the update rate)."""
        self.step = step
        if self.quiet:
            return
        now = time.monotonic()
        if step < self.learning_starts:
            self._rate_mark = None  # rates are measured from the first learning step
        elif self._rate_mark is None or now - self._rate_mark[0] >= 5.0:  # current rates over windows of >= 5 s
            if self._rate_mark is not None:
                then, step0, updates0 = self._rate_mark
                self.fps, self.updates_per_second = (step - step0) / (now - then), (updates - updates0) / (now - then)
            self._rate_mark = (now, step, updates)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=self.status())
        elif time.monotonic() - self._last_print >= self.print_every:
            self._last_print = time.monotonic()
            self.console.print(f"step {step}/{self.total} | {self.status()}", highlight=False, soft_wrap=True)

    def print(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._file:
            self._file.close()
            self._file = None
        if self._tb:
            self._tb.close()
            self._tb = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def read_metrics(path: str) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file (a torn last line from a crash is skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
