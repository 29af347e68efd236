"""Open-loop prediction error of a trained run's world model on vector observations: does imagination keep the state?

    OMP_NUM_THREADS=1 python benchmarks/open_loop.py RUN [RUN ...] [--episodes 2] [--every 25] [--horizon 15]
                                                     [--json benchmarks/open_loop_cartpole.json]

The same episodes for every run: uniformly random actions (the prefill behaviour every run trained on), seeds
0..episodes-1. The posterior is filtered along each episode as in training (z_t from o_t, core input (z_{t-1},
a_{t-1})); every ``every`` steps, imagination starts from that state and is fed the actions really taken next; the
prior's (h, z) at k = 1..horizon is decoded and compared with the real o_{t+k}. Reported: root-mean-square error per
observation dimension at k = 1, 5 and ``horizon`` over the starts (``symexp`` of the decoder's symlog output, in the
observation's units). A latent that cannot represent the state shows a large error already at k = 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform

import numpy as np
import torch

from ssmworld import envs
from ssmworld.nn import symexp
from ssmworld.runtime.episodes import load_run, obs_to_tensors, to_env_actions


@torch.no_grad()
def open_loop_errors(run: str, episodes: int, every: int, horizon: int, seed: int = 0) -> dict:
    """{"step", "latent", "rmse": {k: [per-dim RMSE]}} for one run directory."""
    cfg, agent, step = load_run(run)
    wm = agent.world_model
    if wm.image_decoders or len(wm.decoder) != 1:
        raise ValueError(f"{run}: open-loop errors are measured on one vector observation only")
    ((key, head),) = wm.decoder.items()
    env = envs.make(cfg.train.env, seed=seed, **cfg.train.env_options)
    rng = np.random.default_rng(seed)
    squared: dict[int, list[np.ndarray]] = {k: [] for k in range(1, horizon + 1)}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        observations, actions, done = [obs], [], False
        while not done:
            actions.append(rng.uniform(-1, 1, (1, agent.action_dim)).astype(np.float32))
            obs, _, terminated, truncated, _ = env.step(to_env_actions(actions[-1][0], env.action_space))
            observations.append(obs)
            done = terminated or truncated
        action = torch.as_tensor(np.concatenate(actions))  # (T, A)
        core, z, prev = wm.core.initial(1), torch.zeros(1, wm.latent_dim), torch.zeros(1, agent.action_dim)
        for t in range(len(actions) - horizon):
            obs_t = {k: v[None] for k, v in obs_to_tensors(observations[t], "cpu").items()}
            _, core = wm.core.step(wm.core_input(torch.cat([z, prev], -1)), core,
                                   reset=torch.tensor([t == 0]))  # h_t from (z_{t-1}, a_{t-1})
            z, prev = wm.latent(wm.encode(obs_t)).sample().flatten(-2), action[t:t + 1]
            if t % every:
                continue
            imagined_core, imagined_z = core, z
            for k in range(1, horizon + 1):  # a_{t+k-1} was taken after o_{t+k-1}
                u = wm.core_input(torch.cat([imagined_z, action[t + k - 1:t + k]], -1))
                h, imagined_core = wm.core.step(u, imagined_core)
                imagined_z = wm.latent(wm.prior(h)).sample().flatten(-2)
                predicted = symexp(head(wm.decoder_features(h, imagined_z)))[0].numpy()
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
