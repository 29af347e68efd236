"""Actor-critic learning in imagination (DreamerV3 / R2I): lambda returns and return normalisation.

Imagination itself (rolling the world model forward) lives with the world model; this module only learns from the
imagined trajectories it is given.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import UserError, check_choices
from ..nn import MLP, BoundedNormal, RunningNorm, TwoHot
from ..nn.distributions import onehot, sample_index, unimix_probs


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """TD(lambda) returns of an imagined trajectory s_0 .. s_H, bootstrapped on V(s_{t+1}).

    reward, cont: (H, ...), the reward and continue flag of the transition s_t -> s_{t+1};
    value: (H + 1, ...), V(s_0) .. V(s_H).
    Returns R: (H, ...) with R_{H-1} = r + gamma c V(s_H) and
    R_t = r_t + gamma c_t ((1 - lam) V(s_{t+1}) + lam R_{t+1}).
    """
    horizon = reward.shape[0]
    if cont.shape != reward.shape or value.shape != (horizon + 1, *reward.shape[1:]):
        raise ValueError(f"lambda_returns: reward and cont must be (H, ...) and value (H+1, ...); got "
                         f"{tuple(reward.shape)}, {tuple(cont.shape)}, {tuple(value.shape)}")
    out, last = [], value[-1]
    for t in reversed(range(horizon)):
        last = reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


class ReturnNormalizer(nn.Module):
    """Scale = max(1, EMA(P_high) - EMA(P_low)) of the returns; statistics are buffers, so checkpoints keep them."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95, limit: float = 1.0):
        super().__init__()
        self.decay, self.low, self.high, self.limit = decay, low, high, limit
        self.register_buffer("ema_low", torch.zeros(()))
        self.register_buffer("ema_high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Update the EMAs with a batch of returns (any shape) and return the new scale."""
        flat = returns.detach().flatten().float()
        quantiles = torch.quantile(flat, torch.tensor([self.low, self.high], device=flat.device))
        self.ema_low.mul_(self.decay).add_((1 - self.decay) * quantiles[0])
        self.ema_high.mul_(self.decay).add_((1 - self.decay) * quantiles[1])
        return self.scale()

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.ema_high - self.ema_low, min=self.limit)


@dataclass
class ActorCriticConfig:
    units: int = 256  # hidden units of the actor and critic MLPs
    critic_units: int | None = None  # the critic's own width (None: units); Drama: actor 256, critic 512
    # the actor's inputs normalised by their running mean and variance (clipped to +-10), updated on the imagined
    # states of each actor-critic loss (Drama's VecNormalize also updated while acting; here acting and evaluation
    # leave the statistics alone)
    actor_input_norm: bool = False
    layers: int = 2  # hidden layers of the actor and critic MLPs
    gamma: float = 1 - 1 / 333  # discount per step (DreamerV3: 1 - 1/333)
    lam: float = 0.95  # lambda of the lambda-returns
    entropy: float = 3e-4  # weight of the actor entropy bonus, beside returns divided by the normalisation scale
    unimix: float = 0.01  # discrete actions
    min_std: float = 0.1  # continuous actions
    max_std: float = 1.0  # largest std of the continuous-action Normal
    # How continuous actions are trained: "dynamics" = the return's gradient through the imagined dynamics (R2I,
    # DreamerV3 2023), "reinforce" = the score-function estimator, as for discrete actions (DreamerV3 2024).
    continuous_gradient: Literal["dynamics", "reinforce"] = "dynamics"
    slow_critic_fraction: float = 0.02  # EMA step of the slow critic after every update
    slow_critic_reg: float = 1.0  # weight of the pull towards the slow critic's prediction
    # that prediction: the slow critic's value of each state ("mean", DreamerV3) or the lambda-return computed with
    # the slow critic's values ("return", Drama)
    slow_critic_target: Literal["mean", "return"] = "mean"
    # Re-initialise actor, critic and slow critic (and their optimiser states) every this many updates; 0: never.
    # They learn only in imagination, so a fresh pair relearns from the current world model without new data; this
    # recovers a policy whose softmax saturated on what an early world model predicted (its gradients then vanish:
    # docs/RESULTS.md "A saturated actor"). Nikishin et al. 2022, "The primacy bias in deep RL", reset heads alike.
    reset_every: int = 0
    # Extra actor-critic updates a fresh pair gets on the current world model right after a reset (besides the
    # resetting update's own), each from a new replay batch, before it acts again: acting and evaluation never see an
    # untrained policy (0: it learns alongside).
    reset_warmup: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.unimix < 1:
            raise UserError(f"agent.actor_critic.unimix must be in [0, 1), got {self.unimix}")
        if self.reset_every < 0:
            raise UserError(f"agent.actor_critic.reset_every must be >= 0 (0: never), got {self.reset_every}")
        if self.reset_warmup < 0 or (self.reset_warmup and not self.reset_every):
            raise UserError(f"agent.actor_critic.reset_warmup must be >= 0 and needs reset_every > 0, got "
                            f"reset_warmup={self.reset_warmup}, reset_every={self.reset_every}")


