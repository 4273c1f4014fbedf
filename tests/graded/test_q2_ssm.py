"""Q2 State-space models, graded: 5 points (discretisation 1, parallel scan 1, Mamba block 2, the rest 1).

The oracles: the closed forms of the discretisations, the given sequential scan `sscan`, and the
selective SSM written as a plain loop over time from the block's own weights. Where a function calls
another one you write, the test swaps that one for the oracle, so that one mistake costs points in one
place only. Everything runs in float64 unless the test says otherwise, so tolerances can be tight.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import models.mamba as mamba
from models.mamba import MambaBlock, ResidualBlock, discretize_bilinear, pscan, sscan
from scoring import check, expect_close

DISCRETISATION = "Q2.1 Discretisation"
SCAN = "Q2.2 Parallel scan"
BLOCK = "Q2.3 Mamba block"
FLOAT64 = {"atol": 1e-9, "rtol": 1e-7}  # float64 rounding is ~1e-16; a log-space scan loses a little more
# A scan that takes its logarithms in complex64 even for float64 inputs is correct too: ~1e-7 relative.
SCAN_TOLERANCE = {"atol": 1e-6, "rtol": 1e-5}


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# --- oracles -----------------------------------------------------------------------------------------------


def ssm_inputs(batch=2, length=5, expanded=3, state=4):
    """Δ (B, L, E) > 0, a stable diagonal A (E, N) < 0, B (B, L, N), in float64."""
    delta = F.softplus(torch.randn(batch, length, expanded, dtype=torch.float64))
    A = -torch.rand(expanded, state, dtype=torch.float64) * 4 - 0.1
    B = torch.randn(batch, length, state, dtype=torch.float64)
    return delta, A, B


def bilinear_closed_form(delta, A, B, alpha):
    """Ā = (1 + αΔA) / (1 − (1−α)ΔA), B̄ = ΔB / (1 − (1−α)ΔA), elementwise over (B, L, E, N)."""
    step = delta[..., None]  # (B, L, E, 1)
    dA = step * A
    return (1 + alpha * dA) / (1 - (1 - alpha) * dA), step * B[:, :, None, :] / (1 - (1 - alpha) * dA)


def discretised_step(delta_t, A, B_t, discretization, alpha):
    """Ā_t, B̄_t of one time step (B, E, N), for any of the three rules."""
    dA = delta_t[..., None] * A
    dB = delta_t[..., None] * B_t[:, None, :]
    if discretization == "bilinear":
        return (1 + alpha * dA) / (1 - (1 - alpha) * dA), dB / (1 - (1 - alpha) * dA)
    if discretization == "zoh_exact":
        return torch.exp(dA), torch.expm1(dA) / A * B_t[:, None, :]
    return torch.exp(dA), dB


def oracle_selective_scan(u, delta, A, B, C, D, discretization="zoh", alpha=0.5):
    """y (B, L, E) of h_t = Ā_t h_{t−1} + B̄_t u_t, y_t = C_t h_t + D u_t, one time step at a time."""
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=u.dtype)
    outputs = []
    for t in range(u.shape[1]):
        A_bar, B_bar = discretised_step(delta[:, t], A, B[:, t], discretization, alpha)
        h = A_bar * h + B_bar * u[:, t, :, None]
        outputs.append((h * C[:, t, None, :]).sum(dim=-1) + D * u[:, t])
    return torch.stack(outputs, dim=1)


def oracle_ssm(block: MambaBlock, u):
    """The block's selective SSM (B, L, E) -> (B, L, E) from its own weights, with the loop above."""
    R, N = block.dt_rank, block.state_size
    projected = block.x_proj(u)
    delta = F.softplus(block.dt_proj(projected[..., :R]))
    B, C = projected[..., R:R + N], projected[..., R + N:R + 2 * N]
    A = -torch.exp(block.A_log)
    return oracle_selective_scan(u, delta, A, B, C, block.D, block.discretization, block.alpha)


