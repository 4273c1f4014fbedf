"""Mamba's given parts: the zero-order holds, the sequential scan, initialisation, the seq2seq wrapper.

What students write is checked, for points, in tests/graded/test_q2_ssm.py. Tests here that run a whole
model need those functions written: on the student template they skip, naming the first one that is not
(the `needs_solution` marker)."""

import pytest
import torch
import torch.nn.functional as F

from models.mamba import (
    MambaBlock,
    MambaSeq2Seq,
    discretize_bilinear,
    discretize_zoh,
    discretize_zoh_exact,
    log_of_decay,
    sscan,
)

EOS = 28


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def ssm_inputs(batch=2, length=5, expanded=3, state=4, dtype=torch.float64):
    delta = F.softplus(torch.randn(batch, length, expanded, dtype=dtype))
    A = -torch.rand(expanded, state, dtype=dtype) * 4 - 0.1
    B = torch.randn(batch, length, state, dtype=dtype)
    return delta, A, B


def broadcast(delta, A, B):
    """Δ, A, B as (B, L, E, N) tensors, for closed forms written elementwise."""
    return delta[..., None], A, B[:, :, None, :]





def test_zero_order_hold_uses_exp_and_the_delta_b_approximation():
    delta, A, B = ssm_inputs()
    A_bar, B_bar = discretize_zoh(delta, A, B)
    d, a, b = broadcast(delta, A, B)
    torch.testing.assert_close(A_bar, torch.exp(d * a))
    torch.testing.assert_close(B_bar, (d * b).expand_as(B_bar))


def test_exact_zero_order_hold_integrates_the_input_over_the_step():
    delta, A, B = ssm_inputs()
    A_bar, B_bar = discretize_zoh_exact(delta, A, B)
    d, a, b = broadcast(delta, A, B)
    torch.testing.assert_close(B_bar, (torch.exp(d * a) - 1) / a * b)


@pytest.mark.needs_solution
def test_every_discretisation_agrees_with_zero_order_hold_for_tiny_steps():
    delta, A, B = ssm_inputs()
    delta = delta * 1e-6
    A_ref, B_ref = discretize_zoh_exact(delta, A, B)
    for A_bar, B_bar in (discretize_zoh(delta, A, B), discretize_bilinear(delta, A, B, 0.5)):
        torch.testing.assert_close(A_bar, A_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(B_bar, B_ref, rtol=1e-5, atol=1e-12)


def scan_inputs(length, dtype=torch.float64, negative_a=False):
    a = torch.rand(2, length, 3, 4, dtype=dtype) * 0.98 + 0.01
    if negative_a:
        a = a * torch.where(torch.rand_like(a) < 0.3, -1.0, 1.0)
    b = torch.randn(2, length, 3, 4, dtype=dtype)  # negative and positive values alike
    log_a = torch.log(a.to(torch.complex128 if dtype == torch.float64 else torch.complex64)) if negative_a else torch.log(a)
    return a, log_a, b


def loop_oracle(a, b):
    """h_t = a_t h_{t-1} + b_t, written out with explicit indices."""
    h = torch.zeros_like(b)
    for t in range(b.shape[1]):
        h[:, t] = (a[:, t] * h[:, t - 1] if t else 0) + b[:, t]
    return h


@pytest.mark.parametrize("length", [1, 2, 7, 64, 257])
def test_sequential_scan_solves_the_recurrence(length):
    a, log_a, b = scan_inputs(length)
    torch.testing.assert_close(sscan(log_a, b), loop_oracle(a, b))




def test_sequential_scan_accepts_negative_decays_as_complex_logarithms():
    a, log_a, b = scan_inputs(33, negative_a=True)
    torch.testing.assert_close(sscan(log_a, b), loop_oracle(a, b))






def test_mamba_initialisation_follows_s4d_real_and_the_delta_range():
    block = MambaBlock(hidden_size=32, state_size=16)
    torch.testing.assert_close(block.A_log, torch.log(torch.arange(1.0, 17.0)).expand(64, 16))
    torch.testing.assert_close(block.D, torch.ones(64))
    assert block.dt_rank == 2
    initial_delta = F.softplus(block.dt_proj.bias)
    assert initial_delta.min() >= 1e-3 * 0.999 and initial_delta.max() <= 1e-1 * 1.001


def test_mamba_block_convolution_has_one_filter_per_channel():
    block = MambaBlock(hidden_size=8, conv_kernel=4)
    assert block.conv1d.weight.shape == (16, 1, 4)


@pytest.mark.needs_solution
def test_seq2seq_reads_source_then_target_and_returns_target_logits():
    model = MambaSeq2Seq(29, EOS, hidden_size=16, num_layers=2).eval()
    source, target = torch.randint(0, 27, (3, 5)), torch.randint(0, 29, (3, 7))
    logits = model(source, target)
    assert logits.shape == (3, 7, 29)
    full = model.mamba(torch.cat([source, torch.full((3, 1), EOS), target], dim=1))
    torch.testing.assert_close(logits, full[:, 6:])


@pytest.mark.needs_solution
def test_seq2seq_ignores_future_target_tokens():
    model = MambaSeq2Seq(29, EOS, hidden_size=16, num_layers=2).eval()
    source, target = torch.randint(0, 27, (2, 5)), torch.randint(0, 29, (2, 8))
    changed = target.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 29
    torch.testing.assert_close(model(source, target)[:, :4], model(source, changed)[:, :4])


@pytest.mark.needs_solution
@pytest.mark.parametrize("layout, prefix", [
    ("source", lambda source, eos: [source, eos]),
    ("reversed", lambda source, eos: [source.flip(1), eos]),
    ("twice", lambda source, eos: [source, eos, source, eos]),
])
def test_seq2seq_layout_sets_what_is_read_before_the_target(layout, prefix):
    torch.manual_seed(0)
    model = MambaSeq2Seq(29, EOS, hidden_size=16, num_layers=2, layout=layout).eval()
    source, target = torch.randint(0, 27, (3, 5)), torch.randint(0, 29, (3, 7))
    read = torch.cat(prefix(source, torch.full((3, 1), EOS)), dim=1)
    torch.testing.assert_close(model.encode(source), read, rtol=0, atol=0)
    torch.testing.assert_close(model(source, target), model.mamba(torch.cat([read, target], dim=1))[:, read.shape[1]:])


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of source, reversed, twice"):
        MambaSeq2Seq(29, EOS, hidden_size=8, layout="backwards")


def test_unknown_scan_or_discretisation_is_refused():
    with pytest.raises(ValueError, match="scan"):
        MambaBlock(hidden_size=8, scan="fast")
    with pytest.raises(ValueError, match="discretization"):
        MambaBlock(hidden_size=8, discretization="euler")


@pytest.mark.needs_solution
def test_bilinear_decay_crossing_zero_keeps_gradients_finite():
    """With α = 1/2, Ā = 0 exactly at ΔA = −2: the log the scans take must not turn the step into NaN."""
    delta = torch.tensor([[[2.0, 1.0], [2.0, 1.0]]], requires_grad=True)  # (B, L, E): ΔA = −2 in channel 0
    A = torch.tensor([[-1.0], [-1.0]])
    A_bar, B_bar = discretize_bilinear(delta, A, torch.ones(1, 2, 1), alpha=0.5)
    assert A_bar[0, 0, 0, 0] == 0
    sscan(log_of_decay(delta, A, A_bar, "bilinear"), B_bar).sum().backward()
    assert torch.isfinite(delta.grad).all(), f"gradient {delta.grad}"
