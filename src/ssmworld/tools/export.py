"""Export a trained run for use elsewhere, and load it back as a policy that drives a gymnasium env.

    ssmworld export --logdir runs/x --out exported/x
    policy = ssmworld.load_agent("exported/x")
    obs, _ = env.reset(); state = None
    action, state = policy.act(obs, state)          # env action (int or array) and the carried core state
    action, state = policy.predict(obs, state)      # the same, stable-baselines3's form

An export directory holds ``model.safetensors`` (every weight and statistic of the agent), ``config.yaml``,
``spaces.json`` (observation shapes and the env's action space) and ``README.md`` (a model card: env, steps, evaluation,
command). Loading never unpickles anything.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .. import envs
from ..dreamer.agent import Agent
from ..envs.gym_adapter import DictObservation, observation_converter, space_from_json, space_to_json
from ..errors import UserError, file_in_the_way
from ..runtime.config import load_config
from ..runtime.config_file import flatten, load_yaml, save_yaml, to_dict
from ..runtime.episodes import load_run, obs_to_tensors, space_dims, to_env_actions
from ..runtime.logger import read_metrics

EXPORT_FILES = frozenset({"model.safetensors", "config.yaml", "spaces.json", "README.md"})


def check_export_target(logdir: str, out: str) -> None:
    """UserError unless ``out`` may be (re)written by an export of ``logdir``: a new path, an empty directory or an
    earlier export (only the export's files). Never the run itself, a directory holding it, or anything else."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file; give a directory for the export")
    run, target = os.path.realpath(logdir), os.path.realpath(out)
    if os.path.commonpath([run, target]) == target:
        raise UserError(f"--out {out} is or holds the run {logdir}; give a directory of its own, e.g. "
                        f"{os.path.join('exported', os.path.basename(run))}")
    if os.path.isdir(out) and not set(os.listdir(out)) <= EXPORT_FILES:
        raise UserError(f"--out {out} holds files an export does not write; give a new or empty directory, or an "
                        "earlier export to replace")
    blocked = file_in_the_way(os.path.dirname(target))
    if blocked:
        raise UserError(f"--out {out}: {blocked} is a file")


def export_run(logdir: str, out: str) -> str:
    """Write the latest good checkpoint of ``logdir`` as an export directory ``out`` (check_export_target; an
    earlier export there is replaced, a failed export leaves it as it was)."""
    from safetensors.torch import save_file

    check_export_target(logdir, out)
    cfg, agent, step = load_run(logdir)
    env = envs.make(cfg.train.env, **cfg.train.env_options)
    obs_shapes, _, _ = space_dims(env.observation_space, env.action_space)
    spaces = {"observation": {k: list(v) for k, v in obs_shapes.items()}, "action": space_to_json(env.action_space)}
    layer = env  # a gym: env (DictObservation under its episode replay): the policy also takes its own observations
    while isinstance(layer, gym.Wrapper) and not isinstance(layer, DictObservation):
        layer = layer.env
    if isinstance(layer, DictObservation):
        spaces["env_observation"] = space_to_json(layer.env.observation_space)
    env.close()
    target = os.path.realpath(out)  # "." or "x/" name their directory too
    tmp, old = target + ".tmp", target + ".old"
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(tmp)
    try:
        save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, os.path.join(tmp, "model.safetensors"))
        os.chmod(os.path.join(tmp, "model.safetensors"), 0o644)  # safetensors writes 0600; an export is for sharing
        save_yaml(cfg, os.path.join(tmp, "config.yaml"))
        with open(os.path.join(tmp, "spaces.json"), "w") as f:
            json.dump(spaces, f, indent=1)
        with open(os.path.join(tmp, "README.md"), "w") as f:
            f.write(_model_card(logdir, cfg, step))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(target):  # an earlier export (check_export_target): moved aside until the new one is in place
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return out


def _model_card(logdir: str, cfg: Any, step: int) -> str:
    rows = read_metrics(os.path.join(logdir, "metrics.jsonl")) if os.path.exists(
        os.path.join(logdir, "metrics.jsonl")) else []
    evals = [r for r in rows if "eval/return_mean" in r and r["step"] <= step]  # not a killed session's, past it
    last = evals[-1] if evals else {}
    lines = [f"# ssmworld agent: {cfg.preset}/{cfg.size} on {cfg.train.env}", "",
             f"- env: `{cfg.train.env}` (options {cfg.train.env_options or 'none'})",
             f"- preset / size: {cfg.preset} / {cfg.size}; core: {cfg.agent.world_model.core}",
             f"- trained for {step} env steps (seed {cfg.train.seed})",
             f"- exported {datetime.date.today().isoformat()} from `{logdir}`"]
    if last:
        summary = ", ".join(f"{k[5:]} {v:.3g}" if isinstance(v, (int, float)) else f"{k[5:]} {v}"  # null: not finite
                            for k, v in last.items() if k.startswith("eval/"))
        lines.append(f"- last evaluation (step {last['step']}): {summary}")
    overrides = "".join(f" {shlex.quote(o)}" for o in _overrides(cfg))
    lines += ["", "Reproduce:", "", "```bash",
              f"ssmworld train --preset {cfg.preset} --size {cfg.size} --env {cfg.train.env} "
              f"--steps {cfg.train.steps} --seed {cfg.train.seed} --logdir runs/reproduce{overrides}", "```", "",
              "Use:", "", "```python", "import ssmworld", "", "policy = ssmworld.load_agent('<this directory>')",
              "action, state = policy.act(obs, state=None)  # obs: the env's observation; state=None starts an episode",
              "```", ""]
    return "\n".join(lines)


