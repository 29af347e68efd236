"""`ssmworld bsuite-score`: bsuite's own CSV rows and scores from a run's episode rows."""

import csv
import json
import os

import pytest

pytest.importorskip("bsuite")

from ssmworld.cli import main  # noqa: E402
from ssmworld.runtime.config import load_config  # noqa: E402
from ssmworld.runtime.config_file import save_yaml  # noqa: E402
from ssmworld.tools.bsuite_score import bsuite_rows, bsuite_score  # noqa: E402


def fake_run(path, successes, task="memory_len/0"):
    """A run directory on bsuite:memory_len/0 whose episodes succeed as given (2 steps each, as memory length 1)."""
    os.makedirs(path)
    save_yaml(load_config("r2i", "debug", f"bsuite:{task}"), os.path.join(path, "config.yaml"))
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for i, ok in enumerate(successes):
            row = {"step": 2 * (i + 1), "episode/return": 1.0 if ok else -1.0, "episode/length": 2,
                   "episode/bsuite/total_perfect": float(ok), "episode/bsuite/total_regret": 2.0 * (not ok)}
            f.write(json.dumps(row) + "\n")
            f.write(json.dumps({"step": 2 * (i + 1), "train/loss_model": 1.0}) + "\n")  # not an episode row


def test_rows_follow_bsuites_logging_schedule_and_sum_the_counters(tmp_path):
    fake_run(tmp_path / "run", [True, False, True] + [True] * 97)
    bsuite_id, rows = bsuite_rows(str(tmp_path / "run"))
    assert bsuite_id == "memory_len/0"
    # bsuite logs at 10^k x (1, 1.2, 1.4, 1.7, 2, 2.5, 3, ..., 10)
    assert [r["episode"] for r in rows] == [*range(1, 11), 12, 14, 17, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100]
    assert rows[2] == {"steps": 6, "episode": 3, "total_return": 1.0, "episode_len": 2, "episode_return": 1.0,
                       "total_perfect": 2.0, "total_regret": 2.0}
    assert rows[-1]["total_perfect"] == 99.0 and rows[-1]["total_return"] == 98.0


def test_a_best_episode_is_the_maximum_over_envs_not_their_sum(tmp_path):
    """cartpole's best_episode is each env's running maximum of raw episode returns: with 2 envs the deltas of both
    add up to more than any episode returned. cartpole_scale: the agent's returns are scaled, the raw ones are not."""
    path = tmp_path / "run"
    os.makedirs(path)
    save_yaml(load_config("r2i", "debug", "bsuite:cartpole_scale/0"), os.path.join(path, "config.yaml"))
    episodes = [(100.0, 100.0), (120.0, 120.0), (90.0, 0.0), (130.0, 10.0)]  # (raw return, delta of its env's best)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for i, (raw, delta) in enumerate(episodes):
            f.write(json.dumps({"step": 100 * (i + 1), "episode/return": raw * 0.001, "episode/length": 100,
                                "episode/bsuite/raw_return": raw, "episode/bsuite/best_episode": delta}) + "\n")
    _, rows = bsuite_rows(str(path))
    assert [r["best_episode"] for r in rows] == [100.0, 120.0, 120.0, 130.0]  # summed: 100, 220, 220, 230
    assert rows[-1]["raw_return"] == 440.0  # a cumulative counter: summed


def test_scores_come_from_bsuites_analysis(tmp_path):
    # memory_len: learned when (episodes - total_perfect) / 0.5 / episodes < 0.75, i.e. more than 62.5% perfect
    fake_run(tmp_path / "good", [True] * 70 + [False] * 30)  # regret ratio 0.6: learned
    fake_run(tmp_path / "bad", [True] * 60 + [False] * 40)  # 0.8: not learned
    scores = bsuite_score([str(tmp_path / "good"), str(tmp_path / "bad")], str(tmp_path / "results"))
    assert [s["score"] for s in scores] == [1.0, 0.0] and scores[0]["episodes"] == 100
    run_dir = str(tmp_path / "good").strip(os.sep).replace(os.sep, "__")
    with open(tmp_path / "results" / run_dir / "bsuite_id_-_memory_len-0.csv") as f:
        header = next(csv.reader(f))
    assert header == ["steps", "episode", "total_return", "episode_len", "episode_return", "total_perfect",
                      "total_regret"]


def test_a_real_run_logs_the_counters_and_scores(tmp_path, capsys):
    logdir = str(tmp_path / "run")
    assert main(["train", "--size", "debug", "--env", "bsuite:memory_len/0", "--steps", "80", "--logdir", logdir,
                 "--quiet", "train.prefill=40"]) == 0
    capsys.readouterr()
    assert main(["bsuite-score", logdir, "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "memory_len/0" in out and "False" in out  # 40 episodes of bsuite's 10,000: not finished
    code = main(["bsuite-score", str(tmp_path)])
    assert code == 2


def test_runs_that_share_a_name_are_scored_apart(tmp_path):
    """A sweep's runs all end in seed0, seed1, ...: each is scored from its own CSV, not with the others'."""
    fake_run(tmp_path / "a" / "seed0", [True] * 70 + [False] * 30)
    fake_run(tmp_path / "b" / "seed0", [True] * 60 + [False] * 40, task="memory_len/1")
    scores = bsuite_score([str(tmp_path / "a" / "seed0"), str(tmp_path / "b" / "seed0")], str(tmp_path / "results"))
    assert [s["score"] for s in scores] == [1.0, 0.0]
    again = bsuite_score([str(tmp_path / "b" / "seed0")], str(tmp_path / "results"))  # leftovers do not leak in
    assert again[0]["score"] == 0.0
