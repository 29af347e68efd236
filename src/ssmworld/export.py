"""Export a trained run for use elsewhere, and load it back as a policy that drives a gymnasium env.

    ssmworld export --logdir runs/x --out exported/x
    policy = ssmworld.load_agent("exported/x")
    obs, _ = env.reset(); state = None
    action, state = policy.act(obs, state)          # env action (int or array) and the carried core state

An export directory holds ``model.safetensors`` (every weight and statistic of the agent), ``config.yaml``,
``spaces.json`` (observation shapes and the env's action space) and ``README.md`` (a model card: env, steps, evaluation,
command). Loading never unpickles anything.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from . import envs
from .agent import Agent
from .config import load_yaml, save_yaml
from .logger import read_metrics
from .episodes import load_run, obs_to_tensors, space_dims, to_env_actions


def _action_space_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    return {"type": "box", "shape": list(space.shape), "low": np.asarray(space.low).reshape(-1).tolist(),
            "high": np.asarray(space.high).reshape(-1).tolist()}


def _action_space(data: dict[str, Any]) -> gym.Space:
    if data["type"] == "discrete":
        return gym.spaces.Discrete(data["n"], start=data["start"])
    shape = tuple(data["shape"])
    return gym.spaces.Box(np.array(data["low"], np.float32).reshape(shape),
                          np.array(data["high"], np.float32).reshape(shape), dtype=np.float32)


def export_run(logdir: str, out: str) -> str:
    """Write the latest good checkpoint of ``logdir`` as an export directory ``out`` (replaced atomically)."""
    from safetensors.torch import save_file

    cfg, agent, step = load_run(logdir)
    env = envs.make(cfg.train.env, **cfg.train.env_options)
    obs_shapes, _, _ = space_dims(env.observation_space, env.action_space)
    spaces = {"observation": {k: list(v) for k, v in obs_shapes.items()},
              "action": _action_space_json(env.action_space)}
    env.close()
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, os.path.join(tmp, "model.safetensors"))
    save_yaml(cfg, os.path.join(tmp, "config.yaml"))
    with open(os.path.join(tmp, "spaces.json"), "w") as f:
        json.dump(spaces, f, indent=1)
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(_model_card(logdir, cfg, step))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _model_card(logdir: str, cfg: Any, step: int) -> str:
    rows = read_metrics(os.path.join(logdir, "metrics.jsonl")) if os.path.exists(
        os.path.join(logdir, "metrics.jsonl")) else []
    evals = [r for r in rows if "eval/return_mean" in r]
    last = evals[-1] if evals else {}
    lines = [f"# ssmworld agent: {cfg.preset}/{cfg.size} on {cfg.train.env}", "",
             f"- env: `{cfg.train.env}` (options {cfg.train.env_options or 'none'})",
             f"- preset / size: {cfg.preset} / {cfg.size}; core: {cfg.agent.world_model.core}",
             f"- trained for {step} env steps (seed {cfg.train.seed})",
             f"- exported {datetime.date.today().isoformat()} from `{logdir}`"]
    if last:
        summary = ", ".join(f"{k[5:]} {v:.3g}" for k, v in last.items() if k.startswith("eval/"))
        lines.append(f"- last evaluation (step {last['step']}): {summary}")
    lines += ["", "Reproduce:", "", "```bash",
              f"ssmworld train --preset {cfg.preset} --size {cfg.size} --env {cfg.train.env} "
              f"--steps {cfg.train.steps} --seed {cfg.train.seed} --logdir runs/reproduce", "```", "",
              "Use:", "", "```python", "import ssmworld", "", "policy = ssmworld.load_agent('<this directory>')",
              "action, state = policy.act(obs, state=None)  # obs: the env's dict observation", "```", ""]
    return "\n".join(lines)


class Policy:
    """A loaded agent that acts in one env. ``act(obs, state)``: obs is the env's dict observation (no batch dim);
    ``state=None`` starts an episode. Returns (env action, new state)."""

    def __init__(self, agent: Agent, action_space: gym.Space, device: torch.device):
        self.agent, self.action_space, self.device = agent.eval(), action_space, device

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], state: Any = None, explore: bool = False) -> tuple[Any, Any]:
        batch = {k: v[None] for k, v in obs_to_tensors({k: np.asarray(v) for k, v in obs.items()},
                                                       self.device).items()}
        is_first = torch.tensor([state is None], device=self.device)
        action, state = self.agent.act(batch, is_first, state, explore=explore)
        env_action = to_env_actions(action[0].cpu().numpy(), self.action_space)
        return (int(env_action) if np.ndim(env_action) == 0 else env_action), state


def load_agent(directory: str, device: str = "cpu") -> Policy:
    """Load an export directory (``ssmworld export``) as a Policy."""
    from safetensors.torch import load_file

    for name in ("model.safetensors", "config.yaml", "spaces.json"):
        if not os.path.exists(os.path.join(directory, name)):
            raise FileNotFoundError(f"{directory}: {name} missing; is this an `ssmworld export` directory?")
    cfg = load_yaml(os.path.join(directory, "config.yaml"))
    with open(os.path.join(directory, "spaces.json")) as f:
        spaces = json.load(f)
    action_space = _action_space(spaces["action"])
    discrete = isinstance(action_space, gym.spaces.Discrete)
    action_dim = int(action_space.n) if discrete else int(np.prod(action_space.shape))
    obs_shapes = {k: tuple(v) for k, v in spaces["observation"].items()}
    agent = Agent(obs_shapes, action_dim, discrete, cfg.agent).to(device)
    agent.load_state_dict(load_file(os.path.join(directory, "model.safetensors"), device=str(device)))
    return Policy(agent, action_space, torch.device(device))
