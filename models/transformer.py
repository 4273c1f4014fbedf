"""A Transformer encoder–decoder that translates words one character at a time.

Glossary (shapes use these letters everywhere in this file):
    B  batch size              S  source length (characters of the English word)
    T  target length           L  any sequence length
    H  hidden size             h  number of attention heads
    d  head size, H / h        V  vocabulary size (29)

The parts you write are marked with `### BEGIN SOLUTION` / `### END SOLUTION`; each function's
docstring names the README section that explains it. Every layer is created in `__init__` for you,
so the random initialisation (and the autograder's expected outputs) never depends on your code.
Unless its docstring says otherwise, a function returns its result in the dtype of its floating inputs
(float32 in, float32 out; float64 in, float64 out) for any batch size and length, lets gradients reach
every input and parameter, and keeps nothing from one call to the next.
"""

import math

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn


def causal_mask(query_length: int, key_length: int, device=None) -> torch.Tensor:
    """Boolean mask (torch.bool) of shape (T, S) on `device`: True where query t may attend to key s, i.e. s <= t.

    README: Q1.1 Multi-head attention
    """
    ### BEGIN SOLUTION
    return torch.tril(torch.ones(query_length, key_length, dtype=torch.bool, device=device))
    ### END SOLUTION


def sinusoidal_positional_encoding(max_length: int, hidden_size: int) -> torch.Tensor:
    """The fixed float32 table PE of shape (max_length, H), for an even H, with
    PE[pos, 2i] = sin(pos / 10000^(2i/H)) and PE[pos, 2i+1] = cos(pos / 10000^(2i/H)).

    README: Q1.2 Encoder
    """
    ### BEGIN SOLUTION
    position = torch.arange(max_length, dtype=torch.float32)[:, None]  # (max_length, 1)
    two_i = torch.arange(0, hidden_size, 2, dtype=torch.float32)  # (H/2,)
    angle = position / 10000 ** (two_i / hidden_size)  # (max_length, H/2)
    table = torch.zeros(max_length, hidden_size)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : hidden_size // 2])
    return table
    ### END SOLUTION


class PositionalEncoding(nn.Module):
    """Adds position information to embeddings: the sinusoidal table, or a learned one."""

    def __init__(self, hidden_size: int, max_length: int, kind: str = "sinusoidal"):
        super().__init__()
        self.kind = kind
        self.max_length = max_length
        if kind == "learned":
            self.table = nn.Parameter(0.02 * torch.randn(max_length, hidden_size))
        elif kind == "sinusoidal":
            # A buffer, not a parameter: it moves with the model to the GPU but is never trained.
            self.register_buffer("table", sinusoidal_positional_encoding(max_length, hidden_size))
        else:
            raise ValueError(f"positional encoding must be 'sinusoidal' or 'learned', not {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, L, H): x plus the first L rows of the table."""
        length = x.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequence of {length} positions is longer than max_length={self.max_length}")
        return x + self.table[:length]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with h heads; `causal=True` hides future positions.

    After each forward pass, `self.attention_weights` holds the softmax weights (B, h, T, S) so that
    notebooks can draw them (bertviz) without hooks.
    """

    def __init__(self, hidden_size: int, num_heads: int, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.causal = causal
        self.W_q = nn.Linear(hidden_size, hidden_size)
        self.W_k = nn.Linear(hidden_size, hidden_size)
        self.W_v = nn.Linear(hidden_size, hidden_size)
        self.W_o = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, h, L, d): head j gets features j*d ... (j+1)*d - 1.

        README: Q1.1 Multi-head attention
        """
        ### BEGIN SOLUTION
        return rearrange(x, "b l (h d) -> b h l d", h=self.num_heads)
        ### END SOLUTION

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, L, d) -> (B, L, H): the inverse of `split_heads`.

        README: Q1.1 Multi-head attention
        """
        ### BEGIN SOLUTION
        return rearrange(x, "b h l d -> b l (h d)")
        ### END SOLUTION

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query (B, T, H), key and value (B, S, H) -> (B, T, H).

        Project with W_q, W_k, W_v, split into heads, score every query against every key with
        q·k / sqrt(d), mask the future if causal, softmax over the keys, keep those weights (before
        dropout) in `self.attention_weights`, apply `self.dropout` to them, mix the values with the dropped
        weights, merge heads, project with W_o.

        README: Q1.1 Multi-head attention
        """
        ### BEGIN SOLUTION
        q = self.split_heads(self.W_q(query))  # (B, h, T, d)
        k = self.split_heads(self.W_k(key))  # (B, h, S, d)
        v = self.split_heads(self.W_v(value))  # (B, h, S, d)
        scores = einsum(q, k, "b h t d, b h s d -> b h t s") / math.sqrt(self.head_size)
        if self.causal:
            mask = causal_mask(query.shape[1], key.shape[1], device=query.device)  # (T, S)
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, h, T, S)
        self.attention_weights = weights.detach()
        context = einsum(self.dropout(weights), v, "b h t s, b h s d -> b h t d")
        return self.W_o(self.merge_heads(context))  # (B, T, H)
        ### END SOLUTION


