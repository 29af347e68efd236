"""Config keys renamed on 2026-11-30 (one typed group per core; one imagination group): the message an old key gets
on the command line, and the upgrade that lets run directories written before the renames load and resume."""

from __future__ import annotations

from typing import Any

from ..dreamer.world_model import WorldModelConfig

RENAMED = {  # old key: the message for it
    "agent.world_model.core_cfg": "agent.world_model.{core}.{option} (one group per core)",
    "agent.horizon": "agent.imagination.horizon",
    "agent.imagination": "agent.imagination.starts=posterior|batch|replay",
    "agent.imagination_context": "agent.imagination.context",
    "agent.imagination_starts": "agent.imagination.count",
    "train.imagination_contexts": "agent.imagination.starts=batch|replay",
}


def upgrade(tree: dict[str, Any]) -> dict[str, Any]:
    """Config files written before the renames above (a run's config.yaml) load as they were meant, so that old runs
    still resume: the core's ``core_cfg`` dict goes into its group, the four imagination keys into theirs."""
    agent, train = _group(tree, "agent"), _group(tree, "train")
    world_model = _group(agent, "world_model")
    core = world_model.get("core", WorldModelConfig.core)
    if isinstance(world_model.get("core_cfg"), dict) and isinstance(core, str) and isinstance(
            world_model.get(core, {}), dict):
        options = world_model.pop("core_cfg")
        world_model.setdefault(core, {}).update(options)
    if agent.get("imagination") in ("posterior", "context"):  # the old agent.imagination
        contexts = train.pop("imagination_contexts", "batch")
        starts = "posterior" if agent.pop("imagination") == "posterior" else contexts
        agent["imagination"] = {"starts": starts}
        for old, new in (("horizon", "horizon"), ("imagination_context", "context"), ("imagination_starts", "count")):
            if old in agent:
                agent["imagination"][new] = agent.pop(old)
    return tree


def _group(tree: dict[str, Any], key: str) -> dict[str, Any]:
    """tree[key] if it is a mapping, else an empty one: whatever is not a mapping is left for the loader to report."""
    value = tree.get(key)
    return value if isinstance(value, dict) else {}
