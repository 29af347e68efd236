"""Learning curves and aggregate statistics over run directories (``ssmworld plot``).

Curves: runs are grouped by (env, preset) from their config.yaml (by (env, preset-size) when the runs span several
sizes, and also by the value of any config key given as ``group_by``, e.g. train.sampler); within a group the runs
are seeds (a warning names any other setting they differ in, see run_settings.py). A directory that is not a run
(e.g. an `ssmworld sweep` root) stands for the run directories found under it. Each seed's metric is put on a common
grid of x by linear interpolation (``episode/*`` metrics first smoothed by a trailing moving average over episodes;
other rows, e.g. ``eval/*``, are used as logged) and the curve is the mean across seeds with a 95%
percentile-bootstrap confidence interval (2000 seeded resamples of the seeds).

Aggregates (runs spanning >= 2 envs): per preset, each seed's final score (mean of the last 10% of its curve) per task,
normalised (Atari returns: human-normalised; DMC returns: / 1000; otherwise min-max over a given (random, best)
pair, else raw), summarised
by the interquartile mean (IQM) and the optimality gap with stratified-bootstrap confidence intervals: runs are
resampled within each task, as in rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from ..errors import UserError, check_output_path, import_optional
from ..runtime.logger import read_metrics
from .run_settings import differing_settings, pooling_warning

RESAMPLES = 2000
CONFIDENCE = 0.95
FINAL_FRACTION = 0.1
Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass
class Run:
    path: str
    env: str
    preset: str
    seed: int
    rows: list[dict[str, Any]]
    size: str = "?"
    config: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None  # summary.json, written when the run ended (None while it runs)

    @property
    def solved(self) -> bool:
        """The run ended at an evaluation that met train.stop_at."""
        return bool((self.summary or {}).get("solved"))

    def setting(self, key: str) -> str:
        """The value of a dotted config key (e.g. "train.sampler") as text; "?" when the config does not have it."""
        value: Any = self.config or {}
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return "?"
            value = value[part]
        return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def load_run(path: str) -> Run:
    """A run directory's metric rows and its (env, preset, seed) from config.yaml."""
    metrics, config = os.path.join(path, "metrics.jsonl"), os.path.join(path, "config.yaml")
    if not os.path.isfile(metrics):
        raise UserError(f"{path}: no metrics.jsonl; give run directories of `ssmworld train --logdir`")
    if not os.path.isfile(config):
        raise UserError(f"{path}: no config.yaml, so its env and preset (how runs are grouped) are unknown")
    try:
        with open(config) as f:
            cfg = yaml.safe_load(f)  # an empty file (None): a damaged config
    except yaml.YAMLError as e:
        raise UserError(f"{config} is not valid YAML ({type(e).__name__}); a damaged run config?") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("train") or {}, dict):
        raise UserError(f"{config} holds no run config (a damaged run directory?)")
    train, summary = cfg.get("train") or {}, None
    summary_path = os.path.join(path, "summary.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    return Run(path, str(train.get("env", "?")), str(cfg.get("preset", "?")), int(train.get("seed", 0)),
               read_metrics(metrics), str(cfg.get("size", "?")), cfg, summary)