def oracle_mixer(block: MambaBlock, x):
    """The block's forward (B, L, D) -> (B, L, D), the convolution padded on the left only."""
    E, k = block.expanded_size, block.conv_kernel
    projected = block.in_proj(x)
    u, z = projected[..., :E], projected[..., E:]
    padded = F.pad(u.transpose(1, 2), (k - 1, 0))  # (B, E, k−1+L): output t sees inputs t−k+1 ... t
    u = F.conv1d(padded, block.conv1d.weight, block.conv1d.bias, groups=E).transpose(1, 2)
    return block.out_proj(oracle_ssm(block, F.silu(u)) * F.silu(z))


@pytest.fixture
def oracle_scan_and_discretisation(monkeypatch):
    """Your block with the given sscan in place of your pscan and the closed form in place of your
    discretize_bilinear, so that a mistake there is counted by their own tests only."""
    monkeypatch.setitem(mamba.SCANS, "pscan", sscan)
    monkeypatch.setattr(mamba, "pscan", sscan)
    monkeypatch.setitem(mamba.DISCRETIZATIONS, "bilinear", bilinear_closed_form)
    monkeypatch.setattr(mamba, "discretize_bilinear", bilinear_closed_form)


def make_block(**options) -> MambaBlock:
    return MambaBlock(hidden_size=8, state_size=4, **options).double()


def scan_inputs(length, dtype=torch.float64, negative_a=False, negative_b=False):
    """log a (complex where a < 0) and b, shapes (2, L, 3, 4), with 0.01 <= |a| <= 0.99."""
    a = torch.rand(2, length, 3, 4, dtype=dtype) * 0.98 + 0.01
    if negative_a:
        a = a * torch.where(torch.rand_like(a) < 0.3, -1.0, 1.0)
    b = torch.randn(2, length, 3, 4, dtype=dtype)
    if negative_b:
        b = -b.abs()
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    log_a = torch.log(a.to(complex_dtype)) if negative_a else torch.log(a)
    return log_a, b


# --- Q2.1 discretisation (1 point) -------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=DISCRETISATION)
def test_bilinear_discretisation_matches_its_closed_form():
    delta, A, B = ssm_inputs()
    for alpha in (0.25, 0.5, 0.8):
        A_bar, B_bar = discretize_bilinear(delta, A, B, alpha)
        expected_A, expected_B = bilinear_closed_form(delta, A, B, alpha)
        expect_close(A_bar, expected_A, **FLOAT64, what=f"Ā for α = {alpha}: (1 + αΔA) / (1 − (1−α)ΔA)")
        expect_close(B_bar, expected_B, **FLOAT64, what=f"B̄ for α = {alpha}: ΔB / (1 − (1−α)ΔA)")


@pytest.mark.points(0.5, readme=DISCRETISATION)
def test_bilinear_with_alpha_one_is_forward_euler_and_alpha_zero_backward_euler():
    delta, A, B = ssm_inputs()
    dA, dB = delta[..., None] * A, delta[..., None] * B[:, :, None, :]
    A_bar, B_bar = discretize_bilinear(delta, A, B, alpha=1.0)
    expect_close(A_bar, 1 + dA, **FLOAT64, what="Ā for α = 1 (forward Euler: 1 + ΔA)")
    expect_close(B_bar, dB, **FLOAT64, what="B̄ for α = 1 (forward Euler: ΔB)")
    A_bar, B_bar = discretize_bilinear(delta, A, B, alpha=0.0)
    expect_close(A_bar, 1 / (1 - dA), **FLOAT64, what="Ā for α = 0 (backward Euler: 1 / (1 − ΔA))")
    expect_close(B_bar, dB / (1 - dA), **FLOAT64, what="B̄ for α = 0 (backward Euler: ΔB / (1 − ΔA))")


# --- Q2.2 parallel scan (1 point) ---------------------------------------------------------------------------


