"""numpy ``RandomState`` states as JSON-able lists, for envs that save an episode in progress (checkpoints keep
their ``get_state()`` in state.json, which is never unpickled).

Envs seeded only through a RandomState replay a saved episode from that RNG's state at the episode's start and the
actions since (dmc.py, bsuite_adapter.py, minatar.py): these two functions carry the state exactly (the 624 Mersenne
Twister keys as integers, the cached Gaussian as a float, which JSON round-trips exactly).
"""

from __future__ import annotations

import numpy as np


def random_state_to_json(random: np.random.RandomState) -> list:
    """[name, keys, position, has_gauss, gauss] of ``random.get_state()``, as plain Python values."""
    name, keys, position, has_gauss, gauss = random.get_state()
    return [name, keys.tolist(), int(position), int(has_gauss), float(gauss)]


def random_state_from_json(random: np.random.RandomState, saved: list) -> None:
    """Put a ``random_state_to_json`` state back into ``random``."""
    name, keys, position, has_gauss, gauss = saved
    random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, gauss))
