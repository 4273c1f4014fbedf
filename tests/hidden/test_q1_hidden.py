"""Q1 Transformer, hidden tests (instructor-only; `python -m grading regrade` runs them): 1 point.

The same functions as the public tests, with inputs those never use: rectangular masks, one head and
many, a batch of one, float64 (with float64 tolerances), other lengths and sizes. They catch answers that
pass the public tests by fitting their inputs: a mask built square from one length, a softmax forced
into float32, shapes hard-coded to the public ones. The oracles are the public tests' own.
"""

import pytest
import torch

from graded.test_q1_transformer import (
    ATTENTION,
    DECODER,
    ENCODER,
    VOCAB_SIZE,
    oracle_attention,
    oracle_mask,
    oracle_merge,
    oracle_split,
    sdpa,
)
from models.transformer import MultiHeadAttention, TransformerSeq2Seq, causal_mask, sinusoidal_positional_encoding
from scoring import check, expect_close, fail

FLOAT64 = {"atol": 1e-10, "rtol": 1e-9}  # float32 anywhere on the way misses by ~1e-7


def oracle_weights(module: MultiHeadAttention, query, key) -> torch.Tensor:
    """The softmax weights (B, h, T, S) in the inputs' dtype: attention over identity values."""
    batch, length = key.shape[0], key.shape[1]
    identity = torch.eye(length, dtype=key.dtype).expand(batch, module.num_heads, length, length)
    return sdpa(module, query, key, key, module.causal, values=identity)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(1234)


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_causal_mask_for_rectangular_and_single_positions():
    for queries, keys in ((1, 1), (3, 5), (5, 3), (12, 12)):
        mask = causal_mask(queries, keys)
        expected = oracle_mask(queries, keys)
        check(isinstance(mask, torch.Tensor) and tuple(mask.shape) == (queries, keys),
              f"causal_mask({queries}, {keys}) should have shape ({queries}, {keys}), got "
              f"{getattr(mask, 'shape', type(mask).__name__)}")
        wrong = (mask.bool() != expected).nonzero().tolist()
        if wrong:
            t, s = wrong[0]
            fail(f"causal_mask({queries}, {keys})[{t}, {s}] should be {bool(expected[t, s])}, got {bool(mask[t, s])}; "
                 f"{len(wrong)} of {queries * keys} entries are wrong")


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_split_and_merge_heads_with_one_head_and_many():
    for hidden, heads in ((6, 1), (24, 8)):
        attention = MultiHeadAttention(hidden_size=hidden, num_heads=heads)
        x = torch.randn(1, 3, hidden, dtype=torch.float64)
        expect_close(attention.split_heads(x), oracle_split(x, heads), atol=0, rtol=0,
                     what=f"split_heads of a (1, 3, {hidden}) float64 input with {heads} head(s)")
        expect_close(attention.merge_heads(oracle_split(x, heads)), x, atol=0, rtol=0,
                     what=f"merge_heads of {heads} head(s) of a (1, 3, {hidden}) float64 input")


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_attention_in_float64_with_a_batch_of_one(monkeypatch):
    import models.transformer as transformer

    monkeypatch.setattr(transformer, "causal_mask", oracle_mask)
    monkeypatch.setattr(MultiHeadAttention, "split_heads", lambda self, x: oracle_split(x, self.num_heads))
    monkeypatch.setattr(MultiHeadAttention, "merge_heads", lambda self, x: oracle_merge(x))
    for causal, heads, queries, keys in ((False, 3, 4, 9), (True, 1, 6, 6)):
        attention = MultiHeadAttention(hidden_size=12, num_heads=heads, causal=causal).double().eval()
        query = torch.randn(1, queries, 12, dtype=torch.float64)
        memory = query if queries == keys else torch.randn(1, keys, 12, dtype=torch.float64)
        name = f"{'causal ' if causal else ''}attention, float64, batch 1, {heads} head(s), {queries} queries, {keys} keys"
        with torch.no_grad():
            output = attention(query, memory, memory)
            check(output.dtype == torch.float64, f"{name}: the output should stay float64, got {output.dtype}")
            expect_close(output, oracle_attention(attention, query, memory, memory), **FLOAT64,
                         what=f"{name}: the output against scaled_dot_product_attention")
            expect_close(attention.attention_weights, oracle_weights(attention, query, memory), **FLOAT64,
                         what=f"{name}: self.attention_weights")


@pytest.mark.points(0.25, readme=f"{ENCODER} and {DECODER}")
def test_hidden_positions_and_whole_model_for_other_sizes():
    for length, hidden in ((1, 2), (100, 64)):
        position = torch.arange(length, dtype=torch.float64)[:, None]
        angle = position / 10000 ** (2 * torch.arange(hidden // 2, dtype=torch.float64)[None, :] / hidden)
        expected = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(length, hidden)
        expect_close(sinusoidal_positional_encoding(length, hidden), expected.float(), atol=1e-5, rtol=1e-5,
                     what=f"sinusoidal_positional_encoding({length}, {hidden})")
    model = TransformerSeq2Seq(VOCAB_SIZE, hidden_size=12, num_heads=3, num_encoder_layers=1,
                               num_decoder_layers=3).double().eval()
    source, target = torch.randint(0, 27, (1, 11)), torch.randint(0, 29, (1, 2))
    with torch.no_grad():
        logits = model(source, target)
        check(tuple(logits.shape) == (1, 2, VOCAB_SIZE) and logits.dtype == torch.float64,
              f"TransformerSeq2Seq (float64) on a source of 11 letters and a target of 2 should give logits of "
              f"shape (1, 2, {VOCAB_SIZE}) in float64, got {tuple(logits.shape)} in {logits.dtype}")
        changed = target.clone()
        changed[:, 1] = (changed[:, 1] + 1) % VOCAB_SIZE
        expect_close(model(source, changed)[:, :1], logits[:, :1], **FLOAT64,
                     what="the logits at target position 0 after changing target token 1 (should not change)")
