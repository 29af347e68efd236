"""Configs in files: a run's config.yaml (written and read back), and `--config FILE` (train, config, sweep).

A config file is a YAML mapping of config keys, nested (``train: {batch_size: 32}``) or dotted
(``train.batch_size: 32``): a few keys of an experiment, or a run's whole config.yaml (rerun it, e.g. with another
``--seed``). Its layer goes between the env id and the command-line overrides:

    preset layers -> the env id -> the file -> command-line key=value overrides (and --steps, --seed, --device)

``preset``, ``size`` and ``train.env`` in the file choose the preset, size and env (and so the suite overlay) unless
--preset, --size or --env are given, which win over the file, as key=value overrides do.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from .config import Config, ConfigError, apply_overrides, check_config, get_key, leaf_keys, load_config
from .config_upgrade import upgrade

CHOOSERS = (("preset", "r2i"), ("size", "small"), ("train.env", None))  # keys that pick layers, and their defaults
_DICT_FIELDS = {k for k in leaf_keys() if isinstance(get_key(Config(), k), dict)}  # e.g. train.env_options


# ---- a run's config.yaml -------------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {dotted key: value} (dict-valued fields such as train.env_options stay whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in _DICT_FIELDS:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def from_dict(tree: dict[str, Any]) -> Config:
    """Rebuild a Config from ``to_dict`` output (e.g. a run's config.yaml), with the same checks as overrides."""
    cfg = Config()
    apply_overrides(cfg, flatten(upgrade(tree)), origin="config file")
    check_config(cfg, "config file")
    return cfg


def save_yaml(cfg: Config, path: str) -> None:
    """Atomically (a temporary file, fsynced, renamed): a run rewrites its config.yaml at every session's start."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_yaml(path: str) -> Config:
    """The Config in ``path``; ConfigError if the file is not a config (damaged, empty, another YAML)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({type(err).__name__}); a damaged run config?") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path} holds no config (a {type(data).__name__}); a damaged run config?")
    return from_dict(data)


# ---- --config FILE -------------------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise ConfigError(f"key {key!r} is given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_config_file(path: str) -> dict[str, Any]:
    """{dotted key: value} of the YAML mapping in ``path`` (old key names of a run's config.yaml upgraded); one-line
    ConfigError for a missing file, a directory, invalid YAML or anything but a mapping of keys. Keys are checked
    when the layer is applied (``load_config``), with did-you-mean."""
    if os.path.isdir(path):
        inside = os.path.join(path, "config.yaml")
        hint = f" (a run's config is {inside})" if os.path.isfile(inside) else ""
        raise ConfigError(f"--config {path} is a directory; give a YAML file{hint}")
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config {path} cannot be read ({type(err).__name__}: {err})") from None
    except ConfigError as err:
        raise ConfigError(f"--config {path}: {err}") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"--config {path} is not valid YAML{line} ({getattr(err, 'problem', None) or err})"
                          ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        kind = type(data).__name__ if not isinstance(data, dict) else "mapping with non-text keys"
        raise ConfigError(f"--config {path} must be a mapping of config keys (e.g. 'train.batch_size: 32'), got a "
                          f"{kind}")
    try:
        return flatten(upgrade(data))
    except RecursionError:  # a YAML alias that contains itself
        raise ConfigError(f"--config {path} nests without end (a YAML alias inside itself)") from None


def choose(layer: dict[str, Any], given: dict[str, str | None], origin: str) -> tuple[dict[str, str], list[str]]:
    """Pop ``preset``, ``size`` and ``train.env`` from a file's ``layer``: ({key: the flag's value, else the file's,
    else the default}, [keys the file chose]). ``given``: the flags, None where not given."""
    chosen, from_file = {}, []
    for key, default in CHOOSERS:
        value = layer.pop(key, None)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{origin}: {key} expects a non-empty str, got {value!r}")
        if given.get(key) is None and value is not None:
            from_file.append(key)
        chosen[key] = given.get(key) or value or default
    return chosen, from_file


def load_config_with_file(path: str, preset: str | None = None, size: str | None = None, env: str | None = None,
                          overrides: list[str] | dict[str, Any] | None = None,
                          sources: dict[str, str] | None = None) -> Config:
    """``load_config`` with the file's layer (see the module docstring); ``preset``, ``size``, ``env``: the flags,
    None where not given. ``sources`` as in ``load_config``, the file's keys labelled ``--config <path>``."""
    origin, layer = f"--config {path}", read_config_file(path)
    chosen, from_file = choose(layer, {"preset": preset, "size": size, "train.env": env}, origin)
    sources = {} if sources is None else sources
    cfg = load_config(chosen["preset"], chosen["size"], chosen["train.env"], overrides, sources, (origin, layer))
    sources.update({key: origin for key in from_file if sources.get(key) != "command line"})
    return cfg


__all__ = ["choose", "flatten", "from_dict", "load_config_with_file", "load_yaml", "read_config_file", "save_yaml",
           "to_dict"]
