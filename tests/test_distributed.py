"""Data-parallel training: gradient/buffer averaging on 2 gloo processes, and a torchrun run whose ranks keep identical
parameters while acting on different data, checkpoint per rank and resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ssmworld.nn import RunningNorm
from ssmworld.runtime import checkpoint
from ssmworld.runtime.distributed import Group

WORLD = 2


def _collectives(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    group = Group(rank, WORLD, rank)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    unused = nn.Parameter(torch.ones(2))  # no gradient on any rank: averaged as zeros
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    model(x[rank * 4:(rank + 1) * 4]).pow(2).mean().backward()  # each rank: its half of the batch
    params = [*model.parameters(), unused]
    group.average_gradients(params)
    stats = nn.BatchNorm1d(2)
    stats.running_mean.fill_(float(rank + 1))  # ranks 1.0 and 2.0 -> 1.5
    group.average_buffers(stats)
    norm = RunningNorm(2)
    norm.update(_norm_inputs()[rank])  # each rank its own inputs, with different means
    group.average_buffers(norm)
    torch.save({"grads": [p.grad for p in params], "running_mean": stats.running_mean,
                "norm": {"mean": norm.mean, "var": norm.var},
                "agreed": group.agree(7 if rank == 0 else 3, torch.device("cpu")),
                "gathered": group.gather(rank * 10)}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _norm_inputs() -> list[torch.Tensor]:
    x = torch.randn(WORLD, 500, 2, generator=torch.Generator().manual_seed(2))
    return [x[0], x[1] * 2.0 + torch.tensor([5.0, -3.0])]


@pytest.mark.slow
def test_gradients_are_the_full_batch_gradient_and_rank_zero_decides(tmp_path):
    mp.spawn(_collectives, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    model(x).pow(2).mean().backward()  # the mean of the two half-batch means = the full-batch mean
    expected = [p.grad for p in model.parameters()] + [torch.zeros(2)]
    for rank in range(WORLD):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for got, want in zip(out["grads"], expected):
            torch.testing.assert_close(got, want)
        assert out["running_mean"].tolist() == [1.5, 1.5]
        pooled = torch.cat(_norm_inputs())  # the ranks' inputs pooled: mean ~(2.5, -1.5), variance ~(8.75, 4.75)
        torch.testing.assert_close(out["norm"]["mean"], pooled.mean(0), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out["norm"]["var"], pooled.var(0, unbiased=False), rtol=1e-4, atol=1e-4)
        assert out["agreed"] == 7 and out["gathered"] == [0, 10]


def test_single_process_group_does_nothing():
    group = Group()
    p = nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    group.average_gradients([p])
    assert p.grad.tolist() == [3.0, 3.0] and group.agree(5, torch.device("cpu")) == 5 and group.main


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--standalone",
               "-m", "ssmworld", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def _agent(path: str) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)[0]["agent"]


@pytest.mark.slow
def test_torchrun_ranks_stay_identical_and_resume(tmp_path):
    logdir = str(tmp_path / "run")
    run = _torchrun("--size", "debug", "--env", "builtin:recall/2", "--steps", "160", "--logdir", logdir, "--quiet",
                    "train.prefill=30", "train.checkpoint_every=80", "train.eval_episodes=1",
                    "train.context=episode",  # every window also replays its episode so far, per rank
                    "agent.actor_critic.reset_every=16",  # re-initialised actor-critics agree across ranks,
                    "agent.actor_critic.reset_warmup=2")  # also after their warm-up on each rank's own batches
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count('"steps": 160') == 1  # only rank 0 prints the summary
    summary = json.loads(next(line for line in run.stdout.splitlines() if '"steps": 160' in line))
    assert summary["episodes"] == 80 // 5  # rank 0's episodes (5 stored steps each); steps count both ranks
    rank0, rank1 = os.path.join(logdir, "checkpoints"), os.path.join(logdir, "rank-1", "checkpoints")
    steps = [os.path.basename(p) for p in checkpoint.list_checkpoints(rank0)]
    assert steps == [os.path.basename(p) for p in checkpoint.list_checkpoints(rank1)] == [
        "step-000000000080", "step-000000000160"]  # steps count both ranks' env steps
    first, last = (_agent(os.path.join(rank0, s)) for s in steps)
    other = _agent(os.path.join(rank1, steps[-1]))
    assert all(torch.equal(last[k], other[k]) for k in last)  # identical parameters and statistics on both ranks
    assert any(not torch.equal(first[k], last[k]) for k in last if last[k].is_floating_point())  # it did train
    own, theirs = (np.load(os.path.join(d, "replay", "0.npz")) for d in (logdir, os.path.join(logdir, "rank-1")))
    assert not np.array_equal(own["obs/vector"], theirs["obs/vector"])  # ranks act in differently seeded envs
    assert not os.path.exists(os.path.join(logdir, "rank-1", "metrics.jsonl"))  # rank 0 logs

    resumed = _torchrun("--logdir", logdir, "--resume", "--steps", "240", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last = _agent(checkpoint.list_checkpoints(rank0)[-1])
    other = _agent(checkpoint.list_checkpoints(rank1)[-1])
    assert checkpoint.list_checkpoints(rank1)[-1].endswith("step-000000000240")
    assert all(torch.equal(last[k], other[k]) for k in last)

    single = subprocess.run([sys.executable, "-m", "ssmworld", "train", "--logdir", logdir, "--resume", "--steps",
                             "300"], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert single.returncode == 2 and "torchrun --nproc_per_node 2" in single.stderr


def test_each_rank_takes_its_local_gpu_and_an_explicit_one_is_bad_input():
    import pytest

    from ssmworld.errors import UserError
    from ssmworld.runtime.distributed import Group, rank_device

    assert rank_device(torch.device("cuda"), Group(3, 4, 1)) == torch.device("cuda", 1)
    assert rank_device(torch.device("cuda", 2), Group()) == torch.device("cuda", 2)  # one process: as given
    assert rank_device(torch.device("cpu"), Group(3, 4, 1)) == torch.device("cpu")
    with pytest.raises(UserError, match="would put every rank on one GPU"):
        rank_device(torch.device("cuda", 0), Group(3, 4, 1))


def test_collective_timeout_outlasts_rank_zeros_evaluations(monkeypatch):
    import datetime

    from ssmworld.errors import UserError
    from ssmworld.runtime.distributed import _collective_timeout

    monkeypatch.delenv("SSMWORLD_DDP_TIMEOUT_MINUTES", raising=False)
    assert _collective_timeout() == datetime.timedelta(hours=2)
    monkeypatch.setenv("SSMWORLD_DDP_TIMEOUT_MINUTES", "30")
    assert _collective_timeout() == datetime.timedelta(minutes=30)
    for bad in ("soon", "0", "nan", "inf", "1e20"):
        monkeypatch.setenv("SSMWORLD_DDP_TIMEOUT_MINUTES", bad)
        with pytest.raises(UserError, match="SSMWORLD_DDP_TIMEOUT_MINUTES"):
            _collective_timeout()
