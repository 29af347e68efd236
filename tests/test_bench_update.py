"""`ssmworld bench update`: a tiny run writes a report whose parts, FLOPs and rates are consistent."""

import json

from ssmworld.cli import main
from ssmworld.tools import bench_harness
from ssmworld.tools.bench_harness import sgemm_rate


def test_tiny_update_bench_writes_a_consistent_report(tmp_path, capsys):
    path = tmp_path / "update.json"
    assert main(["bench", "update", "--size", "debug", "--env", "builtin:recall/3", "--repeats", "2", "--json",
                 str(path), "agent.imagination.horizon=2"]) == 0
    report = json.loads(path.read_text())
    assert report["overrides"] == ["agent.imagination.horizon=2"] and report["gflop"] > 0
    assert sum(report["parts"].values()) + report["sample_seconds"] <= report["seconds"] * 1.5
    assert abs(report["gflops"] - report["gflop"] / report["seconds"]) < 1e-6
    assert abs(report["sgemm_fraction"] - report["gflops"] / report["sgemm_gflops"]) < 1e-6
    assert "GFLOP" in capsys.readouterr().out


def test_sgemm_rate_is_positive():
    assert sgemm_rate(size=128, repeats=2) > 0.0


def test_reports_name_the_cpu_they_ran_on(monkeypatch, tmp_path):
    """Hosts behind one machine label differ (an Intel Xeon with AMX one day, an AMD EPYC without AVX-512 the next),
    so the header names the CPU and its matmul extensions, read from /proc/cpuinfo where Linux has it."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f amx_bf16\n"
                       "\nprocessor\t: 1\nmodel name\t: Example CPU 9000\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path,
                                                                         *a, **k))
    assert bench_harness.cpu_model() == "Example CPU 9000 (avx2, avx512f, amx_bf16)"
    assert bench_harness.report_meta("update")["processor"] == "Example CPU 9000 (avx2, avx512f, amx_bf16)"
