"""Trusted versions of every function you write, computed from a module's parameters alone.

Each oracle takes `params` (a module's state dict: name -> tensor, e.g. "W_q.weight") and `config` (the
few attributes the computation needs, see `config_of`), never the module itself, so the same code serves
both ways the graded tests run:

- in your process (`python -m pytest`), where they give the expected values and stand in for the other
  functions you write while one of them is tested (autograde/probe.py: a mistake in one function then
  costs points in that function's tests only);
- in the course staff's regrade, where they compute the expected values in a process that never imports
  your code, from the same parameters and inputs your code was given.

Everything is computed in float64 and returned in the input's dtype, so the reference is more precise
than any float32 answer it is compared with. The attention oracle is PyTorch's own
`scaled_dot_product_attention`; the scans are plain loops over time.
"""

import torch
import torch.nn.functional as F

from autograde.dropout import drop

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, as the given __init__ creates them
RMS_NORM_EPS = 1e-5  # nn.RMSNorm(hidden_size, eps=1e-5) in the given ResidualBlock and Mamba


def sub(params: dict, prefix: str) -> dict:
    """The parameters of a submodule: sub(p, "self_attention")["W_q.weight"] is p["self_attention.W_q.weight"]."""
    start = prefix + "."
    return {name[len(start):]: value for name, value in params.items() if name.startswith(start)}


def f64(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.complex128 if tensor.is_complex() else torch.float64)


