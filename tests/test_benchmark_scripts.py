"""The measurement scripts in benchmarks/ run and report what they say (no timings asserted)."""

import importlib.util
import json
import os

import numpy as np
import pytest

from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer

pytest.importorskip("dm_control")
ROOT = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_open_loop_errors_of_a_trained_run(tmp_path):
    cfg = load_config("r2i", "debug", "dmc:cartpole_balance", {"train.prefill": 30, "train.eval_episodes": 1})
    cfg.train.steps = 40
    logdir = str(tmp_path / "run")
    os.makedirs(logdir)
    Trainer(cfg, logdir, quiet=True).run()
    result = script("open_loop").open_loop_errors(logdir, episodes=1, every=100, horizon=3)
    assert result["latent"] == "2x4" and result["starts"] == 5  # t = 0, 100, ..., 400 of a 500-step episode
    assert set(result["rmse"]) == {1, 2, 3}
    assert all(len(v) == 5 and np.isfinite(v).all() and min(v) > 0 for v in result["rmse"].values())
    json.dumps(result)


def test_cartpole_reference_controllers():
    module = script("cartpole_references")
    rng = np.random.default_rng(0)
    obs = np.array([0.0, 0.99, 0.1, 0.0, 0.5], np.float32)  # leaning and falling towards +theta
    assert module.controller("zero", rng)(obs).tolist() == [0.0]
    assert module.controller("pd", rng)(obs).tolist() == [1.0]  # 20 * 0.1 + 5 * 0.5 > 1: push fully that way
    assert -1 <= module.controller("random", rng)(obs)[0] <= 1
