"""Q1 Transformer, graded: 5 points.

Each test checks one function of `models/transformer.py` against a trusted oracle — PyTorch's own
`scaled_dot_product_attention`, the positional-encoding formula, or the composition the README describes
built from the module's own layers. Where a function calls another one you write, the test swaps that
other one for the oracle, so that one mistake costs points in one place only.
"""

import functools

import pytest
import torch
import torch.nn.functional as F

import models.transformer as transformer
from models.transformer import (
    DecoderLayer,
    EncoderLayer,
    MultiHeadAttention,
    TransformerDecoder,
    TransformerEncoder,
    TransformerSeq2Seq,
    causal_mask,
    sinusoidal_positional_encoding,
)
from scoring import check, expect_close, fail

ATTENTION = "Q1.1 Multi-head attention"
ENCODER = "Q1.2 Encoder"
DECODER = "Q1.3 Decoder"
VOCAB_SIZE = 29
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}  # float32 outputs of a few layers: differences of ~1e-7 are rounding


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# --- oracles -----------------------------------------------------------------------------------------------


def oracle_mask(query_length: int, key_length: int, device=None) -> torch.Tensor:
    """(T, S) booleans, True where key s is not in the future of query t."""
    return torch.tensor([[s <= t for s in range(key_length)] for t in range(query_length)], device=device)


def oracle_split(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, H) -> (B, h, L, d), head j taking features j*d ... (j+1)*d - 1."""
    size = x.shape[-1] // num_heads
    return torch.stack([x[..., j * size:(j + 1) * size] for j in range(num_heads)], dim=1)


def oracle_merge(x: torch.Tensor) -> torch.Tensor:
    """(B, h, L, d) -> (B, L, H), the heads side by side."""
    return torch.cat(x.unbind(dim=1), dim=-1)


def sdpa(module: MultiHeadAttention, query, key, value, causal: bool, values=None):
    """PyTorch's scaled_dot_product_attention with the module's own projections; before W_o and merging.
    With `values` given, they replace the projected values (identity values give the weights)."""
    q = oracle_split(module.W_q(query), module.num_heads)
    k = oracle_split(module.W_k(key), module.num_heads)
    v = oracle_split(module.W_v(value), module.num_heads) if values is None else values
    mask = oracle_mask(q.shape[2], k.shape[2]) if causal else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def oracle_attention(module: MultiHeadAttention, query, key, value) -> torch.Tensor:
    """The module's attention output (B, T, H), computed by PyTorch."""
    return module.W_o(oracle_merge(sdpa(module, query, key, value, module.causal)))


def oracle_weights(module: MultiHeadAttention, query, key) -> torch.Tensor:
    """The softmax weights (B, h, T, S): attention over identity values returns the weights themselves."""
    batch, length = key.shape[0], key.shape[1]
    identity = torch.eye(length).expand(batch, module.num_heads, length, length)
    return sdpa(module, query, key, key, module.causal, values=identity)


@pytest.fixture
def oracle_heads_and_mask(monkeypatch):
    """Your forward pass with the oracle's causal_mask, split_heads and merge_heads in place of yours,
    so that a mistake there is counted by their own tests only."""
    monkeypatch.setattr(transformer, "causal_mask", oracle_mask)
    monkeypatch.setattr(MultiHeadAttention, "split_heads", lambda self, x: oracle_split(x, self.num_heads))
    monkeypatch.setattr(MultiHeadAttention, "merge_heads", lambda self, x: oracle_merge(x))


def use_oracle_attention(*modules: MultiHeadAttention):
    """Makes these attention modules compute with the oracle instead of your forward."""
    for module in modules:
        module.forward = functools.partial(oracle_attention, module)


def oracle_encoder_layer(layer: EncoderLayer, x):
    """x + attention(norm(x)), then + feed_forward(norm(.)), with the oracle's attention."""
    normed = layer.attention_norm(x)
    middle = x + oracle_attention(layer.self_attention, normed, normed, normed)
    return middle + layer.feed_forward(layer.feed_forward_norm(middle))


def oracle_decoder_layer(layer: DecoderLayer, x, annotations):
    """Causal self-attention, cross-attention over the annotations, MLP: each x + sublayer(norm(x))."""
    normed = layer.self_attention_norm(x)
    x1 = x + oracle_attention(layer.self_attention, normed, normed, normed)
    normed = layer.cross_attention_norm(x1)
    x2 = x1 + oracle_attention(layer.cross_attention, normed, annotations, annotations)
    return x2 + layer.feed_forward(layer.feed_forward_norm(x2))


