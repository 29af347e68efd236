"""Training loop (first cut): one synchronous env, random prefill, an update every ``train_every`` env steps.

Replay convention per step t: obs o_t, the action a_t taken after o_t, the reward r_t that arrived with o_t,
is_first (o_t starts an episode), is_terminal (o_t ends it; time-limit truncation is NOT termination).
Run management (vector envs, evaluation, checkpoints, logging, CLI) arrives with the R2I agent issue.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from . import envs
from .agent import Agent, AgentConfig
from .replay import ReplayBuffer


@dataclass
class TrainConfig:
    env: str = "builtin:recall/5"
    steps: int = 5000
    seed: int = 0
    batch_size: int = 16
    sequence_length: int = 32
    train_every: int = 2  # env steps per update
    prefill: int = 500
    replay_capacity: int = 100_000


def space_dims(env: gym.Env) -> tuple[dict[str, int], int, bool]:
    """(observation sizes by key, action size, discrete?) of a dict-observation env."""
    obs_dims = {k: int(np.prod(s.shape)) for k, s in env.observation_space.spaces.items()}
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return obs_dims, int(space.n), True
    return obs_dims, int(np.prod(space.shape)), False


def to_env_action(action: np.ndarray, env: gym.Env):
    if isinstance(env.action_space, gym.spaces.Discrete):
        return int(action.argmax())
    low, high = env.action_space.low, env.action_space.high
    return low + (action + 1) / 2 * (high - low)  # [-1, 1] -> the env's bounds


def train(cfg: TrainConfig, agent_cfg: AgentConfig, log: Callable[[int, dict], None] | None = None) -> dict:
    """Train an agent; returns {"agent", "episodes": [(step, return, success)], "updates", "seconds"}."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = envs.make(cfg.env, seed=cfg.seed)
    obs_dims, action_dim, discrete = space_dims(env)
    agent = Agent(obs_dims, action_dim, discrete, agent_cfg)
    replay = ReplayBuffer(cfg.replay_capacity, chunk_length=max(64, cfg.sequence_length), seed=cfg.seed)
    obs, _ = env.reset(seed=cfg.seed)
    reward, is_first, done, state = 0.0, True, False, None
    episode_return, episodes, updates, started = 0.0, [], 0, time.perf_counter()
    recent: deque = deque(maxlen=50)
    for step in range(cfg.steps):
        obs_t = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in obs.items()}
        if done:
            action = np.zeros(action_dim, np.float32)
        elif step < cfg.prefill:
            action = np.eye(action_dim, dtype=np.float32)[rng.integers(action_dim)] if discrete else \
                rng.uniform(-1, 1, action_dim).astype(np.float32)
        else:
            action_t, state = agent.act(obs_t, torch.tensor([is_first]), state)
            action = action_t[0].numpy()
        replay.add(dict({f"obs/{k}": v for k, v in obs.items()}, action=action, reward=np.float32(reward),
                        is_first=np.bool_(is_first), is_terminal=np.bool_(done and terminated)))
        if done:
            obs, _ = env.reset()
            reward, is_first, done, state = 0.0, True, False, None
        else:
            obs, reward, terminated, truncated, info = env.step(to_env_action(action, env))
            reward, is_first, done = float(reward), False, terminated or truncated
            episode_return += reward
            if done:
                episodes.append((step, episode_return, info.get("success")))
                recent.append(episode_return)
                episode_return = 0.0
        if step >= cfg.prefill and step % cfg.train_every == 0 and len(replay) >= cfg.sequence_length:
            metrics = agent.update(batch_to_tensors(replay.sample(cfg.batch_size, cfg.sequence_length)))
            updates += 1
            if log and updates % 100 == 0:
                log(step, dict(metrics, return_recent=float(np.mean(recent)) if recent else 0.0))
    return dict(agent=agent, episodes=episodes, updates=updates, seconds=time.perf_counter() - started)


def batch_to_tensors(batch: dict[str, np.ndarray]) -> dict:
    """Replay arrays (B, T, ...) -> the world model's batch dict of tensors."""
    obs = {k[4:]: torch.as_tensor(v, dtype=torch.float32) for k, v in batch.items() if k.startswith("obs/")}
    return dict(obs=obs, action=torch.as_tensor(batch["action"], dtype=torch.float32),
                reward=torch.as_tensor(batch["reward"]), is_first=torch.as_tensor(batch["is_first"]),
                is_terminal=torch.as_tensor(batch["is_terminal"]))
