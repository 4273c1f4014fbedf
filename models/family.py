"""The state-space family side by side (given, complete): S4, S4D, S6, Mamba with any of them as its mixer,
and a gated-MLP baseline, each as one causal model over `[source, EOS, SOS, target]`, like Mamba.

    model name          a residual stack of                          time mixing
    s4d_real/inv/lin    SSM blocks around S4D (models/s4.py)         LTI: a kernel, FFT convolution
    s4_low_rank         SSM blocks around S4 with A = Λ − P P*       LTI: Cauchy + Woodbury kernel, FFT
    s4                  SSM blocks around S4 with a dense A          LTI: Krylov kernel, FFT
    s6                  SSM blocks around S6, Mamba's selective SSM  Δ, B, C depend on the input: a scan
    mamba_<mixer>       Mamba blocks (conv, gate) with that mixer    mamba_s6 is today's Mamba
    gated_mlp           gMLP blocks: a gate whose other half is      a learned causal L × L matrix
                        mixed along time by one learned matrix

An SSM block is x + GLU(Linear(GELU(ssm(RMSNorm(x))))), the S4 papers' block: the SSM mixes along time,
channel by channel, and the gated linear unit mixes channels. A Mamba block is models/mamba.py's with the
selective SSM swapped for the chosen one. The gated MLP follows gMLP (Liu et al. 2021, "Pay Attention to
MLPs"): its spatial gating unit multiplies one half of the channels by a learned mix of the other half over
positions, made causal here; without it a gate mixes nothing along time and could not move one letter.

Glossary (shapes use these letters everywhere in this file):
    B  batch size    L  sequence length    D  hidden size (d_model)    E  expanded size (expand * D)
    N  state size    R  rank of the Δ projection (ceil(D / 16))        V  vocabulary size (29)
"""

import math

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from models.mamba import SCANS, initial_A
from models.s4 import DenseSSM, DiagonalSSM, LowRankSSM, log_uniform_step, no_weight_decay

LTI_LAYERS = ("s4", "s4_low_rank", "s4d_real", "s4d_inv", "s4d_lin")
MIXERS = LTI_LAYERS + ("s6",)
MODELS = MIXERS + tuple(f"mamba_{mixer}" for mixer in MIXERS) + ("gated_mlp",)


class SelectiveSSM(nn.Module):
    """S6, Mamba's selective SSM on its own: (B, L, H) -> (B, L, H), with Δ, B, C computed from the input.

    A = −exp(A_log) (H, N), S4D-Real at the start; Δ = softplus(dt_proj(δ)) (B, L, H); B, C (B, L, N);
    zero-order hold as Mamba uses it, Ā = exp(ΔA), B̄ ≈ ΔB; then h_t = Ā_t h_{t−1} + B̄_t u_t, y_t = C_t h_t + D u_t.
    Because Ā_t changes with t there is no kernel to convolve with: the recurrence runs as a scan.
    """

    def __init__(self, channels: int, state_size: int = 16, dt_rank: int = None, scan: str = "pair_scan",
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {sorted(SCANS)}, not {scan!r}")
        self.state_size = state_size
        self.dt_rank = dt_rank or math.ceil(channels / 16)
        self.scan = scan
        self.x_proj = nn.Linear(channels, self.dt_rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, channels, bias=True)
        self.A_log = nn.Parameter(torch.log(-initial_A("s4d_real", channels, state_size)))  # (H, N)
        self.D = nn.Parameter(torch.ones(channels))
        no_weight_decay(self.A_log)  # as Mamba's reference code trains it
        init_step_projection(self.dt_proj, dt_min, dt_max)

    def selection(self, u: torch.Tensor):
        """u (B, L, H) -> Δ (B, L, H), B (B, L, N), C (B, L, N): what makes the SSM selective."""
        delta, B, C = self.x_proj(u).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        return F.softplus(self.dt_proj(delta)), B, C

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, L, H), by the configured scan over the whole sequence."""
        delta, B, C = self.selection(u)
        log_a = einsum(delta, -torch.exp(self.A_log), "b l h, h n -> b l h n")  # log Ā = ΔA, exactly
        b = einsum(delta * u, B, "b l h, b l n -> b l h n")  # B̄ u = Δ B u
        h = SCANS[self.scan](log_a, b)  # (B, L, H, N)
        return einsum(h, C, "b l h n, b l n -> b l h") + u * self.D

    def recurrent(self, u: torch.Tensor) -> torch.Tensor:
        """The same, one step at a time: the slow reference the scan is tested against."""
        delta, B, C = self.selection(u)
        A = -torch.exp(self.A_log)
        h = u.new_zeros(u.shape[0], *A.shape)  # (B, H, N)
        outputs = []
        for t in range(u.shape[1]):
            h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
            outputs.append(einsum(h, C[:, t], "b h n, b n -> b h"))
        return torch.stack(outputs, dim=1) + u * self.D


@torch.no_grad()
def init_step_projection(dt_proj: nn.Linear, dt_min: float, dt_max: float):
    """Mamba's start: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max], small random weights."""
    bound = dt_proj.in_features ** -0.5
    nn.init.uniform_(dt_proj.weight, -bound, bound)
    dt = torch.exp(log_uniform_step(dt_proj.out_features, dt_min, dt_max))
    dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus


