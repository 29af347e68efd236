"""Exact resume: a run killed with SIGKILL at a random moment and resumed writes the same metrics as an uninterrupted
run (losses, returns, evaluations; wall-clock perf/ numbers excluded)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

ARGS = ["--size", "debug", "--env", "builtin:recall/3", "--steps", "700", "--quiet", "train.prefill=40",
        "train.checkpoint_every=60", "train.log_every=20", "train.eval_every=150", "train.eval_episodes=3",
        "train.sampler=dfs"]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ssmworld", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def comparable(logdir: str) -> list[dict]:
    rows = [json.loads(line) for line in open(os.path.join(logdir, "metrics.jsonl"))]
    return [{k: v for k, v in row.items() if not k.startswith("perf/") and "seconds_" not in k} for row in rows]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.slow
def test_kill_or_interrupt_and_resume_give_the_metrics_of_an_uninterrupted_run(tmp_path, sig):
    """SIGKILL: resume from the last periodic checkpoint; SIGINT/SIGTERM: the run writes a checkpoint where it stops
    (with its episodes in progress) and exits with 128 + the signal. The kill time is seeded: a failure replays."""
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    reference = start(*ARGS, "--logdir", whole)
    victim = start(*ARGS, "--logdir", killed)
    checkpoints = os.path.join(killed, "checkpoints")
    deadline = time.time() + 120
    while not (os.path.isdir(checkpoints) and any(n.startswith("step-") and not n.endswith(".tmp")
                                                  for n in os.listdir(checkpoints))):
        assert victim.poll() is None and time.time() < deadline, victim.stderr.read() if victim.poll() else "timeout"
        time.sleep(0.05)
    time.sleep(random.Random(int(sig)).uniform(0.0, 1.0))
    victim.send_signal(sig)
    code = victim.wait()
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), victim.stderr.read()
    assert reference.wait() == 0, reference.stderr.read()
    rows_before = comparable(killed)
    assert rows_before[-1]["step"] < 700  # it really was interrupted
    if sig != signal.SIGKILL:
        assert "--resume" in victim.stderr.read()  # the message says how to continue
    resumed = start("--logdir", killed, "--resume", "--quiet")
    assert resumed.wait() == 0, resumed.stderr.read()
    expected, got = comparable(whole), comparable(killed)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert a == b, (a, b)
