"""The run logger: metric rows on disk and the console progress line with current rates."""

import io

import pytest

from rich.console import Console

from ssmworld.runtime.logger import Logger, read_metrics
from ssmworld.runtime import logger as logger_module


def test_rows_go_to_metrics_jsonl_and_non_finite_values_become_null(tmp_path):
    log = Logger(str(tmp_path), 100, tensorboard=False, quiet=True)
    log.write(10, {"episode/return": 1.5, "train/loss": float("nan")})
    log.close()
    assert read_metrics(str(tmp_path / "metrics.jsonl")) == [{"step": 10, "episode/return": 1.5, "train/loss": None}]


def test_progress_line_shows_rates_of_the_last_window(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(logger_module.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    log = Logger(None, 1000, console=Console(file=out, width=200), print_every=30.0)
    log.progress(0, 0)  # opens the first rate window and prints
    now[0] = 102.0
    log.progress(50, 10)  # window too short: no rate yet
    assert log.fps is None
    now[0] = 110.0
    log.progress(100, 40)  # 100 steps and 40 updates in 10 s
    assert (log.fps, log.updates_per_second) == (10.0, 4.0)
    now[0] = 140.0
    log.progress(400, 100)  # 300 steps and 60 updates in 30 s; 30 s since the last line: a new one
    assert (log.fps, log.updates_per_second) == (10.0, 2.0)
    lines = out.getvalue().splitlines()
    assert lines == ["step 0/1000 | measuring speed", "step 400/1000 | 10 fps | 2.0 upd/s | ETA 0:01:00"]


def test_progress_line_during_prefill_shows_no_rate_or_eta(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(logger_module.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    log = Logger(None, 1000, console=Console(file=out, width=200), print_every=0.0, learning_starts=500)
    log.progress(100, 0)
    now[0] = 110.0
    log.progress(400, 0)  # fast random steps: no rate, no ETA
    assert log.fps is None
    log.progress(500, 1)  # learning starts: the rate window opens here
    now[0] = 120.0
    log.progress(520, 10)
    assert log.fps == 2.0
    lines = out.getvalue().splitlines()
    assert lines[:2] == [f"step {n}/1000 | collecting data before learning starts at step 500" for n in (100, 400)]
    assert lines[-1] == "step 520/1000 | 2 fps | 0.9 upd/s | ETA 0:04:00"


def test_a_resumed_session_purges_tensorboard_points_after_the_checkpoint_only(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from ssmworld.runtime.run_state import truncate_metrics

    log = Logger(str(tmp_path), 100, quiet=True)
    for step in (10, 20, 30, 40):  # the killed session; its checkpoint is at step 20
        log.write(step, {"eval/return_mean": float(step)})
    log.close()
    truncate_metrics(str(tmp_path / "metrics.jsonl"), 20)
    log = Logger(str(tmp_path), 100, start_step=20, quiet=True)
    for step in (30, 40):
        log.write(step, {"eval/return_mean": step + 0.5})
    log.close()
    events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/return_mean")] == [(10, 10.0), (20, 20.0), (30, 30.5),
                                                                               (40, 40.5)]


def test_truncating_metrics_completes_a_last_row_without_its_newline(tmp_path):
    from ssmworld.runtime.run_state import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}')  # killed after the row, before its newline
    truncate_metrics(str(path), 5)
    with open(path, "a") as f:
        f.write('{"step": 6}\n')
    assert [row["step"] for row in read_metrics(str(path))] == [1, 2, 6]
