"""Q2 State-space models, graded: 5 points (discretisation 1, parallel scan 1, Mamba block 3).

The oracles (autograde/oracles.py): the closed forms of the discretisations, the scan and the
selective SSM written as plain loops over time in float64, and the block from its own parameters. As in
Q1, each test runs one function you write while every other one is replaced by its oracle, and every
parameter (A_log, D, the norms' weights included) is moved off its initial value first. Everything runs in
float64 unless the test says otherwise, so tolerances can be tight.
"""

import pytest
import torch
import torch.nn.functional as F

from autograde import oracles
from autograde.probe import SPY_SCALE, SPY_SCAN

DISCRETISATION = "Q2.1 Discretisation"
SCAN = "Q2.2 Parallel scan"
BLOCK = "Q2.3 Mamba block"
FLOAT64 = {"atol": 1e-9, "rtol": 1e-7}  # float64 rounding is ~1e-16; a log-space scan loses a little more
# A scan that takes its logarithms in complex64 even for float64 inputs is correct too: ~1e-7 relative.
SCAN_TOLERANCE = {"atol": 1e-6, "rtol": 1e-5}
# Past ~700 steps the cumulative decay a*_t leaves what exp() can hold; a log-space scan in complex64 then
# loses ~|a*| × 6e-8 of relative precision: still right, and nothing like an overflow's inf or nan.
LONG_SCAN_TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}
GIVEN_SCAN_NAMES = {"sscan", "pair_scan", "_PairScan", "_scan_forward", "_scan_backward", "SCANS"}
BLOCK_CLASS = "mamba:MambaBlock"


def ssm_inputs(case, batch=2, length=5, expanded=3, state=4, dtype=torch.float64):
    """Δ (B, L, E) > 0, a stable diagonal A (E, N) < 0, B (B, L, N)."""
    delta = F.softplus(case.randn(batch, length, expanded, dtype=dtype))
    A = -case.rand(expanded, state, dtype=dtype) * 4 - 0.1
    B = case.randn(batch, length, state, dtype=dtype)
    return delta, A, B


def scan_inputs(case, length, dtype=torch.float64, negative_a=False, negative_b=False, shape=(2, 3, 4)):
    """log a (complex where a < 0) and b, shapes (B, L, E, N), with 0.01 <= |a| <= 0.99."""
    batch, *rest = shape
    a = case.rand(batch, length, *rest, dtype=dtype) * 0.98 + 0.01
    if negative_a:
        a = a * torch.where(case.rand(*a.shape, dtype=dtype) < 0.3, -1.0, 1.0).to(dtype)
    b = case.randn(batch, length, *rest, dtype=dtype)
    if negative_b:
        b = -b.abs()
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    log_a = torch.log(a.to(complex_dtype)) if negative_a else torch.log(a)
    return log_a, b


def block(case, dtype="float64", **options):
    return case.module(BLOCK_CLASS, dtype=dtype, hidden_size=8, state_size=4, **options)


# --- Q2.1 discretisation (1 point) -------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=DISCRETISATION)
def test_bilinear_discretisation_matches_its_closed_form(case):
    delta, A, B = ssm_inputs(case)
    for alpha in (0.25, 0.5, 0.8):
        got = case.call("mamba:discretize_bilinear", delta, A, B, alpha)
        A_bar, B_bar = oracles.discretize_bilinear(delta, A, B, alpha)
        swapped_A, swapped_B = oracles.discretize_bilinear(delta, A, B, 1 - alpha)
        zoh_A, zoh_B = oracles.discretize(delta, A, B, "zoh", alpha)
        case.expect_close(got.item(0), A_bar, **FLOAT64, where={"alpha": alpha},
                          what=f"Ā for α = {alpha}: (1 + αΔA) / (1 − (1−α)ΔA)",
                          alternatives={"α and 1−α exchanged": swapped_A, "the zero-order hold exp(ΔA)": zoh_A})
        case.expect_close(got.item(1), B_bar, **FLOAT64, where={"alpha": alpha},
                          what=f"B̄ for α = {alpha}: ΔB / (1 − (1−α)ΔA)",
                          alternatives={"α and 1−α exchanged": swapped_B, "B̄ = ΔB (no denominator)": zoh_B})


