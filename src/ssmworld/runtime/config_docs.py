"""What a configuration is and where each value came from: ``ssmworld config`` and ``ssmworld list keys``.

Each key's one-line description is the comment on its field in the dataclass source (on the field's line, or the
comment lines right above it), so the documentation lives beside the default it documents.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from functools import lru_cache
from typing import Any

from ..sequence import CORES
from .config import Config, get_key, leaf_keys

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=#]+(?:=[^#]*)?(?:#\s*(.*))?$")


@lru_cache(maxsize=None)
def field_descriptions(cls: type) -> dict[str, str]:
    """{field: description} from the comments in ``cls``'s source (a dataclass); fields without one are absent."""
    out: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = _FIELD.match(line)
        if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
            text = match.group(2) or " ".join(above)
            if text:
                out[match.group(1)] = text.strip()
        above = []
    return out


def describe_key(key: str, cfg: Config | None = None) -> str:
    """The description of a dotted key: the comment on its dataclass field."""
    parts, obj = key.split("."), cfg or Config()
    parent = get_key(obj, ".".join(parts[:-1])) if len(parts) > 1 else obj
    return field_descriptions(type(parent)).get(parts[-1], "")


def config_rows(cfg: Config, sources: dict[str, str] | None = None) -> list[tuple[str, Any, str, str]]:
    """(key, value, source layer, description) for every key of ``cfg`` that the run uses (of the per-core groups,
    only the selected core's)."""
    sources = sources or {}
    unused = tuple(f"agent.world_model.{name}." for name in CORES if name != cfg.agent.world_model.core)
    return [(key, get_key(cfg, key), _source(key, sources), describe_key(key, cfg))
            for key in leaf_keys(cfg) if not key.startswith(unused)]


def _source(key: str, sources: dict[str, str]) -> str:
    """The layer that last set ``key`` (itself, or a dict-valued key above it), and those that set entries of a
    dict-valued ``key`` (``train.env_options.sticky=0.25``)."""
    layers, parent = [], key
    while parent:
        if parent in sources:
            layers.append(sources[parent])
            break
        parent = parent.rpartition(".")[0]
    layers += [layer for sub, layer in sources.items() if sub.startswith(f"{key}.")]
    return " + ".join(dict.fromkeys(layers)) or "default"
