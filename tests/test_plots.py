"""plots.py: bootstrap CIs, IQM / optimality gap by hand, the stratified bootstrap, and `plot_runs` on fake runs."""

import json
import sys

import numpy as np
import pytest
import yaml

from ssmworld.tools.plots import (
    bootstrap_ci,
    find_runs,
    iqm,
    moving_average,
    optimality_gap,
    plot_runs,
    stratified_bootstrap_ci,
    stratified_resample,
)
from ssmworld.tools.run_settings import differing_settings, pooling_warning


def write_run(path, env, preset, seed, returns, eval_every=0, steps_per_episode=10, size=None):
    """A fake run directory: one episode row per return, an eval row every ``eval_every`` episodes."""
    path.mkdir(parents=True)
    config = {"preset": preset, "train": {"env": env, "seed": seed}, **({"size": size} if size else {})}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows = []
    for i, ret in enumerate(returns, 1):
        rows.append({"step": i * steps_per_episode, "episode/return": float(ret), "episode/length": steps_per_episode})
        if eval_every and i % eval_every == 0:
            rows.append({"step": i * steps_per_episode, "eval/return_mean": float(ret), "perf/seconds": 0.5 * i})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9')  # torn last line
    return str(path)


def test_bootstrap_ci_contains_mean_narrows_with_seeds_and_is_seeded():
    few = np.array([3.0, 4.0, 5.0, 6.0, 7.0])
    many = np.tile(few, 16)  # the same spread over 16x the seeds: the CI should be about 4x narrower
    (lo_few, hi_few), (lo_many, hi_many) = bootstrap_ci(few), bootstrap_ci(many)
    assert lo_few <= few.mean() <= hi_few and lo_many <= many.mean() <= hi_many
    assert hi_many - lo_many < 0.5 * (hi_few - lo_few)
    assert bootstrap_ci(few, seed=3) == bootstrap_ci(few, seed=3)
    curves = np.random.default_rng(0).normal(size=(4, 7))  # seeds x grid points: one CI per point
    low, high = bootstrap_ci(curves)
    assert low.shape == high.shape == (7,) and np.all(low <= curves.mean(0)) and np.all(curves.mean(0) <= high)


def test_iqm_optimality_gap_and_moving_average_by_hand():
    assert iqm(np.array([100.0, 1, 2, 3, 4, 5, 6, -50])) == pytest.approx(3.5)  # middle four: 2, 3, 4, 5
    assert optimality_gap(np.array([0.5, 1.2, 0.0, 0.9])) == pytest.approx((0.5 + 0 + 1 + 0.1) / 4)
    assert moving_average(np.array([1.0, 3, 5, 7]), 2).tolist() == [1, 2, 4, 6]


def test_stratified_bootstrap_keeps_task_membership():
    tasks = {"a": np.array([0.1, 0.2, 0.3]), "b": np.array([10.0, 20.0]), "c": np.array([5.0])}
    resampled = stratified_resample(tasks, 500, np.random.default_rng(0))
    for task, values in tasks.items():
        assert resampled[task].shape == (500, len(values)) and np.isin(resampled[task], values).all()
    point, low, high = stratified_bootstrap_ci(tasks, iqm)
    assert point == pytest.approx(iqm(np.concatenate(list(tasks.values())))) and low <= point <= high
    assert stratified_bootstrap_ci({"a": [2.0, 2.0], "b": [2.0]}, optimality_gap)[1:] == (0.0, 0.0)


def test_plot_runs_curves_png_and_numbers(tmp_path):
    rng = np.random.default_rng(0)
    dirs = [write_run(tmp_path / f"s{seed}", "builtin:recall/2", "r2i", seed, np.linspace(0, 1, 60) + rng.normal(
        0, 0.1, 60), eval_every=10) for seed in (0, 1)]
    out = str(tmp_path / "figs" / "curves.png")
    result = plot_runs(dirs, out, points=20)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    json.dumps(result)
    (curve,) = result["curves"]
    assert curve["env"] == "builtin:recall/2" and curve["seeds"] == [0, 1] and len(curve["mean"]) == 20
    assert all(lo <= m <= hi for lo, m, hi in zip(curve["low"], curve["mean"], curve["high"]))
    assert curve["mean"][-1] > curve["mean"][0] + 0.5 and result["aggregates"] is None
    evals = plot_runs(dirs, out, metric="eval/return_mean", x="perf/seconds", points=5)["curves"][0]
    assert evals["x"][0] == 5.0 and evals["x"][-1] == 30.0  # perf/seconds of the first and last eval rows


