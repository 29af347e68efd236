"""A run's state on disk: checkpoints (save, restore), the metrics a killed run wrote after its last checkpoint, and
the signals that stop a run cleanly. Functions of the Trainer (train.py), which owns the counters they save.

A checkpoint is the replay (incremental chunk files) first, then step-N/{tensors.pt, state.json}: weights, optimisers,
RNG states, counters, partial metric sums, the replay's chunk lengths and DFS counters, and the envs' episodes in
progress where they can be saved (acting_state.py). Resume restores exactly that. The files of chunks evicted from
the replay are deleted only after the new checkpoint is in place, and only those no retained checkpoint records: a
crash while saving, or a corrupt newest checkpoint, falls back to the previous one with its replay.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import torch

from ..errors import UserError
from . import checkpoint

if TYPE_CHECKING:
    from .train import Trainer


# ---- checkpoints -----------------------------------------------------------------------------------------------
def save(trainer: Trainer, acting: bool = False) -> bool:
    """Replay first (incremental), then model/optimisers/RNG/counters atomically; the checkpoint records the replay
    content it belongs to, so a crash in between cannot mismatch them. ``acting``: also the episodes in progress
    where the envs allow it (acting_state); returns whether they were saved (else a resume restarts them)."""
    replay_dir = os.path.join(trainer.state_dir(), "replay")
    trainer.replay.save(replay_dir)
    tensors = {"agent": trainer.agent.state_dict(),
               "optimizers": {k: o.state_dict() for k, o in trainer.agent.optimizers().items()},
               "torch_rng": torch.get_rng_state(),
               **({"cuda_rng": torch.cuda.get_rng_state(trainer.device)} if trainer.device.type == "cuda" else {}),
               "replay_visits": {k: torch.from_numpy(v) for k, v in trainer.replay.sampler_state().items()}}
    captured = trainer._acting_state() if acting else None
    saved = captured if isinstance(captured, tuple) else None
    if saved is not None:
        tensors["acting"] = saved[0]
    state = {"updates": trainer.updates, "episodes": trainer.episodes, "update_credit": trainer.ratio.credit,
             "seconds": trainer.seconds_before + time.perf_counter() - trainer.started, **trainer.window.state(),
             "next_eval": trainer.evaluations.next, "rng": trainer.rng.bit_generator.state,
             "replay_rng": trainer.replay.rng.bit_generator.state, "replay_lengths": trainer.replay.lengths(),
             "world_size": trainer.group.world_size, "acting": saved[1] if saved is not None else None,
             "acting_unsaved": captured if isinstance(captured, str) else None}  # why not, for the resume's note
    root = os.path.join(trainer.state_dir(), "checkpoints")
    keep = trainer.tc.keep_checkpoints
    if trainer.group.active and keep == 1:  # ranks killed mid-save may each hold another step: keep one in common
        keep = 2
    checkpoint.save(root, trainer.step, tensors, state, keep)
    # evicted chunks' files go only now, and only if no retained checkpoint (a fallback) records them; keeping every
    # checkpoint (0) keeps the replay of the newest two, not the whole history
    retained = checkpoint.list_checkpoints(root)[-2 if keep == 0 else 0:]
    needed = (checkpoint.read_state(path).get("replay_lengths") or {} for path in retained)
    trainer.replay.remove_files(replay_dir, {uid for lengths in needed for uid in lengths})
    return saved is not None


# What every checkpoint holds (save); one without them is damaged, not a bug of the run that loads it
_STATE_KEYS = ("step", "updates", "episodes", "update_credit", "next_eval", "rng", "replay_rng", "replay_lengths",
               "window_sums", "window_count", "window_step")
_TENSOR_KEYS = ("agent", "optimizers", "torch_rng")


def restore(trainer: Trainer) -> None:
    if not trainer.logdir:
        raise ValueError("resume needs a logdir")
    tensors, state = _load(trainer)
    missing = [k for k in _STATE_KEYS if k not in state] + [k for k in _TENSOR_KEYS if k not in tensors]
    if missing:
        raise UserError(f"the checkpoint of {trainer.logdir} at step {state.get('step', '?')} lacks "
                        f"{', '.join(missing)}: a damaged or foreign checkpoint")
    for path in checkpoint.list_checkpoints(os.path.join(trainer.state_dir(), "checkpoints")):
        if checkpoint.step_of(path) > state["step"]:  # skipped (corrupt, or a step another rank lacks): the run
            shutil.rmtree(path, ignore_errors=True)  # goes on from the loaded one and saves its own later steps
    trainer.agent.load_state_dict(tensors["agent"])
    for name, opt in trainer.agent.optimizers().items():
        opt.load_state_dict(tensors["optimizers"][name])
    torch.set_rng_state(tensors["torch_rng"])
    if trainer.device.type == "cuda" and "cuda_rng" in tensors:  # (a run moved from a CPU has none)
        torch.cuda.set_rng_state(tensors["cuda_rng"], trainer.device)
    trainer.replay.load(os.path.join(trainer.state_dir(), "replay"), state["replay_lengths"])
    trainer.replay.load_sampler_state({k: v.numpy() for k, v in tensors.get("replay_visits", {}).items()})
    trainer.rng.bit_generator.state = state["rng"]
    trainer.replay.rng.bit_generator.state = state["replay_rng"]
    trainer.step, trainer.updates, trainer.episodes = state["step"], state["updates"], state["episodes"]
    trainer.ratio.credit, trainer.evaluations.next = state["update_credit"], state["next_eval"]
    trainer.seconds_before = state.get("seconds", 0.0)
    trainer.window.load(state)
    if state.get("acting") is not None:
        trainer.saved_acting = (tensors["acting"], state["acting"])
    trainer.unsaved_episodes = state.get("acting_unsaved") or ""
    if trainer.group.main:
        truncate_metrics(os.path.join(trainer.logdir, "metrics.jsonl"), trainer.step)


def _load(trainer: Trainer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, state) of the newest checkpoint; data-parallel: the newest step that every rank has and can load (a
    crash can interrupt the ranks' saves at different points), run with the same number of ranks."""
    root = os.path.join(trainer.state_dir(), "checkpoints")
    if not trainer.group.active:
        _, tensors, state = checkpoint.load_latest(root)  # on the CPU: load_state_dict moves weights to theirs
        if state.get("world_size", 1) != 1:
            raise UserError(f"{trainer.logdir} was trained with {state['world_size']} data-parallel ranks; resume "
                             f"it with torchrun --nproc_per_node {state['world_size']}")
        return tensors, state
    paths = {checkpoint.step_of(p): p for p in checkpoint.list_checkpoints(root)}
    common = set.intersection(*(set(steps) for steps in trainer.group.gather(sorted(paths))))
    if not common:
        raise UserError(f"no checkpoint step common to all {trainer.group.world_size} ranks under {trainer.logdir} "
                        f"(rank {trainer.group.rank} has {sorted(paths)}); was the run trained with this many ranks?")
    for step in sorted(common, reverse=True):  # the newest step every rank loads (a copy may be corrupt)
        try:
            tensors, state = checkpoint.load(paths[step])
        except checkpoint.CheckpointError as err:
            warnings.warn(f"{err}; trying the previous checkpoint", stacklevel=2)
            tensors, state = {}, {}
        if all(trainer.group.gather(bool(state))):
            break
    else:
        raise UserError(f"no checkpoint step that all {trainer.group.world_size} ranks can load under "
                         f"{trainer.logdir} (common steps: {sorted(common)})")
    if state.get("world_size", 1) != trainer.group.world_size:
        raise UserError(f"{trainer.logdir} was trained with {state.get('world_size', 1)} ranks; resume it with "
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
    if keep != lines:  # (also a complete last row without its newline: the next append would join it)
        with open(path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(path + ".tmp", path)
