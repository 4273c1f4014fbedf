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
training/piglatin.py says so at the end of the run.

On top of the steps, greedy decoding (`greedy_decode`: the most likely character, one at a time) and
the word accuracy it gives (`word_results`), for every model: those without steps (the LSTM and GRU
baselines) rerun their decoder over the whole prefix instead (`FullRerun`).

Glossary: B batch, S source length, T target length, H hidden size (Mamba: D), E expanded size, N state
size, k convolution width, h heads, d head size, V vocabulary size. Every method expects eval mode (no
dropout: see `eval_mode`).
"""

from collections import defaultdict
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from data.vocab import VOCAB
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


# --- greedy decoding, for every model --------------------------------------------------------------------


@contextmanager
def eval_mode(model: nn.Module):
    """Evaluation mode (no dropout) for the duration, then whatever mode the model was in before."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def with_sos(target: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T+1): the decoder's input, SOS followed by the target."""
    return torch.cat([torch.full_like(target[:, :1], VOCAB.SOS), target], dim=1)


def with_eos(target: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T+1): what the decoder must predict, the target followed by EOS."""
    return torch.cat([target, torch.full_like(target[:, :1], VOCAB.EOS)], dim=1)


class FullRerun:
    """Greedy decoding for a model without a step-by-step path (the LSTM and GRU baselines): every step
    reruns `decode` over everything written so far. Same interface as the steppers above."""

    def __init__(self, model: nn.Module, source: torch.Tensor):
        self.model = model
        self.state = model.encode(source)
        self.tokens = source[:, :0]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) -> logits (B, V) for the next position."""
        self.tokens = torch.cat([self.tokens, tokens[:, None]], dim=1)
        return self.model.decode(self.tokens, self.state)[:, -1]


def start_decoding(model: nn.Module, source: torch.Tensor):
    """The model's step-by-step decoder on `source` (B, S): constant time per character for the
    Transformer and Mamba (the steppers above), a rerun of the decoder per character otherwise."""
    return stepper_for(model, source) or FullRerun(model, source)


@torch.no_grad()
def greedy_decode(model: nn.Module, source: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """(B, S) -> (B, T'): the most likely next character, one at a time, until every word has emitted EOS.

    The whole batch decodes together; a finished word keeps producing tokens that `VOCAB.decode` ignores
    after its first EOS. The model must be in eval mode (see `eval_mode`).
    """
    decoder = start_decoding(model, source)
    next_token = torch.full_like(source[:, 0], VOCAB.SOS)  # (B,)
    generated = []
    finished = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)
    for _ in range(max_new_tokens):
        next_token = decoder.step(next_token).argmax(dim=-1)  # (B,)
        generated.append(next_token)
        finished |= next_token == VOCAB.EOS
        if finished.all():
            break
    return torch.stack(generated, dim=1) if generated else source[:, :0]


PAD = -1  # fills `expected` after a word's EOS when words of one batch have different lengths


@torch.no_grad()
def greedy_matches(model: nn.Module, source: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """(B, S), (B, T) -> (B,) bool: does greedy decoding produce exactly `expected` (target, EOS, then PAD)?

    The same answer as decoding every word in full and comparing, but cheaper: no word is decoded past
    its EOS, and decoding stops as soon as every word still being checked has gone wrong.
    """
    decoder = start_decoding(model, source)
    next_token = torch.full_like(source[:, 0], VOCAB.SOS)  # (B,)
    matches = torch.ones(source.shape[0], dtype=torch.bool, device=source.device)
    for step in range(expected.shape[1]):
        wanted = expected[:, step]  # (B,)
        if not (matches & (wanted != PAD)).any():
            break
        next_token = decoder.step(next_token).argmax(dim=-1)  # (B,)
        matches &= (next_token == wanted) | (wanted == PAD)
    return matches


def decoding_batches(pairs: list, max_batch_size: int = 512) -> list:
    """Words grouped by source length alone, as [(source (B, S), expected (B, T_max + 1))].

    Greedy decoding needs equal source lengths only, so these batches are fewer and larger than the
    training ones (which also share a target length): fewer decoder calls for the same words.
    """
    by_length = defaultdict(list)
    for english, piglatin in pairs:
        by_length[len(english)].append((english, piglatin))
    batches = []
    for length in sorted(by_length):
        group = by_length[length]
        for start in range(0, len(group), max_batch_size):
            chunk = group[start:start + max_batch_size]
            source = torch.tensor([VOCAB.encode(english) for english, _ in chunk])
            expected = torch.full((len(chunk), max(len(p) for _, p in chunk) + 1), PAD)
            for row, (_, piglatin) in enumerate(chunk):
                ids = VOCAB.encode(piglatin) + [VOCAB.EOS]
                expected[row, :len(ids)] = torch.tensor(ids)
            batches.append((source, expected))
    return batches


def word_results(model: nn.Module, pairs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoded, teacher_forced), each (len(pairs),) bool in the order of `decoding_batches(pairs)`: is each
    word right by greedy decoding (step by step), and by the teacher-forced `forward` pass that the
    per-epoch accuracy reads?

    For a causal model whose `forward` computes what its decoding steps compute, the two agree word for
    word (see training/piglatin.py, Seq2SeqModule.validation_step); where they don't, one of the two is wrong.
    """
    device = next(model.parameters()).device
    decoded, forced = [], []
    with eval_mode(model), torch.no_grad():
        for source, expected in decoding_batches(pairs):
            source, expected = source.to(device), expected.to(device)
            decoded.append(greedy_matches(model, source, expected))
            # Shorter words are padded with EOS: a causal model's earlier positions never see the padding.
            # In training-sized chunks: a whole sequence of 512 words would hold Mamba's (B, L, E, N) at once.
            target_in = with_sos(expected[:, :-1].masked_fill(expected[:, :-1] == PAD, VOCAB.EOS))
            for rows in torch.arange(len(source), device=device).split(64):
                guesses = model(source[rows], target_in[rows]).argmax(dim=-1)  # (64, T_max + 1)
                forced.append(((guesses == expected[rows]) | (expected[rows] == PAD)).all(dim=1))
    return torch.cat(decoded).cpu(), torch.cat(forced).cpu()


def decode_budget(source_length: int, max_length: int = None) -> int:
    """How many characters to generate at most: Pig Latin adds at most 3 per dash-separated part."""
    budget = 2 * source_length + 4
    return budget if max_length is None else min(budget, max_length - 1)


def model_budget(model: nn.Module, source_length: int) -> int:
    """decode_budget within what the model's tables hold: the Transformer's target positions (`max_length`),
    or, for a family member that reads [source, EOS, SOS, target] as one sequence in a table of
    `joint_max_length`, what is left of it after the source, its EOS and SOS."""
    joint = getattr(model, "joint_max_length", None)
    if joint is not None:
        return min(decode_budget(source_length), joint - source_length - 1)
    return decode_budget(source_length, getattr(model, "max_length", None))
