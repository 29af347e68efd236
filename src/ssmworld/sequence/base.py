"""The one interface every sequence core implements.

A core maps a sequence of inputs x (B, T, input_dim) to outputs y (B, T, output_dim) while carrying a recurrent
state across calls. It has two equivalent modes:

- parallel (training): ``y, state = core(x, reset, state)`` over a whole (B, T) batch;
- recurrent (acting / imagination): ``y_t, state = core.step(x_t, state)`` one step at a time.

``reset[:, t] == True`` means "an episode starts at t": the state *entering* step t is replaced by
``core.initial``. Running ``step`` T times, resetting where ``reset`` is True, gives the same outputs and final
state as one parallel call (tested for every core).

A state is a flat ``dict[str, Tensor]`` whose tensors all have the batch as their first dimension, so that
replacing rows (resets), indexing and stacking work the same way for every core.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from ..errors import UserError

State = dict[str, torch.Tensor]


class SequenceCore(nn.Module):
    """Base class: subclasses set ``input_dim``, ``output_dim``, ``state_features_dim`` and implement
    ``initial``, ``_forward``, ``_step`` and ``features``."""

    name: str = "base"
    Config: type = object  # a dataclass; make() builds it from keyword arguments

    input_dim: int
    output_dim: int
    state_features_dim: int
    # Under torch.autocast (agent.precision=bfloat16): True for cores whose matmuls may run in bfloat16 because their
    # recurrences keep float32 states and gain from it (s5); the others run in float32 with autocast off (the Mamba
    # scans accumulate decays that bfloat16 would round; the GRU's per-step matmuls are too small to gain). Either
    # way x may arrive in bfloat16 and states leave in float32.
    autocast_ok: bool = False

    # ---- to implement -------------------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """The state before any input: zeros or learned parameters broadcast to ``batch_size`` rows."""
        raise NotImplementedError

    def _forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Parallel mode on checked inputs. x: (B, T, input_dim); reset: (B, T) bool."""
        raise NotImplementedError

    def _step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One recurrent step on checked inputs. x: (B, input_dim)."""
        raise NotImplementedError

    def features(self, state: State) -> torch.Tensor:
        """The hidden state flattened for a policy input: (B, state_features_dim), real-valued."""
        raise NotImplementedError

    # ---- shared behaviour ---------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, reset: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Parallel mode. x: (B, T, input_dim); reset: (B, T), True where an episode starts (None = no resets);
        state: the state entering step 0 (None = ``initial``). Returns y: (B, T, output_dim) and the state after
        step T-1."""
        x, reset, state = self._prepare(x, reset, state)
        if x.shape[1] == 0:  # nothing to scan: the state passes through
            return x.new_zeros(x.shape[0], 0, self.output_dim), state
        with self._precision(x):
            y, state = self._forward(x, reset, state)
        return y, self._float_state(state)

    def forward_states(
        self, x: torch.Tensor, reset: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Like ``forward``, but returns the state after *every* step: {key: (B, T, ...)}, where [:, t] is the state
        ``step`` would carry out of step t (R2I starts imagination from these). The generic version is the step loop;
        cores with a cheaper route override ``_forward_states``."""
        x, reset, state = self._prepare(x, reset, state)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.output_dim), {k: v[:, None][:, :0] for k, v in state.items()}
        with self._precision(x):
            y, states = self._forward_states(x, reset, state)
        return y, self._float_state(states)

    def _forward_states(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        ys, states = [], []
        resets_at = reset.any(0).tolist()  # one device-to-host copy, not one per step (a sync each on a GPU)
        for t in range(x.shape[1]):
            if resets_at[t]:
                state = self.reset(state, reset[:, t])
            y, state = self._step(x[:, t], state)
            ys.append(y)
            states.append(state)
        return torch.stack(ys, 1), {key: torch.stack([s[key] for s in states], 1) for key in states[0]}

    def _prepare(self, x: Any, reset: Any, state: Any) -> tuple[torch.Tensor, torch.Tensor, State]:
        x = self._check_x(x, ndim=3)
        batch, length = x.shape[:2]
        if reset is None:
            reset = torch.zeros(batch, length, dtype=torch.bool, device=x.device)
        reset = self._check_reset(reset, batch, length, x.device)
        state = self.initial(batch) if state is None else self._check_state(state, batch)
        return x, reset, state

    def step(
        self, x: torch.Tensor, state: State | None = None, reset: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Recurrent mode, one step. x: (B, input_dim); state: the carried state (None = ``initial``);
        reset: optional (B,) bool, replaces the carried state by ``initial`` for those rows first.
        Returns y: (B, output_dim) and the new state."""
        x = self._check_x(x, ndim=2)
        batch = x.shape[0]
        state = self.initial(batch) if state is None else self._check_state(state, batch)
        if reset is not None:
            reset = self._check_reset(reset.reshape(-1, 1), batch, 1, x.device)[:, 0]
            state = self.reset(state, reset)
        with self._precision(x):
            y, state = self._step(x, state)
        return y, self._float_state(state)

    # ---- mixed precision ------------------------------------------------------------------------------------------
    def _precision(self, x: torch.Tensor) -> Any:
        """The context a call runs in: autocast as set by the caller, or off for cores not ``autocast_ok``."""
        if self.autocast_ok or not torch.is_autocast_enabled(x.device.type):
            return nullcontext()
        return torch.autocast(x.device.type, enabled=False)

    def _float_state(self, state: State) -> State:
        """States leave in the parameters' dtype, whatever precision the ops ran in (states are carried for
        thousands of steps and stored for imagination starts)."""
        dtype = self._param_dtype()
        if all(v.dtype == dtype or not v.is_floating_point() for v in state.values()):
            return state
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}

    def rollout(self, compiled: bool = False) -> Any:
        """A context for a run of ``step`` calls over which the parameters do not change (imagination): a core may
        compute its per-step constants once on entering it (S5's discretisation). Outside it, ``step`` computes them
        every call; results are the same either way. ``compiled``: the steps run inside a ``torch.compile`` graph,
        so a core steps without complex tensors (S5), which TorchInductor cannot generate code for."""
        return nullcontext()

    def reset(self, state: State, mask: torch.Tensor) -> State:
        """Replace the rows of ``state`` where ``mask`` (B,) is True by the initial state."""
        init = self.initial(mask.shape[0])
        return {key: where_rows(mask, init[key], value) for key, value in state.items()}

    # ---- input checks: one clear message naming the expected shape ------------------------------------------------
    def _param_dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.get_default_dtype()

    def _check_x(self, x: Any, ndim: int) -> torch.Tensor:
        expected = "(B, T, {})".format(self.input_dim) if ndim == 3 else "(B, {})".format(self.input_dim)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: x must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
        if x.ndim != ndim or x.shape[-1] != self.input_dim:
            raise ValueError(f"{self.name}: x must have shape {expected}, got {tuple(x.shape)}")
        dtype = self._param_dtype()
        if x.dtype != dtype and torch.is_autocast_enabled(x.device.type) and x.dtype == torch.get_autocast_dtype(
                x.device.type):
            return x.to(dtype)  # an autocast layer's output; the core decides its own precision (``autocast_ok``)
        if x.dtype != dtype:
            raise TypeError(f"{self.name}: x must have dtype {dtype} (the core's parameters), got {x.dtype}")
        return x

    def _check_reset(self, reset: Any, batch: int, length: int, device: torch.device) -> torch.Tensor:
        if not isinstance(reset, torch.Tensor) or tuple(reset.shape) != (batch, length):
            shape = tuple(reset.shape) if isinstance(reset, torch.Tensor) else type(reset).__name__
            raise ValueError(f"{self.name}: reset must be a tensor of shape (B, T) = ({batch}, {length}), got {shape}")
        if reset.dtype.is_complex:
            raise TypeError(f"{self.name}: reset must be bool (or 0/1 numbers), got {reset.dtype}")
        return (reset != 0).to(device)

    def _check_state(self, state: Any, batch: int) -> State:
        # Runs on every step: the key set is cached, and initial(1) is built only to word an error.
        keys = self.__dict__.get("_state_keys")
        if keys is None:
            keys = self.__dict__["_state_keys"] = frozenset(self.initial(1))
        if not isinstance(state, dict) or state.keys() != keys:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{self.name}: state must be a dict with keys {sorted(keys)}, got {got}")
        for key, value in state.items():
            if value.shape[0] != batch:
                shape = ", ".join(str(s) for s in self.initial(1)[key].shape[1:])
                raise ValueError(
                    f"{self.name}: state[{key!r}] has batch size {value.shape[0]}, expected {batch} "
                    f"(shape (B, {shape}))"
                )
        return state


