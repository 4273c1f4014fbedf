"""S4 and S4D (models/s4.py): the convolution mode agrees with the recurrent mode for every layer, each fast
kernel agrees with the kernel computed the slow way from dense matrices, and the low-rank HiPPO is HiPPO."""

import pytest
import torch

from models.s4 import (
    DenseSSM,
    DiagonalSSM,
    LowRankSSM,
    bilinear,
    fft_convolution,
    hippo_legs,
    hippo_legs_low_rank,
    krylov,
    s4d_A,
)

CHANNELS, STATE = 3, 8


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def layers():
    """name -> a fresh layer of each kind (N = 8: complex ones keep modes n = 0 ... 3), with steps large
    enough that the kernels do not vanish early."""
    steps = dict(dt_min=0.05, dt_max=0.5)
    return {
        "s4d_real": DiagonalSSM(CHANNELS, STATE, "real", **steps),
        "s4d_lin": DiagonalSSM(CHANNELS, STATE, "lin", **steps),
        "s4d_inv": DiagonalSSM(CHANNELS, STATE, "inv", **steps),
        "s4_dense": DenseSSM(CHANNELS, STATE, **steps),
        "s4_low_rank": LowRankSSM(CHANNELS, STATE, max_length=24, **steps),
        "s4_low_rank_odd_length": LowRankSSM(CHANNELS, STATE, max_length=23, **steps),
        "s4_rank_2": LowRankSSM(CHANNELS, STATE, max_length=24, rank=2, **steps),
    }


def trained_looking(layer):
    """Moves every parameter off its initial value, so that no test passes thanks to the initialisation
    (zero low-rank terms, equal A in every channel)."""
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return layer