def make_ssm(kind: str, channels: int, state_size: int, max_length: int, dt_min: float, dt_max: float,
             dt_rank: int = None, scan: str = "pair_scan") -> nn.Module:
    """One SSM layer (B, L, H) -> (B, L, H) of the given kind (see MIXERS)."""
    if kind == "s4":
        return DenseSSM(channels, state_size, dt_min, dt_max)
    if kind == "s4_low_rank":
        return LowRankSSM(channels, state_size, max_length, dt_min=dt_min, dt_max=dt_max)
    if kind.startswith("s4d_"):
        return DiagonalSSM(channels, state_size, kind.removeprefix("s4d_"), dt_min, dt_max)
    if kind == "s6":
        return SelectiveSSM(channels, state_size, dt_rank, scan, dt_min, dt_max)
    raise ValueError(f"SSM must be one of {', '.join(MIXERS)}, not {kind!r}")


class SSMBlock(nn.Module):
    """x + GLU(Linear(GELU(ssm(RMSNorm(x))))): (B, L, D) -> (B, L, D)."""

    def __init__(self, hidden_size: int, kind: str, dropout: float = 0.0, **ssm_options):
        super().__init__()
        self.norm = nn.RMSNorm(hidden_size, eps=1e-5)
        self.ssm = make_ssm(kind, hidden_size, **ssm_options)
        self.output = nn.Linear(hidden_size, 2 * hidden_size)  # GLU: half the outputs gate the other half
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.gelu(self.ssm(self.norm(x))))
        return x + self.dropout(F.glu(self.output(y), dim=-1))


