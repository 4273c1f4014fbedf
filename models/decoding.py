"""Step-by-step decoding: every new character costs the same, however long the word so far. (Given.)

Training reads whole sequences at once, through the `forward` functions you write. Greedy decoding
writes one character at a time; doing that with `forward` would rerun the whole sequence for every
new character. Instead, each model carries what the next step needs:

- Mamba is a recurrence. Per layer it keeps the convolution's window (the last k inputs, (B, E, k))
  and the SSM state h (B, E, N); one step updates both, h_t = Ā_t h_{t−1} + B̄_t u_t.
- The Transformer keeps, per decoder layer, the keys and values of the characters written so far
  (the self-attention cache), and computes the keys and values of the encoder annotations once per word
  (cross-attention).

These steps use your model's layers and weights, your encoder, your `discretize_bilinear`, and your
`split_heads`/`merge_heads`, but not your `forward` functions. If your `forward` computes something
else than these steps, greedy decoding and the teacher-forced accuracy of training disagree, and
training/run.py says so at the end of the run.

Glossary: B batch, S source length, H hidden size (Mamba: D), E expanded size, N state size,
k convolution width, h heads, d head size, V vocabulary size. Every method expects eval mode (no dropout).
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.mamba import MambaBlock, MambaSeq2Seq
from models.transformer import MultiHeadAttention, TransformerSeq2Seq


class MambaBlockState:
    """One MambaBlock's memory between steps: the convolution window and the SSM state."""

    def __init__(self, block: MambaBlock, batch_size: int, reference: torch.Tensor):
        E, N, k = block.expanded_size, block.state_size, block.conv_kernel
        self.window = reference.new_zeros(batch_size, E, k)  # inputs t−k+1 ... t; zeros before the start
        self.h = reference.new_zeros(batch_size, E, N)
        self.A = -torch.exp(block.A_log)  # (E, N), the same at every step
        self.filters = block.conv1d.weight[:, 0]  # (E, k): one filter per channel

    def step(self, block: MambaBlock, x: torch.Tensor) -> torch.Tensor:
        """One position through the block: x (B, D) -> (B, D), updating the window and the state."""
        u, z = block.in_proj(x).chunk(2, dim=-1)  # (B, E) each
        self.window = torch.cat([self.window[:, :, 1:], u[:, :, None]], dim=2)  # (B, E, k)
        # The causal convolution's output at t is each channel's filter applied to its last k inputs.
        u = F.silu((self.window * self.filters).sum(dim=-1) + block.conv1d.bias)  # (B, E)
        delta, B, C = block.x_proj(u).split([block.dt_rank, block.state_size, block.state_size], dim=-1)
        delta = F.softplus(block.dt_proj(delta))  # (B, E)
        A_bar, B_bar = block.discretize(delta[:, None], self.A, B[:, None])  # (B, 1, E, N): a sequence of one
        self.h = A_bar[:, 0] * self.h + B_bar[:, 0] * u[:, :, None]  # (B, E, N)
        y = (self.h @ C[:, :, None])[..., 0] + block.D * u  # y_t = C_t h_t + D u_t, (B, E)
        return block.out_proj(y * F.silu(z))


class MambaStepper:
    """Greedy decoding state of a `MambaSeq2Seq`: reads `[source, EOS]` on creation, then one token per step."""

    def __init__(self, model: MambaSeq2Seq, source: torch.Tensor):
        self.mamba = model.mamba
        reference = self.mamba.embedding.weight
        self.states = [MambaBlockState(layer.mixer, source.shape[0], reference) for layer in self.mamba.layers]
        for token in model.encode(source).unbind(dim=1):  # the prefix, one position at a time
            self.step(token)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """The next token of every word (B,) -> logits for the one after it (B, V)."""
        x = self.mamba.embedding(tokens)  # (B, D)
        for layer, state in zip(self.mamba.layers, self.states):
            x = x + state.step(layer.mixer, layer.norm(x))
        return self.mamba.output(self.mamba.norm(x))


class TransformerStepper:
    """Greedy decoding state of a `TransformerSeq2Seq`: the annotations' keys and values (computed once)
    and each decoder layer's growing self-attention cache."""

    def __init__(self, model: TransformerSeq2Seq, source: torch.Tensor):
        self.decoder = model.decoder
        annotations = model.encode(source)  # (B, S, H), your encoder
        self.cross = [self._keys_and_values(layer.cross_attention, annotations) for layer in self.decoder.layers]
        self.cache = [None] * len(self.decoder.layers)
        self.position = 0

    @staticmethod
    def _keys_and_values(attention: MultiHeadAttention, x: torch.Tensor):
        """(B, L, H) -> keys and values (B, h, L, d)."""
        return attention.split_heads(attention.W_k(x)), attention.split_heads(attention.W_v(x))

    @staticmethod
    def _attend(attention: MultiHeadAttention, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
        """One query position x (B, 1, H) against keys and values (B, h, L, d) -> (B, 1, H). No mask: the
        keys hold only positions up to this one."""
        query = attention.split_heads(attention.W_q(x))  # (B, h, 1, d)
        context = F.scaled_dot_product_attention(query, keys, values)  # (B, h, 1, d)
        return attention.W_o(attention.merge_heads(context))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """The next token of every word (B,) -> logits for the one after it (B, V)."""
        positions = self.decoder.positions
        if self.position >= positions.max_length:
            raise ValueError(f"cannot decode past max_length={positions.max_length} positions")
        x = self.decoder.embedding(tokens[:, None]) + positions.table[self.position]  # (B, 1, H)
        for number, layer in enumerate(self.decoder.layers):
            normed = layer.self_attention_norm(x)
            keys, values = self._keys_and_values(layer.self_attention, normed)  # (B, h, 1, d)
            if self.cache[number] is not None:
                keys = torch.cat([self.cache[number][0], keys], dim=2)  # (B, h, t+1, d)
                values = torch.cat([self.cache[number][1], values], dim=2)
            self.cache[number] = keys, values
            x = x + self._attend(layer.self_attention, normed, keys, values)
            x = x + self._attend(layer.cross_attention, layer.cross_attention_norm(x), *self.cross[number])
            x = x + layer.feed_forward(layer.feed_forward_norm(x))
        self.position += 1
        return self.decoder.output(self.decoder.norm(x))[:, 0]


STEPPERS = {MambaSeq2Seq: MambaStepper, TransformerSeq2Seq: TransformerStepper}


def stepper_for(model: nn.Module, source: torch.Tensor):
    """A step-by-step decoder for `model` started on `source` (B, S), or None if the model has none
    (the LSTM and GRU baselines rerun their decoder instead; it is cheap for them)."""
    stepper = STEPPERS.get(type(model))
    return stepper(model, source) if stepper is not None else None
