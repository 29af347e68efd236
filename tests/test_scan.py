"""The parallel linear scan against a plain loop and hand-computed values, with gradients."""

import pytest
import torch

from ssmworld.sequence.scan import linear_scan, scan_reference


def test_hand_computed_values():
    # x_t = a_t x_{t-1} + b_t from x0 = 1: x = [2*1+1, 0*3+5, 3*5+1] = [3, 5, 16]
    a = torch.tensor([[2.0, 0.0, 3.0]])
    b = torch.tensor([[1.0, 5.0, 1.0]])
    for method in ("blocked", "log"):
        x = linear_scan(a, b, torch.tensor([1.0]), chunk=2, method=method)
        assert x.tolist() == [[3.0, 5.0, 16.0]]


@pytest.mark.parametrize("method", ["blocked", "log"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("length,chunk", [(1, 4), (7, 4), (64, 64), (257, 16), (300, 64)])
def test_matches_sequential_loop(dtype, length, chunk, method):
    g = torch.Generator().manual_seed(length)
    shape = (3, length, 5)
    a = 0.9 * torch.rand(shape, generator=g) + 0.05
    if dtype.is_complex:
        a = torch.polar(a, torch.rand(shape, generator=g) * 6.0)
    a = a * (torch.rand(shape, generator=g) > 0.05)  # zeros: episode resets
    b = torch.randn(shape, generator=g, dtype=dtype)
    x0 = torch.randn(3, 5, generator=g, dtype=dtype)
    torch.testing.assert_close(linear_scan(a, b, x0, chunk, method), scan_reference(a, b, x0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["blocked", "log"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradcheck(dtype, method):
    g = torch.Generator().manual_seed(0)
    shape = (2, 11, 3)
    a = (0.5 * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_()
    b = torch.randn(shape, generator=g, dtype=dtype).requires_grad_()
    x0 = torch.randn(2, 3, generator=g, dtype=dtype).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, x0: linear_scan(a, b, x0, 4, method), (a, b, x0))


def test_gradient_through_expanded_coefficients():
    a_param = torch.full((3,), 0.7, requires_grad=True)
    b = torch.randn(2, 9, 3)
    x0 = torch.zeros(2, 3)
    linear_scan(a_param.expand(2, 9, 3), b, x0, 4).sum().backward()
    a_ref = a_param.detach().clone().requires_grad_()
    scan_reference(a_ref.expand(2, 9, 3), b, x0).sum().backward()
    torch.testing.assert_close(a_param.grad, a_ref.grad)


def test_auto_is_blocked_on_the_cpu_and_a_bad_method_is_refused(monkeypatch):
    from ssmworld.sequence import scan

    a, b, x0 = torch.full((1, 5, 2), 0.5), torch.ones(1, 5, 2), torch.zeros(1, 2)
    assert torch.equal(linear_scan(a, b, x0, 2), linear_scan(a, b, x0, 2, "blocked"))
    used = []
    for name in ("_within_chunks", "_hillis_steele"):
        original = getattr(scan, name)
        monkeypatch.setattr(scan, name, lambda *args, _f=original, _n=name: used.append(_n) or _f(*args))
    linear_scan(torch.rand(1, 9, 2), torch.randn(1, 9, 2), torch.zeros(1, 2), 4)
    assert "_within_chunks" in used and "_hillis_steele" not in used  # auto on the CPU: the blocked scan
    with pytest.raises(ValueError, match="method"):
        linear_scan(a, b, x0, 2, "fast")
