"""The world model of R2I / DreamerV3 over any sequence core.

    e_t = encoder(o_t)                                   vectors: symlog -> MLP; images: CNN (nn/conv.py); concat
    z_t ~ q(z_t | e_t)                                   posterior from the observation only (non-recurrent, R2I)
    u_t = Linear+LN+SiLU(z_{t-1}, a_{t-1})               both zeroed where is_first_t
    h_t, x_t = core(u_t, reset=is_first_t)               parallel mode over the whole (B, T) batch
    p(z_t | h_t), decoder(o_t | h_t, z_t), reward(r_t | h_t, z_t), continue(c_t | h_t, z_t)

Loss = prediction + dyn * max(free, KL[sg(q) || p]) + rep * max(free, KL[q || sg(p)]), averaged over B and T.
Batch conventions (replay): action[t] is taken after observing o_t; reward[t] arrives with o_t.
Imagination rolls the same core forward in step mode from posterior states (R2I: from every step of the batch).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

from .. import sequence
from ..errors import UserError, check_choices
from ..nn import MLP, Bernoulli, CategoricalLatent, ImageDecoder, ImageEncoder, TwoHot, dense_block, eval_mode, symlog
from ..sequence.attention import AttentionConfig
from ..sequence.gru import GRUConfig
from ..sequence.mamba import MambaConfig
from ..sequence.mamba2 import Mamba2Config
from ..sequence.s5 import S5Config

# imagine_step with the policy bound: (h, z, state) -> (h', z', state', action)
ImagineStep = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]],
                       tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]]


@dataclass
class WorldModelConfig:
    # the sequence core: s5 | mamba | mamba2 | gru | attention (`ssmworld list cores`)
    core: Literal["s5", "mamba", "mamba2", "gru", "attention"] = "s5"
    # One typed group of options per core; the one named by `core` is used (`ssmworld list cores`). A preset that
    # switches cores keeps every other size (dreamerv3.yaml extends r2i.yaml).
    s5: S5Config = field(default_factory=S5Config)  # options of the s5 core (R2I)
    mamba: MambaConfig = field(default_factory=MambaConfig)  # options of the mamba core (Mamba-1)
    mamba2: Mamba2Config = field(default_factory=Mamba2Config)  # options of the mamba2 core (Drama)
    gru: GRUConfig = field(default_factory=GRUConfig)  # options of the gru core (DreamerV3's block GRU)
    attention: AttentionConfig = field(default_factory=AttentionConfig)  # options of the attention core
    units: int = 256  # encoder, heads and the core's input width
    encoder_layers: int = 2  # hidden layers of the vector encoder MLP
    head_layers: int = 2  # hidden layers of the decoder, reward and continue heads
    # R2I's bsuite and dmc configs: vector encoder and decoder MLPs 1024 wide and 5 deep, beside 2 x 512 heads
    vector_units: int | None = None  # width of the vector encoder and decoder MLPs (None: units)
    decoder_layers: int | None = None  # hidden layers of the vector decoder MLP (None: head_layers)
    latent_groups: int = 32  # categorical latents per step (G)
    latent_classes: int = 32  # classes per categorical latent (C); z has G * C one-hot entries
    unimix: float = 0.01  # uniform mixture in the latent distributions (DreamerV3: 1%)
    free_bits: float = 1.0  # KL below this many nats is not penalised
    # what free_bits clips: each step's KL ("step": DreamerV3, R2I) or each KL's mean over the batch ("batch": Drama)
    free_bits_over: Literal["step", "batch"] = "step"
    dyn_scale: float = 0.5  # weight of the dynamics KL, KL[sg(q) || p]
    rep_scale: float = 0.1  # weight of the representation KL, KL[q || sg(p)]
    decoder_scale: float = 1.0  # weight of the observation reconstruction loss
    reward_scale: float = 1.0  # weight of the reward prediction loss
    cont_scale: float = 1.0  # weight of the continue-flag prediction loss
    reward_bins: int = 255  # two-hot bins of the symlog reward and value distributions
    # CNN encoder/decoder for image observations: dreamerv3 | drama (nn/conv.py)
    image_style: Literal["dreamerv3", "drama"] = "dreamerv3"
    cnn_depth: int | None = None  # channel multiplier (None: the style's default, 32 / 16)
    # Output-layer init of the reward head: 0 = zeros (DreamerV3: no reward is predicted before any is seen). A zero
    # layer starts at a symmetric saddle for rewards that depend on an interaction (cue x action in a memory task: the
    # +1 and -1 bins get identical weights, so no gradient separates them); a normal init of this std * fan_in^-0.5
    # breaks the symmetry. Measured on builtin:recall/0 (GRU, width 64): learned after ~1k updates with 1.0, not
    # within 2k with 0 or 0.1.
    reward_init: float = 0.0
    # False: a control without memory: the core is reset at every step (h_t depends on (z_{t-1}, a_{t-1}) only),
    # in training, acting and imagination alike.
    memory: bool = True
    # Layout. Defaults: DreamerV3 / R2I; the drama preset switches to Drama's (docs/REFERENCE.md drama.md §1).
    # core input Linear -> norm -> SiLU: "layer" (Linear without bias) | "rms" (with bias)
    stem_norm: Literal["layer", "rms"] = "layer"
    latent_hidden: bool = True  # posterior and prior logits after a dense block (False: a single Linear)
    head_units: int | None = None  # width of the reward and continue heads (None: units)
    head_norm: Literal["layer", "rms"] = "layer"  # "rms": biased Linear -> RMSNorm -> SiLU blocks in the heads
    head_input: Literal["hz", "h"] = "hz"  # reward and continue heads read (h, z) | "h"
    decoder_input: Literal["hz", "z"] = "hz"  # decoders read (h, z) | "z"

    def __post_init__(self) -> None:
        if not 0 <= self.unimix < 1:
            raise UserError(f"agent.world_model.unimix must be in [0, 1), got {self.unimix}")

    @property
    def core_options(self) -> Any:
        """The options of the selected core (one of the per-core groups)."""
        return getattr(self, self.core)

    @classmethod
    def with_core(cls, core: str, options: dict[str, Any] | None = None, **fields: Any) -> WorldModelConfig:
        """A config for ``core`` with those core options, e.g. ``with_core("gru", {"width": 16}, units=16)``."""
        group = sequence.build_config(sequence.core_class(core).Config, core, dict(options or {}))
        return cls(core=core, **{core: group}, **fields)


def kl_balance(post: CategoricalLatent, prior: CategoricalLatent, dyn_scale: float, rep_scale: float,
               free_bits: float, over: str = "step") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dyn_scale * max(free, KL[sg(q) || p]) + rep_scale * max(free, KL[q || sg(p)]), per step (``over="step"``),
    or with each KL's mean over all steps clipped (``over="batch"``, Drama: a scalar loss, which adds to every step
    alike, so the mean of the per-step total is the same as adding it to that mean).

    post, prior: the latent distributions q and p over (..., groups, classes), each built once: the two KLs share
    them and stop gradients on their tensors (the same values and gradients as four separately built distributions,
    at a third of the softmaxes and logarithms). The KL is summed over latents, then clipped.
    Returns (loss, KL_dyn, KL_rep): KL_dyn and KL_rep (...), the loss (...) or () for ``over="batch"``."""
    q, log_q, log_p = post.probs, post.logits, prior.logits
    dyn = (q.detach() * (log_q.detach() - log_p)).sum((-1, -2))  # trains the prior towards the posterior
    rep = (q * (log_q - log_p.detach())).sum((-1, -2))  # keeps the posterior predictable
    if over == "batch":
        return dyn_scale * dyn.mean().clamp(min=free_bits) + rep_scale * rep.mean().clamp(min=free_bits), dyn, rep
    return dyn_scale * dyn.clamp(min=free_bits) + rep_scale * rep.clamp(min=free_bits), dyn, rep