def find_runs(paths: list[str]) -> list[str]:
    """``paths`` with every directory that is not a run (no config.yaml) replaced by the run directories under it,
    sorted (hidden directories skipped: an `ssmworld sweep` root keeps its logs in .sweep/). A directory without
    runs under it is kept, so that loading it reports what is missing."""
    found = []
    for path in paths:
        if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "config.yaml")):
            found.append(path)
            continue
        runs = []
        for parent, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if "config.yaml" in files and parent != path:
                runs.append(parent)
                dirs[:] = []  # a run's own subdirectories (checkpoints, replay) hold no runs
        found.extend(runs or [path])
    return found


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values; fewer at the start, so the curve keeps its first episodes."""
    sums = np.concatenate([[0.0], np.cumsum(values, dtype=float)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def run_series(rows: list[dict[str, Any]], metric: str, x: str = "step",
               window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, value) of the rows holding ``metric``, sorted by x; ``episode/*`` metrics smoothed over episodes.

    ``window`` episodes for the moving average; None: n_episodes // 20 clipped to [1, 100]. An x other than "step"
    (e.g. "perf/seconds") is logged on fewer rows than episodes, so it is interpolated over steps for the others."""
    rows = [r for r in rows if _number(r.get("step"))]
    if x == "step":
        def to_x(row: dict[str, Any]) -> float:
            return float(row["step"])
    else:
        known = np.array([(r["step"], r[x]) for r in rows if _number(r.get(x))], dtype=float).reshape(-1, 2)
        if not len(known):
            return np.empty(0), np.empty(0)

        def to_x(row: dict[str, Any]) -> float:
            return float(row[x]) if _number(row.get(x)) else float(np.interp(row["step"], known[:, 0], known[:, 1]))
    pairs = np.array([(to_x(r), float(r[metric])) for r in rows if _number(r.get(metric))], dtype=float)
    if not len(pairs):
        return np.empty(0), np.empty(0)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    xs, ys = pairs[:, 0], pairs[:, 1]
    if metric.startswith("episode/"):  # one row per episode: single episodes are too noisy to read a trend from
        ys = moving_average(ys, window or int(np.clip(len(ys) // 20, 1, 100)))
    return xs, ys


def common_grid(xs: list[np.ndarray], points: int) -> np.ndarray:
    """``points`` evenly spaced x where every seed has data (no seed is extrapolated); all x if they don't overlap."""
    lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
    if hi <= lo:
        lo, hi = min(x[0] for x in xs), max(x[-1] for x in xs)
    return np.linspace(lo, hi, max(points, 2))


def bootstrap_ci(samples: np.ndarray, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap CI of the mean over axis 0 (seeds): the (1 -/+ confidence)/2 quantiles of the means of
    ``resamples`` resamples, with replacement, of the seeds."""
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[0]
    # Each resample as multinomial counts of the seeds: the same draw as picking n indices, without an
    # (resamples, n, points) array.
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples) / n
    means = np.tensordot(weights, samples, axes=1)
    tail = 50.0 * (1.0 - confidence)
    return np.percentile(means, tail, axis=0), np.percentile(means, 100.0 - tail, axis=0)


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: the mean after dropping int(n/4) lowest and highest values (as
    scipy.stats.trim_mean(scores, 0.25), which rliable uses)."""
    s = np.sort(np.asarray(scores, dtype=float), axis=-1)
    n = s.shape[-1]
    k = int(0.25 * n)
    return s[..., k:n - k].mean(axis=-1)


def optimality_gap(scores: np.ndarray, target: float = 1.0) -> np.ndarray:
    """Mean over the last axis of max(0, target - score): how far scores fall short of the target (1 = human)."""
    return np.maximum(0.0, target - np.asarray(scores, dtype=float)).mean(axis=-1)


def stratified_resample(task_scores: dict[str, np.ndarray], resamples: int,
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{task: (resamples, runs)}: each task's runs resampled with replacement among that task's runs only, so every
    resample keeps each task with its own number of runs (tasks are fixed, runs are the random draw)."""
    return {task: s[rng.integers(0, len(s), size=(resamples, len(s)))] for task, s in task_scores.items()}


def stratified_bootstrap_ci(task_scores: dict[str, np.ndarray], statistic: Statistic, resamples: int = RESAMPLES,
                            confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """(statistic of all runs x tasks, CI low, CI high) with a percentile stratified bootstrap."""
    task_scores = {t: np.asarray(s, dtype=float) for t, s in task_scores.items()}
    point = float(statistic(np.concatenate(list(task_scores.values()))))
    boot = statistic(np.concatenate(list(stratified_resample(task_scores, resamples,
                                                             np.random.default_rng(seed)).values()), axis=1))
    return (point, *_percentile_interval(boot, confidence))


def task_means_ci(task_scores: dict[str, np.ndarray], statistic: Callable[..., Any] = np.median,
                  resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
                  ) -> tuple[float, float, float]:
    """``statistic`` (np.median, np.mean) over tasks of each task's mean score (Atari 100k's median and mean HNS;
    rliable's aggregate_median / aggregate_mean) and its stratified-bootstrap CI: (value, low, high)."""
    task_scores = {t: np.asarray(s, dtype=float) for t, s in task_scores.items()}
    point = float(statistic([s.mean() for s in task_scores.values()]))
    resampled = stratified_resample(task_scores, resamples, np.random.default_rng(seed))
    boot = statistic(np.stack([s.mean(axis=1) for s in resampled.values()], axis=1), axis=1)
    return (point, *_percentile_interval(boot, confidence))


def _percentile_interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    """The (1 -/+ confidence)/2 quantiles of bootstrap statistics ``boot`` (resamples,)."""
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return float(low), float(high)


def normalizer(env: str, metric: str,
               references: dict[str, tuple[float, float]] | None = None) -> tuple[str, Callable[[float], float]]:
    """(name, score -> normalised score) for one task: "min-max" by a given (random, best), else "human" for Atari
    returns, "max" (return / 1000) for DeepMind Control returns (every task's reward is in [0, 1] per control step
    over 1000 steps, the scale DMC results are reported in), else "raw"."""
    if references and env in references:
        random, best = references[env]
        return "min-max", lambda s: (s - random) / (best - random)
    suite, _, game = env.partition(":")
    if suite == "atari" and "return" in metric:  # human scores are returns: a success rate is not normalised by them
        from ..envs.atari import human_normalized
        try:
            human_normalized(game, 0.0)
        except ValueError:  # a game without reference scores stays raw rather than failing the whole plot
            return "raw", float
        return "human", lambda s: human_normalized(game, s)
    if suite in ("dmc", "dmc_vision") and "return" in metric:
        return "max", lambda s: s / 1000.0
    return "raw", float


def aggregate(curves: list[dict[str, Any]], metric: str, references: dict[str, tuple[float, float]] | None = None,
              seed: int = 0) -> dict[str, Any]:
    """Per preset: normalised final scores per task; mean and median of the task means, IQM and optimality gap (over
    runs x tasks) with stratified-bootstrap 95% CIs.

    Each preset is summarised over the tasks it has runs for (listed in "tasks")."""
    normalization: dict[str, str] = {}
    by_preset: dict[str, dict[str, np.ndarray]] = {}
    for curve in curves:
        name, norm = normalizer(curve["env"], metric, references)
        normalization[curve["env"]] = name
        by_preset.setdefault(curve["preset"], {})[curve["env"]] = np.array([norm(s) for s in curve["final"]])
    presets = {}
    for preset, tasks in sorted(by_preset.items()):
        entry: dict[str, Any] = {"tasks": sorted(tasks), "scores": {t: s.tolist() for t, s in sorted(tasks.items())}}
        for key, statistic in (("mean", np.mean), ("median", np.median)):
            value, low, high = task_means_ci(tasks, statistic, seed=seed)
            entry[key] = {"value": value, "low": low, "high": high}
        for key, statistic in (("iqm", iqm), ("optimality_gap", optimality_gap)):
            value, low, high = stratified_bootstrap_ci(tasks, statistic, seed=seed)
            entry[key] = {"value": value, "low": low, "high": high}
        presets[preset] = entry
    return {"normalization": normalization, "presets": presets}


def check_figure_path(out: str) -> None:
    """UserError, before any work, unless ``out`` can be written as a figure (check_output_path with the formats
    matplotlib writes, taken from the extension)."""
    check_output_path(out, "--out", _matplotlib()[1].get_supported_filetypes())


def _matplotlib() -> tuple[Any, Any]:
    figure = import_optional("matplotlib.figure", "plot", "ssmworld plot needs matplotlib")
    agg = import_optional("matplotlib.backends.backend_agg", "plot", "ssmworld plot needs matplotlib")
    return figure.Figure, agg.FigureCanvasAgg


def _draw(result: dict[str, Any], out: str) -> None:
    # Figure + the Agg canvas instead of pyplot: no global backend switch in the caller's process (e.g. a notebook).
    Figure, FigureCanvasAgg = _matplotlib()
    curves, agg = result["curves"], result["aggregates"]
    envs = sorted({c["env"] for c in curves})
    presets = sorted({c["preset"] for c in curves})
    colors = {p: f"C{i % 10}" for i, p in enumerate(presets)}
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    width = 4.5 * (max(ncols, 2) if agg else ncols) + 1.0
    fig = Figure(figsize=(width, 3.2 * (nrows + (agg is not None))), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subfigures(2, 1, height_ratios=[nrows, 1]) if agg else (fig, None)
    axes = top.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, env in zip(axes, envs):
        for c in (c for c in curves if c["env"] == env):
            label = f"{c['preset']} ({_count(len(c['seeds']), 'seed')})"
            ax.plot(c["x"], c["mean"], color=colors[c["preset"]], label=label)
            ax.fill_between(c["x"], c["low"], c["high"], color=colors[c["preset"]], alpha=0.25, linewidth=0)
        ax.set(title=env, xlabel=result["x"], ylabel=result["metric"])
        ax.legend(fontsize="small")
    for ax in axes[len(envs):]:
        ax.set_visible(False)
    if agg is not None:
        kinds = set(agg["normalization"].values())
        names_of = {"human": "human-normalised", "min-max": "min-max normalised", "max": "return / 1000",
                    "raw": "raw score"}
        scale = names_of.get(kinds.pop(), "") if len(kinds) == 1 else "mixed normalisation"
        names = sorted(agg["presets"])
        for ax, key, label in zip(bottom.subplots(1, 2), ("iqm", "optimality_gap"), ("IQM", "Optimality gap")):
            for i, preset in enumerate(names):  # rliable style: the CI as a bar, the point estimate as a tick
                e = agg["presets"][preset][key]
                ax.barh(i, e["high"] - e["low"], left=e["low"], height=0.6, color=colors[preset], alpha=0.6)
                ax.plot([e["value"]], [i], marker="|", markersize=18, markeredgewidth=2, color="black")
            ax.set_yticks(range(len(names)), [f"{p} ({_count(len(agg['presets'][p]['tasks']), 'task')})"
                                              for p in names])
            ax.use_sticky_edges = False  # bars stick the x limits to their edges: a point there would be cut in half
            ax.margins(x=0.05, y=0.2)
            ax.set_xlabel(f"{label} ({scale}, 95% CI)")
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp"  # written whole, then renamed: an interrupted plot never leaves half a figure
    fig.savefig(tmp, dpi=110, format=os.path.splitext(out)[1].lstrip(".").lower() or "png")
    os.replace(tmp, out)


def plot_runs(run_dirs: list[str], out: str, metric: str = "episode/return", x: str = "step", points: int = 100,
              seed: int = 0, window: int | None = None,
              references: dict[str, tuple[float, float]] | None = None, group_by: str | None = None
              ) -> dict[str, Any]:
    """Plot learning curves (and aggregates when the runs span >= 2 envs) of ``run_dirs`` to ``out``.

    ``run_dirs``: run directories, or directories to search for them (``find_runs``); ``window``: episodes in the
    moving average of ``episode/*`` metrics (None: automatic); ``references``: {env: (random, best)} for min-max
    normalisation in the aggregates; ``group_by``: a dotted config key whose values split the groups (e.g.
    "train.sampler": one curve per sampler). Returns the plotted numbers (JSON-able): "curves" (per
    (env, preset): grid "x", "mean", "low", "high", per-seed "final" scores, "pooled_differences": the settings its
    runs disagree on), "aggregates" (or None), "skipped" (runs without the metric) and "warnings" (one line per curve
    that pools runs with different settings). Raises ValueError on a directory that is not a run, or when no run has
    the metric."""
    if not run_dirs:
        raise UserError("no run directories given")
    runs = [load_run(d) for d in find_runs(run_dirs)]
    several_sizes = len({r.size for r in runs}) > 1  # sizes of one preset are different agents, not seeds
    groups: dict[tuple[str, str], list[tuple[Run, np.ndarray, np.ndarray]]] = {}
    skipped = []
    for run in runs:
        xs, ys = run_series(run.rows, metric, x, window)
        if len(xs):
            label = f"{run.preset}-{run.size}" if several_sizes else run.preset
            if group_by:
                label += f" {group_by.split('.')[-1]}={run.setting(group_by)}"
            groups.setdefault((run.env, label), []).append((run, xs, ys))
        else:
            skipped.append(run.path)
    if not groups:
        found = sorted({k for r in runs for row in r.rows for k, v in row.items() if _number(v)} - {"step"})
        raise UserError(f"no run has metric {metric!r} with x {x!r}; metrics found: {', '.join(found) or 'none'}")
    curves, warnings = [], []
    for (env, preset), members in sorted(groups.items()):
        differences = differing_settings(run.config for run, _, _ in members)
        if differences:
            warnings.append(pooling_warning(env, preset, differences))
        members = _hold_solved(members)
        grid = common_grid([xs for _, xs, _ in members], points)
        values = np.stack([np.interp(grid, xs, ys) for _, xs, ys in members])
        low, high = bootstrap_ci(values, seed=seed)
        last = max(1, math.ceil(FINAL_FRACTION * len(grid)))
        curves.append({"env": env, "preset": preset, "seeds": [r.seed for r, _, _ in members],
                       "runs": [r.path for r, _, _ in members], "x": grid.tolist(),
                       "mean": values.mean(axis=0).tolist(), "low": low.tolist(), "high": high.tolist(),
                       "final": values[:, -last:].mean(axis=1).tolist(), "pooled_differences": differences})
    several = len({env for env, _ in groups}) >= 2
    comparable = "success" in metric or all(normalizer(env, metric, references)[0] != "raw" for env, _ in groups)
    result = {"metric": metric, "x": x, "out": out, "curves": curves,  # raw returns of different tasks: no aggregate
              "aggregates": aggregate(curves, metric, references, seed) if several and comparable else None,
              "skipped": skipped, "warnings": warnings}
    _draw(result, out)
    return result


def _hold_solved(members: list[tuple[Run, np.ndarray, np.ndarray]]) -> list[tuple[Run, np.ndarray, np.ndarray]]:
    """A run that stopped when solved (train.stop_at) keeps its last value up to the group's last x: seeds that
    solved early would otherwise cut the mean over seeds short (the grid is where every seed has data)."""
    end = max(xs[-1] for _, xs, _ in members)
    return [(run, np.append(xs, end), np.append(ys, ys[-1])) if run.solved and xs[-1] < end else (run, xs, ys)
            for run, xs, ys in members]


__all__ = ["aggregate", "bootstrap_ci", "common_grid", "find_runs", "iqm", "load_run", "task_means_ci",
           "moving_average", "normalizer",
           "optimality_gap", "plot_runs", "run_series", "stratified_bootstrap_ci", "stratified_resample"]