def linear(params: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    bias = params.get(f"{name}.bias")
    return F.linear(x, f64(params[f"{name}.weight"]), None if bias is None else f64(bias))


def layer_norm(params: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    weight, bias = f64(params[f"{name}.weight"]), f64(params[f"{name}.bias"])
    return F.layer_norm(x, weight.shape, weight, bias, LAYER_NORM_EPS)


def rms_norm(params: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    weight = f64(params[f"{name}.weight"])
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + RMS_NORM_EPS) * weight


# --- Q1 Transformer ---------------------------------------------------------------------------------------


def causal_mask(query_length: int, key_length: int, device=None) -> torch.Tensor:
    """(T, S) booleans, True where key s is not in the future of query t (s <= t)."""
    return torch.arange(key_length, device=device)[None, :] <= torch.arange(query_length, device=device)[:, None]


def sinusoidal_positional_encoding(max_length: int, hidden_size: int) -> torch.Tensor:
    """(L, H) float32: PE[pos, 2i] = sin(pos / 10000^(2i/H)), PE[pos, 2i+1] = cos(pos / 10000^(2i/H))."""
    position = torch.arange(max_length, dtype=torch.float64)[:, None]
    angle = position / 10000 ** (2 * torch.arange((hidden_size + 1) // 2, dtype=torch.float64)[None, :] / hidden_size)
    table = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(max_length, -1)
    return table[:, :hidden_size].float()


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, H) -> (B, h, L, d), head j taking features j*d ... (j+1)*d - 1."""
    size = x.shape[-1] // num_heads
    return torch.stack([x[..., j * size:(j + 1) * size] for j in range(num_heads)], dim=1)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, h, L, d) -> (B, L, H), the heads side by side."""
    return torch.cat(x.unbind(dim=1), dim=-1)


def attention(params: dict, config: dict, query, key, value, mask: torch.Tensor = None, scale: float = None,
              dropout: tuple = None):
    """Multi-head attention by torch.nn.functional.scaled_dot_product_attention, with the module's
    projections: (output (B, T, H), softmax weights (B, h, T, S)), in the query's dtype.

    `mask` (T, S), True = may attend, replaces the causal one, and `scale` replaces 1/√d: the tests use
    them to show what a likely mistake (a mask on the wrong side, a missing 1/√d) would have given.
    `dropout` = (p, seed): training mode, the weights that mix the values dropped as autograde/dropout.py
    drops them (the weights returned are the softmax's, before dropout)."""
    heads = config["num_heads"]
    q = split_heads(linear(params, "W_q", f64(query)), heads)
    k = split_heads(linear(params, "W_k", f64(key)), heads)
    v = split_heads(linear(params, "W_v", f64(value)), heads)
    if mask is None and config.get("causal"):
        mask = causal_mask(q.shape[2], k.shape[2])
    # Attention over identity values returns the weights themselves.
    identity = torch.eye(k.shape[2], dtype=torch.float64).expand(*k.shape[:2], -1, -1)
    weights = F.scaled_dot_product_attention(q, k, identity, attn_mask=mask, scale=scale)
    if dropout is not None and dropout[0] > 0:
        mixed = drop(weights, *dropout) @ v
    else:
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return linear(params, "W_o", merge_heads(mixed)).to(query.dtype), weights.to(query.dtype)


def feed_forward(params: dict, x: torch.Tensor, dropout: tuple = None) -> torch.Tensor:
    """The given MLP: Linear H -> 4H, GELU, Linear 4H -> H, then its dropout (off in eval mode)."""
    return dropped(linear(params, "net.2", F.gelu(linear(params, "net.0", x))), dropout)


def dropped(x: torch.Tensor, dropout: tuple = None) -> torch.Tensor:
    """x in eval mode (`dropout` None); in training mode, (p, seed), dropped as autograde/dropout.py does."""
    return x if dropout is None else drop(x, *dropout)


def encoder_layer(params: dict, config: dict, x: torch.Tensor, dropout: tuple = None) -> torch.Tensor:
    """x + attention(norm(x)), then + feed_forward(norm(.)): (B, S, H) -> (B, S, H). In training mode
    (`dropout` = (p, seed)) dropout where the reference puts it: in the attention, on its output and at
    the MLP's end."""
    h = f64(x)
    normed = layer_norm(params, "attention_norm", h)
    attended = attention(sub(params, "self_attention"), {**config, "causal": False}, normed, normed, normed,
                         dropout=dropout)[0]
    h = h + dropped(attended, dropout)
    return (h + feed_forward(sub(params, "feed_forward"), layer_norm(params, "feed_forward_norm", h), dropout)
            ).to(x.dtype)


def decoder_layer(params: dict, config: dict, x: torch.Tensor, annotations: torch.Tensor,
                  dropout: tuple = None) -> torch.Tensor:
    """Causal self-attention, cross-attention over the annotations, the MLP; each x + sublayer(norm(x))."""
    h, annotations = f64(x), f64(annotations)
    normed = layer_norm(params, "self_attention_norm", h)
    attended = attention(sub(params, "self_attention"), {**config, "causal": True}, normed, normed, normed,
                         dropout=dropout)[0]
    h = h + dropped(attended, dropout)
    normed = layer_norm(params, "cross_attention_norm", h)
    attended = attention(sub(params, "cross_attention"), {**config, "causal": False}, normed, annotations,
                         annotations, dropout=dropout)[0]
    h = h + dropped(attended, dropout)
    return (h + feed_forward(sub(params, "feed_forward"), layer_norm(params, "feed_forward_norm", h), dropout)
            ).to(x.dtype)


def embed_with_positions(params: dict, tokens: torch.Tensor) -> torch.Tensor:
    """Token embeddings plus the first L rows of the position table (sinusoidal or learned alike)."""
    return f64(params["embedding.weight"])[tokens] + f64(params["positions.table"])[: tokens.shape[1]]


def encoder(params: dict, config: dict, source: torch.Tensor, dropout: tuple = None) -> torch.Tensor:
    """Token ids (B, S) -> annotations (B, S, H): embeddings + positions (dropped, in training), every
    layer, the final LayerNorm."""
    h = dropped(embed_with_positions(params, source), dropout)
    for i in range(config["num_layers"]):
        h = encoder_layer(sub(params, f"layers.{i}"), config, h, dropout)
    return layer_norm(params, "norm", h).to(params["embedding.weight"].dtype)


def decoder(params: dict, config: dict, target_in: torch.Tensor, annotations: torch.Tensor,
            dropout: tuple = None) -> torch.Tensor:
    """(B, T) ids, (B, S, H) annotations -> logits (B, T, V): embeddings + positions (dropped, in training),
    every layer, the final LayerNorm, the projection to the vocabulary."""
    h = dropped(embed_with_positions(params, target_in), dropout)
    for i in range(config["num_layers"]):
        h = decoder_layer(sub(params, f"layers.{i}"), config, h, annotations, dropout)
    return linear(params, "output", layer_norm(params, "norm", h)).to(annotations.dtype)


# --- Q2 state-space models ----------------------------------------------------------------------------------


def discretize_bilinear(delta, A, B, alpha=0.5):
    """Ā = (1 + αΔA) / (1 − (1−α)ΔA), B̄ = ΔB / (1 − (1−α)ΔA), elementwise over (B, L, E, N)."""
    dA = f64(delta)[..., None] * f64(A)
    denominator = 1 - (1 - alpha) * dA
    dB = f64(delta)[..., None] * f64(B)[:, :, None, :]
    return ((1 + alpha * dA) / denominator).to(delta.dtype), (dB / denominator).to(delta.dtype)


def discretize(delta, A, B, discretization: str, alpha: float):
    """Ā, B̄ (B, L, E, N) in float64 by any of the three rules."""
    delta, A, B = f64(delta), f64(A), f64(B)
    dA = delta[..., None] * A
    if discretization == "bilinear":
        denominator = 1 - (1 - alpha) * dA
        return (1 + alpha * dA) / denominator, delta[..., None] * B[:, :, None, :] / denominator
    if discretization == "zoh_exact":
        return torch.exp(dA), torch.expm1(dA) / A * B[:, :, None, :]
    return torch.exp(dA), delta[..., None] * B[:, :, None, :]


def scan(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t−1} + b_t, h_{−1} = 0, along dim 1, one step at a time in float64 (a = Re exp(log a))."""
    a = torch.exp(f64(log_a))
    a = a.real if a.is_complex() else a
    h, hs = torch.zeros_like(f64(b[:, 0])), []
    for a_t, b_t in zip(a.unbind(1), f64(b).unbind(1)):
        h = a_t * h + b_t
        hs.append(h)
    return torch.stack(hs, dim=1).to(b.dtype)


def selective_scan(u, delta, A, B, C, D, discretization="zoh", alpha=0.5, scale_states: float = 1.0):
    """y (B, L, E) of h_t = Ā_t h_{t−1} + B̄_t u_t, y_t = C_t h_t + D u_t, one step at a time.

    `scale_states` multiplies every state before it is read out: the graded tests configure a block with a
    scan that does this, so that an answer which ignores the configured scan shows."""
    A_bar, B_bar = discretize(delta, A, B, discretization, alpha)
    b = B_bar * f64(u)[..., None]
    h, outputs = torch.zeros_like(b[:, 0]), []
    for t in range(u.shape[1]):
        h = A_bar[:, t] * h + b[:, t]
        outputs.append((scale_states * h * f64(C)[:, t, None, :]).sum(dim=-1) + f64(D) * f64(u)[:, t])
    return torch.stack(outputs, dim=1).to(u.dtype)


def delta_B_C(params: dict, config: dict, u: torch.Tensor):
    """Δ = softplus(dt_proj(δ)) (B, L, E), B and C (B, L, N) from x_proj(u) = [δ (R), B (N), C (N)]."""
    R, N = config["dt_rank"], config["state_size"]
    projected = linear(params, "x_proj", f64(u))
    delta = F.softplus(linear(params, "dt_proj", projected[..., :R]))
    return delta, projected[..., R:R + N], projected[..., R + N:R + 2 * N]


def ssm(params: dict, config: dict, u: torch.Tensor, scale_states: float = 1.0) -> torch.Tensor:
    """The block's selective SSM (B, L, E) -> (B, L, E) with A = −exp(A_log)."""
    delta, B, C = delta_B_C(params, config, u)
    A = -torch.exp(f64(params["A_log"]))
    return selective_scan(f64(u), delta, A, B, C, f64(params["D"]), config["discretization"], config["alpha"],
                          scale_states).to(u.dtype)


def mixer(params: dict, config: dict, x: torch.Tensor, *, future: bool = False, conv_silu: bool = True,
          gate_silu: bool = True) -> torch.Tensor:
    """The Mamba block (B, L, D) -> (B, L, D): in_proj to (u, z); causal depthwise conv (padded on the left
    only); SiLU; the SSM; × SiLU(z); out_proj. The flags give what likely mistakes compute, for the
    diagnoses: the padding on the right (`future`), a SiLU left out."""
    E, k = config["expanded_size"], config["conv_kernel"]
    projected = linear(params, "in_proj", f64(x))
    u, z = projected[..., :E], projected[..., E:]
    padded = F.pad(u.transpose(1, 2), (0, k - 1) if future else (k - 1, 0))  # output t sees inputs t−k+1 ... t
    u = F.conv1d(padded, f64(params["conv1d.weight"]), f64(params["conv1d.bias"]), groups=E).transpose(1, 2)
    y = ssm(params, config, F.silu(u) if conv_silu else u)
    return linear(params, "out_proj", y * (F.silu(z) if gate_silu else z)).to(x.dtype)


def residual_block(params: dict, config: dict, x: torch.Tensor) -> torch.Tensor:
    """x + mixer(RMSNorm(x))."""
    return (f64(x) + mixer(sub(params, "mixer"), config, rms_norm(params, "norm", f64(x)))).to(x.dtype)
