"""Environments by `suite:task` id, as gymnasium envs with dict observations.

    builtin:recall/<delay>[/<n_cues>]   the dependency-free memory task (memory.py); recall_image/... from pixels
    gym:<id>                            any registered gymnasium env with Box/Discrete spaces
    bsuite:<experiment>/<index>         bsuite via dm_env, e.g. memory_len/10 (ssmworld[bsuite])
    popgym:<Name>                       e.g. RepeatPreviousEasy, or popgym-RepeatPreviousEasy-v0 (ssmworld[popgym])
    atari:<Game>                        Atari 100k protocol, e.g. Pong or ALE/Pong-v5 (atari.py, ssmworld[atari])
    dmc:<domain>_<task>                 DeepMind Control, proprioceptive, e.g. walker_walk (dmc.py, ssmworld[dmc])
    dmc_vision:<domain>_<task>          the same from 64x64 pixels; sets MUJOCO_GL=egl when unset (dmc.py)
    minigrid:<Name>                     e.g. MemoryS7 or MiniGrid-MemoryS7-v0, obs=image|symbolic (ssmworld[minigrid])
    memorymaze:<size>                   9x9, 11x11, 13x13, 15x15; sets MUJOCO_GL=egl when unset (ssmworld[memorymaze])
    minatar:<Game>                      MinAtar: Asterix, Breakout, Freeway, Seaquest, SpaceInvaders (ssmworld[minatar])

``list_tasks(suite)`` lists a suite's task ids. ``make(env_id, seed, **options)`` passes options to the suite's
builder (e.g. ``make("atari:Pong", sticky=0.25)``); a suite rejects options it does not take. Suites other
than builtin and gym need their optional extra (`pip install -c constraints.txt -e '.[<suite>]'`, or
`[all]`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import gymnasium as gym

from ..errors import UserError
from .atari import atari_tasks, make_atari
from .bsuite_adapter import bsuite_tasks, make_bsuite
from .dmc import dmc_tasks, make_dmc, make_dmc_vision
from .gym_adapter import make_gym
from .memory import RecallCue, RecallCueImage
from .memorymaze import make_memorymaze, memorymaze_tasks
from .minatar import make_minatar, minatar_tasks
from .minigrid import make_minigrid, minigrid_tasks
from .popgym_adapter import make_popgym, popgym_tasks


def _make_builtin(task: str, size: int = 16) -> gym.Env:
    """recall/<delay>[/<n_cues>] (vector observations) or recall_image/<delay>[/<n_cues>] (pixels, option size)."""
    name, *args = task.split("/")
    if name not in ("recall", "recall_image"):
        raise UserError(f"builtin:{task}: unknown task {name!r}; available: recall/<delay>[/<n_cues>], "
                         "recall_image/<delay>[/<n_cues>]")
    try:
        numbers = [int(a) for a in args]
    except ValueError:
        raise UserError(f"builtin:{task}: expected {name}/<delay>[/<n_cues>] with integers") from None
    if len(numbers) > 2:
        raise UserError(f"builtin:{task}: expected {name}/<delay>[/<n_cues>]")
    return RecallCueImage(*numbers, size=size) if name == "recall_image" else RecallCue(*numbers)


SUITES: dict[str, Callable[..., gym.Env]] = {
    "builtin": _make_builtin, "gym": make_gym, "bsuite": make_bsuite, "popgym": make_popgym, "atari": make_atari,
    "dmc": make_dmc, "dmc_vision": make_dmc_vision, "minigrid": make_minigrid, "memorymaze": make_memorymaze,
    "minatar": make_minatar}


def list_tasks(suite: str) -> list[str]:
    """Task ids of ``suite`` (the part after "suite:"): all of them, except builtin (a few examples)."""
    listers: dict[str, Callable[[], list[str]]] = {
        "builtin": lambda: ["recall/0", "recall/5", "recall/20", "recall/5/4", "recall_image/5"],
        "gym": lambda: sorted(gym.registry),
        "bsuite": bsuite_tasks,
        "popgym": popgym_tasks,
        "atari": atari_tasks,
        "dmc": dmc_tasks,
        "dmc_vision": dmc_tasks,
        "minigrid": minigrid_tasks,
        "memorymaze": memorymaze_tasks,
        "minatar": minatar_tasks,
    }
    if suite not in listers:
        raise UserError(f"unknown env suite {suite!r}; available: {', '.join(sorted(listers))}")
    return listers[suite]()


def _check_options(suite: str, builder: Callable[..., gym.Env], options: dict) -> None:
    """Reject keyword options the suite's builder does not name (a builder with **kwargs takes any)."""
    params = list(inspect.signature(builder).parameters.values())[1:]  # the first is the task
    if not options or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"env suite {suite!r} does not take option(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(accepted) or 'none'}")


def make(env_id: str, seed: int | None = None, **options) -> gym.Env:
    """Build the env for ``suite:task`` with the suite's keyword ``options``; ``seed`` seeds its first reset and its
    action space."""
    suite, sep, task = env_id.partition(":")
    if not sep or not task:
        raise UserError(f"env id {env_id!r} must look like 'suite:task'; suites: {', '.join(sorted(SUITES))}")
    if suite not in SUITES:
        raise UserError(f"unknown env suite {suite!r} in {env_id!r}; available: {', '.join(sorted(SUITES))}")
    _check_options(suite, SUITES[suite], options)
    env = SUITES[suite](task, **options)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


__all__ = ["SUITES", "RecallCue", "RecallCueImage", "list_tasks", "make"]
