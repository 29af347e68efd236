"""`ssmworld sweep`: brace expansion, the grid and its directory layout, bad input, and real sweeps on a local Ray
cluster of 2 CPUs: a sweep runs to the end and a re-launch skips it; a run killed inside a sweep is retried and resumes
from its checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssmworld.cli import main
from ssmworld.runtime.sweep import RunRecord, SweepSettings, _finish, execute_run, run_state, train_command
from ssmworld.runtime.sweep_grid import RunSpec, expand_braces, make_grid

RUN = ["--size", "debug", "--local-cpus", "2"]
OVERRIDES = ["train.prefill=30", "train.eval_episodes=2"]  # positional: after the options


def test_expand_braces_ranges_lists_and_products():
    assert expand_braces("bsuite:memory_len/4") == ["bsuite:memory_len/4"]
    assert expand_braces("m/{0..3}") == ["m/0", "m/1", "m/2", "m/3"]
    assert expand_braces("m/{3..1}") == ["m/3", "m/2", "m/1"]
    assert expand_braces("{08..10}") == ["08", "09", "10"]
    assert expand_braces("{0..10..5}") == ["0", "5", "10"]
    assert expand_braces("{-1..1}") == ["-1", "0", "1"]
    assert expand_braces("{a,b}:{1..2}/x{,y}") == ["a:1/x", "a:1/xy", "a:2/x", "a:2/xy", "b:1/x", "b:1/xy",
                                                   "b:2/x", "b:2/xy"]
    assert expand_braces("builtin:recall/{2,{5..6}/4}") == ["builtin:recall/2", "builtin:recall/5/4",
                                                           "builtin:recall/6/4"]


@pytest.mark.parametrize("pattern", ["m/{0..3", "m/0..3}", "m/}{1,2}", "m/{}", "m/{abc}", "m/{1..}", "{1..4..0}",
                                     "{a..c}"])
def test_expand_braces_rejects_bad_patterns(pattern):
    with pytest.raises(ValueError) as err:
        expand_braces(pattern)
    assert "\n" not in str(err.value)


def test_grid_order_and_layout(tmp_path):
    root = str(tmp_path)
    runs = make_grid(root, ["r2i", "dreamerv3"], ["debug"], "bsuite:memory_len/{0..1}", [0, 1])
    assert [r.name for r in runs] == [f"{p}-debug/bsuite_memory_len_{e}/seed{s}" for p in ("r2i", "dreamerv3")
                                      for e in (0, 1) for s in (0, 1)]
    assert runs[0] == RunSpec("r2i", "debug", "bsuite:memory_len/0", 0,
                              os.path.join(root, "r2i-debug", "bsuite_memory_len_0", "seed0"))
    with pytest.raises(ValueError, match="would share"):
        make_grid(root, ["r2i"], ["debug"], "builtin:recall/{2,2}", [0])
    settings = SweepSettings(root, steps=100, overrides=["train.prefill=5"], cpus_per_run=2)
    fresh, resume = train_command(runs[1], settings, False), train_command(runs[1], settings, True)
    assert fresh[1:] == ["-m", "ssmworld", "train", "--logdir", runs[1].logdir, "--quiet", "--threads", "2",
                         "--steps", "100", "--preset", "r2i", "--size", "debug", "--env", "bsuite:memory_len/0",
                         "--seed", "1", "train.prefill=5"]
    assert resume[1:] == fresh[1:9] + ["--resume"]  # a resumed run keeps its own config, its steps included


def test_attempt_verdicts_and_a_run_dir_with_foreign_files(tmp_path):
    def verdict(returncode, attempts, retries=2):
        outcome = {"returncode": returncode, "seconds": 1.0, "resumed_from": None, "stderr": ""}
        return _finish(RunRecord("x", attempts=attempts), outcome, retries)

    assert verdict(0, 1) == "done" and verdict(2, 1) == "failed"  # bad input is never retried
    assert verdict(-signal.SIGKILL, 1) == verdict(1, 2) == verdict(None, 2) == "retry"  # 3 attempts in all
    assert verdict(-signal.SIGKILL, 3) == "failed" and verdict(1, 1, retries=0) == "failed"
    run = make_grid(str(tmp_path), ["r2i"], ["debug"], "builtin:recall/2", [0])[0]
    os.makedirs(run.logdir)
    open(os.path.join(run.logdir, "notes.txt"), "w").close()  # not written by `ssmworld train`: never deleted
    assert run_state(run.logdir) == "fresh"
    finished = tmp_path / "finished"
    os.makedirs(finished / "checkpoints" / "step-000000000050")
    (finished / "config.yaml").write_text("train: {steps: 100}\n")
    for steps, solved, state in ((100, False, "finished"), (50, True, "finished"), (50, False, "resume")):
        (finished / "summary.json").write_text(json.dumps({"steps": steps, "solved": solved}))
        assert run_state(str(finished)) == state, (steps, solved)  # train.minutes ended it early: resumed
    outcome = execute_run(run, SweepSettings(str(tmp_path)))
    assert outcome["returncode"] == 2 and "notes.txt" in outcome["stderr"]
    assert os.listdir(run.logdir) == ["notes.txt"]


@pytest.mark.parametrize("bad", [["--env", "builtin:recall/{2,3"], ["--env", "nosuch:task"],
                                 ["--env", "builtin:recall/2", "train.nosuch=1"],
                                 ["--env", "builtin:recall/{2,3}", "--preset", "r2i,nosuch"],
                                 ["--env", "builtin:recall/2", "--seeds", "0"]])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, bad):
    root = tmp_path / "sweep"
    assert main(["sweep", "--root", str(root), *RUN, *bad, *OVERRIDES]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssmworld: error: ") and err.count("\n") == 1, err
    assert not root.exists()


def test_without_ray_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [distributed] extra were not installed
    assert main(["sweep", "--root", str(tmp_path / "sweep"), *RUN, "--env", "builtin:recall/2"]) == 2
    assert capsys.readouterr().err == ("ssmworld: error: ray is not installed: pip install -c constraints.txt -e "
                                       "'.[distributed]' in the ssmworld checkout\n")
    assert not (tmp_path / "sweep").exists()


def sweep_cli(root, *args, **popen):
    command = ["sweep", "--root", str(root), "--quiet", *RUN, *args, *OVERRIDES]
    return subprocess.Popen([sys.executable, "-m", "ssmworld", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), **popen)


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    assert out.count("\n") == 1, (out, err)  # --quiet: only the final JSON line
    return proc.returncode, json.loads(out), err


@pytest.mark.slow
def test_sweep_runs_to_completion_and_a_relaunch_skips_it(tmp_path):
    root = tmp_path / "sweep"
    code, summary, err = finish(sweep_cli(root, "--env", "builtin:recall/2", "--seeds", "2", "--steps", "200"))
    assert code == 0, err
    assert (summary["runs"], summary["done"], summary["failed"]) == (2, 2, 0) and summary["runs_per_hour"] > 0
    report = json.loads((root / "sweep.json").read_text())
    assert report["summary"] == summary
    assert [(name, r["status"], r["attempts"], r["returncode"]) for name, r in report["runs"].items()] == [
        (f"r2i-debug/builtin_recall_2/seed{s}", "done", 1, 0) for s in (0, 1)]
    runs = [root / "r2i-debug" / "builtin_recall_2" / f"seed{s}" for s in (0, 1)]
    assert all(json.loads((r / "summary.json").read_text())["steps"] == 200 for r in runs)
    mtimes = [(r / "metrics.jsonl").stat().st_mtime_ns for r in runs]

    code, summary, err = finish(sweep_cli(root, "--env", "builtin:recall/2", "--seeds", "2", "--steps", "200"))
    assert code == 0 and (summary["skipped"], summary["done"]) == (2, 0), err
    assert [(r / "metrics.jsonl").stat().st_mtime_ns for r in runs] == mtimes  # no training started
    assert {r["status"] for r in json.loads((root / "sweep.json").read_text())["runs"].values()} == {"skipped"}

    from ssmworld.tools.plots import plot_runs  # the sweep root feeds `ssmworld plot` as it is

    (curve,) = plot_runs([str(root)], str(tmp_path / "sweep.png"), points=5)["curves"]
    assert (curve["env"], curve["preset"], curve["seeds"]) == ("builtin:recall/2", "r2i", [0, 1])


def rows_up_to(logdir, step):
    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        return [line for line in f if line.endswith("\n") and json.loads(line)["step"] <= step]


@pytest.mark.slow
def test_a_killed_run_is_retried_and_resumes_from_its_checkpoint(tmp_path):
    root = tmp_path / "sweep"
    proc = sweep_cli(root, "--env", "builtin:recall/3", "--steps", "500", "train.checkpoint_every=100")
    run = make_grid(str(root), ["r2i"], ["debug"], "builtin:recall/3", [0])[0]
    pid_file = os.path.join(root, ".sweep", run.name + ".pid")  # written by the task while `train` runs
    checkpoints = os.path.join(run.logdir, "checkpoints")
    deadline = time.time() + 120
    while not (os.path.exists(pid_file) and os.path.isdir(checkpoints)
               and any(not n.endswith(".tmp") for n in os.listdir(checkpoints))):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    step = min(int(n.split("-")[1]) for n in os.listdir(checkpoints) if not n.endswith(".tmp"))
    before = rows_up_to(run.logdir, step)  # final once the checkpoint exists: the rows are written before it
    with open(pid_file) as f:
        os.kill(int(f.read()), signal.SIGKILL)  # as a preempted or crashed run

    code, summary, err = finish(proc)
    assert code == 0 and summary["done"] == 1, err
    record = json.loads((root / "sweep.json").read_text())["runs"][run.name]
    assert record["status"] == "done" and record["attempts"] == 2 and record["resumed_from"] >= step
    logdir = Path(run.logdir)
    assert json.loads((logdir / "summary.json").read_text())["steps"] == 500
    # Continued, not restarted: the first attempt's rows, wall-clock perf/ numbers included, are still there.
    assert any('"perf/seconds"' in line for line in before)
    assert rows_up_to(run.logdir, step) == before
    steps = [json.loads(line)["step"] for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 500
    log = (root / ".sweep" / (run.name + ".stderr")).read_text()
    assert log.count("--- ") == 2 and "resume: " in log


@pytest.mark.slow
def test_ctrl_c_cancels_the_runs_and_exits_130(tmp_path):
    root = tmp_path / "sweep"
    proc = sweep_cli(root, "--env", "builtin:recall/2", "--steps", "5000")
    run = make_grid(str(root), ["r2i"], ["debug"], "builtin:recall/2", [0])[0]
    pid_file = root / ".sweep" / (run.name + ".pid")
    deadline = time.time() + 120
    while not pid_file.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    trainer = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    code, summary, err = finish(proc, timeout=60)
    assert code == 130 and err.endswith("ssmworld: interrupted\n") and summary["interrupted"] == 1
    assert json.loads((root / "sweep.json").read_text())["runs"][run.name]["status"] == "interrupted"
    deadline = time.time() + 10
    while alive(trainer):  # the training process went with the sweep
        assert time.time() < deadline, "the training process outlived the sweep"
        time.sleep(0.1)


def alive(pid):
    """Whether process ``pid`` exists and is not a zombie (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_one_sweep_per_root(tmp_path):
    """A second sweep on a root whose runs another one drives is refused in one line (it would delete their
    directories); the lock goes with its holder."""
    from ssmworld.errors import UserError
    from ssmworld.runtime.run_files import root_lock

    root = str(tmp_path)
    with root_lock(root):
        with pytest.raises(UserError, match=rf"another sweep is running on {root} \(pid {os.getpid()}\)"):
            with root_lock(root):
                pass
    with root_lock(root):  # released
        pass


def test_a_cancelled_run_gets_sigterm_to_write_its_checkpoint(tmp_path, monkeypatch):
    """A Ray cancellation (a KeyboardInterrupt in the worker) stops the trainer with SIGTERM, on which `ssmworld train`
    finishes its step and checkpoints, not with SIGKILL, which would lose the work since the last checkpoint."""
    from ssmworld.runtime import sweep as sweep_module

    marker = tmp_path / "got_sigterm"
    child = ("import signal, sys, time\n"
             f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').write('x'), sys.exit(143)))\n"
             "time.sleep(60)\n")
    monkeypatch.setattr(sweep_module, "train_command", lambda run, settings, resume: [sys.executable, "-c", child])
    real_popen = subprocess.Popen

    class CancelledWhileWaiting(real_popen):
        waits = 0

        def wait(self, timeout=None):
            CancelledWhileWaiting.waits += 1
            if CancelledWhileWaiting.waits == 1:
                time.sleep(1.0)  # the child installs its handler
                raise KeyboardInterrupt  # what ray.cancel raises in the worker
            return super().wait(timeout)

    monkeypatch.setattr(sweep_module.subprocess, "Popen", CancelledWhileWaiting)
    run = make_grid(str(tmp_path), ["r2i"], ["debug"], "builtin:recall/2", [0])[0]
    with pytest.raises(KeyboardInterrupt):
        execute_run(run, SweepSettings(str(tmp_path)))
    assert marker.exists()
