"""The reference Transformer against trusted oracles: PyTorch's attention, the PE formula, causality."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.transformer import (
    MultiHeadAttention,
    PositionalEncoding,
    TransformerSeq2Seq,
    causal_mask,
    sinusoidal_positional_encoding,
)

VOCAB_SIZE = 29


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def reference_attention(module: MultiHeadAttention, query, key, value, causal: bool):
    """The same attention computed by torch.nn.functional.scaled_dot_product_attention."""
    def heads(x):
        batch, length, _ = x.shape
        return x.view(batch, length, module.num_heads, module.head_size).transpose(1, 2)

    q, k, v = heads(module.W_q(query)), heads(module.W_k(key)), heads(module.W_v(value))
    mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril() if causal else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return module.W_o(out.transpose(1, 2).reshape(query.shape))


def test_causal_mask_allows_only_the_past_and_present():
    mask = causal_mask(4, 4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    for t in range(4):
        for s in range(4):
            assert mask[t, s] == (s <= t), f"mask[{t}, {s}] should be {s <= t}"


def test_sinusoidal_encoding_matches_the_formula():
    table = sinusoidal_positional_encoding(50, 16)
    assert table.shape == (50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_learned_positions_are_parameters_and_sinusoidal_ones_are_not():
    learned = PositionalEncoding(8, 10, "learned")
    fixed = PositionalEncoding(8, 10, "sinusoidal")
    assert sum(p.numel() for p in learned.parameters()) == 80
    assert sum(p.numel() for p in fixed.parameters()) == 0


def test_split_heads_gives_head_j_features_j_times_d_onwards():
    attention = MultiHeadAttention(hidden_size=12, num_heads=3)
    x = torch.arange(12.0).expand(2, 5, 12)
    heads = attention.split_heads(x)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[0, 1, 0], torch.tensor([4.0, 5.0, 6.0, 7.0]))
    assert torch.equal(attention.merge_heads(heads), x)


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_pytorch_scaled_dot_product_attention(causal):
    attention = MultiHeadAttention(hidden_size=16, num_heads=4, causal=causal).eval()
    x = torch.randn(3, 6, 16)
    expected = reference_attention(attention, x, x, x, causal)
    torch.testing.assert_close(attention(x, x, x), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_handles_different_query_and_key_lengths():
    attention = MultiHeadAttention(hidden_size=16, num_heads=2).eval()
    query, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    expected = reference_attention(attention, query, memory, memory, causal=False)
    torch.testing.assert_close(attention(query, memory, memory), expected, atol=1e-5, rtol=1e-5)
    assert attention.attention_weights.shape == (2, 2, 3, 7)


def test_causal_attention_weights_are_zero_above_the_diagonal_and_rows_sum_to_one():
    attention = MultiHeadAttention(hidden_size=8, num_heads=2, causal=True).eval()
    x = torch.randn(2, 5, 8)
    attention(x, x, x)
    weights = attention.attention_weights
    upper = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    assert torch.all(weights[..., upper] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))


def make_model(**options):
    return TransformerSeq2Seq(VOCAB_SIZE, hidden_size=16, num_heads=2, num_encoder_layers=2,
                              num_decoder_layers=2, **options).eval()


def test_model_maps_token_ids_to_logits_of_every_target_position():
    logits = make_model()(torch.randint(0, 27, (4, 6)), torch.randint(0, 29, (4, 9)))
    assert logits.shape == (4, 9, VOCAB_SIZE)


def test_decoder_ignores_future_target_tokens():
    model = make_model()
    source, target = torch.randint(0, 27, (2, 5)), torch.randint(0, 29, (2, 8))
    changed = target.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % VOCAB_SIZE
    torch.testing.assert_close(model(source, target)[:, :5], model(source, changed)[:, :5])
    assert not torch.allclose(model(source, target)[:, 5:], model(source, changed)[:, 5:])


def test_every_target_position_sees_the_whole_source():
    model = make_model()
    source, target = torch.randint(0, 27, (2, 5)), torch.randint(0, 29, (2, 4))
    changed = source.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 27
    before, after = model(source, target), model(changed, target)
    assert not torch.allclose(before[:, 0], after[:, 0]), "the first output should depend on the last source letter"


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_decoder_knows_positions(positional):
    """The original starter's decoder had no positions: a repeated input gave identical outputs."""
    model = make_model(positional=positional)
    logits = model(torch.randint(0, 27, (1, 4)), torch.full((1, 6), 5))
    assert not torch.allclose(logits[0, 2], logits[0, 3]), "same token at two positions gave the same output"


def test_attention_maps_expose_every_layer_for_bertviz():
    model = make_model()
    model(torch.randint(0, 27, (1, 5)), torch.randint(0, 29, (1, 7)))
    maps = model.attention_maps()
    assert [w.shape for w in maps["encoder"]] == [(1, 2, 5, 5)] * 2
    assert [w.shape for w in maps["decoder"]] == [(1, 2, 7, 7)] * 2
    assert [w.shape for w in maps["cross"]] == [(1, 2, 7, 5)] * 2


def test_hidden_size_must_split_evenly_into_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(hidden_size=10, num_heads=3)
