"""Q2 State-space models, hidden tests (instructor-only; `python -m grading regrade` runs them): 1 point.

The same functions as the public tests, with inputs those never use: float32 discretisation, scans of
one step and of thousands, a batch of one, a single time step, other hidden and state sizes (so another
dt_rank) and other convolution kernels. They catch answers fitted to the public tests' shapes: a kernel
of 4 hard-coded in the truncation, dt_rank hard-coded, a `squeeze()` that drops a batch or length of
one. The oracles are the public tests' own; a failure shows shapes and sizes, never the hidden values.
"""

import pytest
import torch

from autograde import oracles
from graded.test_q2_ssm import (
    BLOCK,
    DISCRETISATION,
    FLOAT64,
    LONG_SCAN_TOLERANCE,
    SCAN,
    SCAN_TOLERANCE,
    scan_inputs,
    ssm_inputs,
)


@pytest.mark.points(0.25, readme=DISCRETISATION)
def test_hidden_bilinear_discretisation_in_float32_for_other_shapes(case):
    for (batch, length, expanded, state), alpha in (((1, 1, 1, 1), 0.1), ((3, 11, 5, 2), 0.9)):
        delta, A, B = ssm_inputs(case, batch, length, expanded, state, dtype=torch.float32)
        got = case.call("mamba:discretize_bilinear", delta, A, B, alpha)
        A_bar, B_bar = oracles.discretize_bilinear(delta, A, B, alpha)
        shape = f"Δ {tuple(delta.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, float32"
        case.expect_close(got.item(0), A_bar, atol=1e-6, rtol=1e-5, what=f"Ā for α = {alpha}, {shape}")
        case.expect_close(got.item(1), B_bar, atol=1e-6, rtol=1e-5, what=f"B̄ for α = {alpha}, {shape}")


@pytest.mark.points(0.25, readme=SCAN)
def test_hidden_parallel_scan_for_one_step_and_for_long_sequences(case):
    for length, tolerance in ((1, SCAN_TOLERANCE), (3000, LONG_SCAN_TOLERANCE)):
        log_a, b = scan_inputs(case, length, shape=(1, 2, 3))
        got = case.call("mamba:pscan", log_a, b)
        case.expect_close(got.output, oracles.scan(log_a, b), **tolerance, where={"length": length},
                          what=f"pscan against the sequential loop, float64, shape {tuple(b.shape)}")


@pytest.mark.points(0.25, readme=BLOCK)
def test_hidden_mamba_block_with_other_kernels_and_a_batch_of_one(case):
    for kernel, expand, batch, length in ((2, 1, 1, 5), (3, 2, 2, 1), (6, 1, 1, 9)):
        mixer = case.module("mamba:MambaBlock", dtype="float64", hidden_size=6, state_size=3, expand=expand,
                            conv_kernel=kernel)
        x = case.randn(batch, length, 6, dtype=torch.float64)
        got = case.call(mixer, x)
        case.expect_close(got.output, oracles.mixer(mixer.params, mixer.config, x), **FLOAT64, where={"kernel": kernel},
                          what=f"MambaBlock.forward with conv_kernel={kernel}, expand={expand}, input {tuple(x.shape)}")


@pytest.mark.points(0.25, readme=BLOCK)
def test_hidden_ssm_and_selective_scan_for_other_sizes_a_single_step_and_a_batch_of_one(case):
    for hidden, state, batch, length, discretization in ((40, 3, 2, 1, "zoh"), (33, 5, 1, 4, "bilinear")):
        mixer = case.module("mamba:MambaBlock", dtype="float64", hidden_size=hidden, state_size=state, expand=1,
                            discretization=discretization)
        u = case.randn(batch, length, mixer.config["expanded_size"], dtype=torch.float64)
        got = case.call(mixer, u, method="ssm")
        case.expect_close(got.output, oracles.ssm(mixer.params, mixer.config, u), **FLOAT64,
                          what=f"MambaBlock.ssm ({discretization}), hidden size {hidden} (dt_rank "
                               f"{mixer.config['dt_rank']}), state size {state}, input {tuple(u.shape)}")
        E, N = mixer.config["expanded_size"], state
        delta, A, B = ssm_inputs(case, batch, length, E, N)
        C, D = case.randn(batch, length, N, dtype=torch.float64), case.randn(E, dtype=torch.float64)
        got = case.call(mixer, u, delta, A, B, C, D, method="selective_scan", attributes={"scan": "sscan"})
        case.expect_close(got.output, oracles.selective_scan(u, delta, A, B, C, D, discretization, 0.5), **FLOAT64,
                          what=f"MambaBlock.selective_scan ({discretization}), input {tuple(u.shape)}, state size {N}")
