"""Why does an agent not pick bsuite discounting_chain's bonus arm: its world model, its critic, or its actor?

    OMP_NUM_THREADS=1 python benchmarks/discounting_probe.py runs/dc4 --samples 64 \
        --json benchmarks/learning/discounting_probe_dc4.json

For a run on ``bsuite:discounting_chain/N`` (at t=0 the agent picks one of 5 arms; arm k pays ``rewards[k]`` (1.0, or
1.1 for arm N mod 5) after {1, 3, 10, 30, 100} steps; the observation shows the arm chosen and the time), from the
world model's posterior state at the first step, per arm (``samples`` imagined rollouts each, the first action fixed,
the run's policy after it):
1. the world model: over 100 imagined steps, the summed reward, the step at which the largest reward comes, and the
   discounted sum sum_t gamma^t c_0..c_t r_t with the run's gamma (the arm's true worth: gamma^(delay-1) rewards[k]);
2. the critic: its value along the arm's imagined chain (at CHAIN_STEPS), V(s_1) after the arm's first step (slow
   critic beside it), and the lambda-return at t=0 over the run's imagination horizon (the first steps of the same
   rollouts): the quantity whose difference between arms is the actor's advantage;
3. the actor: its probability of each arm at the first step.
If (1) ranks the bonus arm first and (2) does not, the critic has not carried the late reward back to t=0; if both do
and (3) does not follow, the actor does not learn from the rare first-step starts; if (1) is wrong, the world model.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from ssmworld import envs
from ssmworld.dreamer.agent import Agent
from ssmworld.dreamer.behavior import lambda_returns
from ssmworld.errors import UserError
from ssmworld.nn.distributions import onehot
from ssmworld.runtime.episodes import load_run, obs_to_tensors

DELAYS = (1, 3, 10, 30, 100)
CHAIN_STEPS = (1, 10, 30, 60, 90, 99)  # imagined steps at which the critic's value along an arm's chain is read


def first_state(agent: Agent, env_id: str, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The world model's state at an episode's first step, ``samples`` posterior samples: h, z, core state."""
    env = envs.make(env_id, seed=seed)
    obs, _ = env.reset(seed=seed)
    env.close()
    obs_t = {k: v[None].expand(samples, *v.shape) for k, v in obs_to_tensors(obs).items()}
    return agent.observe_step(obs_t, torch.ones(samples, dtype=torch.bool), agent.initial_state(samples))


@torch.no_grad()
def arm_rollouts(agent: Agent, start: tuple[torch.Tensor, torch.Tensor, Any], arm: int, horizon: int
                 ) -> dict[str, torch.Tensor]:
    """Imagined rollouts of ``horizon`` steps from the first step with the first action ``arm``, then the policy."""
    A, first = agent.action_dim, [True]

    def policy(parts: dict[str, torch.Tensor]) -> torch.Tensor:
        if first[0]:
            first[0] = False
            return onehot(torch.full((parts["h"].shape[0],), arm), A, parts["z"].dtype)
        return agent.actor_critic.policy(agent.features(parts)).sample()

    return agent.world_model.imagine(*start, policy, horizon)


@torch.no_grad()
def probe_arm(agent: Agent, start: tuple[torch.Tensor, torch.Tensor, Any], arm: int, gamma: float, lam: float,
              horizon: int) -> dict[str, float]:
    ac = agent.actor_critic
    long = arm_rollouts(agent, start, arm, max(100, horizon))
    reward, cont = long["reward"][:100], long["cont"][:100]  # (100, N)
    alive = torch.cumprod(torch.cat([torch.ones_like(cont[:1]), cont[:-1]]), 0)  # the reward's step is reached
    discount = gamma ** torch.arange(100, dtype=reward.dtype)[:, None]
    chain = ac.value(agent.features({k: long[k][list(CHAIN_STEPS)] for k in ("h", "z", "x")})).mean(-1)
    feat = agent.features({k: long[k][: horizon + 1] for k in ("h", "z", "x")})  # (H+1, N, F): as training imagines
    value = ac.value(feat)
    returns = lambda_returns(long["reward"][:horizon], long["cont"][:horizon], value, gamma, lam)
    return {"reward_sum": float((reward * alive).sum(0).mean()),
            "peak_step": float((reward.argmax(0) + 1).float().median()),
            "discounted_worth": float((discount * alive * reward).sum(0).mean()),
            "value_s1": float(value[1].mean()), "slow_value_s1": float(ac.value(feat[1], slow=True).mean()),
            "lambda_return_t0": float(returns[0].mean()),
            "value_along_chain": dict(zip(CHAIN_STEPS, chain.tolist()))}


@torch.no_grad()
def measure(logdir: str, samples: int, seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    cfg, agent, step = load_run(logdir)
    if not cfg.train.env.startswith("bsuite:discounting_chain"):
        raise UserError(f"needs a run on bsuite:discounting_chain/N, got {cfg.train.env}")
    bonus = int(cfg.train.env.split("/")[-1]) % len(DELAYS)
    ac_cfg = cfg.agent.actor_critic
    start = first_state(agent, cfg.train.env, samples, seed)
    h, z, state = start
    probs = agent.actor_critic.policy(agent.features({"h": h, "z": z, "x": agent.world_model.core.features(state)}))
    arms = []
    for arm, delay in enumerate(DELAYS):
        paid = 1.1 if arm == bonus else 1.0
        arms.append({"arm": arm, "delay": delay, "true_worth": paid * ac_cfg.gamma ** (delay - 1),
                     "p_first_step": float(probs.probs[:, arm].mean()),
                     **probe_arm(agent, start, arm, ac_cfg.gamma, ac_cfg.lam, cfg.agent.imagination.horizon)})
    return {"run": logdir, "env": cfg.train.env, "env_step": step, "bonus_arm": bonus, "gamma": ac_cfg.gamma,
            "horizon": cfg.agent.imagination.horizon, "samples": samples, "arms": arms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir")
    parser.add_argument("--samples", type=int, default=64, help="imagined rollouts per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        result = measure(args.logdir, args.samples, args.seed)
    except UserError as error:  # not a discounting_chain run, not a run directory: one line, exit code 2
        parser.error(str(error))
    print(f"{result['run']} at env step {result['env_step']}: bonus arm {result['bonus_arm']} "
          f"(delay {DELAYS[result['bonus_arm']]}), gamma {result['gamma']}, horizon {result['horizon']}")
    columns = ("delay", "true_worth", "discounted_worth", "reward_sum", "peak_step", "value_s1", "slow_value_s1",
               "lambda_return_t0", "p_first_step")
    print("  " + " | ".join(f"{c:>16}" for c in columns))
    for arm in result["arms"]:
        print("  " + " | ".join(f"{np.round(arm[c], 4):>16}" for c in columns))
    print("  the critic along each arm's imagined chain, at steps " + ", ".join(map(str, CHAIN_STEPS)))
    for arm in result["arms"]:
        print(f"  delay {arm['delay']:>3}: " + " ".join(f"{v:7.3f}" for v in arm["value_along_chain"].values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