@pytest.mark.points(0.5, readme=DISCRETISATION)
def test_bilinear_with_alpha_one_is_forward_euler_and_alpha_zero_backward_euler(case):
    delta, A, B = ssm_inputs(case)
    dA, dB = delta[..., None] * A, delta[..., None] * B[:, :, None, :]
    forward, backward = case.call("mamba:discretize_bilinear", delta, A, B, 1.0), \
        case.call("mamba:discretize_bilinear", delta, A, B, 0.0)
    case.expect_close(forward.item(0), 1 + dA, **FLOAT64, what="Ā for α = 1 (forward Euler: 1 + ΔA)")
    case.expect_close(forward.item(1), dB, **FLOAT64, what="B̄ for α = 1 (forward Euler: ΔB)")
    case.expect_close(backward.item(0), 1 / (1 - dA), **FLOAT64, what="Ā for α = 0 (backward Euler: 1 / (1 − ΔA))")
    case.expect_close(backward.item(1), dB / (1 - dA), **FLOAT64, what="B̄ for α = 0 (backward Euler: ΔB / (1 − ΔA))")


# --- Q2.2 parallel scan (1 point) ---------------------------------------------------------------------------


def no_given_scan(source: str):
    """pscan's own code must not name the given scans (they refuse while it runs, too)."""
    import ast

    names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)} | \
        {node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)}
    used = sorted(names & GIVEN_SCAN_NAMES)
    return None if not used else (f"it refers to the given {', '.join(used)}: Q2.2 asks for a parallel scan of "
                                  f"your own, in log space")


@pytest.mark.points(0.25, readme=SCAN)
def test_parallel_scan_agrees_with_the_sequential_scan(case):
    case.expect(no_given_scan, case.source("mamba:pscan"), what="pscan")
    for length in (1, 2, 7, 64, 257):
        log_a, b = scan_inputs(case, length)
        got = case.call("mamba:pscan", log_a, b)
        case.expect_close(got.output, oracles.scan(log_a, b), **SCAN_TOLERANCE, where={"length": length},
                          what=f"pscan against the sequential loop, float64, length {length}")
    log_a, b = scan_inputs(case, 1024, shape=(1, 2, 3))
    got = case.call("mamba:pscan", log_a, b)
    case.expect_close(got.output, oracles.scan(log_a, b), **LONG_SCAN_TOLERANCE, where={"length": 1024},
                      what="pscan against the sequential loop, float64, length 1024 (the cumulative decay a* reaches "
                           "about −1000: exp(−a*) would overflow)")
    log_a, b = scan_inputs(case, 128, dtype=torch.float32)
    got = case.call("mamba:pscan", log_a, b)
    case.expect_close(got.output, oracles.scan(log_a, b), atol=1e-4, rtol=1e-3,
                      what="pscan against the sequential loop, float32, length 128", where={"dtype": "float32"})


@pytest.mark.points(0.25, readme=SCAN)
def test_parallel_scan_keeps_the_sign_of_negative_inputs_and_decays(case):
    log_a, b = scan_inputs(case, 33, negative_b=True)
    got = case.call("mamba:pscan", log_a, b)
    case.expect_close(got.output, oracles.scan(log_a, b), **SCAN_TOLERANCE,
                      what="pscan against the sequential loop with every b_t < 0 (log b needs log|b| + iπ)",
                      alternatives={"a scan of |b| (the sign of b lost)": oracles.scan(log_a, b.abs())})
    log_a, b = scan_inputs(case, 33, negative_a=True)
    got = case.call("mamba:pscan", log_a, b)
    case.expect_close(got.output, oracles.scan(log_a, b), **SCAN_TOLERANCE,
                      what="pscan against the sequential loop with some a_t < 0 (log a arrives complex)",
                      alternatives={"a scan of |a| (the imaginary part of log a dropped)":
                                    oracles.scan(log_a.real, b)})


@pytest.mark.points(0.25, readme=SCAN)
def test_parallel_scan_gradients_agree_with_the_sequential_scan(case):
    log_a, b = scan_inputs(case, 19)
    weights = case.randn(*b.shape, dtype=torch.float64)
    got = case.call("mamba:pscan", log_a, b, grad_of=(0, 1), grad_weights=weights)
    expected_log_a, expected_b = log_a.clone().requires_grad_(), b.clone().requires_grad_()
    (oracles.scan(expected_log_a, expected_b) * weights).sum().backward()
    case.expect_close(got.grad(0), expected_log_a.grad, **SCAN_TOLERANCE,
                      what="the gradient of a weighted sum of pscan's output with respect to log a")
    case.expect_close(got.grad(1), expected_b.grad, **SCAN_TOLERANCE,
                      what="the gradient of a weighted sum of pscan's output with respect to b")