def where_rows(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per-row select: rows where mask (B,) is True come from ``new``, the others from ``old``."""
    return torch.where(mask.reshape(-1, *([1] * (old.ndim - 1))), new, old)


def build_config(config_cls: type, name: str, cfg: dict[str, Any]) -> Any:
    """Build a core's dataclass config from keyword arguments, rejecting unknown keys by name."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise UserError(f"unknown option(s) {unknown} for core {name!r}; valid options: {sorted(fields)}")
    return config_cls(**cfg)


def prenorm_residual_stack(
    x: torch.Tensor, input_proj: nn.Module, norms: nn.ModuleList, mixers: nn.ModuleList, final_norm: nn.Module,
    run: Any,
) -> tuple[torch.Tensor, State]:
    """The Mamba residual stack, shared by both modes of both Mamba cores:
    r = input_proj(x); for each layer i: r = r + out where (out, conv_i, ssm_i) = run(i, mixer_i, norm_i(r)).
    x: (B, [T,] input_dim). Returns final_norm(r) and the state {"conv_i", "ssm_i"} for i = 0..n_layers-1: one entry
    per layer, so that a step does not copy every layer's state into one tensor (that stacking cost a fifth of Drama's
    imagination steps)."""
    r, state = input_proj(x), {}
    for i, (norm, mixer) in enumerate(zip(norms, mixers)):
        out, state[f"conv_{i}"], state[f"ssm_{i}"] = run(i, mixer, norm(r))
        r = r + out
    return final_norm(r), state

