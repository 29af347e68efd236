"""A vectorised stand-in for dm_control's ``TargetSphere._update_activation``, installed per target instance.

Why: Memory Maze calls ``_update_activation`` after every physics substep for every target (50 substeps x 3-6
targets per env step). The original iterates ``physics.data.contact`` (mujoco's ``_MjContactList``) in Python,
which costs ~110 us per call with one contact (the ball on the floor) and ~150 us with five (measured, mujoco 3.17),
~2/3 of the whole env step. Reading its two geom-id columns as numpy arrays and comparing them costs ~3-5 us.

What the original computes (dm_control 1.0.50, ``locomotion/props/target_sphere.py``), and so what this computes:

* nothing once the target is ``activated`` (it stays so until ``reset``, which Memory Maze calls in ``after_step``);
* otherwise the target becomes activated iff some current contact (``physics.data.contact``, i.e. the first
  ``ncon`` contacts) has the target's geom as ``geom1`` or ``geom2`` and, when ``specific_collision_geom_ids`` is
  truthy, also has ``geom1`` or ``geom2`` in that list (any element of the pair: the original tests the two
  conditions separately, so one geom of the pair may be the target and the other a listed geom, or the target
  itself may be listed);
* on activation the target's material alpha is set to 0 (``physics.bind(material).rgba[-1] = 0``); the original
  sets it once per matching contact, which ends in the same state as setting it once.

Integer comparisons over the same contacts give the same decision in the same substep, so the episode is
bit-identical (tests/test_memorymaze.py checks rewards, flags and frames over reward events, and the activation on
every substep of teleported trajectories against the original method).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from typing import Any

import numpy as np

# sha256 of the source of the ``TargetSphere._update_activation`` that this module reproduces (dm_control 1.0.50):
# another version of it may compute something else, so it then keeps its own code (see original_is_known).
KNOWN_SOURCE_SHA256 = "a16bd23cd565c112613d28e64cbb704ed64fe6c0ee7657fdcc7ccd7350b7c702"


def touches(geom1: np.ndarray, geom2: np.ndarray, geom_id: int, specific_ids: Any = None) -> bool:
    """Whether any contact ``(geom1[i], geom2[i])`` involves ``geom_id`` (and one of ``specific_ids`` if truthy).

    ``geom1``, ``geom2``: (ncon,) integer geom ids of the current contacts.
    """
    hits = (geom1 == geom_id) | (geom2 == geom_id)
    if specific_ids:  # the original's truthiness test: None or an empty list means "any geom"
        listed = np.asarray(list(specific_ids))
        hits &= np.isin(geom1, listed) | np.isin(geom2, listed)
    return bool(hits.any())


def fast_update_activation(target: Any, physics: Any) -> None:
    """``TargetSphere._update_activation`` without a Python loop over contacts (see the module docstring)."""
    if target._activated:
        return
    contact = physics.data.contact  # the first ncon contacts, exactly what the original iterates
    if touches(contact.geom1, contact.geom2, target._geom_id, target._specific_collision_geom_ids):
        target._activated = True
        physics.bind(target._material).rgba[-1] = 0  # the original's "touched" look (restored by reset)


@functools.cache
def original_is_known() -> bool:
    """Whether the installed ``TargetSphere._update_activation`` is the one reproduced here (same source text)."""
    from dm_control.locomotion.props.target_sphere import TargetSphere

    try:
        source = inspect.getsource(TargetSphere._update_activation)
    except (OSError, TypeError):  # no source shipped: cannot tell
        return False
    return hashlib.sha256(source.encode()).hexdigest() == KNOWN_SOURCE_SHA256


def install_fast_contacts(task: Any) -> int:
    """Give each of ``task._targets`` (a Memory Maze task) the fast activation; returns how many were patched.

    Only the instances change (an instance attribute shadows the class method), so other envs in the process keep
    dm_control's code. A target whose class is not exactly ``TargetSphere`` or that overrides
    ``_update_activation`` is left alone: its semantics are not the ones reproduced here; so is every target when
    the installed dm_control's method is not the known one (``original_is_known``).
    """
    from dm_control.locomotion.props.target_sphere import TargetSphere

    if not original_is_known():
        return 0
    patched = 0
    for target in task._targets:
        if type(target) is TargetSphere and "_update_activation" not in vars(target):
            target._update_activation = types.MethodType(fast_update_activation, target)
            patched += 1
    return patched


def is_fast(target: Any) -> bool:
    """Whether ``target`` uses :func:`fast_update_activation`."""
    method = vars(target).get("_update_activation")
    return getattr(method, "__func__", None) is fast_update_activation


__all__ = ["KNOWN_SOURCE_SHA256", "fast_update_activation", "install_fast_contacts", "is_fast", "original_is_known",
           "touches"]
