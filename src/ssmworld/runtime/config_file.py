"""Config files: `ssmworld train --config FILE` (and `config`, `sweep`).

A config file is a YAML mapping of config keys, nested (``train: {batch_size: 32}``) or dotted
(``train.batch_size: 32``): a few keys of an experiment, or a run's whole config.yaml (rerun it, e.g. with another
``--seed``). Its layer goes between the env id and the command-line overrides:

    preset layers -> the env id -> the file -> command-line key=value overrides (and --steps, --seed, --device)

``preset``, ``size`` and ``train.env`` in the file choose the preset, size and env (and so the suite overlay) unless
--preset, --size or --env are given, which win over the file, as key=value overrides do.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from .config import Config, ConfigError, flatten, load_config
from .config_upgrade import upgrade

CHOOSERS = (("preset", "r2i"), ("size", "small"), ("train.env", None))  # keys that pick layers, and their defaults


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
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config {path} cannot be read ({type(err).__name__}: {err})") from None
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
    return flatten(upgrade(data))


def load_config_with_file(path: str, preset: str | None = None, size: str | None = None, env: str | None = None,
                          overrides: list[str] | dict[str, Any] | None = None,
                          sources: dict[str, str] | None = None) -> Config:
    """``load_config`` with the file's layer (see the module docstring); ``preset``, ``size``, ``env``: the flags,
    None where not given. ``sources`` as in ``load_config``, the file's keys labelled ``--config <path>``."""
    origin = f"--config {path}"
    layer, given = read_config_file(path), {"preset": preset, "size": size, "train.env": env}
    chosen, from_file = {}, []
    for key, default in CHOOSERS:
        value = layer.pop(key, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{origin}: {key} expects str, got {value!r}")
        if given[key] is None and value is not None:
            from_file.append(key)
        chosen[key] = given[key] or value or default
    sources = {} if sources is None else sources
    cfg = load_config(chosen["preset"], chosen["size"], chosen["train.env"], overrides, sources, (origin, layer))
    sources.update(dict.fromkeys(from_file, origin))
    return cfg


__all__ = ["load_config_with_file", "read_config_file"]
