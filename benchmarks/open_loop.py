"""Open-loop prediction error of a trained run's world model on vector observations: does imagination keep the state?

    OMP_NUM_THREADS=1 python benchmarks/open_loop.py RUN [RUN ...] [--episodes 2] [--every 25] [--horizon 15]
                                                     [--json benchmarks/open_loop_cartpole.json]

For each run: play ``episodes`` episodes with the run's policy (sampled actions, as in training). Every ``every``
steps, start imagination from the posterior of the real observation o_t (the core state carried through the episode
so far) and feed the actions really taken next; decode the prior's (h, z) at k = 1..horizon and compare with the real
o_{t+k}. Reported: root-mean-square error per observation dimension at k = 1, 5 and ``horizon``, averaged over starts
(``symexp`` of the decoder's symlog output, in the observation's units). A model whose latent cannot represent the
state shows a large error already at k = 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform

import numpy as np
import torch

from ssmworld import envs
from ssmworld.episodes import load_run, obs_to_tensors, to_env_actions
from ssmworld.nn import symexp


@torch.no_grad()
def open_loop_errors(run: str, episodes: int, every: int, horizon: int, seed: int = 0) -> dict:
    """{"step", "latent", "rmse": {k: [per-dim RMSE]}} for one run directory."""
    cfg, agent, step = load_run(run)
    wm = agent.world_model
    if wm.image_decoders or len(wm.decoder) != 1:
        raise ValueError(f"{run}: open-loop errors are measured on one vector observation only")
    ((key, head),) = wm.decoder.items()
    env = envs.make(cfg.train.env, seed=seed, **cfg.train.env_options)
    torch.manual_seed(seed)
    squared: dict[int, list[np.ndarray]] = {k: [] for k in range(1, horizon + 1)}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        observations, actions, states, state, first, done = [obs], [], [], None, True, False
        while not done:
            action, state = agent.act({k: v[None] for k, v in obs_to_tensors(obs, "cpu").items()},
                                      torch.tensor([first]), state, explore=True)
            states.append(state)  # after o_t: core state, z_t (posterior of o_t), a_t
            actions.append(action)
            obs, _, terminated, truncated, _ = env.step(to_env_actions(action[0].numpy(), env.action_space))
            observations.append(obs)
            first, done = False, terminated or truncated
        for t in range(0, len(actions) - horizon, every):
            core, z = states[t]["core"], states[t]["z"]
            for k in range(1, horizon + 1):  # a_{t+k-1} was taken after o_{t+k-1}
                h, core = wm.core.step(wm.core_input(torch.cat([z, actions[t + k - 1]], -1)), core)
                z = wm.latent(wm.prior(h)).sample().flatten(-2)
                predicted = symexp(head(wm.decoder_features(h, z)))[0].numpy()
                squared[k].append((predicted - observations[t + k][key]) ** 2)
    env.close()
    latent = f"{cfg.agent.world_model.latent_groups}x{cfg.agent.world_model.latent_classes}"
    return {"run": run, "env": cfg.train.env, "step": step, "latent": latent, "starts": len(squared[1]),
            "rmse": {k: np.sqrt(np.mean(v, 0)).tolist() for k, v in squared.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [open_loop_errors(run, args.episodes, args.every, args.horizon) for run in args.runs]
    shown = sorted({1, min(5, args.horizon), args.horizon})
    print(f"{'run':40} {'latent':>6} {'step':>7} " + " ".join(f"{'RMSE k=' + str(k):>36}" for k in shown))
    for r in results:
        cells = " ".join(f"{'[' + ' '.join(f'{e:.3f}' for e in r['rmse'][k]) + ']':>36}" for k in shown)
        print(f"{r['run'][-40:]:40} {r['latent']:>6} {r['step']:>7} {cells}")
    if args.json:
        meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                "torch_threads": torch.get_num_threads(), "args": vars(args)}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
