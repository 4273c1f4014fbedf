"""The fused Triton scan (models/fused_scan.py) against the exact scans it replaces on a GPU.

The kernel runs on a CUDA GPU, or on the CPU through Triton's interpreter (`TRITON_INTERPRET=1 pytest
tests/test_fused_scan.py` with Triton installed); elsewhere, CI included, these tests skip. Triton 3.6.0's
interpreter stops under NumPy 2.4 (it calls int() on one-element arrays): use a newer Triton or an older NumPy.
"""

import pytest
import torch

from models import fused_scan as fused
from models.mamba import sscan
from models.pair_scan import _PairScan, pair_scan

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
runs_kernel = pytest.mark.skipif(
    fused.triton is None or not (torch.cuda.is_available() or fused.INTERPRETED),
    reason="the fused scan needs Triton and a CUDA GPU (or TRITON_INTERPRET=1)")
SHAPES = [(2, 13, 3, 2), (1, 1, 5), (3, 70, 40), (2, 129, 4, 9)]  # ragged tiles in time and in channels


def mamba_like(shape, seed=0):
    """log a = ΔA ≤ 0 and b, float32 on the test device, as a Mamba layer makes them."""
    generator = torch.Generator().manual_seed(seed)
    log_a = -torch.rand(shape, generator=generator) * 0.3
    return log_a.to(DEVICE), torch.randn(shape, generator=generator).to(DEVICE)


@runs_kernel
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_scan_is_as_accurate_as_the_sequential_loop(shape):
    log_a, b = mamba_like(shape)
    reference = sscan(log_a.double(), b.double())
    loop_error = (sscan(log_a, b).double() - reference).abs().max()
    fused_error = (fused.fused_scan(log_a, b).double() - reference).abs().max()
    assert fused_error <= 4 * loop_error + 1e-6, f"fused {fused_error:.2e}, loop {loop_error:.2e}"


@runs_kernel
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_scan_gradients_equal_the_pair_scans(shape):
    log_a, b = mamba_like(shape)
    grad = torch.randn_like(b)
    results = []
    for scan in (fused.fused_scan, lambda la, bb: _PairScan.apply(torch.exp(la), bb)):
        x, y = log_a.clone().requires_grad_(), b.clone().requires_grad_()
        scan(x, y).backward(grad)
        results.append((x.grad, y.grad))
    (fused_a, fused_b), (pair_a, pair_b) = results
    torch.testing.assert_close(fused_b, pair_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_a, pair_a, atol=1e-5, rtol=1e-5)


@runs_kernel
def test_fused_scan_gives_the_same_for_any_tile_size():
    log_a, b = mamba_like((2, 37, 6))
    first, second = (fused.fused_scan(log_a, b, blocks) for blocks in [(8, 4, 1), (16, 8, 1)])
    torch.testing.assert_close(first, second, atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available() or fused.triton is None, reason="needs a CUDA GPU and Triton")
def test_pair_scan_on_a_gpu_runs_the_fused_kernel_and_keeps_complex_decays_on_its_own_path():
    log_a, b = mamba_like((2, 50, 8))
    torch.testing.assert_close(pair_scan(log_a, b), fused.fused_scan(log_a, b), atol=0, rtol=0)
    complex_log_a = torch.log(torch.exp(log_a).to(torch.complex64) * -1)  # a < 0: the bilinear rule's case
    torch.testing.assert_close(pair_scan(complex_log_a, b), sscan(complex_log_a, b), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(fused.INTERPRETED or torch.cuda.is_available(), reason="checks the refusal where the kernel cannot run, and here it can")
def test_fused_scan_refuses_tensors_it_cannot_run_in_one_line():
    with pytest.raises(ValueError, match="CUDA GPU"):
        fused.fused_scan(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2))


@runs_kernel
def test_pair_scan_of_an_empty_batch_is_empty_instead_of_a_failed_launch():
    log_a, b = mamba_like((0, 20, 4, 3))
    assert not fused.supports(log_a, b)
    h = pair_scan(log_a.requires_grad_(), b.requires_grad_())
    assert h.shape == (0, 20, 4, 3)
    h.sum().backward()
    assert b.grad.shape == b.shape
