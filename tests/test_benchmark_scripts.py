"""The measurement scripts in benchmarks/ run and report what they say (no timings asserted)."""

import importlib.util
import json
import os

import numpy as np
import pytest

from ssmworld.errors import UserError
from ssmworld.runtime.config import load_config
from ssmworld.runtime.train import Trainer

pytest.importorskip("dm_control")
ROOT = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained_run(tmp_path, env: str, overrides: dict, steps: int) -> str:
    """The directory of a tiny r2i debug run of ``steps`` env steps."""
    cfg = load_config("r2i", "debug", env, overrides)
    cfg.train.steps = steps
    logdir = str(tmp_path / "run")
    os.makedirs(logdir)
    Trainer(cfg, logdir, quiet=True).run()
    return logdir


@pytest.mark.slow
def test_open_loop_errors_of_a_trained_run(tmp_path):
    logdir = trained_run(tmp_path, "dmc:cartpole_balance", {"train.prefill": 30, "train.eval_episodes": 1}, steps=40)
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


def _fake_run(path, env: str, preset: str, seed: int, length: int, evals: list[float], summary: dict | None) -> str:
    os.makedirs(path)
    with open(os.path.join(path, "config.yaml"), "w") as f:
        f.write(f"preset: {preset}\nsize: small\ntrain: {{env: '{env}', seed: {seed}, sequence_length: {length}, "
                "context: window}\n")
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for i, success in enumerate(evals):
            f.write(json.dumps({"step": 5000 * (i + 1), "eval/success_rate": success}) + "\n")
    if summary is not None:
        with open(os.path.join(path, "summary.json"), "w") as f:
            json.dump(summary, f)
    return str(path)


def test_memory_figure_reads_lengths_solved_and_last_evaluation(tmp_path, capsys):
    pytest.importorskip("bsuite")
    pytest.importorskip("matplotlib")
    module = script("memory_figure")
    assert module.memory_length("bsuite:memory_len/22") == 100 and module.memory_length("bsuite:memory_len/15") == 30
    assert module.memory_length("builtin:recall/250") == 250 and module.memory_length("dmc:walker_walk") is None
    _fake_run(tmp_path / "runs" / "a", "bsuite:memory_len/22", "r2i", 1, 256, [0.6, 1.0],
              {"steps": 10000, "seconds": 600.0, "solved": True})
    _fake_run(tmp_path / "runs" / "b", "builtin:recall/250", "dreamerv3", 0, 512, [0.4, 0.5, 0.45], None)
    _fake_run(tmp_path / "runs" / "c", "dmc:walker_walk", "r2i", 0, 64, [], None)  # not a memory task: left out
    out, data = str(tmp_path / "fig.png"), str(tmp_path / "points.json")
    assert module.main([str(tmp_path / "runs"), "--out", out, "--json", data]) == 0
    points = {p["memory_length"]: p for p in json.load(open(data))["runs"]}
    assert set(points) == {100, 250} and os.path.getsize(out) > 0
    assert points[100]["solved"] and points[100]["steps"] == 10000 and points[100]["minutes"] == 10.0
    assert points[100]["setting"] == "T=256 window" and points[100]["eval_success"] == 1.0
    assert not points[250]["solved"] and points[250]["steps"] == 15000 and points[250]["eval_success"] == 0.45
    table = capsys.readouterr().out
    assert "| 100 | r2i | T=256 window | 1 | 10,000 | 10.0 | yes | 1.00 |" in table
    assert module.main([str(tmp_path / "runs" / "c"), "--out", out]) == 2


def test_small_softmax_benchmark_measures_both_routes():
    row = script("small_softmax").measure((3, 4, 8), repeats=1)
    assert set(row) == {"torch_forward", "ours_forward", "torch_backward", "ours_backward"}
    assert all(v > 0 for v in row.values())


