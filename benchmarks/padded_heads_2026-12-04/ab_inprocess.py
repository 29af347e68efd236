"""Interleaved in-process A/B: PaddedLinear.forward vs nn.Linear.forward, alternating every update."""
import sys, time, statistics, torch
from torch import nn
from ssmworld.nn.layers import PaddedLinear
from ssmworld.runtime.config import load_config
from ssmworld.runtime.process import tune_cpu_allocator
from ssmworld.runtime.train import Trainer
tune_cpu_allocator(); torch.set_num_threads(1)
preset, env, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = load_config(preset, "small", env, [])
tr = Trainer(cfg, quiet=True); tc = cfg.train
tr.fill_replay(steps=max(tc.prefill, 4 * tc.sequence_length, tc.batch_size * 2)); tr.vec.close()
padded_forward = PaddedLinear.forward
times = {"linear": [], "padded": []}
for i in range(2 * n + 4):
    mode = "padded" if i % 2 else "linear"
    PaddedLinear.forward = padded_forward if mode == "padded" else nn.Linear.forward
    data = tr.sample_batch()
    start = time.perf_counter(); tr.agent.update(*data); t = time.perf_counter() - start
    if i >= 4: times[mode].append(t)
a, b = statistics.median(times["linear"]), statistics.median(times["padded"])
print(f"{preset} {env}: nn.Linear {a:.4f} s, PaddedLinear {b:.4f} s per update (medians of {n}), speed-up {a / b:.3f}x")
