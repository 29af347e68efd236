"""Between gymnasium envs and the agent: model shapes from spaces, observation/action conversion, replay windows as
the world model's batch, building an agent for an env, greedy evaluation episodes (with the world model's losses on
them: held-out data) and loading a run's trained agent."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .. import envs
from ..dreamer.agent import Agent, AgentConfig
from ..errors import UserError
from . import checkpoint
from .config import Config
from .config_file import load_yaml


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use device=cpu or auto")
    return device


def space_dims(observation_space: gym.Space, action_space: gym.Space
               ) -> tuple[dict[str, tuple[int, ...]], int, bool]:
    """(observation shapes by key, action size, discrete?) of one env; ValueError for what we cannot model.
    Accepted observations: flat float vectors (n,) and uint8 images (H, W, C)."""
    if not isinstance(observation_space, gym.spaces.Dict):
        raise UserError(f"observation space must be a Dict (envs.make returns one), got {observation_space}")
    shapes = {}
    for key, space in observation_space.spaces.items():
        image = isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8
        if not (image or (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)):
            raise UserError(f"observation {key!r}: {space} is not supported; accepted: flat vectors (Box of shape "
                             "(n,)) and uint8 images (Box of shape (H, W, C))")
        shapes[key] = tuple(int(d) for d in space.shape)
    if isinstance(action_space, gym.spaces.Discrete):
        return shapes, int(action_space.n), True
    if isinstance(action_space, gym.spaces.Box):
        return shapes, int(np.prod(action_space.shape)), False
    raise UserError(f"action space {action_space} is not supported; accepted: Discrete, Box")


def obs_to_tensors(obs: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Env or replay observations -> tensors: images stay uint8 (normalised inside the encoder), the rest float32."""
    return {k: torch.as_tensor(v, dtype=None if v.dtype == np.uint8 else torch.float32).to(device)
            for k, v in obs.items()}


def batch_to_tensors(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, Any]:
    """Replay arrays (B, T, ...) -> the world model's batch dict of tensors; "prefix/<key>" arrays (the episode
    context, train.context=episode) -> a nested batch dict under "prefix"."""
    def put(x, dtype=None):
        return torch.as_tensor(x, dtype=dtype).to(device)

    out = dict(obs=obs_to_tensors({k[4:]: v for k, v in batch.items() if k.startswith("obs/")}, device),
               action=put(batch["action"], torch.float32), reward=put(batch["reward"], torch.float32),
               is_first=put(batch["is_first"]), is_terminal=put(batch["is_terminal"]))
    prefix = {k[7:]: v for k, v in batch.items() if k.startswith("prefix/")}
    if prefix:
        out["prefix"] = batch_to_tensors(prefix, device)
    return out


def build_agent(cfg: AgentConfig, env: gym.Env, device: torch.device | str = "cpu") -> Agent:
    return Agent(*space_dims(env.observation_space, env.action_space), cfg).to(device)


def to_env_actions(action: np.ndarray, space: gym.Space) -> np.ndarray:
    """Agent actions (..., A) -> env actions: one-hot -> index; [-1, 1] -> the Box bounds."""
    if isinstance(space, gym.spaces.Discrete):
        return action.argmax(-1) + int(space.start)
    low, high = space.low.reshape(-1), space.high.reshape(-1)
    return (low + (action + 1) / 2 * (high - low)).reshape(*action.shape[:-1], *space.shape).astype(space.dtype)


@dataclass
class Episode:
    """One played episode: its return, length, the last step's info, whether it ended in a terminal state; with
    ``record``, every observation, the agent's action after each (one-hot or [-1, 1], (A,) tensors) and the reward
    that came with the next."""

    total: float = 0.0
    length: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    observations: list[dict[str, np.ndarray]] = field(default_factory=list)
    actions: list[torch.Tensor] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


@torch.no_grad()
def run_episode(agent: Agent, env: gym.Env, seed: int | None, explore: bool = False, record: bool = False,
                max_steps: int | None = None, record_rows: int | None = None) -> Episode:
    """The one act loop: reset ``env`` with ``seed``, let the agent act (carrying its core state) until the episode
    ends or ``max_steps`` actions were taken. ``record_rows``: record only the first this many observations (and the
    actions after them): the episode plays on, its memory stays bounded (an Atari episode runs to 27,000 frames)."""
    device = next(agent.parameters()).device
    obs, _ = env.reset(seed=seed)
    episode, state, done = Episode(observations=[obs] if record else []), None, False
    while not done and (max_steps is None or episode.length < max_steps):
        batch = {k: v[None] for k, v in obs_to_tensors(obs, device).items()}
        action, state = agent.act(batch, torch.tensor([state is None], device=device), state, explore=explore)
        obs, reward, terminated, truncated, episode.info = env.step(to_env_actions(action[0].cpu().numpy(),
                                                                                   env.action_space))
        episode.total, episode.length, done = episode.total + float(reward), episode.length + 1, terminated or truncated
        episode.terminated = bool(terminated)
        if record and (record_rows is None or len(episode.actions) < record_rows):
            episode.actions.append(action[0])
        if record and (record_rows is None or len(episode.observations) < record_rows):
            episode.observations.append(obs)
            episode.rewards.append(float(reward))
    return episode


