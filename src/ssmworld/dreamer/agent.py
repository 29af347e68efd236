"""Agent = world model + actor-critic: ``act`` for acting (carries the core state), ``update`` for training."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Protocol

import torch
from torch import nn

from ..errors import UserError, check_choices
from ..nn import eval_mode, frozen_parameters
from .behavior import ActorCritic, ActorCriticConfig
from .imagination import ImaginationConfig, Starts, choose_starts
from .optim import LaProp
from .world_model import WorldModel, WorldModelConfig


class GradientSync(Protocol):
    """What the agent needs from data parallelism (distributed.Group implements it)."""

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None: ...

    def average_buffers(self, module: nn.Module) -> None: ...

    def broadcast_module(self, module: nn.Module) -> None: ...


class NoSync:
    """A single process: nothing to share."""

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        pass

    def average_buffers(self, module: nn.Module) -> None:
        pass

    def broadcast_module(self, module: nn.Module) -> None:
        pass


# "latent" (z only) is the no-memory control of the learning test, not an R2I option.
POLICY_INPUTS = {"output": ("h", "z"), "hidden": ("z", "x"), "full": ("h", "z", "x"), "latent": ("z",)}


@dataclass
class AgentConfig:
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    # R2I: "output" (h, z), "hidden" (z, x), "full" (h, z, x); control: "latent" (z)
    policy_input: Literal["output", "hidden", "full", "latent"] = "hidden"
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)  # starts and horizon (imagination.py)
    model_lr: float = 1e-4  # world-model learning rate
    model_eps: float = 1e-8  # world-model optimiser epsilon
    model_clip: float = 1000.0  # world-model gradient-norm clip
    model_warmup: int = 0  # updates of linear learning-rate warm-up for the world model (Drama: 1000)
    # Decoupled weight decay (AdamW, Loshchilov & Hutter 2019) of the world model's linear and convolution weights;
    # biases, norms and the SSM's own parameters are not decayed. DreamerV3 uses none (0), R2I 1e-2 on Memory Maze
    # only (docs/REFERENCE.md r2i.md §5; the presets' paper size). Per update each
    # decayed weight shrinks by model_lr * model_weight_decay. On a memory task it made the reward head generalise
    # worse (docs/RESULTS.md, "Memorised because of the first few dozen episodes").
    model_weight_decay: float = 0.0
    # adam | laprop (Drama's option; ssmworld/dreamer/optim.py), for all three parts
    optimizer: Literal["adam", "laprop"] = "adam"
    actor_lr: float = 3e-5  # actor learning rate
    critic_lr: float = 3e-5  # critic learning rate
    actor_critic_eps: float = 1e-5  # actor and critic optimiser epsilon
    actor_critic_clip: float = 100.0  # actor and critic gradient-norm clip
    actor_critic_warmup: int = 0  # updates of linear learning-rate warm-up for the actor and critic (Drama: 1000)
    critic_clip: float | None = None  # the critic's own clip (None: actor_critic_clip); R2I Memory Maze: 200 / 100
    # float32 | bfloat16: the update's forward passes under torch.autocast (DreamerV3's default compute dtype on
    # accelerators). Matmuls run in bfloat16, distributions, losses, SSM states and the optimisers in float32. On CPUs
    # with AMX (or avx512_bf16) bfloat16 matmuls are several times faster; on AVX2-only CPUs they are emulated and
    # several times slower (the trainer warns). Acting stays float32.
    precision: Literal["float32", "bfloat16"] = "float32"
    # While collecting data (act with explore=True), each env takes a uniformly random action with this probability
    # (DreamerV1/V2's expl_amount; evaluation is greedy and unaffected). DreamerV3 and R2I rely on the policy's own
    # entropy (0); a policy that commits to one answer before the world model has seen the other one never collects
    # the data that would change its mind (docs/RESULTS.md, "Exploration").
    act_epsilon: float = 0.0
    # torch.compile each imagined step (policy, core step, prior sample) into one graph that fuses its elementwise
    # work: imagination 1.07-1.46x faster on a 2-core CPU, the whole update 1.0-1.2x (docs/RESULTS.md, "A compiled
    # imagination step"), after 10-60 s of compile at the first update. The same random draws as without it. Cores
    # s5, gru, mamba, mamba2; needs a C++ compiler (g++ or clang++) for TorchInductor's CPU code.
    compile_imagination: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.act_epsilon <= 1.0:
            raise UserError(f"agent.act_epsilon must be in [0, 1], got {self.act_epsilon}")
        if self.model_weight_decay < 0:
            raise UserError(f"agent.model_weight_decay must be >= 0, got {self.model_weight_decay}")
        # attention's KV cache grows at every imagined step: every step would compile a new graph
        if self.compile_imagination and self.world_model.core == "attention":
            raise UserError("agent.compile_imagination works with the s5, gru, mamba and mamba2 cores, not attention "
                            "(its KV cache grows at every imagined step)")


def require_compiler(cfg: AgentConfig) -> None:
    """agent.compile_imagination compiles at the first update, with TorchInductor's C++ backend on a CPU: checked
    where training starts (not in the config, so that evaluating or exporting such a run needs no compiler)."""
    if cfg.compile_imagination and not any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++", "c++")
                                           if c):
        raise UserError("agent.compile_imagination needs a C++ compiler for TorchInductor (g++ or clang++, or "
                        "CXX=...); none found on PATH")


class Agent(nn.Module):
    def __init__(self, obs_shapes: dict[str, int | tuple[int, ...]], action_dim: int, discrete: bool,
                 cfg: AgentConfig):
        """obs_shapes: vector sizes (n,) or image shapes (H, W, C) by key (see WorldModel)."""
        super().__init__()
        check_choices(cfg, "agent")
        check_choices(cfg.imagination, "agent.imagination")
        self.cfg, self.discrete, self.action_dim = cfg, discrete, action_dim
        self.world_model = WorldModel(obs_shapes, action_dim, cfg.world_model)
        sizes = {"h": self.world_model.core.output_dim, "z": self.world_model.latent_dim,
                 "x": self.world_model.core.state_features_dim}
        self.feat_dim = sum(sizes[k] for k in POLICY_INPUTS[cfg.policy_input])
        self._policy_reads_x = "x" in POLICY_INPUTS[cfg.policy_input]  # else imagination never builds x
        self.actor_critic = ActorCritic(self.feat_dim, action_dim, discrete, cfg.actor_critic)
        ac = self.actor_critic
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # in checkpoints: the warm-up resumes
        optimizer = torch.optim.Adam if cfg.optimizer == "adam" else LaProp
        self.model_opt = world_model_optimizer(self.world_model, cfg)
        self.actor_opt = optimizer(ac.actor.parameters(), cfg.actor_lr, eps=cfg.actor_critic_eps)
        self.critic_opt = optimizer(ac.critic.parameters(), cfg.critic_lr, eps=cfg.actor_critic_eps)
        # How gradients and statistics are shared between data-parallel ranks: injected by the runtime (the Trainer
        # sets its distributed.Group under torchrun); a single process shares nothing.
        self.sync: GradientSync = NoSync()
        # compiled at its first call; fallback_random: the compiled graph draws from torch's generator as eager does
        self._compiled_step = torch.compile(self._imagine_step, options={"fallback_random": True}) \
            if cfg.compile_imagination else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.model_opt, "actor": self.actor_opt, "critic": self.critic_opt}

    def reset_actor_critic(self) -> None:
        """Fresh actor, critic and slow critic, as at construction, with empty optimiser states (the return
        normaliser keeps its statistics: they describe the world model's returns, not the policy)."""
        ac = self.actor_critic
        fresh = ActorCritic(self.feat_dim, self.action_dim, self.discrete, self.cfg.actor_critic)
        for name in ("actor", "critic", "slow_critic"):
            getattr(ac, name).load_state_dict(getattr(fresh, name).state_dict())
        self.actor_opt.state.clear()
        self.critic_opt.state.clear()
        self.sync.broadcast_module(ac)  # data-parallel ranks drew different initialisations

    def features(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The actor/critic input from {"h", "z", "x"} (..., dims) per ``policy_input``."""
        return torch.cat([parts[k] for k in POLICY_INPUTS[self.cfg.policy_input]], -1)

    # ---- acting ------------------------------------------------------------------------------------------------
    def initial_state(self, n: int) -> dict[str, Any]:
        wm = self.world_model
        device = next(self.parameters()).device
        return {"core": wm.core.initial(n), "z": torch.zeros(n, wm.latent_dim, device=device),
                "action": torch.zeros(n, self.action_dim, device=device)}

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], is_first: torch.Tensor, state: dict[str, Any] | None,
            explore: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
        """One env step for N envs. obs: {key: (N, dim)}; is_first: (N,) bool. Returns (action (N, A): one-hot for
        discrete actions, and the new state). The core state is carried through the episode and reset at is_first,
        exactly as ``observe`` treats a training sequence."""
        state = self.initial_state(is_first.shape[0]) if state is None else state
        h, z, core_state = self.observe_step(obs, is_first, state)
        parts = {"h": h, "z": z}
        if self._policy_reads_x:
            parts["x"] = self.world_model.core.features(core_state)
        policy = self.actor_critic.policy(self.features(parts))
        action = policy.sample() if explore else policy.mode()
        if not self.discrete:
            action = action.clamp(-1, 1)
        if explore and self.cfg.act_epsilon > 0:
            action = self._epsilon_random(action)
        return action, {"core": core_state, "z": z, "action": action}

    @torch.no_grad()
    def observe_step(self, obs: dict[str, torch.Tensor], is_first: torch.Tensor, state: dict[str, Any]
                     ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The world model's half of one env step: z ~ q(z | obs) and the core's step on the previous (z, action)
        of ``state`` (zeroed where is_first, where the core resets). Returns h (N, H), z (N, Z), the core state."""
        wm = self.world_model
        keep = (~is_first.bool()).unsqueeze(-1).float()
        z = wm.posterior_sample(obs)  # batch-norm layers (Drama's CNN) use their running statistics
        u = wm.core_input(torch.cat([state["z"] * keep, state["action"] * keep], -1))
        h, core_state = wm.core.step(u, state["core"], reset=wm.core_reset(is_first))
        return h, z, core_state

    def _epsilon_random(self, action: torch.Tensor) -> torch.Tensor:
        """``action`` (N, A) with each row replaced, with probability act_epsilon, by a uniformly random action
        (one-hot, or uniform in [-1, 1]^A)."""
        n = action.shape[0]
        if self.discrete:
            random = nn.functional.one_hot(torch.randint(self.action_dim, (n,), device=action.device),
                                           self.action_dim).to(action.dtype)
        else:
            random = torch.rand_like(action) * 2 - 1
        pick = torch.rand(n, 1, device=action.device) < self.cfg.act_epsilon
        return torch.where(pick, random, action)

    def _autocast(self, device: torch.device) -> Any:
        """Forward passes of the update in ``precision`` (backward and optimiser steps run outside it)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bfloat16")

    # ---- training ----------------------------------------------------------------------------------------------
    def update(self, batch: dict[str, Any], contexts: dict[str, Any] | None = None) -> dict[str, float]:
        """One world-model update and one actor-critic update in imagination. batch: see WorldModel.loss;
        contexts: replayed (N, C) windows to start imagination from (agent.imagination.starts=replay)."""
        cfg, wm = self.cfg, self.world_model
        device = batch["action"].device
        clock = [_now(device)]
        with self._autocast(device):
            model_loss, metrics, out = wm.loss(batch, all_states=cfg.imagination.starts == "posterior")
        _warm_up(self.model_opt, cfg.model_lr, int(self.updates) + 1, cfg.model_warmup)
        self.updates += 1
        reset_every = cfg.actor_critic.reset_every
        if reset_every and int(self.updates) % reset_every == 0:
            self.reset_actor_critic()
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        self.sync.average_gradients(wm.parameters())
        metrics["grad_norm_model"] = nn.utils.clip_grad_norm_(wm.parameters(), cfg.model_clip)
        self.model_opt.step()
        clock.append(_now(device))
        with self._autocast(device):
            starts = choose_starts(wm, cfg.imagination, batch, out, contexts)
        clock.append(_now(device))
        metrics.update(self.update_behavior(starts))
        metrics["seconds_world_model"] = clock[1] - clock[0]
        metrics["seconds_imagination"] += clock[2] - clock[1]  # where the update time goes: with its starts
        return {k: float(v) for k, v in metrics.items()}

    def behavior_warmups_due(self) -> int:
        """How many ``warm_up_behavior`` calls the runtime owes the actor-critic now: reset_warmup right after the
        update that reset it (agent.actor_critic.reset_every), else 0."""
        ac, updates = self.cfg.actor_critic, int(self.updates)
        return ac.reset_warmup if ac.reset_every and updates and updates % ac.reset_every == 0 else 0

    def warm_up_behavior(self, batch: dict[str, Any], contexts: dict[str, Any] | None = None
                         ) -> dict[str, torch.Tensor | float]:
        """One actor-critic update on the current world model from ``batch``'s imagination starts (arguments as
        ``update``). The world model is not trained and its batch-norm statistics stay as they are (eval mode, as
        when acting): a fresh actor-critic catches up with it after a reset."""
        cfg, wm = self.cfg, self.world_model
        with eval_mode(wm), torch.no_grad(), self._autocast(batch["action"].device):
            out = None  # starts=replay imagines from the contexts alone
            if cfg.imagination.starts != "replay":
                out = wm.observe_batch(batch, all_states=cfg.imagination.starts == "posterior")
            starts = choose_starts(wm, cfg.imagination, batch, out, contexts)
        return self.update_behavior(starts)

    def _imagined_action(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The policy of imagination: an action sampled from the actor (in [-1, 1] for continuous ones, as in
        replay); the actor's input is detached, its gradient reaches the dynamics only through the action."""
        dist = self.actor_critic.policy(self.features(parts).detach())
        return dist.sample() if self.discrete else dist.sample_in_bounds()

    def _imagine_step(self, h: torch.Tensor, z: torch.Tensor, state: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """WorldModel.imagine_step with this agent's policy: what agent.compile_imagination compiles."""
        return self.world_model.imagine_step(h, z, state, self._imagined_action, self._policy_reads_x)

    def update_behavior(self, starts: Starts) -> dict[str, torch.Tensor | float]:
        """One actor-critic update in imagination from ``starts`` (the second half of ``update``; alone, it trains
        the actor-critic on a fixed world model). Returns its metrics, with seconds_imagination and
        seconds_actor_critic."""
        cfg, wm, ac = self.cfg, self.world_model, self.actor_critic
        device = starts.h.device
        clock, metrics = [_now(device)], {}
        with self._autocast(device):
            # the return's gradient through the dynamics reaches the actions, not the model's weights
            with torch.set_grad_enabled(ac.backprop_dynamics), frozen_parameters(wm):
                traj = wm.imagine(starts.h, starts.z, starts.state, self._imagined_action, cfg.imagination.horizon,
                                  step=self._compiled_step, policy_reads_x=self._policy_reads_x)
            clock.append(_now(device))
            feat = self.features(traj)
            actor_loss, critic_loss, ac_metrics = ac.loss(feat, traj["action"], traj["reward"], traj["cont"],
                                                          starts.cont)
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        _warm_up(self.actor_opt, cfg.actor_lr, int(self.updates), cfg.actor_critic_warmup)
        _warm_up(self.critic_opt, cfg.critic_lr, int(self.updates), cfg.actor_critic_warmup)
        (actor_loss + critic_loss).backward()
        self.sync.average_gradients([*ac.actor.parameters(), *ac.critic.parameters()])
        metrics["grad_norm_actor"] = nn.utils.clip_grad_norm_(ac.actor.parameters(), cfg.actor_critic_clip)
        metrics["grad_norm_critic"] = nn.utils.clip_grad_norm_(
            ac.critic.parameters(), cfg.actor_critic_clip if cfg.critic_clip is None else cfg.critic_clip)
        self.actor_opt.step()
        self.critic_opt.step()
        wm.zero_grad(set_to_none=True)  # the model step's gradients: not needed until its next step (memory)
        ac.update_slow_critic()
        self.sync.average_buffers(self)  # return-normalisation EMAs, batch-norm statistics
        metrics.update(ac_metrics)
        clock.append(_now(device))
        metrics["seconds_imagination"] = clock[1] - clock[0]
        metrics["seconds_actor_critic"] = clock[2] - clock[1]
        return metrics


def _warm_up(optimizer: torch.optim.Optimizer, lr: float, update: int, warmup: int) -> None:
    """Linear learning-rate warm-up: the ``update``-th update (from 1) runs at lr * min(1, update / warmup)."""
    if warmup > 0:
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, max(update, 1) / warmup)


def world_model_optimizer(world_model: nn.Module, cfg: AgentConfig) -> torch.optim.Optimizer:
    """The world model's optimiser: Adam or LaProp; with model_weight_decay > 0, AdamW (or LaProp's decoupled decay)
    on two groups, the weights of linear and convolution layers decayed, every other parameter not."""
    if cfg.model_weight_decay == 0:  # one group, as before the option existed: checkpoints keep their layout
        optimizer = torch.optim.Adam if cfg.optimizer == "adam" else LaProp
        return optimizer(world_model.parameters(), cfg.model_lr, eps=cfg.model_eps)
    layers = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    decayed = {id(m.weight): m.weight for m in world_model.modules() if isinstance(m, layers)}
    groups = [{"params": list(decayed.values()), "weight_decay": cfg.model_weight_decay},
              {"params": [p for p in world_model.parameters() if id(p) not in decayed], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW if cfg.optimizer == "adam" else LaProp
    return optimizer(groups, cfg.model_lr, eps=cfg.model_eps)


def _now(device: torch.device) -> float:
    if device.type == "cuda":  # kernels run asynchronously: wait for them so the split is real
        torch.cuda.synchronize(device)
    return time.perf_counter()