# --- Q1.1 multi-head attention ------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=ATTENTION)
def test_causal_mask_lets_each_position_see_itself_and_the_past_only():
    for length in (1, 4, 7):
        mask = causal_mask(length, length)
        expected = oracle_mask(length, length)
        check(isinstance(mask, torch.Tensor) and mask.shape == expected.shape,
              f"causal_mask({length}, {length}) should be a tensor of shape {tuple(expected.shape)}, got "
              f"{getattr(mask, 'shape', type(mask).__name__)}")
        check(bool(((mask == 0) | (mask == 1)).all()),
              f"causal_mask({length}, {length}) should hold True/False (or 1/0) values, got {mask.unique().tolist()}")
        wrong = (mask.bool() != expected).nonzero().tolist()
        if wrong:
            t, s = wrong[0]
            fail(f"causal_mask({length}, {length})[{t}, {s}] should be {bool(expected[t, s])} (query {t} "
                 f"{'may' if s <= t else 'must not'} see key {s}), got {bool(mask[t, s])}; "
                 f"{len(wrong)} of {length * length} entries are wrong\n"
                 f"  expected:\n{expected.int()}\n  got:\n{mask.int()}")


@pytest.mark.points(0.5, readme=ATTENTION)
def test_split_heads_gives_head_j_features_j_times_d_onwards_and_merge_heads_undoes_it():
    attention = MultiHeadAttention(hidden_size=12, num_heads=3)
    x = torch.randn(2, 5, 12)
    expect_close(attention.split_heads(x), oracle_split(x, 3), atol=0, rtol=0,
                 what="split_heads of a (2, 5, 12) input with 3 heads (head j = features 4j ... 4j+3)")
    expect_close(attention.merge_heads(oracle_split(x, 3)), x, atol=0, rtol=0,
                 what="merge_heads of the 3 heads of a (2, 5, 12) input (should give the input back)")


@pytest.mark.points(1, readme=ATTENTION)
def test_attention_matches_pytorch_scaled_dot_product_attention(oracle_heads_and_mask):
    cases = [("self-attention, 4 heads", 16, 4, 6, 6), ("cross-attention, 2 heads, 3 queries, 7 keys", 16, 2, 3, 7)]
    for name, hidden, heads, queries, keys in cases:
        attention = MultiHeadAttention(hidden_size=hidden, num_heads=heads).eval()
        query = torch.randn(3, queries, hidden)
        memory = query if queries == keys else torch.randn(3, keys, hidden)
        with torch.no_grad():
            output = attention(query, memory, memory)
            expected = oracle_attention(attention, query, memory, memory)
            weights = oracle_weights(attention, query, memory)
        expect_close(output, expected, **TOLERANCE,
                     what=f"{name}: the output against torch.nn.functional.scaled_dot_product_attention")
        expect_close(attention.attention_weights, weights, **TOLERANCE,
                     what=f"{name}: self.attention_weights (the softmax weights, shape (B, h, T, S))")


@pytest.mark.points(1, readme=ATTENTION)
def test_causal_attention_ignores_future_tokens(oracle_heads_and_mask):
    attention = MultiHeadAttention(hidden_size=16, num_heads=4, causal=True).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        output = attention(x, x, x)
        weights = attention.attention_weights
        expect_close(output, oracle_attention(attention, x, x, x), **TOLERANCE,
                     what="causal self-attention against scaled_dot_product_attention with a lower-triangular mask")
        check(weights is not None and weights.shape == (2, 4, 7, 7),
              f"self.attention_weights should hold the (B, h, T, T) = (2, 4, 7, 7) weights, got "
              f"{None if weights is None else tuple(weights.shape)}")
        above = torch.ones(7, 7, dtype=torch.bool).triu(diagonal=1)
        leak = weights[..., above].abs().max().item()
        check(leak == 0, f"causal attention weights above the diagonal (on future keys) should be exactly 0; "
                         f"the largest is {leak:.3g}")
        changed = x.clone()
        changed[:, 4:] = torch.randn(2, 3, 16)
        expect_close(attention(changed, changed, changed)[:, :4], output[:, :4], **TOLERANCE,
                     what="outputs at positions 0-3 after changing the inputs at positions 4-6 (should not change)")