HELD_OUT_LOSSES = ("loss_reward", "loss_decoder", "loss_cont")
HELD_OUT_ROWS = 2048  # the held-out losses read at most this many rows of an episode: bounded memory on long ones


def episode_batch(episode: Episode, device: torch.device | str = "cpu", rows: int | None = None) -> dict[str, Any]:
    """A recorded episode as a (1, L+1) batch in the replay's convention (train.py): o_t, the action after it (zeros
    after the last observation), the reward r_t that arrived with o_t (0 at the first), is_first at t=0, is_terminal
    at the last step if the episode ended in a terminal state. ``rows``: only the first this many (at most the
    recorded ones)."""
    recorded = len(episode.observations)
    rows = min(recorded, rows or recorded)
    obs = {k: np.stack([o[k] for o in episode.observations[:rows]])[None] for k in episode.observations[0]}
    action = torch.stack([*episode.actions, torch.zeros_like(episode.actions[0])][:rows]).float()[None]
    is_first, is_terminal = torch.zeros(1, rows, dtype=torch.bool), torch.zeros(1, rows, dtype=torch.bool)
    is_first[0, 0], is_terminal[0, -1] = True, episode.terminated and rows == episode.length + 1
    return {"obs": obs_to_tensors(obs, device), "action": action.to(device), "is_first": is_first.to(device),
            "reward": torch.tensor([[0.0, *episode.rewards][:rows]], device=device),
            "is_terminal": is_terminal.to(device)}


@torch.no_grad()
def world_model_losses(agent: Agent, episode: Episode) -> tuple[dict[str, float], int]:
    """The world model's per-step losses on one recorded episode (``episode_batch``, its first HELD_OUT_ROWS rows),
    and the number of rows. On evaluation episodes these are held-out losses: beside the training losses they show a
    world model that memorises its replay (a low ``train/loss_reward`` with a high ``eval/wm_loss_reward``:
    docs/RESULTS.md "Memorised, not read"). Evaluated in eval mode and on a forked random stream, so that a run's
    training is the same with or without it."""
    device, wm = next(agent.parameters()).device, agent.world_model
    batch, training = episode_batch(episode, device, HELD_OUT_ROWS), wm.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        wm.eval()
        _, metrics, _ = wm.loss(batch)
    wm.train(training)
    return {key: float(metrics[key]) for key in HELD_OUT_LOSSES}, batch["reward"].shape[1]


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int = 0, explore: bool = False,
             env_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``episodes`` episodes with the agent's greedy policy (``explore=False``) in a fresh env: return, length,
    success, and the world model's per-step losses on them (``wm_loss_reward`` ...: held-out data). Its random draws
    (latent samples) come from torch's generator seeded with ``seed`` and put back afterwards: an evaluation is a
    function of the weights and the seed, and leaves a training run's random numbers as they were."""
    device = next(agent.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _evaluate(agent, env_id, episodes, seed, explore, env_options)


def _evaluate(agent: Agent, env_id: str, episodes: int, seed: int, explore: bool,
              env_options: dict[str, Any] | None) -> dict[str, Any]:
    env = envs.make(env_id, seed=seed, **(env_options or {}))
    returns, lengths, successes, rows, losses = [], [], [], 0, {key: 0.0 for key in HELD_OUT_LOSSES}
    for index in range(episodes):
        episode = run_episode(agent, env, seed + index, explore, record=True, record_rows=HELD_OUT_ROWS)
        returns.append(episode.total)
        lengths.append(episode.length)
        if "success" in episode.info:
            successes.append(float(episode.info["success"]))
        episode_losses, episode_rows = world_model_losses(agent, episode)
        rows += episode_rows
        for key, value in episode_losses.items():
            losses[key] += value * episode_rows  # per step over all episodes, as the training losses
    env.close()
    summary = {"episodes": episodes, "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
               "length_mean": float(np.mean(lengths))}
    if successes:
        summary["success_rate"] = float(np.mean(successes))
    if rows:
        summary.update({f"wm_{key}": value / rows for key, value in losses.items()})
    return summary


def load_run(logdir: str, device: str = "cpu") -> tuple[Config, Agent, int]:
    """(config, agent with the weights of the latest good checkpoint, its env step) of a run directory; the agent on
    ``device`` (auto | cpu | cuda | cuda:N)."""
    device = resolve_device(device)
    path = os.path.join(logdir, "config.yaml")
    if not os.path.exists(path):
        raise UserError(f"{path} not found: is {logdir} a run directory?")
    cfg = load_yaml(path)
    env = envs.make(cfg.train.env, **cfg.train.env_options)
    agent = build_agent(cfg.agent, env, device)
    env.close()
    _, tensors, state = checkpoint.load_latest(os.path.join(logdir, "checkpoints"))  # on the CPU, then copied
    agent.load_state_dict(tensors["agent"])
    return cfg, agent.eval(), int(state["step"])