class ActorCritic(nn.Module):
    """Actor and two-hot critic (+ slow critic) trained on imagined trajectories.

    Trajectory convention: states s_0 .. s_H as features (H+1, N, F); a_t ~ pi(s_t) for t < H: (H, N, A); reward and
    continue of the transition s_t -> s_{t+1}: (H, N). Discrete actions are one-hot and trained with REINFORCE;
    continuous actions with the gradient of the return through the (differentiable) imagined dynamics, or with
    REINFORCE too (``continuous_gradient``)."""

    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, cfg: ActorCriticConfig):
        super().__init__()
        check_choices(cfg, "agent.actor_critic")
        self.cfg, self.discrete, self.action_dim = cfg, discrete, action_dim
        self.actor = MLP(feat_dim, cfg.units, cfg.layers, action_dim if discrete else 2 * action_dim)
        self.actor_input = RunningNorm(feat_dim) if cfg.actor_input_norm else None
        self.critic = MLP(feat_dim, cfg.critic_units or cfg.units, cfg.layers, 255, zero_output=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.normalizer = ReturnNormalizer()

    def policy(self, feat: torch.Tensor) -> OneHotPolicy | BoundedNormal:
        """feat: (..., F) -> action distribution over (..., A)."""
        out = self.actor(feat if self.actor_input is None else self.actor_input(feat))
        if self.discrete:
            return OneHotPolicy(out, self.cfg.unimix)
        mean, std = out.chunk(2, -1)
        return BoundedNormal(mean, std, self.cfg.min_std, self.cfg.max_std)

    @property
    def backprop_dynamics(self) -> bool:
        """Whether the actor learns from the return's gradient through the imagined dynamics (else REINFORCE)."""
        return not self.discrete and self.cfg.continuous_gradient == "dynamics"

    def value(self, feat: torch.Tensor, slow: bool = False) -> torch.Tensor:
        return TwoHot((self.slow_critic if slow else self.critic)(feat)).mean

    def loss(self, feat: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, cont: torch.Tensor,
             start_cont: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """feat (H+1, N, F), action (H, N, A), reward and cont (H, N), start_cont (N,) = 1 - is_terminal of s_0.
        Returns (actor loss, critic loss, metrics). With dynamics gradients (``backprop_dynamics``) feat, reward and
        cont must carry gradients from the imagined dynamics back to the actions."""
        cfg = self.cfg
        if not self.backprop_dynamics:  # one critic pass serves the returns (as constants) and the critic loss
            critic_logits = self.critic(feat.detach())
            value = TwoHot(critic_logits).mean.detach()  # (H+1, N)
            critic_dist = TwoHot(critic_logits[:-1])
        else:  # returns keep their gradient w.r.t. the imagined states, but must not train the critic's parameters
            frozen = {name: p.detach() for name, p in self.critic.named_parameters()}
            value = TwoHot(torch.func.functional_call(self.critic, frozen, (feat,))).mean
            critic_dist = TwoHot(self.critic(feat[:-1].detach()))
        returns = lambda_returns(reward, cont, value, cfg.gamma, cfg.lam)  # (H, N)
        start = torch.ones_like(cont[:1]) if start_cont is None else start_cont[None]
        # (H, N): w_0 = start_cont, w_t = w_{t-1} * gamma * c_{t-1}: the discounted chance that s_t is reached
        weight = torch.cumprod(torch.cat([start, cfg.gamma * cont[:-1]], 0), 0).detach()
        scale = self.normalizer.update(returns)
        if self.actor_input is not None:
            self.actor_input.update(feat[:-1].detach())
        policy = self.policy(feat[:-1].detach())
        if not self.backprop_dynamics:
            advantage = ((returns - value[:-1]) / scale).detach()
            objective = policy.log_prob(action.detach()) * advantage
        else:
            objective = returns / scale
        entropy = policy.entropy()
        actor_loss = -(weight * (objective + cfg.entropy * entropy)).mean()
        if cfg.slow_critic_target == "mean":
            slow_target = self.value(feat[:-1].detach(), slow=True)
        else:
            slow_values = self.value(feat.detach(), slow=True)
            slow_target = lambda_returns(reward.detach(), cont.detach(), slow_values, cfg.gamma, cfg.lam)
        critic_loss = -(weight * (critic_dist.log_prob(returns.detach())
                                  + cfg.slow_critic_reg * critic_dist.log_prob(slow_target))).mean()
        metrics = {"loss_actor": actor_loss.detach(), "loss_critic": critic_loss.detach(),
                   "return_mean": returns.mean().detach(), "return_scale": scale,
                   "policy_entropy": entropy.mean().detach()}
        return actor_loss, critic_loss, metrics

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """slow <- (1 - f) slow + f critic."""
        for slow, online in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.lerp_(online, self.cfg.slow_critic_fraction)


class OneHotPolicy:
    """Categorical over one-hot actions with a uniform mix. logits: (..., A)."""

    def __init__(self, logits: torch.Tensor, unimix: float):
        self.probs, self.log_probs = unimix_probs(logits, unimix)

    def sample(self) -> torch.Tensor:
        probs = self.probs.detach()
        return onehot(sample_index(probs), probs.shape[-1], probs.dtype)

    def mode(self) -> torch.Tensor:
        return onehot(self.probs.argmax(-1), self.probs.shape[-1], self.probs.dtype)

    def log_prob(self, onehot: torch.Tensor) -> torch.Tensor:
        return (onehot * self.log_probs).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.log_probs).sum(-1)
