"""Whether a device multiplies bfloat16 matrices in hardware (agent.precision=bfloat16 only pays off where it does)."""

import torch


def bfloat16_is_native(device: torch.device | str) -> bool:
    """True where bfloat16 matmuls run on the device's own units: a CUDA GPU that supports bfloat16, or a CPU on which
    oneDNN has bfloat16 kernels (AVX-512 and its bfloat16 extensions, AMX; ARM with BF16). On other CPUs (AVX2 only)
    autocast's bfloat16 is emulated: r2i small's update took 5-7x its float32 time on an AVX2-only host
    (docs/RESULTS.md, "bfloat16 without bfloat16 units")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True  # no way to ask (mps, xpu): assume the backend chose to support it
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # private, stable since torch 1.x
    return bool(check()) if check is not None and torch.backends.mkldnn.is_available() else False
