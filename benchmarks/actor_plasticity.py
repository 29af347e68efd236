"""Why does an agent with memory fail a bsuite memory task: its world model, or its actor?

    OMP_NUM_THREADS=1 python benchmarks/actor_plasticity.py runs/ml22 --episodes 120 --updates 1500 \
        --json benchmarks/learning/actor_plasticity.json

For a run on ``bsuite:memory_len/N`` (the cue: the context bit of the first observation; the rewarded action at the
last step: the cue's index):
1. plays ``episodes`` episodes through the run's world model, carrying its core state as when acting, and keeps every
   step's (h, z, core state); the actions are uniformly random (``--actions random``), or the run's own acting
   policy's (``--actions policy``: sampled, with its ``act_epsilon``), i.e. the distribution its replay holds;
2. the world model at the query step: how often its reward head, one imagined step ahead, prefers the rewarded
   action; how well a ridge probe reads the cue from the core state features x (fitted on half, tested on the other);
3. the run's actor at the query step: its mean probability of the rewarded action;
4. with the world model frozen, trains in imagination from the kept states (a) the run's actor-critic and (b) a
   freshly initialised one (``agent.reset_actor_critic``), ``updates`` updates each, and reports that probability
   every ``every`` updates.
5. the same reward head on the run's own replay (training batches as the run samples them, its episode context
   included): the share of answer steps whose predicted reward has the right sign.
If (2) is right and (3) at chance, the memory is there and the policy does not use it; if (b) then learns and (a) does
not, the run's actor has lost the ability to learn (a saturated softmax: docs/RESULTS.md "A saturated actor").
If (2) is right with the policy's actions and at chance with random ones, the world model reads the cue from
something the policy's actions carry inside the window, not from the carried state. If (5) is right and (2) at
chance on fresh episodes, the world model has memorised its few replayed episodes' rewards instead of reading the cue,
and its training reward loss looks solved (docs/RESULTS.md, "Memorised, not read").
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import numpy as np
import torch

from ssmworld import envs
from ssmworld.dreamer.agent import Agent
from ssmworld.dreamer.imagination import Starts
from ssmworld.errors import UserError
from ssmworld.nn.distributions import TwoHot, onehot
from ssmworld.runtime.config_file import load_yaml
from ssmworld.runtime.episodes import load_run, obs_to_tensors, to_env_actions
from ssmworld.runtime.train import Trainer


@torch.no_grad()
def play(agent: Agent, env_id: str, episodes: int, seed: int, actions: str = "random") -> dict[str, Any]:
    """Episodes through the world model, with random actions or the run's acting policy: per step h (N, H), z (N, Z),
    core state (batch N), cue (N,) and query (N,) (the episode's last step). Every kept state is one the agent acts
    in (none is terminal)."""
    A = agent.action_dim
    env = envs.make(env_id, seed=seed)
    rng = np.random.default_rng(seed)
    hs, zs, states, cues, query = [], [], [], [], []
    for index in range(episodes):
        obs, _ = env.reset(seed=seed + index)
        cue = int(np.asarray(next(iter(obs.values()))).reshape(-1)[2] > 0)
        acting, done, first = agent.initial_state(1), False, True
        while not done:
            obs_t = {k: v[None] for k, v in obs_to_tensors(obs).items()}
            h, z, state = agent.observe_step(obs_t, torch.tensor([first]), acting)
            if actions == "policy" and rng.random() >= agent.cfg.act_epsilon:
                parts = {"h": h, "z": z, "x": agent.world_model.core.features(state)}
                action = agent.actor_critic.policy(agent.features(parts)).sample()
            else:
                action = onehot(torch.tensor([int(rng.integers(A))]), A, z.dtype)
            obs, _, terminated, truncated, _ = env.step(to_env_actions(action[0].numpy(), env.action_space))
            done = terminated or truncated
            for kept, value in zip((hs, zs, states, cues, query), (h, z, state, cue, done)):
                kept.append(value)
            acting, first = {"core": state, "z": z, "action": action}, False
    env.close()
    return {"h": torch.cat(hs), "z": torch.cat(zs), "state": {k: torch.cat([s[k] for s in states]) for k in states[0]},
            "cue": torch.tensor(cues), "query": torch.tensor(query)}


def at(data: dict[str, Any], index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    return data["h"][index], data["z"][index], {k: v[index] for k, v in data["state"].items()}


@torch.no_grad()
def world_model_probe(agent: Agent, data: dict[str, Any], ridge: float = 1.0) -> dict[str, float]:
    """At the query steps: the share where the reward head prefers the rewarded action, and the held-out accuracy
    of a ridge probe of the cue from the core state features."""
    wm, q = agent.world_model, data["query"].nonzero()[:, 0]
    cue = data["cue"][q]
    rewards = []
    for a in range(agent.action_dim):
        action = onehot(torch.full((len(q),), a), agent.action_dim, data["z"].dtype)
        rewards.append(wm.imagine(*at(data, q), lambda parts: action, 1)["reward"][0])
    reward = torch.stack(rewards, -1)  # (Q, A)
    prefers = (reward[torch.arange(len(q)), cue] > reward[torch.arange(len(q)), 1 - cue]).float().mean()
    x = wm.core.features(at(data, q)[2]).double()
    half = len(q) // 2
    x = (x - x[:half].mean(0)) / (x[:half].std(0) + 1e-6)
    x = torch.cat([x, torch.ones(len(q), 1, dtype=x.dtype)], -1)
    target = 2.0 * cue[:half].double() - 1
    w = torch.linalg.solve(x[:half].T @ x[:half] + ridge * torch.eye(x.shape[1], dtype=x.dtype), x[:half].T @ target)
    probe = ((x[half:] @ w > 0) == (cue[half:] == 1)).double().mean()
    return {"reward_head_prefers_rewarded_action": float(prefers), "ridge_probe_accuracy": float(probe),
            "query_steps": len(q)}


@torch.no_grad()
def p_rewarded(agent: Agent, data: dict[str, Any]) -> float:
    """The actor's mean probability of the rewarded action at the query steps."""
    q = data["query"].nonzero()[:, 0]
    h, z, state = at(data, q)
    probs = agent.actor_critic.policy(agent.features({"h": h, "z": z, "x": agent.world_model.core.features(state)}))
    return float(probs.probs[torch.arange(len(q)), data["cue"][q]].mean())


@torch.no_grad()
def replay_reward(logdir: str, batches: int) -> dict[str, float]:
    """The reward head on ``batches`` training batches of the run's replay (its sampler, its episode context): the
    share of answer steps (reward != 0) whose predicted reward has the right sign, and the two-hot cross-entropy
    there (0.674 nats for a predicted +-1: the target's own entropy; 1.367 for a coin flip)."""
    trainer = Trainer(load_yaml(f"{logdir}/config.yaml"), logdir, resume=True, quiet=True)  # reads, writes nothing
    result = answer_signs(trainer, batches)
    trainer.vec.close()
    return result


@torch.no_grad()
def answer_signs(trainer: Trainer, batches: int) -> dict[str, float]:
    """replay_reward's numbers on ``trainer``'s replay, as its sampler draws training batches (not counted)."""
    wm, right, nats, answers = trainer.agent.world_model, 0, 0.0, 0
    for _ in range(batches):
        batch, _ = trainer.sample_batch(count=False)
        out = wm.observe_batch(batch)
        reward, predicted = batch["reward"].float(), TwoHot(wm.reward_head(wm.head_features(out["h"], out["z"])))
        answer = reward != 0
        right += int(((predicted.mean[answer] > 0) == (reward[answer] > 0)).sum())
        nats += float(-predicted.log_prob(reward)[answer].sum())
        answers += int(answer.sum())
    return {"replay_answer_steps": answers, "replay_reward_sign_right": right / max(answers, 1),
            "replay_reward_nats": nats / max(answers, 1)}


def train_in_imagination(agent: Agent, data: dict[str, Any], updates: int, every: int, starts: int = 256
                         ) -> list[tuple[int, float]]:
    """``Agent.update_behavior`` on the frozen world model from random kept states; returns [(update, p_rewarded)]
    every ``every`` updates."""
    curve = []
    for update in range(updates + 1):
        if update % every == 0:
            curve.append((update, p_rewarded(agent, data)))
        if update < updates:
            pick = torch.randint(data["h"].shape[0], (starts,))
            agent.update_behavior(Starts(*at(data, pick), cont=torch.ones(starts)))
    return curve


def measure(logdir: str, episodes: int, updates: int, every: int, seed: int = 0, actions: str = "random",
            replay_batches: int = 20) -> dict[str, Any]:
    torch.manual_seed(seed)
    cfg, agent, step = load_run(logdir)
    if not (cfg.train.env.startswith("bsuite:memory_len") and agent.discrete):
        raise UserError(f"needs a run on bsuite:memory_len/N, got {cfg.train.env}")
    agent.world_model.requires_grad_(False)
    data = play(agent, cfg.train.env, episodes, seed, actions)
    result = {"run": logdir, "env": cfg.train.env, "env_step": step, "episodes": episodes, "actions": actions,
              **world_model_probe(agent, data), "actor_p_rewarded": p_rewarded(agent, data),
              **replay_reward(logdir, replay_batches)}
    fresh = copy.deepcopy(agent)
    fresh.reset_actor_critic()
    result["run_actor_critic"] = train_in_imagination(agent, data, updates, every)
    result["fresh_actor_critic"] = train_in_imagination(fresh, data, updates, every)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir")
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actions", choices=["random", "policy"], default="random",
                        help="actions of the played episodes: uniformly random, or the run's acting policy")
    parser.add_argument("--replay-batches", type=int, default=20, help="training batches for the replay check (5)")
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        result = measure(args.logdir, args.episodes, args.updates, args.every, args.seed, args.actions,
                         args.replay_batches)
    except UserError as error:  # not a memory_len run, not a run directory: one line, exit code 2
        parser.error(str(error))
    print(f"{result['run']} at env step {result['env_step']} ({result['query_steps']} query steps, "
          f"{result['actions']} actions)")
    print(f"  reward head prefers the rewarded action: {result['reward_head_prefers_rewarded_action']:.3f}")
    print(f"  ridge probe of the cue from x:          {result['ridge_probe_accuracy']:.3f}")
    print(f"  on its own replay ({result['replay_answer_steps']} answer steps): reward sign right "
          f"{result['replay_reward_sign_right']:.3f}, {result['replay_reward_nats']:.3f} nats")
    print(f"  the run's actor, P(rewarded action):     {result['actor_p_rewarded']:.3f}")
    print("  updates in imagination | the run's actor-critic | a fresh one")
    for (update, run), (_, fresh) in zip(result["run_actor_critic"], result["fresh_actor_critic"]):
        print(f"  {update:22d} | {run:22.3f} | {fresh:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
