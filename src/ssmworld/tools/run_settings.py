"""Which settings a set of runs does not share: `ssmworld plot` pools the runs of one (env, preset) as seeds of one
curve, which is only right when nothing else that changes learning differs between them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..runtime.config_file import flatten

# Config keys that do not change what a run learns (its seed, budget, bookkeeping): runs that differ only in these
# are seeds of one curve.
RUN_ONLY_KEYS = frozenset({
    "train.seed", "train.steps", "train.minutes", "train.device", "train.log_every", "train.eval_every",
    "train.eval_episodes", "train.checkpoint_minutes", "train.checkpoint_every", "train.keep_checkpoints",
    "train.stop_at", "train.stop_metric",
})


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def differing_settings(configs: Iterable[Mapping[str, Any] | None], ignore: frozenset[str] = RUN_ONLY_KEYS
                       ) -> dict[str, list[str]]:
    """{key: its distinct values, sorted} for every key outside ``ignore`` that all ``configs`` have and on which
    they disagree. Keys missing from some configs (written by another ssmworld version) are not compared."""
    flat = [{key: _as_text(value) for key, value in flatten(dict(c or {})).items()} for c in configs]
    if len(flat) < 2:
        return {}
    shared = set(flat[0]).intersection(*flat[1:]) - ignore
    spread = {key: sorted({f[key] for f in flat}) for key in sorted(shared)}
    return {key: values for key, values in spread.items() if len(values) > 1}


def pooling_warning(env: str, label: str, differences: dict[str, list[str]], shown: int = 3) -> str:
    """One line saying that a curve pools runs with different settings, and how to split them."""
    parts = [f"{key} ({' / '.join(values)})" for key, values in list(differences.items())[:shown]]
    more = len(differences) - shown
    listed = ", ".join(parts) + (f" and {more} more" if more > 0 else "")
    first = next(iter(differences))
    return (f"{label} on {env}: pools runs as seeds that differ in {listed}; "
            f"split them with --group-by {first}")