def test_plot_runs_aggregates_over_tasks(tmp_path, capsys):
    dirs = [write_run(tmp_path / f"{env[:4]}{preset}{seed}", env, preset, seed, [score] * 20)
            for env, score in (("atari:Pong", -3.0), ("bsuite:memory_len/5", 0.5))
            for preset in ("dreamerv3", "r2i") for seed in (0, 1, 2)]
    result = plot_runs(dirs, str(tmp_path / "agg.png"), points=10, references={"bsuite:memory_len/5": (-1.0, 1.0)})
    agg = result["aggregates"]
    assert agg["normalization"] == {"atari:Pong": "human", "bsuite:memory_len/5": "min-max"}
    r2i = agg["presets"]["r2i"]
    assert r2i["tasks"] == ["atari:Pong", "bsuite:memory_len/5"]
    assert r2i["scores"]["atari:Pong"] == pytest.approx([(-3 + 21) / (15 + 21)] * 3)  # human-normalised: 0.5
    assert r2i["scores"]["bsuite:memory_len/5"] == pytest.approx([0.75] * 3)
    assert r2i["iqm"]["value"] == pytest.approx(0.625) and r2i["optimality_gap"]["value"] == pytest.approx(0.375)
    assert r2i["mean"]["value"] == pytest.approx(0.625) and r2i["median"]["value"] == pytest.approx(0.625)
    from ssmworld.cli import main

    atari = [write_run(tmp_path / f"{game}{seed}", f"atari:{game}", "r2i", seed, [10.0] * 20)
             for game in ("Pong", "Breakout") for seed in (0, 1)]
    assert main(["plot", *atari, "--out", str(tmp_path / "cli.png")]) == 0
    printed = capsys.readouterr().out  # human-normalised aggregates, printed
    assert "r2i over 2 tasks: mean " in printed and "median" in printed and "optimality gap" in printed
    assert (tmp_path / "agg.png").stat().st_size > 0


def test_mean_and_median_of_task_means_by_hand():
    from ssmworld.tools.plots import task_means_ci

    tasks = {"a": [0.0, 1.0], "b": [4.0, 4.0, 4.0], "c": [10.0]}
    value, low, high = task_means_ci({"a": [0.0, 1.0], "b": [2.0, 6.0], "c": [9.0, 11.0], "d": [20.0]})
    assert value == pytest.approx((4.0 + 10.0) / 2) and low <= value <= high  # means 0.5, 4, 10, 20
    assert task_means_ci(tasks)[1:] == (4.0, 4.0)  # b never changes: every resample's median is 4
    # the mean of task means, not of runs: a task with 3 runs weighs as one with 1 (runs' mean: 26 / 6)
    assert task_means_ci(tasks, np.mean)[0] == pytest.approx((0.5 + 4.0 + 10.0) / 3)


def test_normalizer_per_suite():
    from ssmworld.tools.plots import normalizer

    name, norm = normalizer("dmc:cartpole_balance", "eval/return_mean")
    assert name == "max" and norm(450.0) == pytest.approx(0.45)
    assert normalizer("dmc_vision:walker_walk", "episode/return")[0] == "max"
    assert normalizer("dmc:cartpole_balance", "eval/success_rate")[0] == "raw"
    assert normalizer("dmc:cartpole_balance", "eval/return_mean", {"dmc:cartpole_balance": (0.0, 500.0)})[0] == "min-max"


