"""The train loop's schedules: when to update, write a train/ row, evaluate and checkpoint.

Each object makes one decision, so that ``Trainer._loop`` reads top to bottom. Step-based schedules are exact and
survive a checkpoint as plain numbers (``state()`` / ``load()``: a resumed run writes the same rows at the same steps
as an uninterrupted one); wall-clock ones are per session.
"""

from __future__ import annotations

import time
from typing import Any


def learning_starts(prefill: int, sequence_length: int, batch_size: int, envs: int, ranks: int, sampler: str) -> int:
    """The env step (summed over envs and ranks) from which updates run: after ``prefill``, and once every replay
    stream (one per env on each rank) holds a sequence; the dfs sampler draws a batch of distinct sequences, so then
    each rank's ``envs`` streams must hold ``batch_size`` of them."""
    per_stream = sequence_length + (-(-batch_size // envs) - 1 if sampler == "dfs" else 0)
    return max(prefill, per_stream * envs * ranks)


class TrainRatio:
    """Updates at the train ratio: every loop iteration earns ``per_iteration`` = envs x train_ratio / (B x T) update
    credits (once learning has started); each whole credit is one update. 0.25 -> one update every 4th iteration."""

    def __init__(self, per_iteration: float, credit: float = 0.0):
        self.per_iteration, self.credit = per_iteration, credit

    def updates(self) -> int:
        """The number of updates this iteration runs."""
        self.credit += self.per_iteration
        n = 0
        while self.credit >= 1 - 1e-9:  # 10 x 0.1 sums to 0.999...: rounding must not delay an update
            self.credit -= 1
            n += 1
        return n


class EveryN:
    """Fires when a counter (env steps) passes a multiple of ``n``; never when n <= 0."""

    def __init__(self, n: int):
        self.n = n

    def crossed(self, before: int, now: int) -> bool:
        return self.n > 0 and before // self.n != now // self.n


class Evaluations:
    """Greedy evaluations every ``every`` env steps (0: none before the final one), at the first step at or past each
    multiple; the run's last step is left to the final evaluation."""

    def __init__(self, every: int, end: int):
        self.every, self.end = every, end
        self.next: int | None = every or None

    def due(self, step: int) -> bool:
        if self.next is None or step < self.next or step >= self.end:
            return False
        self.skip_to(step)
        return True

    def skip_to(self, step: int) -> None:
        """The next evaluation after ``step`` (an iteration may pass several multiples; the final evaluation at the
        run's end counts for the multiples up to it, so a run given more steps does not repeat it)."""
        while self.next is not None and self.next <= step:
            self.next += self.every


class WallClock:
    """Wall-clock time since the last ``restart`` (or creation), compared with a number of minutes."""

    def __init__(self, minutes: float):
        self.seconds = 60.0 * minutes
        self.restart()

    def restart(self) -> None:
        self.start = time.monotonic()

    def passed(self) -> bool:
        """At least ``minutes`` have passed (0 minutes: always)."""
        return time.monotonic() - self.start >= self.seconds


class MetricWindow:
    """The train metrics of the updates since the last train/ row (summed; part of a checkpoint) and the speed of
    the current row's window (per session)."""

    def __init__(self, step: int = 0, updates: int = 0):
        self.sums: dict[str, float] = {}
        self.count, self.step = 0, step
        self.restart(step, updates)

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def restart(self, step: int, updates: int) -> None:
        """A new speed window from ``step`` (after a train/ row, or when a session starts)."""
        self.started, self.start_step, self.start_updates, self.env_seconds = time.perf_counter(), step, updates, 0.0

    def row(self, step: int, updates: int, new_window: bool = True) -> dict[str, Any]:
        """The train/ and perf/ values of this window; then (``new_window``) a new window starts at ``step``."""
        seconds = time.perf_counter() - self.started
        row: dict[str, Any] = {f"train/{k}": v / self.count for k, v in self.sums.items()} if self.count else {}
        row.update({"perf/fps": (step - self.start_step) / seconds,
                    "perf/updates_per_second": (updates - self.start_updates) / seconds,
                    "perf/acting_fraction": self.env_seconds / seconds})  # acting + env + replay writes
        if new_window:
            self.sums, self.count, self.step = {}, 0, step
            self.restart(step, updates)
        return row

    def state(self) -> dict[str, Any]:
        return {"window_sums": self.sums, "window_count": self.count, "window_step": self.step}

    def load(self, state: dict[str, Any]) -> None:
        self.sums, self.count, self.step = state["window_sums"], state["window_count"], state["window_step"]