class FeedForward(nn.Module):
    """The position-wise MLP: H -> 4H -> H with a GELU between."""

    def __init__(self, hidden_size: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size),
            nn.GELU(),
            nn.Linear(4 * hidden_size, hidden_size),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, L, H)."""
        return self.net(x)


class EncoderLayer(nn.Module):
    """Self-attention then an MLP, each wrapped as x + sublayer(LayerNorm(x)) (pre-norm)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.self_attention = MultiHeadAttention(hidden_size, num_heads, causal=False, dropout=dropout)
        self.feed_forward = FeedForward(hidden_size, dropout)
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, H) -> (B, S, H): x + dropout(attention(norm(x))), then + feed_forward(norm(...)) (the MLP
        ends with its own dropout).

        README: Q1.2 Encoder
        """
        ### BEGIN SOLUTION
        normed = self.attention_norm(x)
        x = x + self.dropout(self.self_attention(normed, normed, normed))
        return x + self.feed_forward(self.feed_forward_norm(x))
        ### END SOLUTION


class DecoderLayer(nn.Module):
    """Causal self-attention, attention over the encoder annotations, then an MLP; pre-norm residuals."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.self_attention = MultiHeadAttention(hidden_size, num_heads, causal=True, dropout=dropout)
        self.cross_attention = MultiHeadAttention(hidden_size, num_heads, causal=False, dropout=dropout)
        self.feed_forward = FeedForward(hidden_size, dropout)
        self.self_attention_norm = nn.LayerNorm(hidden_size)
        self.cross_attention_norm = nn.LayerNorm(hidden_size)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, annotations: torch.Tensor) -> torch.Tensor:
        """x (B, T, H), encoder annotations (B, S, H) -> (B, T, H): causal self-attention, then attention
        over the annotations, each x + dropout(attention(norm(x))); then + feed_forward(norm(...)).

        README: Q1.3 Decoder
        """
        ### BEGIN SOLUTION
        normed = self.self_attention_norm(x)
        x = x + self.dropout(self.self_attention(normed, normed, normed))
        normed = self.cross_attention_norm(x)
        x = x + self.dropout(self.cross_attention(normed, annotations, annotations))
        return x + self.feed_forward(self.feed_forward_norm(x))
        ### END SOLUTION


class TransformerEncoder(nn.Module):
    """Character embeddings plus positions, a stack of encoder layers, a final LayerNorm."""

    def __init__(self, vocab_size, hidden_size, num_heads, num_layers, dropout=0.0, max_length=64,
                 positional="sinusoidal"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.positions = PositionalEncoding(hidden_size, max_length, positional)
        self.layers = nn.ModuleList(EncoderLayer(hidden_size, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """Token ids (B, S) -> annotations (B, S, H): dropout(embeddings + positions), every layer, the
        final LayerNorm.

        README: Q1.2 Encoder
        """
        ### BEGIN SOLUTION
        x = self.dropout(self.positions(self.embedding(source)))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)
        ### END SOLUTION


class TransformerDecoder(nn.Module):
    """Embeddings plus positions, decoder layers, a final LayerNorm and a projection to the vocabulary."""

    def __init__(self, vocab_size, hidden_size, num_heads, num_layers, dropout=0.0, max_length=64,
                 positional="sinusoidal"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.positions = PositionalEncoding(hidden_size, max_length, positional)
        self.layers = nn.ModuleList(DecoderLayer(hidden_size, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, target_in: torch.Tensor, annotations: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) starting with SOS, annotations (B, S, H) -> logits (B, T, V):
        dropout(embeddings + positions), every layer, the final LayerNorm, the projection to V.

        README: Q1.3 Decoder
        """
        ### BEGIN SOLUTION
        x = self.dropout(self.positions(self.embedding(target_in)))
        for layer in self.layers:
            x = layer(x, annotations)
        return self.output(self.norm(x))
        ### END SOLUTION


class TransformerSeq2Seq(nn.Module):
    """Encoder–decoder: `forward(source, target_in)` gives next-character logits for every target position."""

    def __init__(self, vocab_size: int, hidden_size: int = 64, num_heads: int = 4, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, dropout: float = 0.0, max_length: int = 64,
                 positional: str = "sinusoidal"):
        super().__init__()
        self.max_length = max_length
        self.encoder = TransformerEncoder(vocab_size, hidden_size, num_heads, num_encoder_layers, dropout,
                                          max_length, positional)
        self.decoder = TransformerDecoder(vocab_size, hidden_size, num_heads, num_decoder_layers, dropout,
                                          max_length, positional)

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """(B, S) -> annotations (B, S, H); computed once per word when decoding greedily."""
        return self.encoder(source)

    def decode(self, target_in: torch.Tensor, annotations: torch.Tensor) -> torch.Tensor:
        """(B, T), (B, S, H) -> logits (B, T, V)."""
        return self.decoder(target_in, annotations)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S), (B, T) -> logits (B, T, V)."""
        return self.decode(target_in, self.encode(source))

    def attention_maps(self) -> dict:
        """The last forward pass's attention weights, one (B, h, q_len, k_len) tensor per layer."""
        return {
            "encoder": [layer.self_attention.attention_weights for layer in self.encoder.layers],
            "decoder": [layer.self_attention.attention_weights for layer in self.decoder.layers],
            "cross": [layer.cross_attention.attention_weights for layer in self.decoder.layers],
        }
