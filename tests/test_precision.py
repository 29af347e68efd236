"""agent.precision=bfloat16: the update's forward passes under torch.autocast.

What must hold: cores that are not ``autocast_ok`` run exactly as in float32; s5 stays close to float32 and
keeps float32 states (parallel == step within bfloat16 rounding); distributions compute in float32; a full update
under bfloat16 keeps float32 parameters and optimiser state and gives losses close to the float32 update's."""

import pytest
import torch

from ssmworld.nn import bfloat16_is_native
from ssmworld.nn.distributions import CategoricalLatent, TwoHot
from ssmworld.tools.bench_harness import cpu_name_and_flags

from .helpers import seeded_generator, step_loop
from .test_agent import make_agent
from .test_cores_contract import CONFIGS, INPUT_DIM, build, core_name
from .test_world_model import batch


def bf16():
    """Autocast on the tests' device (the CPU, or the GPU check's SSMWORLD_TEST_DEVICE)."""
    return torch.autocast(torch.get_default_device().type, dtype=torch.bfloat16)


@pytest.mark.parametrize("key", list(CONFIGS))
def test_cores_under_autocast(key):
    core = build(key)
    gen = seeded_generator(1)
    x = torch.randn(3, 40, INPUT_DIM, generator=gen).bfloat16().float()  # exact in bfloat16 too
    reset = torch.zeros(3, 40, dtype=torch.bool)
    reset[1, 17] = True
    y32, s32 = core(x, reset)
    with bf16():
        y16, s16 = core(x.bfloat16(), reset)  # an autocast layer's output is accepted as input
        y_step, s_step = step_loop(core, x, reset, None)
    assert all(v.dtype == torch.float32 for v in [*s16.values(), *s_step.values()] if v.is_floating_point())
    if not core.autocast_ok:  # run in float32 with autocast off, from the input cast back to float32
        torch.testing.assert_close(y16, y32, rtol=0, atol=0)
        return
    assert core_name(key) == "s5"
    scale = y32.abs().max()
    assert (y16.float() - y32).abs().max() < 0.05 * scale  # bfloat16 keeps ~3 significant digits
    assert (y16.float() - y32).abs().max() > 0  # and the matmuls did run in bfloat16
    assert (y_step.float() - y16.float()).abs().max() < 0.05 * scale
    for k in s32:
        assert (s16[k] - s32[k]).abs().max() < 0.05 * s32[k].abs().max() + 1e-3


def test_distributions_compute_in_float32():
    logits = torch.randn(4, 3, 8).bfloat16()
    latent = CategoricalLatent(logits)
    assert latent.probs.dtype == torch.float32 and latent.kl(CategoricalLatent(logits)).dtype == torch.float32
    two_hot = TwoHot(torch.randn(5, 255).bfloat16())
    assert two_hot.mean.dtype == torch.float32 and two_hot.log_prob(torch.zeros(5)).dtype == torch.float32


@pytest.mark.parametrize("core,discrete", [("s5", False), ("gru", True), ("mamba2", True)])
def test_bfloat16_update_is_close_to_float32(core, discrete):
    data = batch(continuous=not discrete)
    results = {}
    for precision in ("float32", "bfloat16"):
        agent = make_agent(core, discrete)
        agent.cfg.precision = precision
        matmul_dtypes = set()  # what the Linear layers compute in: bfloat16 must really run
        for module in agent.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda _m, _i, out: matmul_dtypes.add(out.dtype))
        torch.manual_seed(1)
        results[precision] = agent.update(data)
        assert (torch.bfloat16 in matmul_dtypes) == (precision == "bfloat16"), matmul_dtypes
        assert all(p.dtype == torch.float32 for p in agent.parameters())
        for state in agent.model_opt.state.values():
            assert state["exp_avg"].dtype == torch.float32
    full, half = results["float32"], results["bfloat16"]
    assert all(torch.isfinite(torch.tensor(v)) for v in half.values()), half
    for key in ("loss_model", "loss_decoder", "loss_reward", "kl_dyn"):
        assert abs(half[key] - full[key]) < 0.03 * abs(full[key]) + 0.01, (key, half[key], full[key])
    assert half["loss_model"] != full["loss_model"]  # rounded differently: not the float32 path twice


def test_precision_is_checked():
    from ssmworld.errors import UserError
    from ssmworld.runtime.config import load_config

    with pytest.raises(UserError, match="precision"):
        load_config("r2i", "debug", "builtin:recall/2", ["agent.precision=float16"])


def test_bfloat16_is_native_on_cpus_with_bfloat16_units_only():
    """The check behind the trainer's warning and the bfloat16 learning test's skip, against the CPU's own flags.
    AVX-512 without the bfloat16 extensions asserts nothing: oneDNN runs bfloat16 kernels there (AVX-512 BW)."""
    _, flags = cpu_name_and_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this platform")
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert bfloat16_is_native("cpu")
    elif "avx512f" not in flags:
        assert not bfloat16_is_native("cpu")
