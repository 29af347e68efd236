"""The world-model benchmark: its gru/s5 ratios and check on hand-made numbers, and a tiny run writing JSON."""

import io
import json

import pytest
from rich.console import Console

from ssmworld.tools.bench_world_model import WorldModelBenchSettings, bench_world_model, scaling, speedups


def row(core, length, seconds, imagine):
    return dict(core=core, length=length, median_s=seconds, imagine_s=imagine, peak_mb=1.0)


def test_speedups_hand_computed():
    settings = WorldModelBenchSettings(lengths=[256, 1024])
    results = [row("s5", 256, 2.0, 0.5), row("gru", 256, 6.0, 0.25),
               row("s5", 1024, 4.0, 0.5), row("gru", 1024, 48.0, 0.25)]
    ratios, checks = speedups(results, settings)
    assert ratios == [dict(length=256, train=3.0, imagine=0.5), dict(length=1024, train=12.0, imagine=0.5)]
    assert len(checks) == 1 and checks[0]["value"] == 12.0 and checks[0]["ok"] and "T=1024" in checks[0]["target"]

    results[-1] = row("gru", 1024, 36.0, 0.25)  # 9x: missed
    _, checks = speedups(results, settings)
    assert checks[0]["value"] == 9.0 and not checks[0]["ok"]

    # a failed measurement at the longest T: no ratio there, so no check (rather than a false ok/MISSED)
    results[-1] = dict(core="gru", length=1024, error="killed")
    ratios, checks = speedups(results, settings)
    assert [r["length"] for r in ratios] == [256] and checks == []


def test_scaling_hand_computed():
    settings = WorldModelBenchSettings(cores=["mamba2", "attention"], lengths=[128, 512])
    results = [dict(row("mamba2", 128, 1.0, 0.2), us_per_token=10.0), dict(row("mamba2", 512, 5.0, 0.2),
                                                                           us_per_token=12.5, peak_mb=4.0),
               dict(row("attention", 128, 1.0, 0.25), us_per_token=10.0), dict(row("attention", 512, 16.0, 0.75),
                                                                              us_per_token=40.0, peak_mb=16.0)]
    rows, checks = scaling(results, settings)
    assert rows == [dict(core="mamba2", lengths=[128, 512], per_token=1.25, imagine=1.0, peak_mb=4.0),
                    dict(core="attention", lengths=[128, 512], per_token=4.0, imagine=3.0, peak_mb=16.0)]
    assert len(checks) == 1 and checks[0]["value"] == 1.25 and checks[0]["ok"] and "mamba2" in checks[0]["target"]
    results[1]["us_per_token"] = 25.0  # 2.5x per token: missed
    assert not scaling(results, settings)[1][0]["ok"]


@pytest.mark.parametrize("imagination", ["context", "posterior"])
def test_tiny_run_with_every_imagination(imagination):
    settings = WorldModelBenchSettings(cores=["attention"] if imagination == "context" else ["s5"], lengths=[8],
                                       width=32, repeats=1, imagine_starts=8, horizon=3, imagination=imagination,
                                       context=4)
    report = bench_world_model(settings, console=Console(file=io.StringIO()))
    assert all("imagine_s" in r for r in report["results"]), report["results"]


def test_quick_settings():
    quick = WorldModelBenchSettings.quick(threads=2)
    assert (quick.lengths, quick.width, quick.repeats, quick.threads) == ([32, 64], 64, 1, 2)
    assert quick.cores == ["s5", "gru"] and quick.batch == 4


def test_unknown_core_rejected():
    with pytest.raises(ValueError, match="unknown core"):
        bench_world_model(WorldModelBenchSettings(cores=["lstm"]), console=Console(file=io.StringIO()))


def test_tiny_run_writes_json(tmp_path):
    out = tmp_path / "wm.json"
    settings = WorldModelBenchSettings(lengths=[8, 16], width=16, repeats=1, imagine_starts=8, horizon=3)
    buffer = io.StringIO()
    report = bench_world_model(settings, json_path=str(out), console=Console(file=buffer, width=200))
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(report))
    assert set(saved) == {"meta", "results", "ratios", "scaling", "checks"}
    assert [r["core"] for r in saved["scaling"]] == ["s5", "gru"]
    assert saved["meta"]["settings"]["width"] == 16 and saved["meta"]["core_configs"]["gru"] == {"blocks": 8}
    runs = {(r["core"], r["length"]) for r in saved["results"] if "median_s" in r}
    assert runs == {("s5", 8), ("gru", 8), ("s5", 16), ("gru", 16)}, saved["results"]
    for r in saved["results"]:
        assert {"median_s", "times_s", "us_per_token", "peak_mb", "imagine_s", "params"} <= set(r)
        assert len(r["times_s"]) == 1 and r["median_s"] > 0 and r["imagine_s"] > 0
        assert r["us_per_token"] == pytest.approx(r["median_s"] / (4 * r["length"]) * 1e6)
        assert r["gflops"] == pytest.approx(r["gflop"] / r["median_s"])
        assert r["sgemm_fraction"] == pytest.approx(r["gflops"] / r["sgemm_gflops"])
    gflop = {(r["core"], r["length"]): r["gflop"] for r in saved["results"]}
    for core in ("s5", "gru"):  # every matmul of the step is per token: twice the tokens, twice the FLOPs
        assert gflop[core, 16] == pytest.approx(2 * gflop[core, 8], rel=1e-9)
    assert [r["length"] for r in saved["ratios"]] == [8, 16]
    assert len(saved["checks"]) == 1 and "T=16" in saved["checks"][0]["target"]
    text = buffer.getvalue()
    assert "gru/s5 at T=16" in text and ("ok" in text or "MISSED" in text)
