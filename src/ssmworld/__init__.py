"""ssmworld: model-based reinforcement learning with state-space-model world models.

Layout (each layer imports only the ones below it; docs/ARCHITECTURE.md):
    cli.py, cli_parser.py   the command line
    tools/                  benchmarks, plots, videos, export, bsuite scoring
    runtime/                config and presets, the train loop, checkpoints, logging, distributed, sweeps
    dreamer/                the algorithm: world model, imagination, actor-critic, agent, replay
    sequence/, nn/, envs/   sequence cores, network blocks, environment suites
    errors.py               bad input vs bugs

Public API (imported on first use, so `import ssmworld` stays light):
    ssmworld.load_config(preset, size, env, overrides) -> Config
    ssmworld.train(cfg, logdir=None) -> summary dict
    ssmworld.evaluate(agent, env_id, episodes) -> summary dict
    ssmworld.load_agent(export_dir) -> Policy with act(obs, state) -> (env action, state)
"""

from typing import Any

__version__ = "0.1.0"

_API = {"load_config": "runtime.config", "train": "runtime.train", "evaluate": "runtime.episodes",
        "load_agent": "tools.export"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'ssmworld' has no attribute {name!r}")


__all__ = ["__version__", "evaluate", "load_agent", "load_config", "train"]