@pytest.mark.points(0.25, readme=SCAN)
def test_parallel_scan_has_no_python_loop_over_time(case):
    short, long = (case.call("mamba:pscan", *scan_inputs(case, length), count_torch_calls=True)
                   for length in (64, 1024))

    def grows_like_a_loop(calls_64, calls_1024):
        if calls_1024 <= 4 * max(calls_64, 1):
            return None
        return (f"it called {calls_64} torch operations for 64 steps and {calls_1024} for 1024: work that grows "
                f"with the length like that is a Python loop over time. Expected at most 4 × {calls_64} (a "
                f"constant number, or one that grows like log L)")

    case.expect(grows_like_a_loop, short.torch_calls, long.torch_calls, what="pscan")


# --- Q2.3 Mamba block (3 points) ----------------------------------------------------------------------------


def with_params(module, **changes) -> dict:
    out = dict(module.params)
    out.update(changes)
    return out


def mixer_with_mistake(params, config, x, future=False, conv_silu=True, gate_silu=True):
    """The block as oracles.mixer computes it, but with one likely mistake."""
    E, k = config["expanded_size"], config["conv_kernel"]
    projected = oracles.linear(params, "in_proj", x)
    u, z = projected[..., :E], projected[..., E:]
    padded = F.pad(u.transpose(1, 2), (0, k - 1) if future else (k - 1, 0))
    u = F.conv1d(padded, params["conv1d.weight"], params["conv1d.bias"], groups=E).transpose(1, 2)
    y = oracles.ssm(params, config, F.silu(u) if conv_silu else u)
    return oracles.linear(params, "out_proj", y * (F.silu(z) if gate_silu else z))


@pytest.mark.points(0.5, readme=BLOCK)
def test_mamba_block_gates_a_causal_convolution_and_the_ssm(case):
    mixer = block(case)
    x = case.randn(2, 9, 8, dtype=torch.float64)
    got = case.call(mixer, x)
    params, config = mixer.params, mixer.config
    case.expect_close(got.output, oracles.mixer(params, config, x), **FLOAT64,
                      what="MambaBlock.forward: in_proj → (x, z); causal conv1d, first L outputs; SiLU; ssm; "
                           "× SiLU(z); out_proj",
                      alternatives={
                          "keeping the last L convolution outputs (each step then sees the next k−1)":
                              mixer_with_mistake(params, config, x, future=True),
                          "no SiLU after the convolution": mixer_with_mistake(params, config, x, conv_silu=False),
                          "a gate of z instead of SiLU(z)": mixer_with_mistake(params, config, x, gate_silu=False)})


@pytest.mark.points(0.5, readme=BLOCK)
def test_mamba_block_is_causal(case):
    mixer = block(case)
    x = case.randn(2, 9, 8, dtype=torch.float64)
    changed = x.clone()
    changed[:, 6:] += case.randn(2, 3, 8, dtype=torch.float64)
    before, after = case.call(mixer, x), case.call(mixer, changed)
    case.expect_close(after.output[:, :6], before.output[:, :6], **FLOAT64,
                      what="MambaBlock outputs at positions 0-5 after changing the inputs at positions 6-8 "
                           "(should not change)")

    def moved(a, b):
        change = (a[:, 6:] - b[:, 6:]).abs().max().item()
        return None if change > 1e-6 else f"outputs at positions 6-8 should change with their inputs; they moved by {change:.3g}"

    case.expect(moved, after.output, before.output, what="MambaBlock")


