"""Data-parallel training on torch.distributed (launched by ``torchrun``; gloo on CPU, nccl on GPU).

Every rank runs its own envs and replay and makes the same updates: the gradients of each part are averaged over
ranks before clipping, and the floating-point buffers (return-normalisation EMAs, batch-norm statistics) after each
update, so parameters, optimiser states and statistics stay identical on all ranks. Rank 0 decides when to
checkpoint or stop (wall-clock decisions would differ between ranks), logs and evaluates.

Without ``torchrun`` (WORLD_SIZE unset or 1) ``setup`` returns a single-process group whose methods do nothing.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError
from ..nn import RunningNorm


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on the rank that logs, evaluates and writes the run's files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace each gradient by its mean over ranks (one coalesced all-reduce). Parameters without a gradient
        get zeros, so every rank reduces tensors of the same layout."""
        if not self.active:
            return
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        _all_mean([p.grad for p in params], self.world_size)

    def average_buffers(self, module: nn.Module) -> None:
        """Mean over ranks of every floating-point buffer. The EMAs in them are linear in their inputs, so the mean of
        the ranks' EMAs is the EMA of the ranks' mean statistics. A RunningNorm's variance also gets the spread of
        the ranks' means (a second all-reduce), so that it is the variance of all ranks' inputs (exact when the
        ranks saw equally many, as they do: same batch shapes), not the mean of each rank's variance around its own
        mean."""
        if not self.active:
            return
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        norms = [m for m in module.modules() if isinstance(m, RunningNorm)]
        own_means = [m.mean.clone() for m in norms]
        if buffers:
            _all_mean(buffers, self.world_size)
        if norms:
            spreads = [(own - m.mean).square() for own, m in zip(own_means, norms)]
            _all_mean(spreads, self.world_size)
            for m, spread in zip(norms, spreads):
                m.var.add_(spread)

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (the start of a run: initialisations differ)."""
        if not self.active:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def agree(self, value: int, device: torch.device) -> int:
        """Rank 0's ``value`` on every rank (for decisions taken from the wall clock)."""
        if not self.active:
            return value
        tensor = torch.tensor([value], device=device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def gather(self, obj: object) -> list[object]:
        """Every rank's ``obj`` (picklable, small), in rank order."""
        if not self.active:
            return [obj]
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def _all_mean(tensors: list[torch.Tensor], world_size: int) -> None:
    """Replace each tensor in place by its mean over ranks: one all-reduce of them flattened together."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def setup(device: str = "auto") -> Group:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...);
    a single-process group when there is none. The backend is nccl when the run uses CUDA, gloo otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Group()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        # The other ranks wait in a collective while rank 0 evaluates (a Memory Maze evaluation can take longer than
        # NCCL's default 10 minutes): with NCCL a hung rank is reported after this long instead. gloo keeps its own
        # 30 minutes (given explicitly, its CPU runs aborted at exit now and then: measured, 4 in ~25)
        if cuda:
            dist.init_process_group("nccl", timeout=_collective_timeout())
        else:
            dist.init_process_group("gloo")
    return Group(rank, world_size, local_rank)


def _collective_timeout() -> datetime.timedelta:
    text = os.environ.get("SSMWORLD_DDP_TIMEOUT_MINUTES", "120")
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes <= 1e6:  # (also not nan or inf, which timedelta cannot hold)
        raise UserError(f"SSMWORLD_DDP_TIMEOUT_MINUTES must be a number of minutes in (0, 1e6], got {text!r}")
    return datetime.timedelta(minutes=minutes)


def rank_device(device: torch.device, group: Group) -> torch.device:
    """One GPU per rank on a node: cuda -> cuda:<local rank>; other devices unchanged. An explicit cuda:N would put
    every rank on one GPU: bad input under torchrun."""
    if group.active and device.type == "cuda":
        if device.index is not None:
            raise UserError(f"train.device={device} under torchrun would put every rank on one GPU; give cuda (or "
                            "auto): each rank takes the GPU of its local rank")
        return torch.device("cuda", group.local_rank)
    return device
