"""Reference returns on dmc:cartpole_balance (what a learned score means): zero action, uniformly random actions, and
a hand-tuned linear (PD) controller u = clip(20 sin(theta) + 5 theta_dot + x + x_dot, -1, 1).

    OMP_NUM_THREADS=1 python benchmarks/cartpole_references.py [--episodes 5] [--json benchmarks/cartpole_references.json]

Same env as training (``ssmworld.envs``: action repeat 2, 500 agent steps, returns up to 1000); seeds 0..episodes-1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics

import numpy as np

from ssmworld import envs


def controller(name: str, rng: np.random.Generator):
    def act(obs: np.ndarray) -> np.ndarray:
        x, _, sin_theta, x_dot, theta_dot = obs  # position (x, cos, sin), velocity (x_dot, theta_dot)
        if name == "zero":
            return np.zeros(1, np.float32)
        if name == "random":
            return rng.uniform(-1, 1, 1).astype(np.float32)
        return np.clip([20 * sin_theta + 5 * theta_dot + x + x_dot], -1, 1).astype(np.float32)
    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    env = envs.make("dmc:cartpole_balance", seed=0)
    results = {}
    for name in ("zero", "random", "pd"):
        act, returns = controller(name, np.random.default_rng(0)), []
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs["vector"]))
                total, done = total + float(reward), terminated or truncated
            returns.append(total)
        results[name] = {"mean": statistics.mean(returns), "std": statistics.pstdev(returns), "returns": returns}
        print(f"{name:>7}: {results[name]['mean']:7.1f} ± {results[name]['std']:5.1f}  ({args.episodes} episodes)")
    if args.json:
        meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(), "args": vars(args)}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
