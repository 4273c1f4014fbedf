"""Q2 State-space models, hidden tests (instructor-only; `python -m grading regrade` runs them): 1 point.

The same functions as the public tests, with inputs those never use: float32 discretisation, scans of
one step and of hundreds, a batch of one, a single time step, other hidden and state sizes (so another
dt_rank) and other convolution kernels. They catch answers fitted to the public tests' shapes: a kernel
of 4 hard-coded in the truncation, dt_rank hard-coded, a `squeeze()` that drops a batch or length of
one. The oracles are the public tests' own.
"""

import pytest
import torch

import models.mamba as mamba
from graded.test_q2_ssm import (
    BLOCK,
    DISCRETISATION,
    FLOAT64,
    SCAN,
    SCAN_TOLERANCE,
    bilinear_closed_form,
    given_scans_out_of_reach,  # noqa: F401 (a fixture, used by name)
    oracle_mixer,
    oracle_ssm,
    scan_inputs,
    ssm_inputs,
)
from models.mamba import MambaBlock, discretize_bilinear, pscan, sscan
from scoring import expect_close


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(1234)


@pytest.mark.points(0.25, readme=DISCRETISATION)
def test_hidden_bilinear_discretisation_in_float32_for_other_shapes():
    for (batch, length, expanded, state), alpha in (((1, 1, 1, 1), 0.1), ((3, 11, 5, 2), 0.9)):
        delta, A, B = (tensor.float() for tensor in ssm_inputs(batch, length, expanded, state))
        A_bar, B_bar = discretize_bilinear(delta, A, B, alpha)
        expected_A, expected_B = bilinear_closed_form(delta, A, B, alpha)
        shape = f"Δ {tuple(delta.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, float32"
        expect_close(A_bar, expected_A, atol=1e-6, rtol=1e-5, what=f"Ā for α = {alpha}, {shape}")
        expect_close(B_bar, expected_B, atol=1e-6, rtol=1e-5, what=f"B̄ for α = {alpha}, {shape}")


@pytest.mark.points(0.25, readme=SCAN)
@pytest.mark.usefixtures("given_scans_out_of_reach")
def test_hidden_parallel_scan_for_one_step_and_for_long_sequences():
    for length in (1, 600):
        log_a, b = scan_inputs(length)
        b = b[:1, :, :2]  # a batch of one, two channels
        log_a = log_a[:1, :, :2]
        expect_close(pscan(log_a, b), sscan(log_a, b), **SCAN_TOLERANCE,
                     what=f"pscan against sscan, float64, shape {tuple(b.shape)}")


@pytest.mark.points(0.25, readme=BLOCK)
def test_hidden_mamba_block_with_other_kernels_and_a_batch_of_one():
    for kernel, expand, batch, length in ((2, 1, 1, 5), (3, 2, 2, 1)):
        block = MambaBlock(hidden_size=6, state_size=3, expand=expand, conv_kernel=kernel).double()
        block.ssm = lambda u, block=block: oracle_ssm(block, u)
        x = torch.randn(batch, length, 6, dtype=torch.float64)
        with torch.no_grad():
            expect_close(block(x), oracle_mixer(block, x), **FLOAT64,
                         what=f"MambaBlock.forward with conv_kernel={kernel}, expand={expand}, "
                              f"input {tuple(x.shape)}")


@pytest.mark.points(0.25, readme=BLOCK)
def test_hidden_ssm_for_other_sizes_a_single_step_and_a_batch_of_one(monkeypatch):
    monkeypatch.setitem(mamba.SCANS, "pscan", sscan)
    monkeypatch.setitem(mamba.DISCRETIZATIONS, "bilinear", bilinear_closed_form)
    monkeypatch.setattr(mamba, "discretize_bilinear", bilinear_closed_form)
    for hidden, state, batch, length, discretization in ((40, 3, 2, 1, "zoh"), (33, 5, 1, 4, "bilinear")):
        block = MambaBlock(hidden_size=hidden, state_size=state, expand=1, discretization=discretization).double()
        u = torch.randn(batch, length, block.expanded_size, dtype=torch.float64)
        with torch.no_grad():
            expect_close(block.ssm(u), oracle_ssm(block, u), **FLOAT64,
                         what=f"MambaBlock.ssm + selective_scan ({discretization}), hidden size {hidden} "
                              f"(dt_rank {block.dt_rank}), state size {state}, input {tuple(u.shape)}")
