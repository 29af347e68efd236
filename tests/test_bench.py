"""The benchmark's target checks on hand-made numbers, and a tiny end-to-end run writing JSON."""

import json
import subprocess
import sys

from ssmworld.tools.bench_cores import BenchSettings, check_targets


def row(core, length, seconds, peak, mode="parallel"):
    return dict(core=core, length=length, mode=mode, median_s=seconds, peak_mb=peak)


def test_check_targets_hand_computed():
    settings = BenchSettings(cores=["s5", "mamba", "attention"], lengths=[256, 1024, 4096])
    results = [
        row("s5", 256, 1.0, 10), row("s5", 1024, 4.0, 40), row("s5", 4096, 24.0, 170), row("s5", 1024, 30.0, 0, "step"),
        row("mamba", 1024, 4.0, 10), row("mamba", 4096, 16.0, 160),  # memory 16x for 4x tokens: quadratic
        row("attention", 256, 1.0, 10), row("attention", 1024, 8.0, 100), row("attention", 4096, 64.0, 1600),
    ]
    checks = {(c["core"], c["target"].split(" ")[0]): c for c in check_targets(results, settings)}
    assert checks[("s5", "step/parallel")]["value"] == 30.0 / 4.0 and checks[("s5", "step/parallel")]["ok"]
    # time per token: (24/4096) / (1/256) = 1.5 -> within 2x
    assert checks[("s5", "time/token")]["value"] == 1.5 and checks[("s5", "time/token")]["ok"]
    assert checks[("s5", "peak")]["value"] == 170 / 40 and checks[("s5", "peak")]["ok"]
    assert checks[("mamba", "peak")]["value"] == 16 and not checks[("mamba", "peak")]["ok"]
    # attention: (64/4096) / (1/256) = 4 -> grows (> 1.5)
    assert checks[("attention", "time/token")]["value"] == 4.0 and checks[("attention", "time/token")]["ok"]


def test_tiny_bench_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ssmworld", "bench", "cores", "--cores", "s5,gru", "--lengths", "8,16",
         "--batch", "2", "--repeats", "2", "--json", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    runs = {(r["core"], r["length"], r["mode"]) for r in report["results"] if "median_s" in r}
    assert runs == {("s5", 8, "parallel"), ("s5", 16, "parallel"), ("s5", 16, "step"), ("gru", 8, "parallel"),
                    ("gru", 16, "parallel")}
    assert all(len(r["times_s"]) == 2 for r in report["results"])
    parallel = [r for r in report["results"] if r["mode"] == "parallel"]
    assert all(r["gflop"] > 0 and abs(r["gflops"] - r["gflop"] / r["median_s"]) < 1e-9 for r in parallel)
    assert all(abs(r["sgemm_fraction"] - r["gflops"] / r["sgemm_gflops"]) < 1e-9 for r in parallel)
    s5 = {r["length"]: r["gflop"] for r in parallel if r["core"] == "s5"}
    assert abs(s5[16] / s5[8] - 2.0) < 1e-6  # S5's work is linear in T: twice the tokens, twice the FLOPs
    assert report["meta"]["settings"]["threads"] == 1
    # stdout is a pipe here, as in a CI log: the table keeps its cells whole (rich's default 80 columns cut them)
    assert "parallel" in proc.stdout and "…" not in proc.stdout


def test_a_failed_measurement_fails_the_command(tmp_path, monkeypatch, capsys):
    """A crashed worker is a row with its error (table and JSON) and exit code 1, not "ok" (benchmarks/gpu_check.sh
    counts failed steps by exit code); rows skipped for the time budget are not failures."""
    from ssmworld.cli import main
    from ssmworld.tools import bench_cores

    def crashed(module, job, threads):
        if job["length"] == 16:
            return dict(core=job["core"], length=16, mode=job["mode"], error="RuntimeError: CUDA error: boom")
        return dict(core=job["core"], length=job["length"], mode=job["mode"], error="skipped: over the time budget")

    monkeypatch.setattr(bench_cores, "run_worker", crashed)
    code = main(["bench", "cores", "--cores", "gru", "--lengths", "8,16", "--json", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 1 and "1 measurement(s) failed, e.g. gru at T=16: RuntimeError: CUDA error: boom" in err
    assert json.loads((tmp_path / "b.json").read_text())["results"]
    monkeypatch.setattr(bench_cores, "run_worker", lambda module, job, threads: dict(
        core=job["core"], length=job["length"], mode=job["mode"], error="skipped: over the time budget"))
    assert main(["bench", "cores", "--cores", "gru", "--lengths", "8"]) == 0
