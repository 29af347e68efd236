"""`ssmworld bench update`: a tiny run writes a report whose parts, FLOPs and rates are consistent."""

import json

from ssmworld.cli import main
from ssmworld.tools.bench_update import sgemm_rate


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