# set by the command line, or belonging to one machine or session: not part of what a run learns
_NOT_OVERRIDES = {"train.env", "train.steps", "train.seed", "train.device", "train.minutes", "train.checkpoint_minutes",
                  "train.keep_checkpoints"}


def _overrides(cfg: Any) -> list[str]:
    """The key=value overrides that make the preset's config for the run's env the run's own (the model card's
    reproduce command), values in YAML as the command line parses them."""
    import yaml

    base = flatten(to_dict(load_config(cfg.preset, cfg.size, cfg.train.env)))
    own = flatten(to_dict(cfg))
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in own.items() if key not in _NOT_OVERRIDES and key in base and base[key] != value]


class Policy:
    """A loaded agent that acts in one env, one step at a time.

    ``act(obs, state)``: ``obs`` is the env's observation without a batch dim, either ssmworld's dict (what
    ``ssmworld.envs.make`` returns) or, for a ``gym:`` env, the env's own observation (as ``gym.make`` returns it);
    ``state=None`` starts an episode. Returns (env action, new state). ``predict`` is the same with
    stable-baselines3's signature."""

    def __init__(self, agent: Agent, action_space: gym.Space, device: torch.device,
                 env_observation: gym.Space | None = None):
        self.agent, self.action_space, self.device = agent.eval(), action_space, device
        self.observation_keys = set(agent.world_model.obs_shapes)
        self._shapes = {k: (v,) if isinstance(v, int) else tuple(v) for k, v in agent.world_model.obs_shapes.items()}
        self._convert = observation_converter(env_observation)[1] if env_observation is not None else None

    def _as_dict(self, obs: Any) -> dict[str, np.ndarray]:
        # ssmworld's dict has the model's keys and shapes; a gym: Dict observation may share the keys, not the shapes
        # (a Discrete entry is one-hot, a Box flattened): that one goes through the converter
        if (isinstance(obs, dict) and set(obs) == self.observation_keys
                and all(np.shape(v) == self._shapes[k] for k, v in obs.items())):
            return {k: np.asarray(v) for k, v in obs.items()}
        if self._convert is not None:
            return self._convert(obs)
        raise UserError(f"policy: expected a dict observation with keys {sorted(self.observation_keys)} (what "
                        f"ssmworld.envs.make returns), got {type(obs).__name__}")

    @torch.no_grad()
    def act(self, obs: Any, state: Any = None, explore: bool = False) -> tuple[Any, Any]:
        batch = {k: v[None] for k, v in obs_to_tensors(self._as_dict(obs), self.device).items()}
        is_first = torch.tensor([state is None], device=self.device)
        action, state = self.agent.act(batch, is_first, state, explore=explore)
        env_action = to_env_actions(action[0].cpu().numpy(), self.action_space)
        return (int(env_action) if np.ndim(env_action) == 0 else env_action), state

    def predict(self, observation: Any, state: Any = None, episode_start: bool | None = None,
                deterministic: bool = True) -> tuple[Any, Any]:
        """stable-baselines3's form: (action, state); ``episode_start`` True (or state None) starts an episode."""
        return self.act(observation, None if episode_start else state, explore=not deterministic)


def load_agent(directory: str, device: str = "cpu") -> Policy:
    """Load an export directory (``ssmworld export``) as a Policy."""
    from safetensors.torch import load_file

    for name in ("model.safetensors", "config.yaml", "spaces.json"):
        if not os.path.exists(os.path.join(directory, name)):
            raise UserError(f"{directory}: {name} missing; is this an `ssmworld export` directory?")
    cfg = load_yaml(os.path.join(directory, "config.yaml"))
    with open(os.path.join(directory, "spaces.json")) as f:
        spaces = json.load(f)
    action_space = space_from_json(spaces["action"])
    discrete = isinstance(action_space, gym.spaces.Discrete)
    action_dim = int(action_space.n) if discrete else int(np.prod(action_space.shape))
    obs_shapes = {k: tuple(v) for k, v in spaces["observation"].items()}
    agent = Agent(obs_shapes, action_dim, discrete, cfg.agent).to(device)
    agent.load_state_dict(load_file(os.path.join(directory, "model.safetensors"), device=str(device)))
    env_observation = space_from_json(spaces["env_observation"]) if "env_observation" in spaces else None
    return Policy(agent, action_space, torch.device(device), env_observation)
