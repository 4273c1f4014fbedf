"""S4 and S4D: linear time-invariant (LTI) state-space layers, each with two ways to run (given, complete).

An LTI layer has the same Ā, B̄, C at every step, so its output is a convolution of the input with the
kernel K_l = C Ā^l B̄ (l = 0 ... L−1):

    recurrent mode    h_t = Ā h_{t−1} + B̄ u_t,  y_t = C h_t + D u_t      one step at a time (`step`)
    convolution mode  y = K * u + D u                                    the whole sequence at once (`forward`)

The convolution mode computes K once per forward pass, then convolves by FFT in O(L log L); the recurrent
mode is what an SSM would generate with, one token at a time (here it is the reference). Tests check that the two agree for every layer here.
Each layer has H independent copies of an SSM, one per channel (single input, single output).

    S4D (`DiagonalSSM`)      A diagonal. S4D-Real A_n = −(n+1) (N real states); S4D-Lin A_n = −½ + iπn and
                             S4D-Inv A_n = −½ + i(N/π)(N/(2n+1) − 1) (N/2 complex states whose conjugates are
                             implied: the output is 2 Re(...)). Zero-order hold. Kernel: a Vandermonde product.
    S4, low rank (`LowRankSSM`)  A = Λ − P P* (diagonal plus low rank), initialised to HiPPO-LegS; bilinear.
                             Kernel: its generating function at the roots of unity, a Cauchy sum with a Woodbury
                             correction for P P*, then an inverse FFT.
    S4, dense (`DenseSSM`)   A a full N × N matrix, initialised to HiPPO-LegS; bilinear. Kernel: the Krylov
                             vectors Ā^l B̄ by repeated squaring, log2 L matrix products (no loop over L).
                             The slow, simple form the low-rank one is a fast way of computing.

Glossary (shapes use these letters everywhere in this file):
    B  batch size            L  sequence length            H  channels (independent SSMs)
    N  state size, in real numbers per channel             M  complex modes kept (N/2), or N for S4D-Real
    r  rank of the low-rank term                           Lk kernel length the low-rank S4 is tuned to
    delta: Δ, the step size (H,)     A, B, C, D: the SSM (per channel)     K: the kernel (H, L)
References: Gu, Goel, Ré 2022 (S4, arXiv 2111.00396); Gu, Gupta, Goel, Ré 2022 (S4D, arXiv 2206.11893).
"""

import math

import torch
from einops import einsum, rearrange, repeat
from torch import nn

S4D_INITS = ("real", "lin", "inv")


def no_weight_decay(*parameters: nn.Parameter):
    """Marks the SSM's dynamics (A, Δ) so that training/module.py exempts them from weight decay, as the S4
    papers train them: decay would drag log Δ and A towards 0, changing every time scale the layer has."""
    for parameter in parameters:
        parameter.no_weight_decay = True


