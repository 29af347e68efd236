"""The configuration tree, presets and `a.b=value` overrides.

A run is described by one ``Config``: ``train`` (the driver: env, steps, replay, schedule) and ``agent`` (world model,
sequence core, actor-critic, optimisers). ``load_config`` builds it in this order, each layer a flat mapping of dotted
keys to values, all applied through the same type-checked ``apply_overrides``:

    dataclass defaults -> preset base -> preset size -> suite overlay (for all sizes) -> suite overlay for the size
    -> the env id -> a config file (``--config``, config_file.py) -> command-line overrides

Presets live in ``presets/<name>.yaml`` as ``{description, extends, base, sizes: {debug, small, paper}, suites: {suite:
{all, <size>}}}``; the suite is the part of the env id before the colon; ``extends: <preset>`` applies that preset's
layers first (each of the child's layers right after the parent's layer of the same kind).

Every field is typed and checked when it is set (enums are ``Literal``s, with did-you-mean); a mapping given for a
group (``agent.world_model.s5: {width: 128, n_layers: 2}``) sets those keys and keeps the others. Each sequence core
has its own group of options (``agent.world_model.<core>``), so switching ``core`` never meets another core's keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml

from ..dreamer.agent import AgentConfig
from ..errors import UserError, choice_message
from ..sequence import CORES
from ..sequence.base import build_config
from .config_upgrade import RENAMED

SIZES = ("debug", "small", "paper")


@dataclass
class TrainConfig:
    """The driver: env, budget, replay and the update schedule."""

    env: str = "builtin:recall/5"  # suite:task (see `ssmworld list envs`)
    env_options: dict[str, Any] = field(default_factory=dict)  # suite options, e.g. {sticky: 0.25} for atari
    steps: int = 50_000  # env steps, summed over envs
    seed: int = 0  # seeds everything in the run: weights, envs, replay sampling, actions
    envs: int = 1  # environments stepped together (gymnasium vector API)
    batch_size: int = 16  # B sequences per update
    sequence_length: int = 64  # T steps per sequence
    train_ratio: float = 512.0  # replayed steps per env step: updates per env step = train_ratio / (B * T)
    prefill: int = 1000  # env steps of random actions; learning starts then, or once each env's replay holds a batch
    replay_capacity: int = 1_000_000  # steps (FIFO)
    replay_chunk: int = 256  # steps per replay chunk (>= sequence_length)
    # What a training sequence remembers from before its first step: "window" = nothing (it starts from the core's
    # initial state), "episode" = the episode so far: the core state entering its first step is recomputed without
    # gradient over up to context_length earlier steps of its episode (gradients stay inside the window). Cost per
    # update: a forward pass (encoder included) over up to batch_size x context_length replayed steps; lower it for
    # long episodes of images (Memory Maze: 4000 steps of 64x64 frames).
    context: Literal["window", "episode"] = "window"
    context_length: int = 4096  # train.context=episode: at most this many earlier steps of the episode are replayed
    life_loss_terminal: bool = False  # atari: a lost life is a termination target for the world model only (Drama)
    # uniform | recency | dfs (Drama's dynamic frequency-based sampling)
    sampler: Literal["uniform", "recency", "dfs"] = "uniform"
    dfs_temperature: float = 10.0  # tau of DFS: p_i = softmax(-n_i / tau); larger is closer to uniform
    eval_every: int = 10_000  # env steps between evaluations (0: only at the end)
    eval_episodes: int = 10  # greedy-policy episodes per evaluation (0: none)
    log_every: int = 1_000  # env steps between train/ and perf/ metric rows
    checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints (and one at the end; 0: every step)
    checkpoint_every: int = 0  # also every this many env steps (0: off); deterministic, for exact-resume tests
    keep_checkpoints: int = 2  # newest kept on disk (older ones deleted; 0: all, the replay of 2; >= 2 under torchrun)
    # Stop when solved (as SB3's StopTrainingOnRewardThreshold): end the run at the first evaluation whose
    # stop_metric (success_rate | return_mean) is >= stop_at; None: train for all the steps. The summary's "solved":
    # whether the run's final evaluation (the early one, or the one at the end) met it
    stop_at: float | None = None
    # the evaluation metric train.stop_at compares: success_rate | return_mean
    stop_metric: Literal["success_rate", "return_mean"] = "success_rate"
    minutes: float = 0.0  # wall-clock budget of this invocation: stop (evaluate, checkpoint) after it; 0 = none
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        """Ranges; checked again on the final values (check_config) and where training starts (the command line sets
        --steps and --seed after loading)."""
        for names, ok, what in ((_POSITIVE, lambda v: v > 0, "positive"), (_NON_NEGATIVE, lambda v: v >= 0, ">= 0")):
            for name in names:
                value = getattr(self, name)
                if not (ok(value) and math.isfinite(value)):  # NaN fails both
                    raise UserError(f"train.{name} must be {what}, got {value}")


_POSITIVE = ("steps", "envs", "batch_size", "sequence_length", "replay_capacity", "replay_chunk", "context_length",
             "log_every", "dfs_temperature")
_NON_NEGATIVE = ("seed", "prefill", "train_ratio", "eval_every", "eval_episodes", "checkpoint_minutes",
                 "checkpoint_every", "keep_checkpoints", "minutes")


@dataclass
class Config:
    preset: str = "r2i"  # the preset the run was built from (presets/<name>.yaml)
    # debug | small | paper: the preset size (tests, CPU-practical, the published sizes)
    size: Literal["debug", "small", "paper"] = "small"
    train: TrainConfig = field(default_factory=TrainConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)


class ConfigError(UserError):
    """A bad preset, key or value. The message is one line saying what is wrong and what is accepted."""


# ---- presets -------------------------------------------------------------------------------------------------------
def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ssmworld.presets").iterdir() if p.name.endswith(".yaml"))


def read_preset(name: str) -> dict[str, Any]:
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown preset {name!r}; {hint}available: {', '.join(names)}")
    data = yaml.safe_load(resources.files("ssmworld.presets").joinpath(f"{name}.yaml").read_text()) or {}
    unknown = set(data) - {"description", "extends", "base", "sizes", "suites"}
    if unknown:
        raise ConfigError(f"preset {name}: unknown section(s) {sorted(unknown)}; expected description, extends, base, "
                          "sizes, suites")
    return data


def preset_layers(name: str, size: str, suite: str) -> list[tuple[str, dict]]:
    """The preset's layers in order: base, size, suite overlay, suite overlay for the size; within each kind the
    oldest ancestor first (a preset that ``extends`` another, at any depth, comes right after it)."""
    chain: list[str] = []
    while name is not None:  # child -> parent -> grandparent ...
        if name in chain:
            raise ConfigError(f"preset {chain[0]}: circular 'extends' ({' -> '.join(chain + [name])})")
        chain.append(name)
        name = read_preset(name).get("extends")
    kinds: list[list[tuple[str, dict]]] = [[], [], [], []]
    for preset in reversed(chain):  # the root first
        data = read_preset(preset)
        overlay = (data.get("suites") or {}).get(suite) or {}
        own = [(f"preset {preset}", data.get("base") or {}),
               (f"preset {preset} size {size}", (data.get("sizes") or {}).get(size) or {}),
               (f"preset {preset} suite {suite}", overlay.get("all") or {}),
               (f"preset {preset} suite {suite} size {size}", overlay.get(size) or {})]
        for kind, layer in zip(kinds, own):
            kind.append(layer)
    return [layer for kind in kinds for layer in kind]


def load_config(preset: str = "r2i", size: str = "small", env: str | None = None,
                overrides: list[str] | dict[str, Any] | None = None, sources: dict[str, str] | None = None,
                file: tuple[str, dict[str, Any]] | None = None) -> Config:
    """Build the config of a run (see the module docstring for the order of layers). ``sources``, if given, is filled
    with {dotted key: the layer that last set it} (``ssmworld config``). ``file``: (origin, {dotted key: value}), a
    config file's layer, applied before the overrides (``config_file.load_config_with_file``)."""
    sources = {} if sources is None else sources
    if size not in SIZES:
        close = difflib.get_close_matches(size, SIZES, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown size {size!r}; {hint}available: {', '.join(SIZES)}")
    cfg = Config(preset=preset, size=size)
    if env is not None:
        cfg.train.env = env
    suite = cfg.train.env.partition(":")[0]
    for origin, layer in preset_layers(preset, size, suite):
        apply_overrides(cfg, layer, origin=origin)
        sources.update(dict.fromkeys(_keys_set(layer), origin))
    sources.update(preset="--preset", size="--size")
    if env is not None:
        cfg.train.env = env
        sources["train.env"] = "--env"
    if file is not None:
        apply_overrides(cfg, file[1], origin=file[0])
        sources.update(dict.fromkeys(_keys_set(file[1]), file[0]))
    if overrides:
        apply_overrides(cfg, overrides)
        items = dict(parse_override(o) for o in overrides) if isinstance(overrides, list) else overrides
        sources.update(dict.fromkeys(_keys_set(items), "command line"))
    if cfg.train.env.partition(":")[0] != suite:
        raise ConfigError("set the env with --env (it selects the suite overlay), not with train.env=")
    check_config(cfg, "config")
    return cfg


def _keys_set(layer: dict[str, Any]) -> list[str]:
    """The leaf keys a layer sets: a mapping given for a group sets each of its keys."""
    keys = []
    for key, value in layer.items():
        if isinstance(value, dict) and _is_group(key):
            keys += _keys_set({f"{key}.{sub}": sub_value for sub, sub_value in value.items()})
        else:
            keys.append(key)
    return keys


# ---- overrides -----------------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', value parsed as YAML: 3 -> int, 1e-4 -> float, true -> bool, [1, 2] -> list)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.batch_size=32")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        return key.strip(), value


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any], origin: str = "override") -> Config:
    """Set dotted keys on ``cfg`` in place, converting and type-checking each value against the dataclass field."""
    items = [parse_override(o) for o in overrides] if isinstance(overrides, list) else list(overrides.items())
    for key, value in items:
        _set(cfg, key, value, origin)
    return cfg