class MambaMixerBlock(nn.Module):
    """x + Mamba(RMSNorm(x)) with any SSM as the mixer: in_proj to x and gate z (E each), causal depthwise
    conv1d, SiLU, the SSM, times SiLU(z), out_proj. With "s6" this is models/mamba.py's block."""

    def __init__(self, hidden_size: int, kind: str, expand: int = 2, conv_kernel: int = 4, dropout: float = 0.0,
                 **ssm_options):
        super().__init__()
        E = expand * hidden_size
        self.norm = nn.RMSNorm(hidden_size, eps=1e-5)
        self.in_proj = nn.Linear(hidden_size, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, kernel_size=conv_kernel, groups=E, padding=conv_kernel - 1)
        # Mamba's Δ rank follows the model width D, not E.
        self.mixer = make_ssm(kind, E, dt_rank=math.ceil(hidden_size / 16), **ssm_options)
        self.out_proj = nn.Linear(E, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (B, L, E) each
        u = self.conv1d(rearrange(u, "b l e -> b e l"))[..., :length]  # keep the causal part
        u = F.silu(rearrange(u, "b e l -> b l e"))
        return x + self.dropout(self.out_proj(self.mixer(u) * F.silu(z)))


class GatedMLPBlock(nn.Module):
    """gMLP: x + out_proj(u ⊙ (W_causal · LayerNorm(v) + b)), [u, v] = GELU(in_proj(RMSNorm(x))).

    W (max_length, max_length) mixes positions: output t is a learned sum of v_0 ... v_t (the upper triangle is
    masked). W starts near 0 and b at 1, so the block starts as a plain gated MLP and learns to mix (gMLP's
    initialisation). Its cost grows with L², like attention's, and sequences may be at most max_length long.
    """

    def __init__(self, hidden_size: int, expand: int = 2, max_length: int = 64, dropout: float = 0.0):
        super().__init__()
        E = expand * hidden_size
        self.max_length = max_length
        self.norm = nn.RMSNorm(hidden_size, eps=1e-5)
        self.in_proj = nn.Linear(hidden_size, 2 * E)
        self.gate_norm = nn.LayerNorm(E)
        self.spatial_weight = nn.Parameter(torch.empty(max_length, max_length).uniform_(-1e-3, 1e-3))
        self.spatial_bias = nn.Parameter(torch.ones(max_length))
        self.out_proj = nn.Linear(E, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.max_length:
            raise ValueError(f"the gated MLP got a sequence of length {length}, longer than its spatial weights "
                             f"(max_length = {self.max_length}): raise max_length")
        u, v = F.gelu(self.in_proj(self.norm(x))).chunk(2, dim=-1)  # (B, L, E) each
        weight = torch.tril(self.spatial_weight[:length, :length])  # (L, L), causal
        v = einsum(weight, self.gate_norm(v), "t s, b s e -> b t e") + self.spatial_bias[:length, None]
        return x + self.dropout(self.out_proj(u * v))


def make_block(model: str, hidden_size: int, dropout: float, state_size: int, expand: int, conv_kernel: int,
               max_length: int, scan: str, dt_min: float, dt_max: float) -> nn.Module:
    """One residual block of the named model (see MODELS)."""
    ssm_options = dict(state_size=state_size, max_length=max_length, scan=scan, dt_min=dt_min, dt_max=dt_max)
    if model == "gated_mlp":
        return GatedMLPBlock(hidden_size, expand, max_length, dropout)
    if model.startswith("mamba_"):
        return MambaMixerBlock(hidden_size, model.removeprefix("mamba_"), expand, conv_kernel, dropout, **ssm_options)
    return SSMBlock(hidden_size, model, dropout, **ssm_options)


# The members whose tables are sized by max_length (low-rank S4's kernel, the gated MLP's mixing matrix): the
# whole sequence [source, EOS, SOS, target] must fit in it.
LENGTH_BOUND = ("s4_low_rank", "mamba_s4_low_rank", "gated_mlp")


class FamilySeq2Seq(nn.Module):
    """One causal model over `[source, EOS, SOS, target]` (as `MambaSeq2Seq`): embedding, residual blocks of
    the named family member, RMSNorm, projection to V. The same encode / decode / forward as the others."""

    def __init__(self, model: str, vocab_size: int, eos_id: int, hidden_size: int = 64, num_layers: int = 2,
                 dropout: float = 0.0, state_size: int = 16, expand: int = 2, conv_kernel: int = 4,
                 max_length: int = 64, scan: str = "pair_scan", dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        self.model = model
        self.eos_id = eos_id
        self.joint_max_length = max_length if model in LENGTH_BOUND else None  # longest [source, EOS, SOS, target]
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.layers = nn.ModuleList(
            make_block(model, hidden_size, dropout, state_size, expand, conv_kernel, max_length, scan, dt_min, dt_max)
            for _ in range(num_layers))
        self.norm = nn.RMSNorm(hidden_size, eps=1e-5)
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    def language_model(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> next-token logits (B, L, V); position t sees tokens 0 ... t only."""
        x = self.dropout(self.embedding(tokens))
        for layer in self.layers:
            x = layer(x)
        return self.output(self.dropout(self.norm(x)))

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, S+1): the source and its EOS, the prefix every target is read after."""
        return torch.cat([source, torch.full_like(source[:, :1], self.eos_id)], dim=1)

    def decode(self, target_in: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(B, T) starting with SOS, prefix (B, S+1) -> logits (B, T, V) at the target positions."""
        return self.language_model(torch.cat([prefix, target_in], dim=1))[:, prefix.shape[1]:]

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S), (B, T) -> logits (B, T, V)."""
        return self.decode(target_in, self.encode(source))