def log_uniform_step(channels: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """log Δ (H,), with Δ log-uniform in [dt_min, dt_max] (the S4 papers' initialisation)."""
    return torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def fft_convolution(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution y_t = Σ_{l ≤ t} K_l u_{t−l}: u (B, L, H), K (H, L) -> y (B, L, H).

    Zero-padding to 2L turns the FFT's circular convolution into a linear one: O(L log L), not O(L²).
    """
    length = u.shape[1]
    u_f = torch.fft.rfft(rearrange(u, "b l h -> b h l"), n=2 * length)  # (B, H, L+1)
    K_f = torch.fft.rfft(K, n=2 * length)  # (H, L+1)
    y = torch.fft.irfft(u_f * K_f, n=2 * length)[..., :length]  # (B, H, L)
    return rearrange(y, "b h l -> b l h")


class LTILayer(nn.Module):
    """What every LTI layer shares: the D skip, the two modes, and the slow reference built on `step`.

    A subclass gives `kernel(L)` -> (H, L), `initial_state(batch)`, `step_matrices()` -> (Ā, B̄, C) and
    `step(u_t, state, matrices)`.
    """

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Convolution mode: u (B, L, H) -> y (B, L, H)."""
        return fft_convolution(u, self.kernel(u.shape[1])) + u * self.D

    def recurrent(self, u: torch.Tensor) -> torch.Tensor:
        """Recurrent mode over a whole sequence, one step at a time: u (B, L, H) -> y (B, L, H). Slow; the
        reference the convolution mode is tested against (this project's decoding of these layers reruns the
        convolution instead: models/decoding.py's FullRerun)."""
        matrices = self.step_matrices()  # the same at every step: that is what time-invariant means
        state = self.initial_state(u.shape[0])
        outputs = []
        for u_t in u.unbind(dim=1):
            y_t, state = self.step(u_t, state, matrices)
            outputs.append(y_t)
        return torch.stack(outputs, dim=1)


# ---------------------------------------------------------------------------------------------
# S4D: diagonal A, kernel by a Vandermonde product
# ---------------------------------------------------------------------------------------------


def s4d_A(init: str, channels: int, state_size: int) -> torch.Tensor:
    """The initial diagonal A, (H, M): real (M = N) for "real", complex (M = N/2) for "lin" and "inv"."""
    if init == "real":
        return -torch.arange(1, state_size + 1, dtype=torch.float32).repeat(channels, 1)
    n = torch.arange(state_size // 2, dtype=torch.float32)
    if init == "lin":
        imaginary = math.pi * n
    elif init == "inv":
        imaginary = state_size / math.pi * (state_size / (2 * n + 1) - 1)
    else:
        raise ValueError(f"S4D init must be one of {', '.join(S4D_INITS)}, not {init!r}")
    return torch.complex(torch.full_like(n, -0.5), imaginary).repeat(channels, 1)


class DiagonalSSM(LTILayer):
    """S4D: H diagonal SSMs, zero-order hold, kernel by a Vandermonde product. (B, L, H) -> (B, L, H)."""

    def __init__(self, channels: int, state_size: int = 16, init: str = "real", dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        if init != "real" and state_size % 2:
            raise ValueError(f"S4D-{init.capitalize()} keeps conjugate pairs: state_size must be even, "
                             f"not {state_size}")
        A = s4d_A(init, channels, state_size)  # (H, M)
        self.init = init
        self.complex = A.is_complex()
        # −exp keeps Re A < 0 (a decaying, stable SSM) whatever the optimiser does.
        self.log_A_real = nn.Parameter(torch.log(-A.real))
        self.A_imag = nn.Parameter(A.imag.clone()) if self.complex else None
        self.B = nn.Parameter(torch.ones_like(A))  # (H, M)
        C = torch.randn_like(A)  # complex randn: real and imaginary parts each of variance 1/2
        self.C = nn.Parameter(C)
        self.log_dt = nn.Parameter(log_uniform_step(channels, dt_min, dt_max))
        self.D = nn.Parameter(torch.randn(channels))
        no_weight_decay(*[p for p in (self.log_A_real, self.A_imag, self.log_dt) if p is not None])

    def discretized(self):
        """log Ā = ΔA and B̄ = (exp(ΔA) − 1)/A · B, the exact zero-order hold; each (H, M)."""
        A = -torch.exp(self.log_A_real)
        if self.complex:
            A = torch.complex(A, self.A_imag)
        delta_A = torch.exp(self.log_dt)[:, None] * A  # (H, M)
        return delta_A, torch.expm1(delta_A) / A * self.B

    def kernel(self, length: int) -> torch.Tensor:
        """K_l = Σ_n C_n B̄_n Ā_n^l, (H, L): the Vandermonde matrix Ā_n^l = exp(l ΔA_n) times C B̄."""
        delta_A, B_bar = self.discretized()
        steps = torch.arange(length, device=delta_A.device, dtype=self.log_dt.dtype)
        vandermonde = torch.exp(einsum(delta_A, steps, "h m, l -> h m l"))  # (H, M, L)
        K = einsum(self.C * B_bar, vandermonde, "h m, h m l -> h l")
        return 2 * K.real if self.complex else K  # the implied conjugate modes double the real part

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, *self.B.shape, dtype=self.B.dtype, device=self.B.device)  # (B, H, M)

    def step_matrices(self):
        """Ā, B̄, C, each (H, M): Ā and B̄ are diagonal, kept as their diagonals."""
        delta_A, B_bar = self.discretized()
        return torch.exp(delta_A), B_bar, self.C

    def step(self, u_t: torch.Tensor, state: torch.Tensor, matrices=None):
        """One step: u_t (B, H), state (B, H, M) -> y_t (B, H), the next state."""
        A_bar, B_bar, C = matrices or self.step_matrices()
        state = A_bar * state + B_bar * u_t[..., None]
        y = einsum(C, state, "h m, b h m -> b h")
        return (2 * y.real if self.complex else y) + self.D * u_t, state


# ---------------------------------------------------------------------------------------------
# HiPPO-LegS, the S4 initialisation, as a dense matrix and as diagonal plus low rank
# ---------------------------------------------------------------------------------------------


def hippo_legs(state_size: int):
    """HiPPO-LegS: A (N, N) and B (N,), float64. A_nk = −√(2n+1)√(2k+1) below the diagonal, −(n+1) on it."""
    n = torch.arange(state_size, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    A = -torch.tril(root[:, None] * root[None, :], diagonal=-1) - torch.diag(n + 1)
    return A, root.clone()


def hippo_legs_low_rank(state_size: int):
    """HiPPO-LegS in diagonal plus low rank form, the half of each conjugate pair with Im Λ < 0 kept.

    A + p pᵀ, with p_n = √(n + ½), is −½ I plus a skew-symmetric matrix: normal, so a unitary V diagonalises
    it. Returns Λ (N/2,), P = V* p (N/2,), B = V* B_hippo (N/2,), all complex128, and V (N, N), Λ_all (N,)
    for the full basis: A_hippo = V (diag(Λ_all) − (V* p)(V* p)*) V*.
    """
    A, B = hippo_legs(state_size)
    p = torch.sqrt(torch.arange(state_size, dtype=torch.float64) + 0.5)
    normal = A + p[:, None] * p[None, :]
    # normal = −½ I + S with S skew-symmetric: iS is Hermitian, so eigh gives S's eigenvalues exactly.
    imaginary, V = torch.linalg.eigh(-1j * (normal + 0.5 * torch.eye(state_size, dtype=torch.float64)))
    order = torch.argsort(imaginary)
    Lambda_all = torch.complex(torch.full_like(imaginary, -0.5), imaginary[order])
    V = V[:, order]
    P_all = V.conj().T @ p.to(V.dtype)
    B_all = V.conj().T @ B.to(V.dtype)
    half = state_size // 2  # ascending imaginary parts: the first half are the conjugates of the second
    return Lambda_all[:half], P_all[:half], B_all[:half], V, Lambda_all


def bilinear(A: torch.Tensor, B: torch.Tensor, delta: torch.Tensor):
    """Dense bilinear discretisation: A (H, N, N), B (H, N), Δ (H,) -> Ā = (I − ΔA/2)⁻¹(I + ΔA/2),
    B̄ = (I − ΔA/2)⁻¹ ΔB, shapes (H, N, N) and (H, N)."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    half_step = delta[:, None, None] / 2 * A
    # One solve for both: (I − ΔA/2)⁻¹ [I + ΔA/2 | ΔB]
    solved = torch.linalg.solve(eye - half_step, torch.cat([eye + half_step, (delta[:, None] * B)[..., None]], dim=-1))
    return solved[..., :-1], solved[..., -1]


def krylov(length: int, A_bar: torch.Tensor, B_bar: torch.Tensor) -> torch.Tensor:
    """The vectors Ā^l B̄ for l = 0 ... L−1, (H, N, L), by doubling: [X, Ā^k X] has twice X's columns,
    and squaring Ā^k gives the next Ā^{2k}. log2 L matrix products instead of a loop over L."""
    X = B_bar[..., None]  # (H, N, 1)
    power = A_bar
    while X.shape[-1] < length:
        X = torch.cat([X, power @ X], dim=-1)
        power = power @ power
    return X[..., :length]


# ---------------------------------------------------------------------------------------------
# S4, dense: the full N × N A
# ---------------------------------------------------------------------------------------------


class DenseSSM(LTILayer):
    """S4 with a full state matrix: H SSMs with A (N, N) from HiPPO-LegS, bilinear. (B, L, H) -> (B, L, H)."""

    def __init__(self, channels: int, state_size: int = 16, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        A, B = hippo_legs(state_size)
        self.A = nn.Parameter(repeat(A.float(), "n k -> h n k", h=channels).clone())  # (H, N, N)
        self.B = nn.Parameter(repeat(B.float(), "n -> h n", h=channels).clone())  # (H, N)
        self.C = nn.Parameter(torch.randn(channels, state_size) / math.sqrt(state_size))
        self.log_dt = nn.Parameter(log_uniform_step(channels, dt_min, dt_max))
        self.D = nn.Parameter(torch.randn(channels))
        no_weight_decay(self.A, self.log_dt)

    def kernel(self, length: int) -> torch.Tensor:
        """K_l = C Ā^l B̄, (H, L)."""
        A_bar, B_bar = bilinear(self.A, self.B, torch.exp(self.log_dt))
        return einsum(self.C, krylov(length, A_bar, B_bar), "h n, h n l -> h l")

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.B.new_zeros(batch, *self.B.shape)  # (B, H, N)

    def step_matrices(self):
        """Ā (H, N, N), B̄ (H, N), C (H, N)."""
        A_bar, B_bar = bilinear(self.A, self.B, torch.exp(self.log_dt))
        return A_bar, B_bar, self.C

    def step(self, u_t: torch.Tensor, state: torch.Tensor, matrices=None):
        """One step: u_t (B, H), state (B, H, N) -> y_t (B, H), the next state."""
        A_bar, B_bar, C = matrices or self.step_matrices()
        state = einsum(A_bar, state, "h n k, b h k -> b h n") + B_bar * u_t[..., None]
        return einsum(C, state, "h n, b h n -> b h") + self.D * u_t, state


# ---------------------------------------------------------------------------------------------
# S4, low rank: A = Λ − P P*, kernel by Cauchy sums at the roots of unity and Woodbury's identity
# ---------------------------------------------------------------------------------------------


def with_conjugates(x: torch.Tensor) -> torch.Tensor:
    """(..., M) -> (..., 2M): the kept half of each conjugate pair, then the implied other half."""
    return torch.cat([x, x.conj()], dim=-1)


class LowRankSSM(LTILayer):
    """S4: H SSMs with A = Λ − P P* (Λ diagonal, P of rank r), HiPPO-LegS, bilinear. (B, L, H) -> (B, L, H).

    Like the S4 paper, the parameter C is C̃ = C (I − Ā^Lk): the kernel's generating function at the Lk-th
    roots of unity then needs no matrix power. The kernel is computed at Lk = `max_length` and cut to L, so
    sequences may be at most that long. The recurrent mode converts C̃ back to C (one matrix power, `step_matrices`).
    """

    def __init__(self, channels: int, state_size: int = 16, max_length: int = 64, rank: int = 1,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if state_size % 2:
            raise ValueError(f"S4 keeps conjugate pairs: state_size must be even, not {state_size}")
        Lambda, P, B, _, _ = hippo_legs_low_rank(state_size)
        self.max_length = max_length
        self.log_A_real = nn.Parameter(repeat(torch.log(-Lambda.real).float(), "m -> h m", h=channels).clone())
        self.A_imag = nn.Parameter(repeat(Lambda.imag.float(), "m -> h m", h=channels).clone())
        # HiPPO's p for the first rank-1 term; any further ones start at zero, so A starts as HiPPO-LegS.
        low_rank = torch.zeros(rank, channels, state_size // 2, dtype=torch.complex64)
        low_rank[0] = P.to(torch.complex64)
        self.P = nn.Parameter(low_rank)  # (r, H, M)
        self.B = nn.Parameter(repeat(B.to(torch.complex64), "m -> h m", h=channels).clone())  # (H, M)
        self.C = nn.Parameter(torch.randn(channels, state_size // 2, dtype=torch.complex64))  # C̃, (H, M)
        self.log_dt = nn.Parameter(log_uniform_step(channels, dt_min, dt_max))
        self.D = nn.Parameter(torch.randn(channels))
        no_weight_decay(self.log_A_real, self.A_imag, self.P, self.log_dt)

    def diagonal(self) -> torch.Tensor:
        return torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # Λ, (H, M)

    def kernel(self, length: int) -> torch.Tensor:
        """K (H, L), the first L of the Lk-long kernel whose DFT is C̃ (I − Ā z)⁻¹ B̄ at z = ω^k, ω = e^{−2πi/Lk}.

        With the bilinear Ā that is 2/(1+ω) · C̃ (g − ΔA)⁻¹ ΔB, g = 2(1−ω)/(1+ω). For A = Λ − P P*, Woodbury:
        (g − ΔΛ + ΔPP*)⁻¹ = R − R ΔP (I + P* R ΔP)⁻¹ P* R with R = (g − ΔΛ)⁻¹ diagonal, so every term is a
        Cauchy sum Σ_n x_n y_n / (g − ΔΛ_n) over the 2M modes (the kept ones and their conjugates).
        Written with c = (1+ω)/2 and R = c R', R'_n = 1 / ((1−ω) − c ΔΛ_n), nothing divides by 1+ω, which
        is 0 at ω = −1: the DFT is S00 − S01 (I + c S11)⁻¹ c S10, S the Cauchy sums with R'.
        """
        if length > self.max_length:
            raise ValueError(f"S4 (low rank) got a sequence of length {length}, longer than its kernel "
                             f"(max_length = {self.max_length}): raise max_length")
        Lk, rank = self.max_length, self.P.shape[0]
        delta = torch.exp(self.log_dt)  # (H,)
        frequencies = torch.arange(Lk // 2 + 1, dtype=torch.float64, device=delta.device)
        omega = torch.exp(-2j * math.pi / Lk * frequencies).to(torch.complex64)  # (Lk/2+1,)
        c = ((1 + omega) / 2)[:, None, None, None]
        poles = with_conjugates(delta[:, None] * self.diagonal())  # ΔΛ, (H, 2M)
        left = with_conjugates(torch.cat([self.C[None], self.P.conj()]))  # rows C̃, P*: (1+r, H, 2M)
        right = with_conjugates(torch.cat([self.B[None], self.P])) * delta[:, None]  # ΔB, ΔP: (1+r, H, 2M)
        cauchy = 1 / ((1 - omega)[:, None, None] - c[..., 0] * poles[None])  # R', (Lk/2+1, H, 2M)
        S = einsum(left, right, cauchy, "i h m, j h m, k h m -> k h i j")  # (Lk/2+1, H, 1+r, 1+r)
        if rank == 1:  # the r × r solve is a division: one operation instead of a batched solver call
            correction = S[..., 0, 1] * c[..., 0, 0] * S[..., 1, 0] / (1 + c[..., 0, 0] * S[..., 1, 1])
        else:
            eye = torch.eye(rank, dtype=S.dtype, device=S.device)
            correction = (S[..., :1, 1:] @ torch.linalg.solve(eye + c * S[..., 1:, 1:], c * S[..., 1:, :1]))[..., 0, 0]
        transfer = S[..., 0, 0] - correction  # (Lk/2+1, H)
        return torch.fft.irfft(transfer.T, n=Lk)[:, :length]  # (H, L)

    def step_matrices(self):
        """The same SSM over all 2M modes, as dense matrices: Ā (H, 2M, 2M), B̄ (H, 2M), C (H, 2M) with
        C̃ turned back into C = C̃ (I − Ā^Lk)⁻¹. For `step`, and for tests to check the kernel against."""
        p = with_conjugates(self.P)  # (r, H, 2M)
        A = torch.diag_embed(with_conjugates(self.diagonal())) - einsum(p, p.conj(), "r h n, r h k -> h n k")
        A_bar, B_bar = bilinear(A, with_conjugates(self.B), torch.exp(self.log_dt).to(A.dtype))
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        C_tilde = with_conjugates(self.C)
        # C (I − Ā^Lk) = C̃  <=>  (I − Ā^Lk)ᵀ Cᵀ = C̃ᵀ
        C = torch.linalg.solve((eye - torch.linalg.matrix_power(A_bar, self.max_length)).mT, C_tilde[..., None])
        return A_bar, B_bar, C[..., 0]

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.B.shape[0], 2 * self.B.shape[1], dtype=self.B.dtype, device=self.B.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor, matrices=None):
        """One step: u_t (B, H), state (B, H, 2M) -> y_t (B, H), the next state. The modes come in
        conjugate pairs, so C h is real; its real part drops the rounding error."""
        A_bar, B_bar, C = matrices or self.step_matrices()
        state = einsum(A_bar, state, "h n k, b h k -> b h n") + B_bar * u_t[..., None]
        return einsum(C, state, "h n, b h n -> b h").real + self.D * u_t, state