def test_bad_input_is_one_clear_value_error(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        plot_runs([str(tmp_path / "empty")], str(tmp_path / "x.png"))
    run = write_run(tmp_path / "run", "builtin:recall/2", "r2i", 0, [1.0, 2.0])
    with pytest.raises(ValueError, match="no run has metric 'eval/success_rate'.*episode/return"):
        plot_runs([run], str(tmp_path / "x.png"), metric="eval/success_rate")
    with pytest.raises(ValueError, match="no run directories"):
        plot_runs([], str(tmp_path / "x.png"))
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(ValueError, match="needs matplotlib"):
        plot_runs([run], str(tmp_path / "x.png"))


def test_a_sweep_root_stands_for_its_runs_and_sizes_are_not_seeds(tmp_path):
    """`ssmworld plot <sweep root>`: run directories found recursively (not inside runs, not in hidden dirs); runs
    of two sizes of one preset are two curves."""
    root = tmp_path / "sweep"
    for size in ("debug", "small"):
        for seed in (0, 1):
            write_run(root / f"r2i-{size}" / "builtin_recall_2" / f"seed{seed}", "builtin:recall/2", "r2i", seed,
                      [1.0 if size == "small" else 0.0] * 20, size=size)
    (root / "r2i-debug" / "builtin_recall_2" / "seed0" / "checkpoints" / "x").mkdir(parents=True)
    (root / "r2i-debug" / "builtin_recall_2" / "seed0" / "checkpoints" / "x" / "config.yaml").write_text("{}")
    (root / ".sweep").mkdir()
    (root / ".sweep" / "config.yaml").write_text("{}")
    (root / "sweep.json").write_text("{}")
    single = str(root / "r2i-small" / "builtin_recall_2" / "seed1")
    assert find_runs([str(root), single]) == [str(root / f"r2i-{size}" / "builtin_recall_2" / f"seed{seed}")
                                              for size in ("debug", "small") for seed in (0, 1)] + [single]
    result = plot_runs([str(root)], str(tmp_path / "sweep.png"), points=5)
    assert [(c["preset"], c["seeds"]) for c in result["curves"]] == [("r2i-debug", [0, 1]), ("r2i-small", [0, 1])]
    assert result["curves"][1]["mean"] == pytest.approx([1.0] * 5)
    only_small = plot_runs([str(root / "r2i-small")], str(tmp_path / "small.png"), points=5)
    assert [c["preset"] for c in only_small["curves"]] == ["r2i"]  # one size: labelled by the preset as before


def test_group_by_a_config_key_splits_the_curves(tmp_path, capsys):
    runs = []
    for sampler, level in (("uniform", 1.0), ("dfs", 3.0)):
        for seed in (0, 1):
            path = tmp_path / f"{sampler}{seed}"
            write_run(path, "builtin:recall/5", "r2i", seed, [level] * 20)
            config = yaml.safe_load((path / "config.yaml").read_text())
            config["train"]["sampler"] = sampler
            (path / "config.yaml").write_text(yaml.safe_dump(config))
            runs.append(str(path))
    result = plot_runs(runs, str(tmp_path / "fig.png"), group_by="train.sampler")
    by_label = {c["preset"]: c for c in result["curves"]}
    assert sorted(by_label) == ["r2i sampler=dfs", "r2i sampler=uniform"]
    assert by_label["r2i sampler=dfs"]["final"] == [3.0, 3.0] and by_label["r2i sampler=uniform"]["seeds"] == [0, 1]
    merged = plot_runs(runs, str(tmp_path / "fig2.png"))  # without it, the four runs are seeds of one curve
    assert len(merged["curves"]) == 1 and len(merged["curves"][0]["seeds"]) == 4
    # ... and the curve says what it pooled (seeds are not a difference)
    assert merged["curves"][0]["pooled_differences"] == {"train.sampler": ["dfs", "uniform"]}
    assert merged["warnings"] == ["r2i on builtin:recall/5: pools runs as seeds that differ in train.sampler "
                                  "(dfs / uniform); split them with --group-by train.sampler"]
    assert result["warnings"] == [] and by_label["r2i sampler=dfs"]["pooled_differences"] == {}
    from ssmworld.cli import main

    assert main(["plot", *runs, "--out", str(tmp_path / "cli.png")]) == 0
    assert capsys.readouterr().err == f"warning: {merged['warnings'][0]}\n"
    missing = plot_runs(runs[:1], str(tmp_path / "fig3.png"), group_by="agent.nothing")
    assert missing["curves"][0]["preset"] == "r2i nothing=?"


def test_differing_settings_by_hand():
    a = {"preset": "r2i", "train": {"seed": 0, "steps": 10, "context": "window", "env_options": {}},
         "agent": {"world_model": {"s5": {"n_blocks": 2}}}}
    b = {"preset": "r2i", "train": {"seed": 1, "steps": 20, "context": "episode", "env_options": {}},
         "agent": {"world_model": {"s5": {"n_blocks": 8}}, "new_key": 1}}
    assert differing_settings([a, b]) == {"agent.world_model.s5.n_blocks": ["2", "8"],
                                          "train.context": ["episode", "window"]}
    assert differing_settings([a, a, None]) == {}  # a run without a config shares no key to compare
    assert differing_settings([a]) == {}
    line = pooling_warning("e", "p", {f"k{i}": ["1", "2"] for i in range(5)})
    assert line == "p on e: pools runs as seeds that differ in k0 (1 / 2), k1 (1 / 2), k2 (1 / 2) and 2 more; " \
                   "split them with --group-by k0"


def test_a_run_that_stopped_when_solved_holds_its_last_value(tmp_path):
    early = write_run(tmp_path / "a", "builtin:recall/2", "r2i", 0, [0, 1], eval_every=1)
    late = write_run(tmp_path / "b", "builtin:recall/2", "r2i", 1, [0, 0, 0, 1], eval_every=1)
    (tmp_path / "a" / "summary.json").write_text(json.dumps({"solved": True}))
    result = plot_runs([early, late], str(tmp_path / "fig.png"), metric="eval/return_mean")
    curve = result["curves"][0]
    assert curve["x"][-1] == 40  # the grid reaches the late seed's end; without the hold it would stop at 20
    assert curve["mean"][-1] == 1.0  # both solved: the early one still counts as 1 after it stopped


def test_raw_returns_of_different_tasks_are_not_aggregated(tmp_path):
    runs = [write_run(tmp_path / f"{game}", f"minatar:{game}", "drama", 0, [1, 2, 3], eval_every=1)
            for game in ("Breakout", "SpaceInvaders")]
    assert plot_runs(runs, str(tmp_path / "a.png"), metric="eval/return_mean")["aggregates"] is None
    with_refs = plot_runs(runs, str(tmp_path / "b.png"), metric="eval/return_mean",
                          references={"minatar:Breakout": (0.2, 10.0), "minatar:SpaceInvaders": (4.0, 40.0)})
    assert with_refs["aggregates"] is not None
