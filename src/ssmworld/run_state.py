"""A run's state on disk: checkpoints (save, restore), the metrics a killed run wrote after its last checkpoint, and
the signals that stop a run cleanly. Functions of the Trainer (train.py), which owns the counters they save.

A checkpoint is the replay (incremental chunk files) first, then step-N/{tensors.pt, state.json}: weights, optimisers,
RNG states, counters, partial metric sums, the replay's chunk lengths and DFS counters, and the envs' episodes in
progress where they can be saved (acting_state.py). Resume restores exactly that.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import torch

from . import checkpoint
from .errors import UserError

if TYPE_CHECKING:
    from .train import Trainer


# ---- checkpoints -----------------------------------------------------------------------------------------------
def save(self: Trainer, acting: bool = False) -> bool:
    """Replay first (incremental), then model/optimisers/RNG/counters atomically; the checkpoint records the replay
    content it belongs to, so a crash in between cannot mismatch them. ``acting``: also the episodes in progress
    where the envs allow it (acting_state); returns whether they were saved (else a resume restarts them)."""
    self.replay.save(os.path.join(self.state_dir(), "replay"))
    tensors = {"agent": self.agent.state_dict(),
               "optimizers": {k: o.state_dict() for k, o in self.agent.optimizers().items()},
               "torch_rng": torch.get_rng_state(),
               "replay_visits": {k: torch.from_numpy(v) for k, v in self.replay.sampler_state().items()}}
    saved = self._acting_state() if acting else None
    if saved is not None:
        tensors["acting"] = saved[0]
    state = {"updates": self.updates, "episodes": self.episodes, "update_credit": self.update_credit,
             "seconds": self.seconds_before + time.perf_counter() - self.started,
             "window_sums": self.window_sums, "window_count": self.window_count, "window_step": self.window_step,
             "next_eval": self.next_eval, "rng": self.rng.bit_generator.state,
             "replay_rng": self.replay.rng.bit_generator.state, "replay_lengths": self.replay.lengths(),
             "world_size": self.group.world_size, "acting": saved[1] if saved is not None else None}
    checkpoint.save(os.path.join(self.state_dir(), "checkpoints"), self.step, tensors, state,
                    self.tc.keep_checkpoints)
    return saved is not None

def restore(self: Trainer) -> None:
    if not self.logdir:
        raise ValueError("resume needs a logdir")
    tensors, state = _load(self)
    self.agent.load_state_dict(tensors["agent"])
    for name, opt in self.agent.optimizers().items():
        opt.load_state_dict(tensors["optimizers"][name])
    torch.set_rng_state(tensors["torch_rng"].cpu())
    self.replay.load(os.path.join(self.state_dir(), "replay"), state["replay_lengths"])
    self.replay.load_sampler_state({k: v.numpy() for k, v in tensors.get("replay_visits", {}).items()})
    self.rng.bit_generator.state = state["rng"]
    self.replay.rng.bit_generator.state = state["replay_rng"]
    self.step, self.updates, self.episodes = state["step"], state["updates"], state["episodes"]
    self.update_credit, self.next_eval = state["update_credit"], state["next_eval"]
    self.seconds_before = state.get("seconds", 0.0)
    self.window_sums, self.window_count = state["window_sums"], state["window_count"]
    self.window_step = state["window_step"]
    if state.get("acting") is not None:
        self.saved_acting = (tensors["acting"], state["acting"])
    if self.group.main:
        truncate_metrics(os.path.join(self.logdir, "metrics.jsonl"), self.step)

def _load(self: Trainer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, state) of the newest checkpoint; data-parallel: the newest step that every rank has (a crash can
    interrupt the ranks' saves at different points), run with the same number of ranks."""
    root = os.path.join(self.state_dir(), "checkpoints")
    if not self.group.active:
        _, tensors, state = checkpoint.load_latest(root, self.device)
        if state.get("world_size", 1) != 1:
            raise UserError(f"{self.logdir} was trained with {state['world_size']} data-parallel ranks; resume "
                             f"it with torchrun --nproc_per_node {state['world_size']}")
        return tensors, state
    paths = {checkpoint.step_of(p): p for p in checkpoint.list_checkpoints(root)}
    common = set.intersection(*(set(steps) for steps in self.group.gather(sorted(paths))))
    if not common:
        raise UserError(f"no checkpoint step common to all {self.group.world_size} ranks under "
                                f"{self.logdir} (rank {self.group.rank} has {sorted(paths)}); was the run trained "
                                "with this many ranks?")
    tensors, state = checkpoint.load(paths[max(common)], self.device)
    if state.get("world_size", 1) != self.group.world_size:
        raise UserError(f"{self.logdir} was trained with {state.get('world_size', 1)} ranks; resume it with "
                         f"the same number")
    return tensors, state


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer, enabled: bool):
    """While enabled (and in the main thread): the first SIGINT/SIGTERM sets ``trainer.interrupted`` (the loop stops
    after the current step); a second one raises KeyboardInterrupt at once."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.interrupted:
            raise KeyboardInterrupt
        trainer.interrupted = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def truncate_metrics(path: str, step: int) -> None:
    """Drop the rows a killed run wrote after its last checkpoint (step > ``step``), so a resumed run does not log
    them twice. Rewritten atomically."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a torn last line
    if len(keep) != len(lines):
        with open(path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(path + ".tmp", path)
