"""Baselines: recurrent encoder–decoders with attention, the classic models for this task (given, complete).

An LSTM or GRU reads the English word in both directions; a second one, started from the encoder's final
states, reads `[SOS] + target`; each of its outputs attends over the encoder's annotations (Luong et al.
2015, "general" scores) and the two together predict the next character. The decoder runs over the whole
target at once (teacher forcing), and it is causal: output t depends on target tokens 0 ... t only.

Glossary (shapes use these letters everywhere in this file):
    B  batch size        S  source length        T  target length
    H  hidden size       V  vocabulary size (29) K  decoder layers
"""

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNNEncoder(nn.Module):
    """Embedding and a bidirectional RNN: source (B, S) -> annotations (B, S, H) and final states."""

    def __init__(self, cell: str, vocab_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.rnn = CELLS[cell](hidden_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.merge_directions = nn.Linear(2 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, source: torch.Tensor):
        """(B, S) -> annotations (B, S, H), and the top layer's last states, each (B, 2H) (both directions).

        An LSTM has two states per layer (h and c), a GRU one: the second element is a list of those.
        """
        outputs, final = self.rnn(self.dropout(self.embedding(source)))  # (B, S, 2H)
        finals = final if isinstance(final, tuple) else (final,)  # each (2 * layers, B, H)
        # The top layer's forward and backward states, side by side: the word read in both directions.
        top = [rearrange(state[-2:], "direction b h -> b (direction h)") for state in finals]
        return self.merge_directions(outputs), top


class RNNSeq2Seq(nn.Module):
    """LSTM or GRU encoder–decoder with attention; the same `encode`/`decode`/`forward` as the other models."""

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 64, num_encoder_layers: int = 1,
                 num_decoder_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_decoder_layers = num_decoder_layers
        self.encoder = RNNEncoder(cell, vocab_size, hidden_size, num_encoder_layers, dropout)
        # Maps the encoder's final states (B, 2H) to the decoder's initial ones, one per decoder layer.
        self.bridges = nn.ModuleList(nn.Linear(2 * hidden_size, num_decoder_layers * hidden_size)
                                     for _ in range(2 if cell == "lstm" else 1))
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.decoder = CELLS[cell](hidden_size, hidden_size, num_decoder_layers, batch_first=True,
                                   dropout=dropout if num_decoder_layers > 1 else 0.0)
        self.attention_scores = nn.Linear(hidden_size, hidden_size, bias=False)  # Luong's "general" W_a
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights = None  # (B, T, S) after each decode, for plots

    def encode(self, source: torch.Tensor):
        """(B, S) -> (annotations (B, S, H), the decoder's initial state); computed once per word."""
        annotations, finals = self.encoder(source)
        states = [rearrange(bridge(final), "b (k h) -> k b h", k=self.num_decoder_layers).contiguous()
                  for bridge, final in zip(self.bridges, finals)]
        # tanh keeps the initial h in the range an RNN's h lives in; an LSTM's cell state is unbounded.
        states[0] = torch.tanh(states[0])
        return annotations, tuple(states) if self.cell == "lstm" else states[0]

    def decode(self, target_in: torch.Tensor, encoded) -> torch.Tensor:
        """(B, T) starting with SOS, `encode`'s result -> logits (B, T, V)."""
        annotations, initial_state = encoded
        outputs, _ = self.decoder(self.dropout(self.embedding(target_in)), initial_state)  # (B, T, H)
        scores = einsum(self.attention_scores(outputs), annotations, "b t h, b s h -> b t s")
        self.attention_weights = F.softmax(scores, dim=-1)
        context = einsum(self.attention_weights, annotations, "b t s, b s h -> b t h")
        combined = torch.tanh(self.combine(torch.cat([outputs, context], dim=-1)))
        return self.output(self.dropout(combined))

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S), (B, T) -> logits (B, T, V)."""
        return self.decode(target_in, self.encode(source))
