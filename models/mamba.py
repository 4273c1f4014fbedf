"""A Mamba selective state-space model, used for translation as one causal model over
`[source, EOS, SOS, target]`.

Glossary (code name: paper symbol; shapes use these letters everywhere in this file):
    B  batch size                 L  sequence length
    D  hidden size (d_model)      E  expanded size (d_inner = expand * D)
    N  state size per channel     R  rank of the Δ projection (dt_rank = ceil(D / 16))
    V  vocabulary size (29)
    delta: Δ, the step size (B, L, E)         A: the continuous state matrix, diagonal (E, N)
    B, C: input and output matrices (B, L, N) D: the skip connection (E,)
    A_bar, B_bar: Ā and B̄, the discretised matrices (B, L, E, N)

The continuous model is h'(t) = A h(t) + B x(t), y(t) = C h(t) + D x(t); discretised with step Δ it
becomes h_k = Ā h_{k-1} + B̄ x_k, y_k = C h_k + D x_k. In Mamba, Δ, B and C depend on the input.

The parts you write are marked with `### BEGIN SOLUTION` / `### END SOLUTION`; each function's
docstring names the README section that explains it. Every layer is created in `__init__` for you.
A function returns its result in the dtype of its floating inputs (float32 in, float32 out; float64 in,
float64 out) for any batch size and length, lets gradients reach every input and parameter, and keeps
nothing from one call to the next.
"""

import math

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from models.pair_scan import decay_of, pair_scan  # given: the fast exact scan, and how the scans read log_a

# ---------------------------------------------------------------------------------------------
# Discretisation: continuous (Δ, A, B) -> discrete (Ā, B̄), elementwise because A is diagonal.
# Every function takes delta (B, L, E), A (E, N), B (B, L, N) and returns A_bar, B_bar (B, L, E, N).
# ---------------------------------------------------------------------------------------------


def discretize_zoh(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor):
    """Zero-order hold as Mamba uses it: Ā = exp(ΔA), and the cheap approximation B̄ ≈ ΔB."""
    delta_A = einsum(delta, A, "b l e, e n -> b l e n")
    A_bar = torch.exp(delta_A)
    B_bar = einsum(delta, B, "b l e, b l n -> b l e n")
    return A_bar, B_bar


def discretize_zoh_exact(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor):
    """Exact zero-order hold for diagonal A: Ā = exp(ΔA), B̄ = (ΔA)⁻¹(exp(ΔA) − 1)ΔB = B (exp(ΔA) − 1) / A."""
    delta_A = einsum(delta, A, "b l e, e n -> b l e n")
    A_bar = torch.exp(delta_A)
    # expm1 keeps (exp(ΔA) - 1) accurate when ΔA is tiny, where exp(ΔA) - 1 would cancel.
    B_bar = torch.expm1(delta_A) / A * rearrange(B, "b l n -> b l 1 n")
    return A_bar, B_bar


def discretize_bilinear(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float = 0.5):
    """Generalised bilinear discretisation, for x' = f(x): x_{k+1} = x_k + Δ(α f(x_k) + (1−α) f(x_{k+1})).

    For diagonal A this gives Ā = (1 + αΔA) / (1 − (1−α)ΔA) and B̄ = ΔB / (1 − (1−α)ΔA).
    α = 1 is forward Euler, α = 0 backward Euler, α = 1/2 the bilinear (Tustin) transform of S4.
    Returns the tuple (A_bar, B_bar), each (B, L, E, N).

    README: Q2.1 Discretisation
    """
    ### BEGIN SOLUTION
    delta_A = einsum(delta, A, "b l e, e n -> b l e n")
    denominator = 1 - (1 - alpha) * delta_A
    A_bar = (1 + alpha * delta_A) / denominator
    B_bar = einsum(delta, B, "b l e, b l n -> b l e n") / denominator
    return A_bar, B_bar
    ### END SOLUTION


DISCRETIZATIONS = {"zoh": discretize_zoh, "zoh_exact": discretize_zoh_exact, "bilinear": discretize_bilinear}

# ---------------------------------------------------------------------------------------------
# Scans: h_t = a_t * h_{t-1} + b_t with h_{-1} = 0, along dim 1 (time).
# Every scan takes log_a and b of shape (B, L, ...) and returns h of the same shape. The decay comes
# as its logarithm because in Mamba log Ā = ΔA is known exactly: taking log(exp(ΔA)) would lose
# precision for nothing. log_a is complex where a < 0 (the bilinear Ā can be negative).
# ---------------------------------------------------------------------------------------------