# --- Q1.2 encoder ---------------------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=ENCODER)
def test_sinusoidal_positional_encoding_matches_the_formula():
    for length, hidden in ((50, 16), (9, 6)):
        table = sinusoidal_positional_encoding(length, hidden)
        position = torch.arange(length, dtype=torch.float64)[:, None]
        i = torch.arange(hidden // 2, dtype=torch.float64)[None, :]
        angle = position / 10000 ** (2 * i / hidden)
        expected = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(length, hidden)
        expect_close(table, expected.float(), atol=1e-5, rtol=1e-5,
                     what=f"sinusoidal_positional_encoding({length}, {hidden}) against "
                          f"PE[pos, 2i] = sin(pos / 10000^(2i/H)), PE[pos, 2i+1] = cos(pos / 10000^(2i/H))")


@pytest.mark.points(0.25, readme=ENCODER)
def test_encoder_layer_adds_attention_then_mlp_each_of_the_normalised_input():
    layer = EncoderLayer(hidden_size=16, num_heads=2).eval()
    use_oracle_attention(layer.self_attention)
    x = torch.randn(3, 6, 16)
    with torch.no_grad():
        expect_close(layer(x), oracle_encoder_layer(layer, x), **TOLERANCE,
                     what="EncoderLayer: x + attention(norm(x)), then + feed_forward(norm(...))")


@pytest.mark.points(0.25, readme=ENCODER)
def test_encoder_adds_positions_to_embeddings_runs_every_layer_and_normalises():
    encoder = TransformerEncoder(VOCAB_SIZE, 16, num_heads=2, num_layers=2, positional="learned").eval()
    with torch.no_grad():
        encoder.positions.table.mul_(50)  # large positions, so that leaving them out shows
    for layer in encoder.layers:
        layer.forward = functools.partial(oracle_encoder_layer, layer)
    source = torch.randint(0, 27, (3, 5))
    with torch.no_grad():
        hidden = encoder.positions(encoder.embedding(source))
        for layer in encoder.layers:
            hidden = layer(hidden)
        expect_close(encoder(source), encoder.norm(hidden), **TOLERANCE,
                     what="TransformerEncoder: embeddings + positions, every layer in order, the final LayerNorm")


# --- Q1.3 decoder ---------------------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=DECODER)
def test_decoder_layer_runs_causal_self_attention_then_cross_attention_then_mlp():
    layer = DecoderLayer(hidden_size=16, num_heads=2).eval()
    use_oracle_attention(layer.self_attention, layer.cross_attention)
    x, annotations = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    with torch.no_grad():
        expect_close(layer(x, annotations), oracle_decoder_layer(layer, x, annotations), **TOLERANCE,
                     what="DecoderLayer: causal self-attention, cross-attention (queries from the decoder, keys "
                          "and values from the annotations), MLP, each x + sublayer(norm(x))")


@pytest.mark.points(0.25, readme=DECODER)
def test_decoder_adds_positions_runs_every_layer_normalises_and_projects_to_the_vocabulary():
    decoder = TransformerDecoder(VOCAB_SIZE, 16, num_heads=2, num_layers=2, positional="learned").eval()
    with torch.no_grad():
        decoder.positions.table.mul_(50)
    for layer in decoder.layers:
        layer.forward = functools.partial(oracle_decoder_layer, layer)
    target_in, annotations = torch.randint(0, 29, (3, 6)), torch.randn(3, 4, 16)
    with torch.no_grad():
        hidden = decoder.positions(decoder.embedding(target_in))
        for layer in decoder.layers:
            hidden = layer(hidden, annotations)
        expect_close(decoder(target_in, annotations), decoder.output(decoder.norm(hidden)), **TOLERANCE,
                     what="TransformerDecoder: embeddings + positions, every layer, the final LayerNorm, "
                          "the projection to the 29 tokens")


@pytest.mark.points(0.25, readme=DECODER)
def test_translation_model_ignores_future_target_tokens_and_sees_the_whole_source():
    model = TransformerSeq2Seq(VOCAB_SIZE, hidden_size=16, num_heads=2, positional="learned").eval()
    source, target = torch.randint(0, 27, (2, 5)), torch.randint(0, 29, (2, 8))
    future = target.clone()
    future[:, 5:] = (future[:, 5:] + 1) % VOCAB_SIZE
    last_letter = source.clone()
    last_letter[:, -1] = (last_letter[:, -1] + 1) % 27
    with torch.no_grad():
        logits = model(source, target)
        expect_close(model(source, future)[:, :5], logits[:, :5], **TOLERANCE,
                     what="logits at target positions 0-4 after changing target tokens 5-7 (should not change)")
        moved = (model(last_letter, target)[:, 0] - logits[:, 0]).abs().max().item()
    check(moved > 1e-4, f"the first target position should depend on the last source letter (through "
                        f"cross-attention); changing that letter moved its logits by {moved:.3g} only")