def test_actor_plasticity_probes_a_memory_len_run(tmp_path):
    logdir = trained_run(tmp_path, "bsuite:memory_len/0", {"train.prefill": 20, "train.eval_every": 0}, steps=30)
    result = script("actor_plasticity").measure(logdir, episodes=6, updates=4, every=2, replay_batches=2)
    assert result["query_steps"] == 6 and result["env_step"] == 30
    # memory_len/0: short episodes with one answer step each; the replay batches hold several
    assert result["replay_answer_steps"] > 0 and 0 <= result["replay_reward_sign_right"] <= 1
    assert result["replay_reward_nats"] > 0.67  # at least the two-hot target's own entropy (0.674 nats for +-1)
    assert 0 <= result["reward_head_prefers_rewarded_action"] <= 1 and 0 <= result["ridge_probe_accuracy"] <= 1
    for curve in (result["run_actor_critic"], result["fresh_actor_critic"]):
        assert [u for u, _ in curve] == [0, 2, 4] and all(0 < p < 1 for _, p in curve)
    assert result["run_actor_critic"][0][1] == result["actor_p_rewarded"]  # the run's actor before any update
    json.dumps(result)
    policy = script("actor_plasticity").measure(logdir, episodes=6, updates=0, every=1, actions="policy",
                                                replay_batches=1)
    assert policy["actions"] == "policy" and policy["query_steps"] == 6


def test_imagination_scaling_measures_every_count():
    result = script("imagination_scaling").measure("r2i", "dmc:cartpole_balance", [], [1, 4], repeats=1, size="debug")
    assert result["own_starts"] == 32 and set(result["ms"]) == {1, 4, 32}  # debug: 32 starts
    assert result["dynamics_backprop"] and all(t > 0 for t in result["ms"].values())
    assert result["us_per_start"][4] == pytest.approx(1e3 * result["ms"][4] / 4)
    assert result["bound"] >= 1.0 and result["fixed_share"] > 0


def test_query_answers_reads_cue_answer_and_reward_of_every_episode(tmp_path):
    logdir = trained_run(tmp_path, "bsuite:memory_len/4", {"train.prefill": 30, "train.eval_episodes": 1}, steps=80)
    module = script("query_answers")
    found = module.episodes(logdir)
    assert len(found) >= 10 and {cue for cue, _, _ in found} == {-1.0, 1.0}
    assert all((reward > 0) == (answer == (cue > 0)) for cue, answer, reward in found)  # bsuite: answer 1 for cue +1
    rows = module.blocks(found, 3)
    assert len(rows) == 3 and sum(r["cue-1"]["n"] + r["cue+1"]["n"] for r in rows) == len(found)
    assert rows[0]["success"] == np.mean([r > 0 for _, _, r in found[: rows[0]["episodes"][1]]])
    with pytest.raises(UserError, match="needs a bsuite:memory_len run"):
        module.episodes(trained_run(tmp_path / "other", "builtin:recall/2", {"train.prefill": 30}, steps=40))


def test_discounting_probe_reads_every_arm_of_a_discounting_chain_run(tmp_path):
    logdir = trained_run(tmp_path, "bsuite:discounting_chain/4", {"train.prefill": 20, "train.eval_every": 0},
                         steps=30)
    result = script("discounting_probe").measure(logdir, samples=3)
    assert result["bonus_arm"] == 4 and [a["delay"] for a in result["arms"]] == [1, 3, 10, 30, 100]
    gamma = result["gamma"]
    # the true worth at t=0 of arm k: its reward discounted over the delay-1 steps after the first transition's
    assert [a["true_worth"] for a in result["arms"]] == pytest.approx([1.0, gamma ** 2, gamma ** 9, gamma ** 29,
                                                                       1.1 * gamma ** 99])
    assert sum(a["p_first_step"] for a in result["arms"]) == pytest.approx(1.0, abs=1e-5)
    for arm in result["arms"]:
        assert 1 <= arm["peak_step"] <= 100 and np.isfinite(arm["lambda_return_t0"])
    json.dumps(result)
    with pytest.raises(UserError, match="discounting_chain"):
        script("discounting_probe").measure(trained_run(tmp_path / "m", "bsuite:memory_len/0",
                                                        {"train.prefill": 20, "train.eval_every": 0}, steps=30), 2)


