"""log Ā for the scans (`log_of_decay`) and how the given scans read it (`decay_of`).

The given scans take the Ā that `log_of_decay` carries instead of exponentiating its log: real even where
the bilinear Ā < 0, so one negative Ā no longer turns the scan complex. The oracle is the recurrence
h_t = Ā_t h_{t−1} + b_t as a plain loop over Ā in float64.
"""

import pytest
import torch

from models.mamba import (
    SCANS,
    MambaBlock,
    decay_of,
    discretize_bilinear,
    discretize_zoh,
    log_of_decay,
    pair_scan,
    sscan,
)

# Most of these use your discretize_bilinear: on the student template they skip until it is written.
pytestmark = pytest.mark.needs_solution


def bilinear_inputs(dtype=torch.float64, batch=2, length=9, expanded=3, state=4):
    """Δ, A, B with Δ|A| spread over 0.02 ... 12, so that Ā = (1 + ΔA/2)/(1 − ΔA/2) takes both signs."""
    generator = torch.Generator().manual_seed(0)
    delta = torch.rand(batch, length, expanded, generator=generator, dtype=dtype) * 3 + 0.02
    A = -torch.rand(expanded, state, generator=generator, dtype=dtype) * 4 - 0.1
    B = torch.randn(batch, length, state, generator=generator, dtype=dtype)
    return delta, A, B


def loop_over_decays(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t−1} + b_t, one step at a time, straight from a (no logarithms)."""
    h, hs = torch.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    return torch.stack(hs, dim=1)


def test_log_of_decay_is_complex_where_the_bilinear_decay_is_negative_and_exponentiates_back():
    delta, A, B = bilinear_inputs()
    A_bar, _ = discretize_bilinear(delta, A, B, 0.5)
    assert (A_bar < 0).any() and (A_bar > 0).any(), "the test needs both signs"
    log_a = log_of_decay(delta, A, A_bar, "bilinear")
    assert log_a.is_complex()
    torch.testing.assert_close(torch.exp(log_a).real, A_bar, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(log_a.imag, (A_bar < 0).double() * torch.pi)


def test_log_of_decay_is_real_when_every_decay_is_positive():
    delta, A, B = bilinear_inputs()
    A_bar, _ = discretize_bilinear(delta * 0.01, A, B, 0.5)
    log_a = log_of_decay(delta * 0.01, A, A_bar, "bilinear")
    assert not log_a.is_complex()
    torch.testing.assert_close(log_a, torch.log(A_bar))


def test_log_of_decay_under_zero_order_hold_is_delta_A_exactly():
    delta, A, B = bilinear_inputs()
    A_bar, _ = discretize_zoh(delta, A, B)
    assert torch.equal(log_of_decay(delta, A, A_bar, "zoh"), delta[..., None] * A)


@pytest.mark.parametrize("scan", [sscan, pair_scan])
def test_given_scans_read_the_decay_log_of_decay_carries(scan):
    delta, A, B = bilinear_inputs()
    A_bar, b = discretize_bilinear(delta, A, B, 0.5)
    log_a = log_of_decay(delta, A, A_bar, "bilinear")
    assert decay_of(log_a) is A_bar
    torch.testing.assert_close(scan(log_a, b), loop_over_decays(A_bar, b), rtol=1e-12, atol=1e-12)


def test_a_log_without_its_decay_is_exponentiated():
    delta, A, B = bilinear_inputs()
    A_bar, _ = discretize_bilinear(delta, A, B, 0.5)
    log_a = log_of_decay(delta, A, A_bar, "bilinear") * 1  # a new tensor: carries nothing
    torch.testing.assert_close(decay_of(log_a), A_bar, rtol=1e-12, atol=1e-300)
    mismatched = torch.zeros(2, 3)
    mismatched.decay = torch.ones(5)
    assert torch.equal(decay_of(mismatched), torch.ones(2, 3)), "a decay of another shape must be ignored"


@pytest.mark.parametrize("scan", ["sscan", "pair_scan"])
def test_bilinear_selective_scan_in_float32_with_negative_decays_stays_within_1e_5_of_a_float64_loop(scan):
    torch.manual_seed(0)
    block = MambaBlock(hidden_size=16, state_size=8, discretization="bilinear", scan=scan, dt_min=0.3, dt_max=1.0)
    calls = []
    selective_scan = block.selective_scan
    block.selective_scan = lambda *args: calls.append((args, selective_scan(*args))) or calls[-1][1]
    block(torch.randn(4, 40, 16))
    (u, delta, A, B, C, D), got = calls[0]
    u, delta, A, B, C, D = (tensor.detach().double() for tensor in (u, delta, A, B, C, D))
    A_bar, B_bar = discretize_bilinear(delta, A, B, 0.5)
    assert (A_bar < 0).any(), "the test needs negative decays"
    h = loop_over_decays(A_bar, B_bar * u[..., None])  # (B, L, E, N)
    expected = torch.einsum("blen,bln->ble", h, C) + u * D
    error = (got.double() - expected).abs().max() / expected.abs().max()
    assert error < 1e-5, f"relative error {error:.2e} against the float64 loop"


def test_bilinear_gradients_through_the_carried_decay_equal_those_through_the_complex_log():
    delta, A, B = bilinear_inputs()
    delta.requires_grad_(True)
    gradients = []
    for carried in (True, False):
        A_bar, B_bar = discretize_bilinear(delta, A, B, 0.5)
        log_a = log_of_decay(delta, A, A_bar, "bilinear")
        if not carried:
            log_a = log_a * 1  # drops the carried Ā: the scan exponentiates the complex log, as before
        pair_scan(log_a, B_bar).sum().backward()
        gradients.append(delta.grad.clone())
        delta.grad = None
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-9, atol=1e-12)


def test_bilinear_decay_crossing_zero_keeps_the_logs_gradient_finite():
    """A scan of your own differentiates the log itself: at Ā = 0 the floor keeps that finite too."""
    delta = torch.tensor([[[2.0, 1.0], [2.0, 1.0]]], requires_grad=True)  # ΔA = −2 in channel 0: Ā = 0
    A = torch.tensor([[-1.0], [-1.0]])
    A_bar, B_bar = discretize_bilinear(delta, A, torch.ones(1, 2, 1), alpha=0.5)
    assert A_bar[0, 0, 0, 0] == 0
    log_a = log_of_decay(delta, A, A_bar, "bilinear")
    (torch.exp(log_a * 1).real * B_bar).sum().backward()
    assert torch.isfinite(delta.grad).all(), f"gradient {delta.grad}"
