"""How a saved episode starts, as JSON-able values, for envs that save an episode in progress (checkpoints keep
their ``get_state()`` in state.json, which is never unpickled): numpy ``RandomState`` states, and the start of a
gymnasium env that draws from its ``np_random`` Generator.

Envs seeded only through a RandomState replay a saved episode from that RNG's state at the episode's start and the
actions since (dmc.py, bsuite_adapter.py, minatar.py): these two functions carry the state exactly (the 624 Mersenne
Twister keys as integers, the cached Gaussian as a float, which JSON round-trips exactly). Gymnasium envs that draw
only from ``np_random`` (minigrid.py, popgym_adapter.py) start a saved episode from its seed or that Generator's state.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def random_state_to_json(random: np.random.RandomState) -> list:
    """[name, keys, position, has_gauss, gauss] of ``random.get_state()``, as plain Python values."""
    name, keys, position, has_gauss, gauss = random.get_state()
    return [name, keys.tolist(), int(position), int(has_gauss), float(gauss)]


def random_state_from_json(random: np.random.RandomState, saved: list) -> None:
    """Put a ``random_state_to_json`` state back into ``random``."""
    name, keys, position, has_gauss, gauss = saved
    random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, gauss))


def generator_start(env: Any, seed: int | None) -> dict[str, Any]:
    """How an episode of ``env`` (a gymnasium env drawing only from ``np_random``) that ``env.reset(seed=seed)`` is
    about to start begins: the seed, or the Generator's state before an unseeded reset draws from it."""
    return {"seed": int(seed)} if seed is not None else {"random": env.np_random.bit_generator.state}


def reset_as_started(env: Any, start: dict[str, Any]) -> Any:
    """``env.reset`` the way a ``generator_start`` episode began; returns reset's (observation, info)."""
    if "seed" in start:
        return env.reset(seed=start["seed"])
    env.np_random.bit_generator.state = start["random"]
    return env.reset()