@pytest.fixture
def given_scans_out_of_reach(monkeypatch):
    """pscan must scan by itself: while it runs, the given scans (the loop, the exact pair scan) refuse."""
    def refuse(name):
        def given_scan(*args, **kwargs):
            raise AssertionError(f"pscan called the given {name}: Q2.2 asks for a parallel scan of your own, "
                                 f"in log space (reread README section {SCAN!r})")
        return given_scan

    for name, scan in list(mamba.SCANS.items()):
        if name != "pscan":
            monkeypatch.setitem(mamba.SCANS, name, refuse(name))
            monkeypatch.setattr(mamba, scan.__name__, refuse(name))


@pytest.mark.points(0.25, readme=SCAN)
@pytest.mark.usefixtures("given_scans_out_of_reach")
def test_parallel_scan_agrees_with_the_sequential_scan():
    for length in (1, 2, 7, 64, 257):
        log_a, b = scan_inputs(length)
        expect_close(pscan(log_a, b), sscan(log_a, b), **SCAN_TOLERANCE,
                     what=f"pscan against sscan, float64, length {length}")
    log_a, b = scan_inputs(128, dtype=torch.float32)
    expect_close(pscan(log_a, b), sscan(log_a, b), atol=1e-4, rtol=1e-3,
                 what="pscan against sscan, float32, length 128")


@pytest.mark.points(0.25, readme=SCAN)
@pytest.mark.usefixtures("given_scans_out_of_reach")
def test_parallel_scan_keeps_the_sign_of_negative_inputs_and_decays():
    log_a, b = scan_inputs(33, negative_b=True)
    expect_close(pscan(log_a, b), sscan(log_a, b), **SCAN_TOLERANCE,
                 what="pscan against sscan with every b_t < 0 (log b needs log|b| + iπ)")
    log_a, b = scan_inputs(33, negative_a=True)
    expect_close(pscan(log_a, b), sscan(log_a, b), **SCAN_TOLERANCE,
                 what="pscan against sscan with some a_t < 0 (log a arrives complex)")


@pytest.mark.points(0.25, readme=SCAN)
@pytest.mark.usefixtures("given_scans_out_of_reach")
def test_parallel_scan_gradients_agree_with_the_sequential_scan():
    log_a, b = scan_inputs(19)
    weights = torch.randn_like(b)
    gradients = {}
    for scan in (sscan, pscan):
        log_a_, b_ = log_a.clone().requires_grad_(), b.clone().requires_grad_()
        (scan(log_a_, b_) * weights).sum().backward()
        gradients[scan.__name__] = (log_a_.grad, b_.grad)
    for i, name in enumerate(("log a", "b")):
        expect_close(gradients["pscan"][i], gradients["sscan"][i], **SCAN_TOLERANCE,
                     what=f"the gradient of a weighted sum of pscan's output with respect to {name}, against sscan's")


class CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.points(0.25, readme=SCAN)
@pytest.mark.usefixtures("given_scans_out_of_reach")
def test_parallel_scan_has_no_python_loop_over_time():
    calls = {}
    for length in (64, 1024):
        log_a, b = scan_inputs(length)
        with CountTorchCalls() as counter:
            pscan(log_a, b)
        calls[length] = counter.calls
    check(calls[1024] <= 4 * calls[64],
          f"pscan called {calls[64]} torch operations for 64 steps and {calls[1024]} for 1024: work that grows "
          f"with the length like that is a Python loop over time. Expected at most 4 × {calls[64]} "
          f"(a constant number, or one that grows like log L)")


# --- Q2.3 Mamba block (2 points) --------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=BLOCK)
def test_mamba_block_gates_a_causal_convolution_and_the_ssm():
    block = make_block()
    block.ssm = lambda u: oracle_ssm(block, u)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        expect_close(block(x), oracle_mixer(block, x), **FLOAT64,
                     what="MambaBlock.forward: in_proj → (x, z); causal conv1d, first L outputs; SiLU; ssm; "
                          "× SiLU(z); out_proj")


