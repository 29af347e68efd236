"""ssmworld: model-based reinforcement learning with state-space-model world models.

Public API (imported on first use, so `import ssmworld` stays light):
    ssmworld.load_config(preset, size, env, overrides) -> Config
    ssmworld.train(cfg, logdir=None) -> summary dict
    ssmworld.evaluate(agent, env_id, episodes) -> summary dict
    ssmworld.load_agent(export_dir) -> Policy with act(obs, state) -> (env action, state)
"""

from typing import Any

__version__ = "0.1.0"

_API = {"load_config": "config", "train": "train", "evaluate": "episodes", "load_agent": "export"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'ssmworld' has no attribute {name!r}")


__all__ = ["__version__", "evaluate", "load_agent", "load_config", "train"]
