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

from .config import Config, _get, leaf_keys
from .sequence import core_class

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
    """The description of a dotted key (core options: from the configured core's dataclass)."""
    parts, obj = key.split("."), cfg or Config()
    if parts[:3] == ["agent", "world_model", "core_cfg"] and len(parts) == 4:
        return field_descriptions(core_class(obj.agent.world_model.core).Config).get(parts[3], "")
    parent = _get(obj, ".".join(parts[:-1])) if len(parts) > 1 else obj
    return field_descriptions(type(parent)).get(parts[-1], "")


def config_rows(cfg: Config, sources: dict[str, str] | None = None) -> list[tuple[str, Any, str, str]]:
    """(key, value, source layer, description) for every key of ``cfg``, the core's options one by one."""
    sources = sources or {}
    core_fields = dataclasses.fields(core_class(cfg.agent.world_model.core).Config)
    core_cfg = cfg.agent.world_model.core_cfg
    rows = []
    for key in leaf_keys(cfg):
        if key == "agent.world_model.core_cfg":
            for f in core_fields:
                sub = f"{key}.{f.name}"
                value = core_cfg.get(f.name, f.default)
                rows.append((sub, value, _source(sub, sources) if f.name in core_cfg else "default",
                             describe_key(sub, cfg)))
            continue
        rows.append((key, _get(cfg, key), _source(key, sources), describe_key(key, cfg)))
    return rows


def _source(key: str, sources: dict[str, str]) -> str:
    """The layer that last set ``key`` (itself, or a dict-valued key above it)."""
    while key:
        if key in sources:
            return sources[key]
        key = key.rpartition(".")[0]
    return "default"