def test_wm_generalisation_trains_the_world_model_alone_on_a_fixed_replay():
    module = script("wm_generalisation")
    result = module.measure("r2i", "debug", "bsuite:memory_len/0", episodes=8, updates=4, every=2, heldout=6,
                            overrides=["agent.model_weight_decay=0.1"], committed=0.25)
    assert [row["update"] for row in result["curve"]] == [0, 2, 4]
    assert result["replay_steps"] >= 8 * 2  # memory_len/0: a cue step and a query step per episode
    for row in result["curve"]:
        assert all(0 <= row[k] <= 1 for k in ("replay_fit", "heldout_prefers_rewarded", "heldout_ridge_probe"))
    assert result["curve"][0]["loss_reward"] == 0 and result["curve"][1]["loss_reward"] > 0  # the mean since the last
    trainer = module.filled_trainer("r2i", "debug", "bsuite:memory_len/0", 40, [], committed=0.25)
    action = trainer.replay.sample(256, 2)["action"]
    taken = action[action.sum(-1) == 1].argmax(-1)  # not the zero action stored with an episode's last step
    assert 0.8 < float((taken == 0).mean()) < 0.95  # action 0 but for 1/8 random picks of action 1
    json.dumps(result)
    with pytest.raises(UserError, match="needs bsuite:memory_len"):
        module.measure("r2i", "debug", "builtin:recall/2", 2, 1, 1, 2, [])



def test_compiled_imagination_times_both_variants_of_full_updates():
    result = script("compiled_imagination").measure("dreamerv3", "bsuite:memory_len/4", [], repeats=1, size="debug")
    assert result["starts"] == 32 and not result["dynamics_backprop"] and result["compile_seconds"] > 0
    for variant in ("eager", "compiled"):
        assert set(result["ms"][variant]) == {"update", "imagination", "actor_critic"}
        assert result["ms"][variant]["update"] > result["ms"][variant]["imagination"] > 0
    assert result["speedup"]["update"] == pytest.approx(result["ms"]["eager"]["update"]
                                                        / result["ms"]["compiled"]["update"])


def test_speed_since_issue16_summary_takes_medians_and_speed_ups(tmp_path, monkeypatch, capsys):
    """benchmarks/speed_since_issue16/summary.py: medians over rounds, each variant against `before`."""
    spec = importlib.util.spec_from_file_location("summary", os.path.join(ROOT, "speed_since_issue16", "summary.py"))
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    rounds = {"before": [(1.0, 0.4), (1.2, 0.6), (0.8, 0.5)], "eager": [(0.5, 0.25), (0.6, 0.2), (0.4, 0.3)]}
    for variant, values in rounds.items():
        for i, (seconds, imagination) in enumerate(values, 1):
            report = {"seconds": seconds, "sgemm_fraction": 0.5,
                      "parts": {"world_model": 0.1, "imagination": imagination, "actor_critic": 0.2}}
            (tmp_path / f"r2i_small_{variant}_{i}.json").write_text(json.dumps(report))
    monkeypatch.setattr("sys.argv", ["summary.py", str(tmp_path), "--json", str(tmp_path / "out.json")])
    summary.main()
    medians = json.loads((tmp_path / "out.json").read_text())
    assert medians["r2i_small/before"]["seconds"] == 1.0 and medians["r2i_small/eager"]["imagination"] == 0.25
    row = "| r2i_small | eager | 3 | 0.500 | 0.100 | 0.250 | 0.200 | 50% | 2.00x | 2.00x | 1.00x |"
    assert row in capsys.readouterr().out