@pytest.mark.points(0.5, readme=BLOCK)
def test_ssm_computes_delta_B_and_C_from_the_input_and_A_from_A_log(oracle_scan_and_discretisation):
    for discretization in ("zoh", "bilinear"):
        block = make_block(discretization=discretization)
        block.selective_scan = lambda u, delta, A, B, C, D: oracle_selective_scan(
            u, delta, A, B, C, D, block.discretization, block.alpha)
        u = torch.randn(2, 7, block.expanded_size, dtype=torch.float64)
        with torch.no_grad():
            expect_close(block.ssm(u), oracle_ssm(block, u), **FLOAT64,
                         what=f"MambaBlock.ssm ({discretization}): A = −exp(A_log); x_proj → δ, B, C; "
                              f"Δ = softplus(dt_proj(δ)); the selective scan")


@pytest.mark.points(0.5, readme=BLOCK)
def test_selective_scan_matches_the_recurrence_step_by_step(oracle_scan_and_discretisation):
    for discretization in ("zoh", "zoh_exact", "bilinear"):
        block = make_block(discretization=discretization, alpha=0.3)
        E, N = block.expanded_size, block.state_size
        u, D = torch.randn(2, 6, E, dtype=torch.float64), torch.randn(E, dtype=torch.float64)
        delta, A, B = ssm_inputs(length=6, expanded=E, state=N)
        C = torch.randn(2, 6, N, dtype=torch.float64)
        with torch.no_grad():
            expect_close(block.selective_scan(u, delta, A, B, C, D),
                         oracle_selective_scan(u, delta, A, B, C, D, discretization, 0.3), **FLOAT64,
                         what=f"MambaBlock.selective_scan ({discretization}): h_t = Ā_t h_(t−1) + B̄_t u_t, "
                              f"y_t = C_t h_t + D u_t")


@pytest.mark.points(0.5, readme=BLOCK)
def test_mamba_block_is_causal(oracle_scan_and_discretisation):
    block = make_block()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    changed = x.clone()
    changed[:, 6:] += torch.randn(2, 3, 8, dtype=torch.float64)
    with torch.no_grad():
        before, after = block(x), block(changed)
    expect_close(after[:, :6], before[:, :6], **FLOAT64,
                 what="MambaBlock outputs at positions 0-5 after changing the inputs at positions 6-8 "
                      "(should not change)")
    moved = (after[:, 6:] - before[:, 6:]).abs().max().item()
    check(moved > 1e-6, f"MambaBlock outputs at positions 6-8 should change with their inputs; they moved by {moved:.3g}")


# --- the rest (1 point) ---------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=BLOCK)
def test_residual_block_adds_the_mixer_of_the_rms_normalised_input():
    residual = ResidualBlock(8, state_size=4).double()
    residual.mixer.forward = lambda x: torch.tanh(3 * x) + 0.5  # any function will do: it isolates the wiring
    x = torch.randn(2, 5, 8, dtype=torch.float64) * 3 + 1
    with torch.no_grad():
        expect_close(residual(x), x + torch.tanh(3 * residual.norm(x)) + 0.5, **FLOAT64,
                     what="ResidualBlock: x + mixer(RMSNorm(x))")


@pytest.mark.points(0.5, readme=BLOCK)
def test_mamba_block_gives_the_same_output_with_pscan_and_sscan():
    for discretization, initial_delta in (("zoh", None), ("bilinear", 3.0)):
        block = make_block(discretization=discretization)
        if initial_delta is not None:
            with torch.no_grad():  # Δ ≈ 3: the bilinear Ā = (1 + ΔA/2) / (1 − ΔA/2) turns negative
                block.dt_proj.bias.fill_(initial_delta)
        x = torch.randn(2, 12, 8, dtype=torch.float64)
        with torch.no_grad():
            block.scan = "sscan"
            expected = block(x)
            block.scan = "pscan"
            actual = block(x)
        expect_close(actual, expected, **SCAN_TOLERANCE,
                     what=f"MambaBlock ({discretization}{', with negative Ā' if initial_delta else ''}) with "
                          f"scan='pscan' against scan='sscan'")