def sscan(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The sequential scan, one step per position: slow but obviously right. (Given.)"""
    a = decay_of(log_a)
    h = torch.zeros_like(b[:, 0])
    hs = []
    # unbind, not a[:, t]: indexing would make the backward pass fill a full-size zero tensor per step.
    for a_t, b_t in zip(a.unbind(dim=1), b.unbind(dim=1)):
        h = a_t * h + b_t
        hs.append(h)
    return torch.stack(hs, dim=1)


def pscan(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The parallel scan in log space (Heinsen 2023), with no Python loop over time.

    With a*_t = Σ_{k≤t} log a_k, the recurrence unrolls to log h_t = a*_t + logcumsumexp_{s≤t}(log b_s − a*_s).
    b may be negative: take its complex logarithm, log|b| + iπ[b < 0], and keep the real part at the end.

    README: Q2.2 Parallel scan
    """
    ### BEGIN SOLUTION
    complex_dtype = torch.complex128 if b.dtype == torch.float64 else torch.complex64
    a_star = torch.cumsum(log_a, dim=1)  # (B, L, ...)
    log_b = torch.log(b.to(complex_dtype))  # log|b| + iπ where b < 0
    log_h = a_star + torch.logcumsumexp(log_b - a_star, dim=1)
    return torch.exp(log_h).real.to(b.dtype)
    ### END SOLUTION


SCANS = {"sscan": sscan, "pscan": pscan, "pair_scan": pair_scan}


def log_of_decay(delta: torch.Tensor, A: torch.Tensor, A_bar: torch.Tensor, discretization: str) -> torch.Tensor:
    """log Ā for the scans: exactly ΔA under zero-order hold; otherwise log|Ā|, plus iπ where Ā < 0 (then
    the whole tensor is complex). (Given.)

    Ā crosses 0 under the bilinear rule (at ΔA = −1/α), where the log is −∞ and its gradient infinite;
    so |Ā| is floored at a number far below anything a state can feel. The result carries A_bar as
    `.decay`: the given scans read Ā there (see `decay_of`), so they never exponentiate the log back, and
    a negative Ā costs them nothing extra. A scan of your own uses the log.
    """
    if discretization in ("zoh", "zoh_exact"):
        log_a = einsum(delta, A, "b l e, e n -> b l e n")
    else:
        log_a = torch.log(A_bar.abs().clamp_min(1e-30))
        negative = A_bar < 0
        if negative.any():
            log_a = torch.complex(log_a, negative.to(log_a.dtype) * torch.pi)  # log|Ā| + iπ where Ā < 0
    log_a.decay = A_bar
    return log_a


# ---------------------------------------------------------------------------------------------
# Initialisation of A. S4D-Real is Mamba's default; the others are experiments for the bonus.
# ---------------------------------------------------------------------------------------------


def initial_A(kind: str, expanded_size: int, state_size: int) -> torch.Tensor:
    """The initial (negative, real) A of shape (E, N).

    s4d_real: A_n = −(n+1), S4D-Real.   s4d_lin: A_n = −1/2, the real part S4D-Lin and S4D-Inv share.
    constant: A_n = −1, so that Δ alone sets how fast each channel forgets.
    """
    if kind == "s4d_real":
        row = torch.arange(1, state_size + 1, dtype=torch.float32)
    elif kind == "s4d_lin":
        row = torch.full((state_size,), 0.5)
    elif kind == "constant":
        row = torch.ones(state_size)
    else:
        raise ValueError(f"A_init must be 's4d_real', 's4d_lin' or 'constant', not {kind!r}")
    return -row.repeat(expanded_size, 1)


class MambaBlock(nn.Module):
    """The Mamba mixer: gated, causally convolved, selective SSM over the expanded channels."""

    def __init__(self, hidden_size: int, state_size: int = 16, expand: int = 2, conv_kernel: int = 4,
                 discretization: str = "zoh", alpha: float = 0.5, scan: str = "pair_scan", A_init: str = "s4d_real",
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {sorted(DISCRETIZATIONS)}, not {discretization!r}")
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {sorted(SCANS)}, not {scan!r}")
        self.hidden_size = hidden_size
        self.expanded_size = E = expand * hidden_size
        self.state_size = N = state_size
        self.dt_rank = R = math.ceil(hidden_size / 16)
        self.conv_kernel = conv_kernel
        self.discretization = discretization
        self.alpha = alpha
        self.scan = scan

        self.in_proj = nn.Linear(hidden_size, 2 * E, bias=False)
        # Depthwise (one filter per channel); padding k−1 on both sides, so keeping the first L outputs
        # leaves exactly the causal part.
        self.conv1d = nn.Conv1d(E, E, kernel_size=conv_kernel, groups=E, padding=conv_kernel - 1)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.log(-initial_A(A_init, E, N)))
        self.A_log.no_weight_decay = True  # training/module.py: decay would pull every A towards −1
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, hidden_size, bias=False)
        self._init_delta(dt_min, dt_max)

    @torch.no_grad()
    def _init_delta(self, dt_min: float, dt_max: float):
        """Start Δ = softplus(dt_proj(δ)) log-uniform in [dt_min, dt_max], as Mamba does."""
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(self.expanded_size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus

    def discretize(self, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor):
        """(B, L, E), (E, N), (B, L, N) -> Ā, B̄ (B, L, E, N), by the configured rule."""
        if self.discretization == "bilinear":
            return discretize_bilinear(delta, A, B, self.alpha)
        return DISCRETIZATIONS[self.discretization](delta, A, B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D).

        in_proj to 2E and split into x and the gate z; causal depthwise conv1d over time (keep the
        first L outputs); SiLU; the selective SSM (`self.ssm`); multiply by SiLU(z); out_proj.

        README: Q2.3 Mamba block
        """
        ### BEGIN SOLUTION
        length = x.shape[1]
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, E) each
        x = rearrange(x, "b l e -> b e l")
        x = self.conv1d(x)[..., :length]  # causal: output t sees inputs t-k+1 ... t
        x = F.silu(rearrange(x, "b e l -> b l e"))
        y = self.ssm(x)
        return self.out_proj(y * F.silu(z))
        ### END SOLUTION

    def ssm(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, E) -> (B, L, E): compute the input-dependent Δ, B, C and run the selective scan.

        A = −exp(A_log); x_proj(x) splits into δ (R), B (N), C (N); Δ = softplus(dt_proj(δ)).

        README: Q2.3 Mamba block
        """
        ### BEGIN SOLUTION
        A = -torch.exp(self.A_log)  # (E, N)
        delta, B, C = self.x_proj(x).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        delta = F.softplus(self.dt_proj(delta))  # (B, L, E)
        return self.selective_scan(x, delta, A, B, C, self.D)
        ### END SOLUTION

    def selective_scan(self, u, delta, A, B, C, D) -> torch.Tensor:
        """u (B, L, E), delta (B, L, E), A (E, N), B and C (B, L, N), D (E,) -> y (B, L, E).

        Discretise (`self.discretize`), form b_t = B̄_t u_t, scan h_t = Ā_t h_{t−1} + b_t with
        `SCANS[self.scan]` (it wants log Ā: use `log_of_decay`), read out y_t = C_t h_t, add D u_t.

        README: Q2.3 Mamba block
        """
        ### BEGIN SOLUTION
        A_bar, B_bar = self.discretize(delta, A, B)  # (B, L, E, N) each
        b = B_bar * rearrange(u, "b l e -> b l e 1")
        h = SCANS[self.scan](log_of_decay(delta, A, A_bar, self.discretization), b)  # (B, L, E, N)
        y = einsum(h, C, "b l e n, b l n -> b l e")
        return y + u * D
        ### END SOLUTION


class ResidualBlock(nn.Module):
    """x + MambaBlock(RMSNorm(x))."""

    def __init__(self, hidden_size: int, **block_options):
        super().__init__()
        self.norm = nn.RMSNorm(hidden_size, eps=1e-5)
        self.mixer = MambaBlock(hidden_size, **block_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D).

        README: Q2.3 Mamba block
        """
        ### BEGIN SOLUTION
        return x + self.mixer(self.norm(x))
        ### END SOLUTION


class Mamba(nn.Module):
    """A stack of residual Mamba blocks over token embeddings, a final RMSNorm and a projection to V."""

    def __init__(self, vocab_size: int, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 **block_options):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.layers = nn.ModuleList(ResidualBlock(hidden_size, **block_options) for _ in range(num_layers))
        self.norm = nn.RMSNorm(hidden_size, eps=1e-5)
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> next-token logits (B, L, V); position t sees tokens 0 ... t only."""
        x = self.dropout(self.embedding(tokens))
        for layer in self.layers:
            x = layer(x)
        return self.output(self.dropout(self.norm(x)))


# How the source is laid out before SOS (README: Bonus; docs/mamba-small-data.md measures each). Mamba must
# carry the word in its state; these change what it has read when the target starts.
LAYOUTS = ("source", "reversed", "twice")


class MambaSeq2Seq(nn.Module):
    """Translation with one causal model: it reads `[source, EOS, SOS, target]` and predicts each next
    character, so it must carry the whole word through its state past EOS.

    `layout` sets the prefix before SOS: `source` is [source, EOS]; `reversed` is the source backwards,
    [reversed source, EOS] (Sutskever et al. 2014 reversed the source for LSTMs); `twice` reads it twice,
    [source, EOS, source, EOS] (Arora et al. 2024, "Just read twice", for recurrent models' recall).
    """

    def __init__(self, vocab_size: int, eos_id: int, hidden_size: int = 64, num_layers: int = 2,
                 dropout: float = 0.0, layout: str = "source", **block_options):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        self.eos_id = eos_id
        self.layout = layout
        self.mamba = Mamba(vocab_size, hidden_size, num_layers, dropout, **block_options)

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, P): the prefix every target is read after, P = S+1 (2S+2 for `twice`)."""
        eos = torch.full_like(source[:, :1], self.eos_id)
        if self.layout == "reversed":
            return torch.cat([source.flip(1), eos], dim=1)
        if self.layout == "twice":
            return torch.cat([source, eos, source, eos], dim=1)
        return torch.cat([source, eos], dim=1)

    def decode(self, target_in: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(B, T) starting with SOS, prefix (B, P) -> logits (B, T, V) at the target positions."""
        logits = self.mamba(torch.cat([prefix, target_in], dim=1))
        return logits[:, prefix.shape[1]:]

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S), (B, T) -> logits (B, T, V)."""
        return self.decode(target_in, self.encode(source))
