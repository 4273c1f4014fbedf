"""Q1 Transformer, hidden tests (instructor-only; `python -m grading regrade` runs them): 1 point.

The same functions as the public tests, with inputs those never use: rectangular masks, one head and
many, a batch of one, float64 (with float64 tolerances), other lengths and sizes. They catch answers that
pass the public tests by fitting their inputs: a mask built square from one length, a softmax forced
into float32, shapes hard-coded to the public ones. The oracles are the public tests' own; a failure
shows shapes and sizes, never the hidden inputs' values.
"""

import pytest
import torch

from autograde import oracles
from graded.test_q1_transformer import ATTENTION, DECODER, DROPOUT, ENCODER, MHA, mask_problem

FLOAT64 = {"atol": 1e-10, "rtol": 1e-9}  # float32 anywhere on the way misses by ~1e-7


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_causal_mask_for_rectangular_and_single_positions(case):
    for queries, keys in ((1, 1), (3, 5), (5, 3), (12, 12)):
        got = case.call("transformer:causal_mask", queries, keys)
        case.expect(mask_problem(queries, keys, hidden=True), got.output, what=f"causal_mask({queries}, {keys})",
                    where={"square": queries == keys})


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_split_and_merge_heads_with_one_head_and_many(case):
    for hidden, heads in ((6, 1), (24, 8)):
        attention = case.module(MHA, hidden_size=hidden, num_heads=heads)
        x = case.randn(1, 3, hidden, dtype=torch.float64)
        split = case.call(attention, x, method="split_heads")
        case.expect_close(split.output, oracles.split_heads(x, heads), atol=0, rtol=0,
                          what=f"split_heads of a (1, 3, {hidden}) float64 input with {heads} head(s)")
        merged = case.call(attention, oracles.split_heads(x, heads), method="merge_heads")
        case.expect_close(merged.output, x, atol=0, rtol=0,
                          what=f"merge_heads of {heads} head(s) of a (1, 3, {hidden}) float64 input")


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_attention_in_float64_with_a_batch_of_one(case):
    for causal, heads, queries, keys in ((False, 3, 4, 9), (True, 1, 6, 6)):
        attention = case.module(MHA, dtype="float64", hidden_size=12, num_heads=heads, causal=causal,
                                dropout=DROPOUT)
        query = case.randn(1, queries, 12, dtype=torch.float64)
        key, value = (query, query) if queries == keys else (case.randn(1, keys, 12, dtype=torch.float64),
                                                              case.randn(1, keys, 12, dtype=torch.float64))
        name = f"{'causal ' if causal else ''}attention, float64, batch 1, {heads} head(s), {queries} queries, {keys} keys"
        got = case.call(attention, query, key, value, read=("attention_weights",))
        expected, weights = oracles.attention(attention.params, attention.config, query, key, value)
        case.expect(lambda output: None if output.dtype == torch.float64 else f"should stay float64, got {output.dtype}",
                    got.output, what=name)
        case.expect_close(got.output, expected, **FLOAT64, what=f"{name}: the output", where={"causal": causal})
        case.expect_close(got.read("attention_weights"), weights, **FLOAT64, what=f"{name}: self.attention_weights",
                          where={"causal": causal})


@pytest.mark.points(0.25, readme=f"{ENCODER} and {DECODER}")
def test_hidden_positions_and_layers_for_other_sizes(case):
    for length, hidden in ((1, 2), (100, 64)):
        got = case.call("transformer:sinusoidal_positional_encoding", length, hidden)
        case.expect_close(got.output, oracles.sinusoidal_positional_encoding(length, hidden), atol=1e-5, rtol=1e-5,
                          what=f"sinusoidal_positional_encoding({length}, {hidden})", where={"length": length})
    encoder = case.module("transformer:EncoderLayer", dtype="float64", hidden_size=12, num_heads=3, dropout=DROPOUT)
    x = case.randn(1, 11, 12, dtype=torch.float64)
    got = case.call(encoder, x)
    case.expect_close(got.output, oracles.encoder_layer(encoder.params, encoder.config, x), **FLOAT64,
                      what="EncoderLayer, float64, 3 heads, a batch of one, 11 positions")
    decoder = case.module("transformer:TransformerDecoder", dtype="float64", vocab_size=29, hidden_size=12,
                          num_heads=1, num_layers=3, dropout=DROPOUT)
    target_in, annotations = case.randint(0, 29, (1, 2)), case.randn(1, 11, 12, dtype=torch.float64)
    got = case.call(decoder, target_in, annotations)
    case.expect_close(got.output, oracles.decoder(decoder.params, decoder.config, target_in, annotations), **FLOAT64,
                      what="TransformerDecoder, float64, 1 head, 3 layers, 2 target positions, 11 source positions")
