"""`ssmworld bsuite-score RUN...`: bsuite's own scores of ssmworld runs on `bsuite:` envs.

Each run's episode rows (metrics.jsonl: return, length and the per-episode deltas of the env's ``bsuite_info()``
counters, see envs/bsuite_adapter.py) are turned into the rows bsuite's ``Logging`` wrapper writes (steps, episode,
total_return, episode_len, episode_return and the cumulative counters, at bsuite's logarithmic episode schedule),
written with bsuite's CSV logger to ``<results_dir>/bsuite_id_<experiment>-<index>.csv``, loaded back with bsuite's
``csv_load`` and scored with bsuite's ``summary_analysis.bsuite_score``: the numbers any bsuite report uses.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import UserError, import_optional
from ..runtime.config_file import load_yaml
from ..runtime.logger import read_metrics

# bsuite_info() counters that are a running maximum of raw (unscaled, noise-free) episode returns (the cartpole
# experiments), not a sum: with train.envs > 1 the run's value is the best episode of any env (from 0, as bsuite's)
RUNNING_MAXIMA = ("best_episode",)


def bsuite_rows(logdir: str) -> tuple[str, list[dict[str, Any]]]:
    """(bsuite id, the rows bsuite's Logging wrapper would have written) of one run directory (no rows before its
    first finished episode)."""
    from bsuite.utils.wrappers import _logarithmic_logging

    config, metrics = os.path.join(logdir, "config.yaml"), os.path.join(logdir, "metrics.jsonl")
    if not (os.path.exists(config) and os.path.exists(metrics)):
        raise UserError(f"{logdir}: no config.yaml / metrics.jsonl; give run directories of `ssmworld train`")
    env = load_yaml(config).train.env
    if not env.startswith("bsuite:"):
        raise UserError(f"{logdir}: env {env!r} is not a bsuite: env")
    rows, totals = [], {"steps": 0, "episode": 0, "total_return": 0.0}
    counters: dict[str, float] = {}
    for row in read_metrics(metrics):
        if "episode/return" not in row:
            continue
        totals["steps"] += int(row["episode/length"])
        totals["episode"] += 1
        totals["total_return"] += float(row["episode/return"])
        for key in (k for k in row if k.startswith("episode/bsuite/")):
            name = key[len("episode/bsuite/"):]
            if name in RUNNING_MAXIMA:  # per env: the sum of several envs' maxima is no one's best episode
                episode = row.get("episode/bsuite/raw_return", row["episode/return"])  # unscaled, without noise
                counters[name] = max(counters.get(name, 0.0), float(episode))
            else:
                counters[name] = counters.get(name, 0.0) + float(row[key])
        if _logarithmic_logging(totals["episode"]):
            rows.append({**totals, "episode_len": int(row["episode/length"]),
                         "episode_return": float(row["episode/return"]), **counters})
    return env.partition(":")[2], rows


def bsuite_score(run_dirs: list[str], results_dir: str) -> list[dict[str, Any]]:
    """Write every run's bsuite CSV under ``results_dir/<its absolute path, / as __>`` and score each run with bsuite's
    analysis.
    Returns one dict per run: run, bsuite_id, episodes, experiment, score."""
    needs = "bsuite-score needs the bsuite extra"
    summary_analysis = import_optional("bsuite.experiments.summary_analysis", "bsuite", needs)
    csv_load = import_optional("bsuite.logging.csv_load", "bsuite", needs)
    csv_logging = import_optional("bsuite.logging.csv_logging", "bsuite", needs)
    out = []
    for logdir in run_dirs:
        bsuite_id, rows = bsuite_rows(logdir)
        if not rows:  # nothing to score yet
            out.append({"run": logdir, "bsuite_id": bsuite_id, "episodes": 0, "experiment": bsuite_id.split("/")[0],
                        "score": None, "finished": False})
            continue
        # one directory per run, named by its whole path: bsuite's loader reads every CSV in the directory, and the
        # runs of a sweep share their last path part (seed0, seed1, ...)
        name = os.path.abspath(logdir).strip(os.sep).replace(os.sep, "__") or "run"
        directory = os.path.join(results_dir, name)
        logger = csv_logging.Logger(bsuite_id, directory, overwrite=True)
        for row in rows:  # bsuite's logger rewrites its CSV per row; the logarithmic schedule keeps them few
            logger.write(row)
        frame, sweep_vars = csv_load.load_bsuite({name: directory})
        scores = summary_analysis.bsuite_score(frame, sweep_vars)
        experiment = bsuite_id.split("/")[0]
        mine = scores[scores["bsuite_env"] == experiment].iloc[0]
        out.append({"run": logdir, "bsuite_id": bsuite_id, "episodes": rows[-1]["episode"], "experiment": experiment,
                    "score": float(mine["score"]), "finished": bool(mine["finished"])})
    return out