@pytest.mark.points(0.5, readme=BLOCK)
def test_ssm_computes_delta_B_and_C_from_the_input_and_A_from_A_log(case):
    for discretization in ("zoh", "bilinear"):
        mixer = block(case, discretization=discretization)
        u = case.randn(2, 7, mixer.config["expanded_size"], dtype=torch.float64)
        got = case.call(mixer, u, method="ssm")
        params, config = mixer.params, mixer.config
        N, R = config["state_size"], config["dt_rank"]
        initial_A_log = torch.log(torch.arange(1, N + 1, dtype=torch.float64)).repeat(config["expanded_size"], 1)
        x_proj = params["x_proj.weight"]
        swapped_B_C = torch.cat([x_proj[:R], x_proj[R + N:], x_proj[R:R + N]])
        case.expect_close(got.output, oracles.ssm(params, config, u), **FLOAT64, where={"discretization": discretization},
                          what=f"MambaBlock.ssm ({discretization}): A = −exp(A_log); x_proj → δ, B, C; "
                               f"Δ = softplus(dt_proj(δ)); the selective scan",
                          alternatives={
                              "A rebuilt from its initialisation instead of −exp(A_log)":
                                  oracles.ssm(with_params(mixer, A_log=initial_A_log), config, u),
                              "B and C exchanged": oracles.ssm(with_params(mixer, **{"x_proj.weight": swapped_B_C}),
                                                               config, u)})


@pytest.mark.points(0.5, readme=BLOCK)
def test_selective_scan_matches_the_recurrence_step_by_step(case):
    for discretization in ("zoh", "zoh_exact", "bilinear"):
        mixer = block(case, discretization=discretization, alpha=0.3)
        E, N = mixer.config["expanded_size"], mixer.config["state_size"]
        u, D = case.randn(2, 6, E, dtype=torch.float64), case.randn(E, dtype=torch.float64)
        delta, A, B = ssm_inputs(case, length=6, expanded=E, state=N)
        C = case.randn(2, 6, N, dtype=torch.float64)
        got = case.call(mixer, u, delta, A, B, C, D, method="selective_scan", attributes={"scan": "sscan"})
        case.expect_close(got.output, oracles.selective_scan(u, delta, A, B, C, D, discretization, 0.3), **FLOAT64,
                          where={"discretization": discretization},
                          what=f"MambaBlock.selective_scan ({discretization}): h_t = Ā_t h_(t−1) + B̄_t u_t, "
                               f"y_t = C_t h_t + D u_t",
                          alternatives={"no D u_t term": oracles.selective_scan(u, delta, A, B, C, torch.zeros_like(D),
                                                                                discretization, 0.3)})


@pytest.mark.points(0.5, readme=BLOCK)
def test_selective_scan_runs_the_configured_scan_even_when_the_bilinear_decay_turns_negative(case):
    for discretization, delta_scale in (("zoh", 1.0), ("bilinear", 6.0)):
        mixer = block(case, discretization=discretization)
        E, N = mixer.config["expanded_size"], mixer.config["state_size"]
        u, D = case.randn(2, 12, E, dtype=torch.float64), case.randn(E, dtype=torch.float64)
        delta, A, B = ssm_inputs(case, length=12, expanded=E, state=N)
        delta = delta * delta_scale  # ΔA < −2 in places: the bilinear Ā = (1 + ΔA/2) / (1 − ΔA/2) turns negative
        C = case.randn(2, 12, N, dtype=torch.float64)
        # The block is configured with a scan of the tests' own (the loop, its states scaled by SPY_SCALE):
        # only an answer that runs SCANS[self.scan] gives this result.
        got = case.call(mixer, u, delta, A, B, C, D, method="selective_scan", attributes={"scan": SPY_SCAN})
        case.expect_close(got.output, oracles.selective_scan(u, delta, A, B, C, D, discretization, 0.5, SPY_SCALE),
                          **SCAN_TOLERANCE, where={"discretization": discretization},
                          what=f"MambaBlock.selective_scan ({discretization}{', with negative Ā' if delta_scale > 1 else ''})"
                               f" with self.scan set to a scan of the tests' own",
                          alternatives={"a scan called directly instead of SCANS[self.scan]":
                                        oracles.selective_scan(u, delta, A, B, C, D, discretization, 0.5)})


@pytest.mark.points(0.5, readme=BLOCK)
def test_residual_block_adds_the_mixer_of_the_rms_normalised_input(case):
    residual = case.module("mamba:ResidualBlock", dtype="float64", hidden_size=8, state_size=4)
    x = case.randn(2, 5, 8, dtype=torch.float64) * 3 + 1
    got = case.call(residual, x)
    params, config = residual.params, residual.config
    unweighted = dict(params, **{"norm.weight": torch.ones_like(params["norm.weight"])})
    case.expect_close(got.output, oracles.residual_block(params, config, x), **FLOAT64,
                      what="ResidualBlock: x + mixer(RMSNorm(x))",
                      alternatives={"an RMS normalisation without the norm's weight":
                                    oracles.residual_block(unweighted, config, x)})

