"""benchmarks/gpu_check.sh runs end to end on the CPU (--device cpu --quick): the plumbing of the GPU check."""

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_script_passes_on_the_cpu(tmp_path):
    archive = tmp_path.parent / f"{tmp_path.name}.tgz"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick", "--out",
                           str(tmp_path), "--archive", str(archive)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 step(s) failed" in proc.stdout
    cores = json.loads((tmp_path / "cores.json").read_text())
    world_model = json.loads((tmp_path / "world_model.json").read_text())
    world_model_bf16 = json.loads((tmp_path / "world_model_bf16.json").read_text())
    assert cores and world_model and world_model_bf16
    assert world_model_bf16["meta"]["settings"]["precision"] == "bfloat16"
    for preset in ("r2i", "dreamerv3", "drama"):
        assert (tmp_path / f"train_{preset}" / "summary.json").exists()
    assert json.loads((tmp_path / "train_r2i" / "summary.json").read_text())["steps"] == 100  # resumed: 60 + 40
    with tarfile.open(archive) as tar:  # what a lent GPU machine sends back: logs, JSON, the runs' summaries
        names = set(tar.getnames())
    assert {"./cores.json", "./tests.log", "./train_r2i/summary.json", "./train_drama/metrics.jsonl"} <= names