@torch.no_grad()
def entropies(post: CategoricalLatent, prior: CategoricalLatent) -> dict[str, torch.Tensor]:
    """Mean entropies of the posterior and prior (metrics: no graph kept)."""
    return {"prior_entropy": prior.entropy().mean(), "post_entropy": post.entropy().mean()}


class WorldModel(nn.Module):
    def __init__(self, obs_shapes: dict[str, int | tuple[int, ...]], action_dim: int, cfg: WorldModelConfig):
        """obs_shapes: by key, a vector size n (or (n,)) or an image shape (H, W, C) (uint8 in replay);
        action_dim: one-hot size (discrete) or action dims."""
        super().__init__()
        if not obs_shapes:
            raise UserError("world model: needs at least one observation key")
        shapes = {k: (v,) if isinstance(v, int) else tuple(v) for k, v in obs_shapes.items()}
        bad = {k: v for k, v in shapes.items() if len(v) not in (1, 3)}
        if bad:
            raise UserError(f"world model: observations must be vectors (n,) or images (H, W, C), got {bad}")
        self.cfg, self.obs_shapes, self.action_dim = cfg, shapes, action_dim
        self.vector_keys = [k for k, v in shapes.items() if len(v) == 1]
        self.image_keys = [k for k, v in shapes.items() if len(v) == 3]
        self.latent_dim = cfg.latent_groups * cfg.latent_classes
        vector_dim = sum(shapes[k][0] for k in self.vector_keys)
        vector_units = cfg.vector_units or cfg.units
        self.encoder = MLP(vector_dim, vector_units, cfg.encoder_layers) if self.vector_keys else None
        self.image_encoders = nn.ModuleDict({k: ImageEncoder(shapes[k], cfg.image_style, cfg.cnn_depth)
                                             for k in self.image_keys})
        embed_dim = (self.encoder.output_dim if self.encoder else 0) + sum(
            e.output_dim for e in self.image_encoders.values())
        check_choices(cfg, "agent.world_model")

        def logits_layer(in_dim: int) -> nn.Module:
            if not cfg.latent_hidden:
                return nn.Linear(in_dim, self.latent_dim)
            return nn.Sequential(dense_block(in_dim, cfg.units), nn.Linear(cfg.units, self.latent_dim))

        self.posterior = logits_layer(embed_dim)
        self.core_input = dense_block(self.latent_dim + action_dim, cfg.units, norm=cfg.stem_norm,
                                      bias=cfg.stem_norm == "rms")
        self.core = sequence.make(cfg.core, cfg.units, **dataclasses.asdict(cfg.core_options))
        h_dim = self.core.output_dim
        self.prior = logits_layer(h_dim)
        decoder_dim = self.latent_dim + (h_dim if cfg.decoder_input == "hz" else 0)
        decoder_layers = cfg.head_layers if cfg.decoder_layers is None else cfg.decoder_layers
        self.decoder = nn.ModuleDict({k: MLP(decoder_dim, vector_units, decoder_layers, shapes[k][0])
                                      for k in self.vector_keys})
        self.image_decoders = nn.ModuleDict({k: ImageDecoder(decoder_dim, shapes[k], cfg.image_style, cfg.cnn_depth)
                                             for k in self.image_keys})
        head_dim = h_dim + (self.latent_dim if cfg.head_input == "hz" else 0)
        head = dict(units=cfg.head_units or cfg.units, layers=cfg.head_layers, norm=cfg.head_norm,
                    bias=cfg.head_norm == "rms")
        self.reward_head = MLP(head_dim, out_dim=cfg.reward_bins, zero_output=True, **head)
        if cfg.reward_init > 0:
            out = self.reward_head.head
            nn.init.normal_(out.weight, std=cfg.reward_init / out.weight.shape[1] ** 0.5)
        self.cont_head = MLP(head_dim, out_dim=1, **head)

    def head_features(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Input of the reward and continue heads: (h, z) or h alone. (..., H), (..., G*C) -> (..., F)."""
        return torch.cat([h, z], -1) if self.cfg.head_input == "hz" else h

    def decoder_features(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Input of the decoders: (h, z) or z alone."""
        return torch.cat([h, z], -1) if self.cfg.decoder_input == "hz" else z

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (Drama prints these at start; its world model is about 7.1M)."""
        parts = {"encoder": [self.encoder, self.image_encoders], "latent heads": [self.posterior, self.prior],
                 "sequence model": [self.core_input, self.core], "decoder": [self.decoder, self.image_decoders],
                 "reward head": [self.reward_head], "continue head": [self.cont_head]}
        counts = {name: sum(p.numel() for m in modules if m is not None for p in m.parameters())
                  for name, modules in parts.items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def latent(self, logits: torch.Tensor) -> CategoricalLatent:
        """logits: (..., groups * classes) -> distribution over (..., groups, classes)."""
        return CategoricalLatent(logits.unflatten(-1, (self.cfg.latent_groups, self.cfg.latent_classes)),
                                 self.cfg.unimix)

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs: {key: (..., dim) vectors or (..., H, W, C) images} -> posterior logits (..., groups * classes)."""
        missing = set(self.obs_shapes) - set(obs)
        if missing:
            raise KeyError(f"world model: observation keys {sorted(missing)} missing; expected "
                           f"{sorted(self.obs_shapes)}")
        parts = [encoder(obs[k]) for k, encoder in self.image_encoders.items()]
        if self.encoder is not None:
            parts.insert(0, self.encoder(torch.cat([symlog(obs[k].float()) for k in self.vector_keys], -1)))
        return self.posterior(torch.cat(parts, -1))

    def decoder_loss(self, feat: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Negative log-likelihood of the observations, (B, T): symlog squared error summed over each vector, the
        image decoders' pixel loss summed over pixels (nn/conv.py)."""
        loss = sum(((head(feat) - symlog(obs[k].float())) ** 2).sum(-1) for k, head in self.decoder.items())
        for k, decoder in self.image_decoders.items():
            loss = loss + decoder.loss(decoder(feat), obs[k])
        return loss

    def observe(self, obs: dict[str, torch.Tensor], action: torch.Tensor, is_first: torch.Tensor,
                state: sequence.State | None = None, all_states: bool = False,
                prev: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
        """Posterior pass over a (B, T) batch in parallel mode.

        obs: {key: (B, T, dim)}; action: (B, T, A), action[t] taken after o_t; is_first: (B, T) bool.
        state, prev: the core state entering step 0 and the (z, a) of the step before it, (B, G*C), (B, A) (the
        episode context, ``episode_context``); None: the initial state and zeros.
        Returns h (B, T, H), z (B, T, G*C) sampled posterior, its distribution ``post`` (the KL's, ``loss``),
        post/prior logits (B, T, G*C) and the final core state,
        or with ``all_states`` the core state after every step {key: (B, T, ...)} (imagination starts)."""
        post_logits = self.encode(obs)
        post = self.latent(post_logits)
        z = post.sample().flatten(-2)  # (B, T, G*C), straight-through
        u = self.core_inputs(z, action, is_first.bool(), prev)
        run = self.core.forward_states if all_states else self.core
        h, core_state = run(u, self.core_reset(is_first), state)
        return dict(h=h, z=z, post=post, post_logits=post_logits, prior_logits=self.prior(h), state=core_state)

    def observe_batch(self, batch: dict[str, Any], all_states: bool = False) -> dict[str, Any]:
        """``observe`` over a replay batch (see ``loss``), from its episode context when it carries a prefix."""
        state = prev = None
        if "prefix" in batch and batch["prefix"]["is_first"].shape[1]:  # train.context=episode
            state, prev = self.episode_context(batch["prefix"])
        return self.observe(batch["obs"], batch["action"], batch["is_first"], state, all_states, prev)

    def core_inputs(self, z: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
                    prev: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """u_t = stem(z_{t-1}, a_{t-1}), zeroed where is_first_t: (B, T, G*C), (B, T, A), (B, T) -> (B, T, units).
        ``prev``: the (z, a) before step 0, (B, G*C), (B, A) (None: zeros)."""
        za = torch.cat([z, action.to(z.dtype)], -1)  # (B, T, G*C + A): one shift and one mask for both
        first = torch.cat(prev, -1).to(z.dtype) if prev is not None else torch.zeros_like(za[:, 0])
        keep = (~is_first).unsqueeze(-1).to(z.dtype)
        return self.core_input(torch.cat([first.unsqueeze(1), za[:, :-1]], 1) * keep)

    @torch.no_grad()
    def episode_context(self, prefix: dict[str, Any]) -> tuple[sequence.State, tuple[torch.Tensor, torch.Tensor]]:
        """The episode context of a batch (train.context=episode): ``prefix`` holds each sequence's episode steps
        before its first step, (B, P) left-padded (replay.episode_prefix). A gradient-free pass of the core over them
        (exact: the pad is cut off by the reset at each real prefix's first step) gives the state entering the batch's
        first step, and (z, a) of the step before it. Returns (state, (z (B, G*C), a (B, A)))."""
        z = self.posterior_sample(prefix["obs"])
        _, _, state, _ = self._run_context(z, prefix["action"], prefix["is_first"].bool(), prefix["is_terminal"])
        return state, (z[:, -1], prefix["action"][:, -1].float())

    def posterior_sample(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """z (..., G*C) sampled from q(z | o) with the encoder in eval mode (batch-norm layers use their running
        statistics and are not updated by acting or context steps)."""
        with eval_mode(self):
            return self.latent(self.encode(obs)).sample().flatten(-2)

    def core_reset(self, is_first: torch.Tensor) -> torch.Tensor:
        """The core's reset flags (...) for ``is_first`` (...): is_first itself, or all True without memory."""
        return is_first.bool() if self.cfg.memory else torch.ones_like(is_first, dtype=torch.bool)

    @torch.no_grad()
    def context_starts(self, z: torch.Tensor, batch: dict[str, Any], context: int, n: int
                       ) -> tuple[torch.Tensor, torch.Tensor, sequence.State, torch.Tensor]:
        """Drama's imagination starts from a world-model batch: for ``n`` random steps t of the batch, run the core
        from its initial state over the ``context`` real steps ending at t. z: (B, T, G*C) posterior samples.
        Returns h (n, H), z (n, G*C), the core state after t (batch n) and start_cont (n,) = 1 - is_terminal at t.
        Works for every core, including attention, whose per-step states are not materialised."""
        B, T = z.shape[:2]
        C = min(context, T)
        b = torch.randint(B, (n, 1), device=z.device)
        t = torch.randint(C - 1, T, (n, 1), device=z.device)
        pos = t - C + 1 + torch.arange(C, device=z.device)  # (n, C)
        return self._run_context(z[b, pos], batch["action"][b, pos], batch["is_first"].bool()[b, pos],
                                 batch["is_terminal"][b, pos])

    @torch.no_grad()
    def context_windows(self, windows: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, sequence.State,
                                                                   torch.Tensor]:
        """Imagination starts from replayed context windows (Drama's DFS contexts): ``windows`` is a batch dict of
        (n, C) sequences (obs, action, is_first, is_terminal); the start is each window's last step. Returns as
        ``context_starts``. The windows are encoded in eval mode (posterior_sample): replayed contexts neither move
        batch-norm statistics nor are normalised by their own batch (Drama's D5)."""
        state = prev = None
        if "prefix" in windows and windows["prefix"]["is_first"].shape[1]:  # train.context=episode
            state, prev = self.episode_context(windows["prefix"])
        z = self.posterior_sample(windows["obs"])
        return self._run_context(z, windows["action"], windows["is_first"].bool(), windows["is_terminal"], state, prev)

    def _run_context(self, z: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, is_terminal: torch.Tensor,
                     state: sequence.State | None = None, prev: tuple[torch.Tensor, torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, sequence.State, torch.Tensor]:
        """The core over (n, C) windows with inputs (z_{k-1}, a_{k-1}) as in training, reset at episode starts inside
        the window; from its initial state (``state`` None) or from ``state`` with ``prev`` as in ``observe``."""
        reset = is_first.clone()
        if state is None:
            reset[:, 0] = True  # the context starts from the initial state
        h, state = self.core(self.core_inputs(z, action, reset, prev), self.core_reset(reset), state)
        return h[:, -1], z[:, -1], state, 1.0 - is_terminal[:, -1].float()

    def imagine_step(self, h: torch.Tensor, z: torch.Tensor, state: sequence.State,
                     policy: Callable[[dict[str, torch.Tensor]], torch.Tensor], policy_reads_x: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, sequence.State, torch.Tensor]:
        """One imagined step from (h, z, state), batch N: the action a = policy({"h", "z", "x"}) ("x" only if
        ``policy_reads_x``), the core step on (z, a), and a latent sampled from the prior. Returns (h', z', state',
        a)."""
        parts = {"h": h, "z": z}
        if policy_reads_x:  # the core's whole state: a copy for cores that keep it in pieces (Mamba: per layer)
            parts["x"] = self.core.features(state)
        action = policy(parts)
        reset = None if self.cfg.memory else torch.ones(action.shape[0], dtype=torch.bool, device=action.device)
        h, state = self.core.step(self.core_input(torch.cat([z, action], -1)), state, reset=reset)
        return h, self.latent(self.prior(h)).sample().flatten(-2), state, action

    def imagine(self, h: torch.Tensor, z: torch.Tensor, state: sequence.State,
                policy: Callable[[dict[str, torch.Tensor]], torch.Tensor], horizon: int,
                step: ImagineStep | None = None, policy_reads_x: bool = True) -> dict[str, torch.Tensor]:
        """Roll the model forward in the core's step mode from N start states, choosing actions with ``policy``.

        h: (N, H), z: (N, G*C), state: core state with batch N (e.g. flattened ``observe(all_states=True)`` outputs).
        policy({"h", "z", "x"}) -> action (N, A), where x = core.features(state), given only if ``policy_reads_x``.
        step: ``imagine_step`` with ``policy`` bound, compiled (Agent, agent.compile_imagination); it runs inside
        ``core.rollout(compiled=True)``, whose per-rollout weights become inputs of the compiled graph.
        Returns h (K+1, N, H), z (K+1, N, G*C), x (K+1, N, X) for the states s_0..s_K (only if ``policy_reads_x``:
        x is the core's whole state, e.g. 8192 numbers per row for Drama's Mamba-2, which an actor-critic on (h, z)
        never reads), action (K, N, A), and the predicted reward and continue flag (K, N) of each transition
        s_k -> s_{k+1}."""
        compiled = step is not None
        step = step or functools.partial(self.imagine_step, policy=policy, policy_reads_x=policy_reads_x)
        hs, zs, xs, actions = [h], [z], [self.core.features(state)] if policy_reads_x else [], []
        with self.core.rollout(compiled=compiled):  # the parameters are fixed for the whole rollout
            for _ in range(horizon):
                h, z, state, action = step(h, z, state)
                hs.append(h)
                zs.append(z)
                if policy_reads_x:
                    xs.append(self.core.features(state))
                actions.append(action)
        out = dict(h=torch.stack(hs), z=torch.stack(zs), action=torch.stack(actions))
        if policy_reads_x:
            out["x"] = torch.stack(xs)
        feat = self.head_features(out["h"][1:], out["z"][1:])
        out["reward"] = TwoHot(self.reward_head(feat)).mean
        out["cont"] = Bernoulli(self.cont_head(feat).squeeze(-1)).mode()
        return out

    def loss(self, batch: dict[str, Any], all_states: bool = False
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        """batch: obs {key: (B, T, dim)}, action (B, T, A), reward (B, T), is_first (B, T), is_terminal (B, T);
        optionally "prefix", the sequences' episode context (a batch dict of (B, P) steps, see ``episode_context``).
        Returns (scalar loss, metrics, the observe() outputs; ``all_states`` as in observe)."""
        cfg = self.cfg
        out = self.observe_batch(batch, all_states)
        feat = self.head_features(out["h"], out["z"])
        same = cfg.decoder_input == cfg.head_input  # both (h, z): one concatenation serves both
        decoder = self.decoder_loss(feat if same else self.decoder_features(out["h"], out["z"]), batch["obs"])
        reward = -TwoHot(self.reward_head(feat)).log_prob(batch["reward"].float())
        cont = -Bernoulli(self.cont_head(feat).squeeze(-1)).log_prob(1.0 - batch["is_terminal"].float())
        post, prior = out["post"], self.latent(out["prior_logits"])
        kl_loss, dyn, rep = kl_balance(post, prior, cfg.dyn_scale, cfg.rep_scale, cfg.free_bits,
                                       cfg.free_bits_over)
        total = cfg.decoder_scale * decoder + cfg.reward_scale * reward + cfg.cont_scale * cont + kl_loss
        metrics = {"loss_model": total.mean(), "loss_decoder": decoder.mean(), "loss_reward": reward.mean(),
                   "loss_cont": cont.mean(), "kl_dyn": dyn.mean(), "kl_rep": rep.mean(),
                   **entropies(post, prior)}
        return total.mean(), {k: v.detach() for k, v in metrics.items()}, out
