"""The grid of `ssmworld sweep`: bash-style brace expansion of env ids, one RunSpec (and run directory) per
(preset, size, env, seed), and the check of every grid point before anything starts."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

from ..errors import UserError

MAX_RUNS = 10_000  # a grid larger than this is almost surely a typo in a brace range
RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")


def _brace_group(pattern: str, start: int) -> tuple[int, list[str]]:
    """(index of the '}' closing the '{' at ``start``, the group's text split at its top-level commas)."""
    depth, parts, last = 0, [], start + 1
    for i in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[i], 0)
        if depth == 0:
            return i, parts + [pattern[last:i]]
        if pattern[i] == "," and depth == 1:
            parts.append(pattern[last:i])
            last = i + 1
    raise UserError(f"unbalanced braces in {pattern!r}: '{{' at {start} is never closed")


def _integer_range(match: re.Match[str]) -> list[str]:
    """The values of a bash range {a..b[..step]}: inclusive, descending when b < a, zero-padded to the widest
    endpoint when an endpoint has a leading zero."""
    first, last = int(match[1]), int(match[2])
    step = abs(int(match[3])) if match[3] else 1
    if step == 0:
        raise UserError(f"brace range {{{match[0]}}} has step 0")
    values = range(first, last + 1, step) if first <= last else range(first, last - 1, -step)
    padded = any(re.fullmatch(r"-?0\d+", end) for end in (match[1], match[2]))
    width = max(len(match[1]), len(match[2])) if padded else 0
    return [f"{v:0{width}d}" for v in values]


def expand_braces(pattern: str) -> list[str]:
    """Bash-style brace expansion: ``{0..22}`` (integer ranges, optional ``..step``, zero padding as in ``{00..10}``,
    descending as in ``{3..1}``) and ``{a,b,c}`` alternatives (which may nest); several groups give their cartesian
    product, in bash's order. ValueError for unbalanced braces and for groups that are neither."""
    start, close = pattern.find("{"), pattern.find("}")
    if start < 0 or 0 <= close < start:
        if close >= 0:
            raise UserError(f"unbalanced braces in {pattern!r}: '}}' at {close} was never opened")
        return [pattern]
    end, parts = _brace_group(pattern, start)
    body, suffix = pattern[start + 1:end], expand_braces(pattern[end + 1:])
    if RANGE.fullmatch(body):
        choices = _integer_range(RANGE.fullmatch(body))
    elif len(parts) > 1:
        choices = [text for part in parts for text in expand_braces(part)]
    else:
        raise UserError(f"{{{body}}} in {pattern!r} is neither a range {{a..b}} of integers nor a list {{x,y}}")
    return [pattern[:start] + choice + rest for choice in choices for rest in suffix]


@dataclass(frozen=True)
class RunSpec:
    """One grid point: what `ssmworld train` is given, and its run directory."""

    preset: str
    size: str
    env: str
    seed: int
    logdir: str

    @property
    def name(self) -> str:
        """``<preset>-<size>/<env>/seed<k>``: the run directory relative to the sweep root."""
        return os.path.join(*self.logdir.split(os.sep)[-3:])


def run_dir(root: str, preset: str, size: str, env: str, seed: int) -> str:
    """``<root>/<preset>-<size>/<env with ':' and '/' replaced by '_'>/seed<seed>``."""
    return os.path.join(root, f"{preset}-{size}", env.replace(":", "_").replace("/", "_"), f"seed{seed}")


def make_grid(root: str, presets: list[str], sizes: list[str], env_pattern: str, seeds: list[int]) -> list[RunSpec]:
    """Every (preset, size, env, seed), in that nesting order; ValueError for an empty, huge or colliding grid."""
    env_ids = expand_braces(env_pattern)
    points = list(itertools.product(presets, sizes, env_ids, seeds))
    if not points:
        raise UserError("the sweep grid is empty (no preset, size, env or seed)")
    if len(points) > MAX_RUNS:
        raise UserError(f"the sweep grid has {len(points)} runs, more than {MAX_RUNS}; check the brace ranges")
    runs, owners = [], {}
    for preset, size, env, seed in points:
        run = RunSpec(preset, size, env, seed, run_dir(root, preset, size, env, seed))
        if run.logdir in owners:
            raise UserError(f"runs {owners[run.logdir]} and {env} (seed {seed}) would share {run.logdir}")
        owners[run.logdir] = env
        runs.append(run)
    return runs


def validate(runs: list[RunSpec], steps: int | None, overrides: list[str], config: str | None = None) -> None:
    """Build, once per (preset, size, env), the config (over the ``config`` file's keys, if given) and what
    `ssmworld train` builds before writing anything (env, spaces, agent); seeds change neither. Raises UserError on
    bad input; writes nothing."""
    from .config import load_config
    from .config_file import load_config_with_file
    from .train import Trainer

    for preset, size, env in dict.fromkeys((run.preset, run.size, run.env) for run in runs):
        if config:
            cfg = load_config_with_file(config, preset, size, env, overrides)
        else:
            cfg = load_config(preset, size, env, overrides)
        if steps is not None:
            cfg.train.steps = steps
        cfg.train.device = "cpu"  # the driver may have no GPU while the workers do: devices are checked by the run
        Trainer(cfg, quiet=True).vec.close()


__all__ = ["MAX_RUNS", "RunSpec", "expand_braces", "make_grid", "run_dir", "validate"]
