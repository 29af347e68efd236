"""The acting side of a checkpoint: the envs' episodes in progress and the agent's state in them.

An env whose unwrapped env, or a wrapper around it (envs/episode_replay.py), offers ``get_state() -> JSON-able dict``
and ``set_state(dict)``, with no wrapper above it but stateless ones (a class attribute ``stateless = True``), can be
saved mid-episode: the builtin tasks; Atari, whose ALE state ALE serialises; DMC, bsuite, MinAtar, MiniGrid, POPGym,
Memory Maze and gym: envs, which replay the episode's actions from the RNG states at its start (Memory Maze: and the
number of mazes generated before), since their task state lives outside what they could serialise (gym: envs would
need pickling, which checkpoints never load). Not POPGym's navigation envs (process-wide RNGs), nor an env under a
stateful wrapper (e.g. MinAtar's ``max_steps`` TimeLimit). Where every env can,
a checkpoint neither cuts the episodes nor changes what a resumed run does (tests/test_resume.py). If any env cannot,
or an episode is too long to replay (envs/episode_replay.MAX_REPLAYED_ACTIONS), ``capture`` says why instead: the
uninterrupted run goes on with its episodes (a checkpoint never cuts them), and a run resumed from that checkpoint
starts fresh episodes, so its resume is exact up to the checkpoint but not after it. So does a run resumed from a
checkpoint whose agent state is laid out otherwise than this version's agent expects (``same_layout``: written by an
earlier version whose core kept its state under other keys).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..envs.episode_replay import EpisodeTooLong


def saver(env: gym.Env) -> gym.Env | None:
    """The layer of ``env`` that saves its episode in progress: the outermost one whose class defines ``get_state``
    and ``set_state`` (the unwrapped env, or an adapter that replays the env it wraps), under stateless wrappers
    only; None if there is none (see the module docstring)."""
    while not (callable(getattr(type(env), "get_state", None)) and callable(getattr(type(env), "set_state", None))):
        if not (isinstance(env, gym.Wrapper) and getattr(type(env), "stateless", False)):
            return None
        env = env.env
    return env


def savable(env: gym.Env) -> bool:
    """Whether ``env``'s episode in progress can be saved (see the module docstring)."""
    return saver(env) is not None


def capture(vec: gym.vector.SyncVectorEnv, arrays: dict[str, Any], policy_state: dict[str, Any] | None
            ) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(tensors, JSON-able state) of the envs' episodes in progress, or why they cannot be saved (a phrase).
    arrays: the trainer's per-env arrays (obs dict, reward, is_first, ...); policy_state: the agent's acting state."""
    if not all(savable(env) for env in vec.envs):
        return "the env cannot save them"
    try:
        env_states = [saver(env).get_state() for env in vec.envs]
    except EpisodeTooLong as err:
        return str(err)
    tensors = {"arrays": _to_tensors(arrays), "policy": _to_tensors(policy_state or {})}
    state = {"envs": env_states,
             "autoreset": [bool(v) for v in vec._autoreset_envs], "has_policy": policy_state is not None}
    return tensors, state


def restore(vec: gym.vector.SyncVectorEnv, tensors: dict[str, Any], state: dict[str, Any],
            device: torch.device | str = "cpu") -> tuple[dict[str, Any], dict[str, Any] | None, list[int]]:
    """Put the saved episodes back into ``vec`` (reset once beforehand, so its buffers exist); ``tensors`` as loaded
    (on the CPU). Returns the trainer's arrays, the agent's acting state (its tensors on ``device``) and the envs
    whose replay went astray.

    An env that replays its episode (DMC, bsuite, MinAtar, MiniGrid, POPGym, Memory Maze) returns from ``set_state``
    the observation it arrived at; it must equal the one saved with the checkpoint, else the replay took another
    course (e.g. another MuJoCo, dm_control or bsuite version than the one that saved it) and the run goes on from
    where the replay led, no longer exactly: those envs' indices are returned, for a warning."""
    arrays = _to_numpy(tensors["arrays"])
    astray = []
    for i, (env, env_state) in enumerate(zip(vec.envs, state["envs"], strict=True)):
        replayed = saver(env).set_state(env_state)
        if replayed is not None and not all(np.array_equal(value, arrays["obs"][key][i])
                                            for key, value in replayed.items()):
            astray.append(i)
    vec._autoreset_envs = np.array(state["autoreset"], dtype=bool)
    return arrays, (_to_device(tensors["policy"], device) if state["has_policy"] else None), astray


def same_layout(saved: Any, expected: Any) -> bool:
    """Whether the tree of tensors ``saved`` has the keys of ``expected`` and, per key, its number of dimensions (an
    agent's acting state saved by a version that laid it out otherwise does not). Sizes are not compared: some grow
    with the episode (the attention core's key-value cache)."""
    if isinstance(expected, dict):
        return isinstance(saved, dict) and saved.keys() == expected.keys() and all(
            same_layout(saved[key], value) for key, value in expected.items())
    return isinstance(saved, torch.Tensor) and saved.ndim == expected.ndim


def _to_tensors(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_tensors(v) for k, v in tree.items()}
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    return torch.from_numpy(np.array(tree))


def _to_device(tree: Any, device: torch.device | str) -> Any:
    if isinstance(tree, dict):
        return {k: _to_device(v, device) for k, v in tree.items()}
    return tree.to(device)


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return tree.numpy()
