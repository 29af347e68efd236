"""Evaluation videos: the real episode, and beside it the world model's open-loop "imagination" of it.

    ssmworld eval --logdir runs/x --episodes 10 --video episode.mp4

For envs with image observations (atari:, dmc_vision:, memorymaze:, minigrid:), each video frame shows the real
observation on the left and, on the right, the world model's prediction: after ``context`` real steps the model
continues in its step mode with the actions the agent actually took, never seeing another real frame, and its decoder
draws each imagined state. Where the two halves part is where the model's memory or dynamics fail. Written with
imageio (``pip install -c constraints.txt -e '.[video]'``; .mp4 needs imageio-ffmpeg, .gif needs only pillow).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import envs
from ..dreamer.agent import Agent
from ..errors import UserError, import_optional, install_hint
from ..runtime.episodes import obs_to_tensors, run_episode


def to_uint8(pred: torch.Tensor, style: str) -> np.ndarray:
    """Decoder output in the style's space (dreamerv3: x/255 - 0.5, drama: x/255) -> uint8 pixels."""
    x = pred + 0.5 if style == "dreamerv3" else pred
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def record_episode(agent: Agent, env_id: str, path: str, seed: int = 0, context: int = 5, explore: bool = False,
                   env_options: dict[str, Any] | None = None, fps: int = 15, max_steps: int = 2000) -> dict[str, Any]:
    """Play one episode, write ``path`` (real | imagined frames side by side) and return {"frames", "return",
    "context"}. ValueError if the env has no image observation."""
    wm = agent.world_model
    if not wm.image_keys:
        raise UserError(f"video needs image observations; {env_id} has {sorted(wm.obs_shapes)} (use atari:, "
                         "dmc_vision:, memorymaze: or minigrid: envs)")
    key = wm.image_keys[0]
    device = next(agent.parameters()).device
    env = envs.make(env_id, seed=seed, **(env_options or {}))
    episode = run_episode(agent, env, seed, explore, record=True, max_steps=max_steps)
    env.close()
    observations, actions, total = episode.observations, episode.actions, episode.total

    # The model's open-loop rollout: observe the first `context` real steps, then imagine with the real actions.
    T = len(observations)
    context = max(1, min(context, T))
    seq = obs_to_tensors({k: np.stack([o[k] for o in observations[:context]])[None] for k in observations[0]}, device)
    taken = torch.stack(actions + [torch.zeros_like(actions[0])])[None]  # (1, T, A); no action after the last obs
    first = torch.zeros(1, context, dtype=torch.bool, device=device)
    first[:, 0] = True
    out = wm.observe(seq, taken[:, :context], first)
    decoder = wm.image_decoders[key]
    recon = to_uint8(decoder(wm.decoder_features(out["h"][0], out["z"][0])), wm.cfg.image_style)  # (context, ...)
    predicted = recon  # an episode that ends within the context leaves nothing to imagine
    if T > context:
        step = iter(range(context - 1, T - 1))
        traj = wm.imagine(out["h"][:, -1], out["z"][:, -1], out["state"], lambda parts: taken[:, next(step)],
                          horizon=T - context)
        imagined = to_uint8(decoder(wm.decoder_features(traj["h"][1:, 0], traj["z"][1:, 0])), wm.cfg.image_style)
        predicted = np.concatenate([recon, imagined])  # (T, H, W, C)
    real = np.stack([o[key] for o in observations])
    frames = np.concatenate([real, predicted], axis=2)  # side by side
    _write(path, frames, fps)
    return {"frames": int(T), "return": total, "context": context}


def _write(path: str, frames: np.ndarray, fps: int) -> None:
    imageio = import_optional("imageio.v2", "video", "videos need imageio")
    frames = np.repeat(np.repeat(frames, 4, 1), 4, 2) if frames.shape[1] <= 128 else frames  # 64 px is tiny
    try:
        if path.endswith(".gif"):
            imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(path, list(frames), fps=fps, macro_block_size=1)
    except (ImportError, RuntimeError, ValueError) as err:
        raise UserError(f"could not write {path} ({err}); .mp4 needs imageio-ffmpeg "
                         f"({install_hint('video')}), or write a .gif") from None
