"""Atomic checkpoints that load without unpickling arbitrary objects.

A checkpoint is a directory ``<root>/step-<N>/`` with
    tensors.pt   torch.save of plain containers of tensors and numbers (model and optimiser state, torch RNG);
                 loaded with ``torch.load(weights_only=True)``
    state.json   counters, numpy RNG states, replay lengths, and the SHA-256 of tensors.pt
It is written under a temporary name, fsynced and renamed, so a crash leaves either the whole checkpoint or none. The
last ``keep`` checkpoints are kept; ``load_latest`` skips a corrupt or truncated one (checksum mismatch) with a warning
and falls back to the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import warnings
from typing import Any

import torch

from ..errors import UserError

PREFIX = "step-"


class CheckpointError(UserError):
    """No loadable checkpoint."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: str, step: int, tensors: dict[str, Any], state: dict[str, Any], keep: int = 2) -> str:
    """Write checkpoint ``root/step-<step>`` atomically and delete all but the newest ``keep``. Returns its path."""
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"{PREFIX}{step:012d}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tensor_path = os.path.join(tmp, "tensors.pt")
    torch.save(tensors, tensor_path)
    _fsync(tensor_path)
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(dict(state, step=step, tensors_sha256=_sha256(tensor_path)), f)
        f.flush()
        os.fsync(f.fileno())
    earlier = final + ".old"  # the same step saved again (an interrupt right after a periodic checkpoint): its
    if os.path.exists(final):  # earlier copy stays until the new one is in place, so a crash always leaves one
        shutil.rmtree(earlier, ignore_errors=True)
        os.replace(final, earlier)
    os.replace(tmp, final)
    _fsync(root)
    shutil.rmtree(earlier, ignore_errors=True)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for name in os.listdir(root):  # unfinished copies of other steps a killed process left (one writer per root)
        if name.startswith(PREFIX) and name.endswith(".tmp"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return final


def list_checkpoints(root: str) -> list[str]:
    """Finished checkpoint directories, oldest first."""
    if not os.path.isdir(root):
        return []
    names = os.listdir(root)
    done = {n for n in names if n.startswith(PREFIX) and n[len(PREFIX):].isdigit()}  # not .tmp (unfinished)
    # a step saved again whose new copy was not in place when the process died: its earlier copy counts
    moved = {n[:-4] for n in names if n.startswith(PREFIX) and n.endswith(".old") and n[len(PREFIX):-4].isdigit()}
    return [os.path.join(root, n if n in done else n + ".old") for n in sorted(done | moved)]


def step_of(path: str) -> int:
    """The env step of a checkpoint directory ``.../step-<step>``."""
    return int(os.path.basename(path)[len(PREFIX):].removesuffix(".old"))


def read_state(path: str) -> dict[str, Any]:
    """The state.json of one checkpoint directory; {} if it is unreadable (such a checkpoint cannot load)."""
    try:
        with open(os.path.join(path, "state.json")) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def load(path: str, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, state) of one checkpoint directory; CheckpointError if it is incomplete or corrupt."""
    try:
        with open(os.path.join(path, "state.json")) as f:
            state = json.load(f)
        tensor_path = os.path.join(path, "tensors.pt")
        if _sha256(tensor_path) != state.get("tensors_sha256"):
            raise CheckpointError(f"checkpoint {path}: tensors.pt does not match its checksum (corrupt or truncated)")
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {path}: unreadable ({type(err).__name__}: {err})") from None
    try:  # the file is the one written (checksum): what fails to load here is foreign, or a bug (a traceback)
        tensors = torch.load(tensor_path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"checkpoint {path}: holds objects other than tensors and plain containers "
                              f"({' '.join(str(err).split())[:200]})") from None
    return tensors, state


def load_latest(root: str, map_location: str | torch.device = "cpu") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(path, tensors, state) of the newest loadable checkpoint under ``root``, skipping corrupt ones with a warning."""
    candidates = list_checkpoints(root)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {root}")
    for path in reversed(candidates):
        try:
            tensors, state = load(path, map_location)
        except CheckpointError as err:
            warnings.warn(f"{err}; trying the previous checkpoint", stacklevel=2)
            continue
        return path, tensors, state
    raise CheckpointError(f"no loadable checkpoint in {root} (all {len(candidates)} are corrupt): nothing to resume "
                          "from; start the run again in another --logdir, or delete this one first")
