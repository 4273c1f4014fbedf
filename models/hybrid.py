"""Causal token models for the synthetic tasks (data/synthetic.py): a decoder-only Transformer, hybrids of
Transformer and Mamba layers, and an LSTM/GRU. (Given, complete; the pure Mamba is `models.mamba.Mamba`.)

Every model maps token ids (B, L) to next-token logits (B, L, V), and position t sees tokens 0 ... t only.
They are built from your code: a Transformer layer here is your `EncoderLayer` whose `MultiHeadAttention`
is switched to causal (pre-norm attention then MLP, each with a residual: a GPT block), so its positions
come from your `sinusoidal_positional_encoding`; a Mamba layer is your `ResidualBlock`. What these tasks
measure is your attention and your selective scan.

A hybrid is `blocks` blocks; each runs `mamba_layers` Mamba layers and `attention_layers` Transformer layers
(in the order `order` says), and the block as a whole, f, is joined to its input x in one of three ways:

    null       y = f(x)                          the layers simply follow each other
    res        y = x + f(x)                      one more skip connection around the block
    gated_res  y = x + sigmoid(W_g x + b_g) * f(x)   the same, with a per-channel gate read from x

Each layer keeps its own residual inside f (both kinds are pre-norm residual blocks), so `null` is not a
stack without skips: it is the plain interleaving, and `res`/`gated_res` add an outer connection.

Glossary (shapes use these letters everywhere in this file):
    B  batch size    L  sequence length    H  hidden size (d_model)    V  vocabulary size
"""

import torch
from torch import nn

from models.mamba import ResidualBlock
from models.transformer import EncoderLayer, PositionalEncoding

JOINS = ("null", "res", "gated_res")
ORDERS = ("mamba_first", "attention_first")


def causal_transformer_layer(hidden_size: int, num_heads: int, dropout: float = 0.0) -> EncoderLayer:
    """Your EncoderLayer with causal self-attention: (B, L, H) -> (B, L, H), position t sees 0 ... t."""
    layer = EncoderLayer(hidden_size, num_heads, dropout)
    layer.self_attention.causal = True
    return layer


class HybridBlock(nn.Module):
    """Mamba layers and Transformer layers in sequence, joined to the block's input by `join` (see above)."""

    def __init__(self, hidden_size: int, num_heads: int, attention_layers: int, mamba_layers: int,
                 join: str = "res", order: str = "mamba_first", dropout: float = 0.0, **block_options):
        super().__init__()
        if join not in JOINS:
            raise ValueError(f"join must be one of {', '.join(JOINS)}, not {join!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        if attention_layers + mamba_layers < 1:
            raise ValueError("a hybrid block needs at least one layer")
        self.join = join
        attention = [causal_transformer_layer(hidden_size, num_heads, dropout) for _ in range(attention_layers)]
        mamba = [ResidualBlock(hidden_size, **block_options) for _ in range(mamba_layers)]
        self.layers = nn.ModuleList(mamba + attention if order == "mamba_first" else attention + mamba)
        self.gate = nn.Linear(hidden_size, hidden_size) if join == "gated_res" else None

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): (B, L, H) -> (B, L, H), the block's layers one after the other."""
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, L, H): f(x) joined to x."""
        out = self.inner(x)
        if self.join == "null":
            return out
        if self.join == "res":
            return x + out
        return x + torch.sigmoid(self.gate(x)) * out  # the gate reads position t only: still causal


class TokenModel(nn.Module):
    """Embeddings (plus positions, sinusoidal or learned, if asked), a stack of (B, L, H) -> (B, L, H) layers, a final
    LayerNorm and a projection to the vocabulary: token ids (B, L) -> logits (B, L, V)."""

    def __init__(self, vocab_size: int, hidden_size: int, layers: list, max_length: int = 0,
                 dropout: float = 0.0, positional: str = "sinusoidal"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        # Attention is blind to order without them; a model without attention gets none (max_length 0).
        self.positions = PositionalEncoding(hidden_size, max_length, positional) if max_length else None
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, V)."""
        x = self.embedding(tokens)  # (B, L, H)
        if self.positions is not None:
            x = self.positions(x)
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x)  # (B, L, H)
        logits = self.output(self.norm(x))  # (B, L, V)
        return logits


def causal_transformer(vocab_size: int, hidden_size: int, num_heads: int, num_layers: int, max_length: int,
                       dropout: float = 0.0, positional: str = "sinusoidal") -> TokenModel:
    """A decoder-only Transformer (GPT-style) of `num_layers` causal layers."""
    layers = [causal_transformer_layer(hidden_size, num_heads, dropout) for _ in range(num_layers)]
    return TokenModel(vocab_size, hidden_size, layers, max_length, dropout, positional)


def hybrid(vocab_size: int, hidden_size: int, num_heads: int, blocks: int, attention_layers: int,
           mamba_layers: int, join: str, order: str, max_length: int, dropout: float = 0.0,
           positional: str = "sinusoidal", **block_options) -> TokenModel:
    """`blocks` HybridBlocks; positions only if there is attention to use them."""
    layers = [HybridBlock(hidden_size, num_heads, attention_layers, mamba_layers, join, order, dropout,
                          **block_options) for _ in range(blocks)]
    return TokenModel(vocab_size, hidden_size, layers, max_length if attention_layers else 0, dropout, positional)


class RecurrentTokenModel(nn.Module):
    """A causal LSTM or GRU language model: embeddings, a unidirectional RNN, a projection to V."""

    def __init__(self, vocab_size: int, cell: str, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        cells = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in cells:
            raise ValueError(f"cell must be one of {', '.join(cells)}, not {cell!r}")
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.rnn = cells[cell](hidden_size, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, V)."""
        outputs, _ = self.rnn(self.dropout(self.embedding(tokens)))  # (B, L, H)
        return self.output(self.dropout(outputs))
