"""The fast exact scan `pair_scan` (given) against the sequential loop `sscan`, both of its ways of running.

pair_scan recurses over (a, b) pairs, and loops over time, fused, over short stretches and where each step
has many values (models/pair_scan.py: LOOP_UP_TO_LENGTH, LOOP_FROM_STEP_SIZE); both ways must give the loop's
values and gradients.
"""

import pytest
import torch

from autograde.probe import CountTorchCalls
from models.mamba import SCANS, MambaBlock, pair_scan, sscan
from models import pair_scan as pair_scan_module
from training.config import build_config

LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 33, 100]


@pytest.fixture(params=["recursion", "loop"])
def way(request, monkeypatch):
    """Runs the test once with the recursion and once with the fused loop, whatever the step size."""
    recursion = request.param == "recursion"
    monkeypatch.setitem(pair_scan_module.LOOP_FROM_STEP_SIZE, "cpu", 2 ** 62 if recursion else 1)
    monkeypatch.setattr(pair_scan_module, "LOOP_UP_TO_LENGTH", 1 if recursion else 2 ** 62)
    return request.param


def scan_inputs(length, dtype=torch.float64, negative_a=False, seed=0):
    """log a (complex where a < 0) and b, shapes (2, L, 3, 4), with 0.01 <= |a| <= 0.99."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(2, length, 3, 4, dtype=dtype, generator=generator) * 0.98 + 0.01
    if negative_a:
        a = a * torch.where(torch.rand(a.shape, generator=generator) < 0.3, -1.0, 1.0).to(dtype)
    b = torch.randn(2, length, 3, 4, dtype=dtype, generator=generator)
    log_a = torch.log(a.to(torch.complex128)) if negative_a else torch.log(a)
    return log_a, b


def outputs_and_gradients(scan, log_a, b):
    """h, d(h·w)/d log a, d(h·w)/db for a fixed random weighting w."""
    log_a, b = log_a.clone().requires_grad_(), b.clone().requires_grad_()
    h = scan(log_a, b)
    (h * torch.randn(h.shape, dtype=h.dtype, generator=torch.Generator().manual_seed(1))).sum().backward()
    return h.detach(), log_a.grad, b.grad


@pytest.mark.parametrize("length", LENGTHS)
def test_pair_scan_gives_the_loops_values_and_gradients_in_float64(way, length):
    log_a, b = scan_inputs(length)
    for name, got, expected in zip(["h", "grad log a", "grad b"], outputs_and_gradients(pair_scan, log_a, b),
                                   outputs_and_gradients(sscan, log_a, b)):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=lambda m: f"{way}, L={length}, {name}: {m}")


def test_pair_scan_handles_negative_decays_arriving_as_complex_logs(way):
    log_a, b = scan_inputs(33, negative_a=True)
    for got, expected in zip(outputs_and_gradients(pair_scan, log_a, b), outputs_and_gradients(sscan, log_a, b)):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_pair_scan_gradients_pass_gradcheck(way):
    log_a, b = scan_inputs(11)
    assert torch.autograd.gradcheck(pair_scan, (log_a.requires_grad_(), b.requires_grad_()))


def test_pair_scan_in_float32_stays_within_1e_5_of_a_float64_loop_at_long_lengths(way):
    """Mamba-like decays, a* reaching −3000: where the log-space scan drifts, this one must not."""
    generator = torch.Generator().manual_seed(0)
    delta = torch.exp(torch.empty(1, 4096, 2, 1).uniform_(-6.9, -2.3, generator=generator))
    log_a = (delta * -torch.arange(1.0, 5.0)).float()
    b = (delta * torch.randn(1, 4096, 2, 4, generator=generator)).float()
    reference = sscan(log_a.double(), b.double())
    error = ((pair_scan(log_a, b).double() - reference).abs().max() / reference.abs().max()).item()
    assert error < 1e-5, f"{way}: relative error {error:.1e} against the float64 loop"


def test_pair_scan_recursion_takes_log_depth_not_a_step_per_position(monkeypatch):
    monkeypatch.setitem(pair_scan_module.LOOP_FROM_STEP_SIZE, "cpu", 2 ** 62)
    monkeypatch.setattr(pair_scan_module, "LOOP_UP_TO_LENGTH", 1)
    calls = {}
    for length in (64, 4096):
        log_a, b = scan_inputs(length)
        with CountTorchCalls() as counter:
            pair_scan(log_a, b)
        calls[length] = counter.calls
    assert calls[4096] <= 2 * calls[64], f"torch calls for L=64 and L=4096: {calls}; log depth would be ~{12 / 6}×"


def test_pair_scan_is_a_scan_option_of_the_config_and_the_block():
    assert SCANS["pair_scan"] is pair_scan
    assert build_config(None, ["--model", "mamba", "--scan", "pair_scan"]).scan == "pair_scan"


@pytest.mark.needs_solution
def test_mamba_block_gives_the_same_output_with_pair_scan_and_sscan():
    torch.manual_seed(0)
    block = MambaBlock(hidden_size=8, state_size=4, scan="sscan").double()
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    expected = block(x)
    block.scan = "pair_scan"
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)