def leaf_keys(obj: Any = None, prefix: str = "") -> list[str]:
    """All settable dotted keys of a config (dict-valued fields end in '.<any>')."""
    obj = Config() if obj is None else obj
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += leaf_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _set(cfg: Config, key: str, value: Any, origin: str) -> None:
    parts, obj = key.split("."), cfg
    for i, name in enumerate(parts):
        if isinstance(obj, dict):  # free-form mapping (train.env_options): checked by the suite
            _set_in_dict(obj, parts[i:], value)
            return
        names = {f.name for f in dataclasses.fields(obj)}
        if name not in names:
            old = ".".join(parts[: i + 1])
            if old in RENAMED:
                core = cfg.agent.world_model.core if isinstance(cfg, Config) else "<core>"
                new = RENAMED[old].format(core=core, option=".".join(parts[i + 1:]) or "<option>")
                raise ConfigError(f"{origin}: {old!r} was renamed: use {new}")
            raise ConfigError(f"{origin}: unknown key {key!r}{_suggest(key)}")
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(obj, name)):
                if isinstance(value, dict):  # {a: 1, b: 2} on a group sets those keys, the others stay
                    for sub, sub_value in value.items():
                        _set(cfg, f"{key}.{sub}", sub_value, origin)
                    return
                if key in RENAMED:  # a key that became a group: agent.imagination=context
                    raise ConfigError(f"{origin}: {key!r} is now a group: use {RENAMED[key]}")
                group = getattr(obj, name)
                raise ConfigError(f"{origin}: {key!r} is a group; set one of its keys, e.g. "
                                  f"{leaf_keys(group, key + '.')[0]}")
            hint = typing.get_type_hints(type(obj))[name]
            setattr(obj, name, _convert(value, hint, key, origin))
            return
        obj = getattr(obj, name)
        if not (dataclasses.is_dataclass(obj) or isinstance(obj, dict)):
            raise ConfigError(f"{origin}: {'.'.join(parts[:i + 1])!r} is a value, not a group (in {key!r})")