@pytest.mark.parametrize("name", list(layers()))
def test_convolution_mode_equals_recurrent_mode(name):
    layer = trained_looking(layers()[name])
    u = torch.randn(2, 20, CHANNELS)
    with torch.no_grad():
        convolved, stepped = layer(u), layer.recurrent(u)
    torch.testing.assert_close(convolved, stepped, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", list(layers()))
def test_outputs_are_causal(name):
    layer = layers()[name]
    u = torch.randn(1, 16, CHANNELS)
    changed = u.clone()
    changed[:, 10:] = torch.randn(1, 6, CHANNELS)
    with torch.no_grad():
        torch.testing.assert_close(layer(u)[:, :10], layer(changed)[:, :10])


def test_fft_convolution_equals_the_direct_sum():
    u, K = torch.randn(2, 9, 3, dtype=torch.float64), torch.randn(3, 9, dtype=torch.float64)
    direct = torch.stack([sum(K[:, l] * u[:, t - l] for l in range(t + 1)) for t in range(9)], dim=1)
    torch.testing.assert_close(fft_convolution(u, K), direct)


def test_krylov_doubling_equals_matrix_powers():
    A_bar, B_bar = torch.randn(2, 4, 4, dtype=torch.float64) / 3, torch.randn(2, 4, dtype=torch.float64)
    expected = torch.stack([torch.linalg.matrix_power(A_bar, l) @ B_bar[..., None] for l in range(11)], dim=-1)
    torch.testing.assert_close(krylov(11, A_bar, B_bar), expected[..., 0, :])


def test_s4d_vandermonde_kernel_equals_c_times_powers_of_a_bar_times_b_bar():
    layer = trained_looking(DiagonalSSM(CHANNELS, STATE, "lin", dt_min=0.05, dt_max=0.5))
    delta_A, B_bar = layer.discretized()
    powers = torch.stack([torch.exp(delta_A) ** l for l in range(12)], dim=-1)  # (H, M, L)
    expected = 2 * (layer.C[..., None] * B_bar[..., None] * powers).sum(1).real
    torch.testing.assert_close(layer.kernel(12), expected, atol=1e-5, rtol=1e-5)


def test_low_rank_cauchy_kernel_equals_the_dense_kernel_of_the_same_matrices():
    layer = trained_looking(LowRankSSM(CHANNELS, STATE, max_length=16, rank=2, dt_min=0.05, dt_max=0.5))
    A_bar, B_bar, C = layer.step_matrices()  # C from C̃ = C (I − Ā^Lk)
    expected = torch.einsum("hn,hnl->hl", C, krylov(16, A_bar, B_bar)).real
    torch.testing.assert_close(layer.kernel(16), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("init, first, last", [("real", -1, -STATE), ("lin", complex(-0.5, 0), complex(-0.5, 3 * 3.14159)),
                                               ("inv", complex(-0.5, 8 / 3.14159 * 7), complex(-0.5, 8 / 3.14159 * (8 / 7 - 1)))])
def test_s4d_initialisations_follow_the_s4d_paper(init, first, last):
    A = s4d_A(init, 2, STATE)
    assert A.shape == (2, STATE if init == "real" else STATE // 2)
    assert abs(complex(A[0, 0]) - first) < 1e-4 and abs(complex(A[1, -1]) - last) < 1e-4


def test_hippo_legs_is_diagonal_plus_low_rank_in_a_unitary_basis():
    A, _ = hippo_legs(STATE)
    _, _, _, V, Lambda_all = hippo_legs_low_rank(STATE)
    p = V.conj().T @ torch.sqrt(torch.arange(STATE, dtype=torch.float64) + 0.5).to(V.dtype)
    rebuilt = V @ (torch.diag(Lambda_all) - p[:, None] * p.conj()[None]) @ V.conj().T
    torch.testing.assert_close(rebuilt, A.to(rebuilt.dtype))
    torch.testing.assert_close(V.conj().T @ V, torch.eye(STATE, dtype=V.dtype))


def test_low_rank_s4_starts_as_the_dense_hippo_s4_in_another_basis():
    """Kernels B* Ā^l B̄ are the same for unitarily similar (A, B): take C = B* in both layers."""
    dense, low_rank = DenseSSM(1, STATE), LowRankSSM(1, STATE, max_length=32)
    with torch.no_grad():
        low_rank.log_dt.copy_(dense.log_dt)
        dense.C.copy_(dense.B)  # real B: B* = Bᵀ
        A_bar, _, _ = low_rank.step_matrices()
        B_full = torch.cat([low_rank.B, low_rank.B.conj()], dim=-1)
        eye = torch.eye(STATE, dtype=A_bar.dtype)
        C_tilde = B_full.conj()[:, None, :] @ (eye - torch.linalg.matrix_power(A_bar, 32))  # C̃ = C (I − Ā^Lk)
        low_rank.C.copy_(C_tilde[:, 0, :STATE // 2])
    torch.testing.assert_close(low_rank.kernel(32), dense.kernel(32), atol=1e-4, rtol=1e-3)


def test_bilinear_matches_the_generalised_rule_at_one_half_for_diagonal_a():
    A = torch.diag_embed(-torch.rand(2, 4, dtype=torch.float64) - 0.1)
    B, delta = torch.randn(2, 4, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    A_bar, B_bar = bilinear(A, B, delta)
    a, d = torch.diagonal(A, dim1=-2, dim2=-1), delta[:, None]
    torch.testing.assert_close(torch.diagonal(A_bar, dim1=-2, dim2=-1), (1 + d * a / 2) / (1 - d * a / 2))
    torch.testing.assert_close(B_bar, d * B / (1 - d * a / 2))


def test_low_rank_s4_refuses_a_sequence_longer_than_its_kernel_in_one_line():
    with pytest.raises(ValueError, match="raise max_length"):
        LowRankSSM(CHANNELS, STATE, max_length=8)(torch.randn(1, 9, CHANNELS))


def test_gradients_reach_every_parameter_of_every_layer():
    for name, layer in layers().items():
        layer(torch.randn(2, 12, CHANNELS)).square().sum().backward()
        missing = [n for n, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("init", ["real", "lin", "inv"])
def test_s4d_discretisation_is_the_zero_order_hold_of_van_loans_matrix_exponential(init):
    """Oracle: for dx/dt = a x + b u with u held over a step Δ, exp(Δ [[a, b], [0, 0]]) = [[Ā, B̄], [0, 1]]
    (Van Loan), computed by torch.linalg.matrix_exp in complex128, one 2 × 2 matrix per (channel, state)."""
    layer = DiagonalSSM(3, state_size=4, init=init, dt_min=0.01, dt_max=0.5)
    with torch.no_grad():
        layer.B.copy_(torch.randn_like(layer.B))  # B starts at 1: make the test see where B enters
        log_a_bar, b_bar = layer.discretized()
        a = -torch.exp(layer.log_A_real.double())
        a = torch.complex(a, layer.A_imag.double()) if layer.A_imag is not None else a.to(torch.complex128)
        delta = torch.exp(layer.log_dt.double())[:, None].expand_as(a)
        blocks = torch.zeros(*a.shape, 2, 2, dtype=torch.complex128)
        blocks[..., 0, 0], blocks[..., 0, 1] = delta * a, delta * layer.B.to(torch.complex128)
        exponential = torch.linalg.matrix_exp(blocks)
    torch.testing.assert_close(torch.exp(log_a_bar).to(torch.complex128), exponential[..., 0, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(b_bar.to(torch.complex128), exponential[..., 0, 1], atol=1e-6, rtol=1e-5)
