"""Time-mixing sequence cores behind one interface (see base.py): s5, mamba, mamba2, gru, attention."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UserError
from .base import SequenceCore, State, build_config

# name -> (module, class); imported on first use so that `make("gru")` does not pay for the others.
CORES: dict[str, tuple[str, str]] = {
    "s5": ("s5", "S5Core"),
    "mamba": ("mamba", "MambaCore"),
    "mamba2": ("mamba2", "Mamba2Core"),
    "gru": ("gru", "GRUCore"),
    "attention": ("attention", "AttentionCore"),
}


def core_class(name: str) -> type[SequenceCore]:
    if name not in CORES:
        raise UserError(f"unknown sequence core {name!r}; available: {', '.join(sorted(CORES))}")
    module, cls = CORES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make(name: str, input_dim: int, **cfg: Any) -> SequenceCore:
    """Build a core by name. ``cfg`` are fields of that core's dataclass ``Config`` (unknown keys are rejected)."""
    cls = core_class(name)
    if not isinstance(input_dim, int) or input_dim <= 0:
        raise UserError(f"input_dim must be a positive int, got {input_dim!r}")
    return cls(input_dim, build_config(cls.Config, name, cfg))


__all__ = ["CORES", "SequenceCore", "State", "build_config", "core_class", "make"]