def _set_in_dict(mapping: dict, parts: list[str], value: Any) -> None:
    for name in parts[:-1]:
        mapping = mapping.setdefault(name, {})
    mapping[parts[-1]] = value


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, leaf_keys(), n=1, cutoff=0.5)
    if not close:  # a misspelt last part under the right group
        last = key.rsplit(".", 1)[-1]
        close = [k for k in leaf_keys() if k.rsplit(".", 1)[-1] in difflib.get_close_matches(
            last, [c.rsplit(".", 1)[-1] for c in leaf_keys()], n=1, cutoff=0.6)][:1]
    return f"; did you mean {close[0]!r}?" if close else "; see `ssmworld list keys`"


def _convert(value: Any, hint: Any, key: str, origin: str) -> Any:
    """Check/convert a parsed value for a field annotated ``hint`` (int, float, bool, str, X | None, dict, list)."""
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin_type = typing.get_origin(hint) or hint
    if origin_type is typing.Literal:  # an enum: one of the listed strings
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
        raise ConfigError(f"{origin}: {choice_message(key, value, typing.get_args(hint))}")
    bad = ConfigError(f"{origin}: {key} expects {_type_name(hint)}, got {value!r}")
    if origin_type is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if origin_type is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        try:  # 1e5 or "1e5" for a step count
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if number.is_integer():
            return int(number)
        raise bad
    if origin_type is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if origin_type is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad
        return str(value)
    if origin_type is dict:
        if isinstance(value, dict):
            return dict(value)
        raise bad
    if origin_type in (list, tuple):
        if isinstance(value, (list, tuple)):
            return origin_type(value)
        raise bad
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint)).replace("typing.", "")


def check_config(cfg: Config, origin: str) -> None:
    """The selected core's own checks (ranges, divisibility) and every other group's ``__post_init__`` checks on the
    final values, at load time: overrides set fields one by one after the groups were constructed."""
    world_model = cfg.agent.world_model
    try:
        build_config(type(world_model.core_options), world_model.core, dataclasses.asdict(world_model.core_options))
    except UserError as e:
        raise ConfigError(f"{origin}: {e} (keys agent.world_model.{world_model.core}.*)") from None
    cores = {type(getattr(world_model, f.name)) for f in dataclasses.fields(world_model) if f.name in CORES}
    for group in _groups(cfg):
        if type(group) not in cores and hasattr(group, "__post_init__"):
            try:
                group.__post_init__()
            except UserError as e:
                raise ConfigError(f"{origin}: {e}") from None


def _groups(obj: Any) -> list[Any]:
    """Every dataclass group below ``obj`` (depth first)."""
    found = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found += [value, *_groups(value)]
    return found


def get_key(obj: Any, key: str) -> Any:
    """The value at dotted ``key`` in a config (or group)."""
    for name in key.split("."):
        obj = getattr(obj, name)
    return obj


def _is_group(key: str) -> bool:
    """True for a group's key (agent.world_model.s5); False for a value's, and for keys inside a dict-valued field
    (train.env_options.x), which have no default to look up."""
    try:
        return dataclasses.is_dataclass(get_key(Config(), key))
    except AttributeError:
        return False
