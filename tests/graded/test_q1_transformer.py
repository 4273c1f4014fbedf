"""Q1 Transformer, graded: 5 points.

Each test runs one function you write (its *target*) on inputs and parameters of its own, and compares
the result with a trusted oracle (autograde/oracles.py): PyTorch's `scaled_dot_product_attention`,
the positional-encoding formula, or the composition the README describes. While the target runs, every
other function you write is replaced by its oracle, so a mistake in one function costs points only in
the tests that run that function. Every parameter is moved off its initial value first (two LayerNorms
then differ), and every module has dropout 0.5 but runs in eval mode (so dropout must be off).
"""

import pytest
import torch

from autograde import oracles
from autograde.oracles import sub

ATTENTION = "Q1.1 Multi-head attention"
ENCODER = "Q1.2 Encoder"
DECODER = "Q1.3 Decoder"
VOCAB_SIZE = 29
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}  # float32 outputs of a few layers: differences of ~1e-7 are rounding
DROPOUT = 0.5  # every module gets dropout, and runs in eval mode: dropout applied anyway shows
MHA = "transformer:MultiHeadAttention"


# --- what likely mistakes give, so that a failure can name one ------------------------------------------------


def mask_problem(query_length: int, key_length: int, hidden: bool = False):
    """A predicate for causal_mask(T, S): None when right, else what is wrong with it."""
    def problem(mask):
        expected = oracles.causal_mask(query_length, key_length)
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(expected.shape):
            return f"should be a tensor of shape {tuple(expected.shape)}, got {getattr(mask, 'shape', type(mask).__name__)}"
        if not bool(((mask == 0) | (mask == 1)).all()):
            return "should hold True/False (or 1/0) values"
        wrong = (mask.bool() != expected).nonzero().tolist()
        if not wrong:
            return None
        t, s = wrong[0]
        message = (f"entry [{t}, {s}] should be {bool(expected[t, s])} (query {t} {'may' if s <= t else 'must not'} "
                   f"see key {s}), got {bool(mask[t, s])}; {len(wrong)} of {expected.numel()} entries are wrong")
        got = mask.bool()
        if torch.equal(got, ~expected) or torch.equal(got, oracles.causal_mask(key_length, query_length).T):
            message += "\n  likely mistake: the mask is on the wrong side of the diagonal (future keys allowed, past hidden)"
        elif torch.equal(got, expected & ~torch.eye(query_length, key_length, dtype=torch.bool)):
            message += "\n  likely mistake: off by one, a position may not see itself"
        elif torch.equal(got, expected | torch.eye(query_length, key_length, dtype=torch.bool).roll(1, dims=1) & (
                torch.arange(key_length)[None, :] == torch.arange(query_length)[:, None] + 1)):
            message += "\n  likely mistake: off by one, a position sees the next one"
        if not hidden:
            message += f"\n  expected:\n{expected.int()}\n  got:\n{got.int()}"
        return message
    return problem


def swapped(params: dict, first: str, second: str) -> dict:
    """The parameters with two submodules' exchanged (what using one norm in place of the other gives)."""
    a, b = sub(params, first), sub(params, second)
    out = dict(params)
    out.update({f"{first}.{k}": v for k, v in b.items()})
    out.update({f"{second}.{k}": v for k, v in a.items()})
    return out


def copied(params: dict, source: str, target: str) -> dict:
    """The parameters with `target`'s replaced by `source`'s (one module used for both)."""
    out = dict(params)
    out.update({f"{target}.{k}": v for k, v in sub(params, source).items()})
    return out


def without(params: dict, name: str, value: float = 0.0) -> dict:
    out = dict(params)
    out[name] = torch.full_like(params[name], value)
    return out


def plain_norm(params: dict, name: str) -> dict:
    """A LayerNorm with weight 1 and bias 0: what normalising by hand, without the module, gives."""
    return without(without(params, f"{name}.weight", 1.0), f"{name}.bias", 0.0)


# --- Q1.1 multi-head attention ------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=ATTENTION)
def test_causal_mask_lets_each_position_see_itself_and_the_past_only(case):
    for length in (1, 4, 7):
        got = case.call("transformer:causal_mask", length, length)
        case.expect(mask_problem(length, length), got.output, what=f"causal_mask({length}, {length})",
                    where={"length": length})


@pytest.mark.points(0.25, readme=ATTENTION)
def test_split_heads_gives_head_j_features_j_times_d_onwards(case):
    attention = case.module(MHA, hidden_size=12, num_heads=3)
    x = case.randn(2, 5, 12)
    got = case.call(attention, x, method="split_heads")
    case.expect_close(got.output, oracles.split_heads(x, 3), atol=0, rtol=0,
                      what="split_heads of a (2, 5, 12) input with 3 heads (head j = features 4j ... 4j+3)",
                      alternatives={"splitting the features as (d h) instead of (h d)":
                                    x.reshape(2, 5, 4, 3).permute(0, 3, 1, 2)})


@pytest.mark.points(0.25, readme=ATTENTION)
def test_merge_heads_puts_the_heads_side_by_side(case):
    attention = case.module(MHA, hidden_size=12, num_heads=3)
    x = case.randn(2, 5, 12)
    heads = oracles.split_heads(x, 3)
    got = case.call(attention, heads, method="merge_heads")
    case.expect_close(got.output, x, atol=0, rtol=0,
                      what="merge_heads of the 3 heads of a (2, 5, 12) input (should give the input back)",
                      alternatives={"merging the features as (d h) instead of (h d)":
                                    heads.permute(0, 2, 3, 1).reshape(2, 5, 12)})


def attention_alternatives(attention, query, key, value) -> dict:
    """label -> the output a likely mistake gives, for these inputs."""
    params, config = attention.params, attention.config
    out = {
        "scores not divided by √d": oracles.attention(params, config, query, key, value, scale=1.0)[0],
        "scores divided by √H (the hidden size) instead of √d (the head size)":
            oracles.attention(params, config, query, key, value, scale=query.shape[-1] ** -0.5)[0],
        "values projected from the keys (W_v applied to `key`, not `value`)":
            oracles.attention(params, config, query, key, key)[0],
        "no output projection W_o": oracles.attention(
            {**params, "W_o.weight": torch.eye(query.shape[-1]), "W_o.bias": torch.zeros(query.shape[-1])},
            config, query, key, value)[0],
    }
    if config.get("causal"):
        T, S = query.shape[1], key.shape[1]
        out["a mask on the wrong side of the diagonal (each position sees the future, not the past)"] = \
            oracles.attention(params, config, query, key, value, mask=oracles.causal_mask(S, T).T)[0]
        out["no mask at all"] = oracles.attention(params, {**config, "causal": False}, query, key, value)[0]
    return out


@pytest.mark.points(1, readme=ATTENTION)
def test_attention_matches_pytorch_scaled_dot_product_attention(case):
    cases = [("self-attention, 4 heads", 16, 4, 6, 6), ("cross-attention, 2 heads, 3 queries, 7 keys", 16, 2, 3, 7)]
    for name, hidden, heads, queries, keys in cases:
        attention = case.module(MHA, hidden_size=hidden, num_heads=heads, dropout=DROPOUT)
        query = case.randn(3, queries, hidden)
        if queries == keys:
            key = value = query
        else:  # keys and values differ, so that projecting the values from the keys shows
            key, value = case.randn(3, keys, hidden), case.randn(3, keys, hidden)
        got = case.call(attention, query, key, value, read=("attention_weights",))
        expected, weights = oracles.attention(attention.params, attention.config, query, key, value)
        head_size = hidden // heads
        case.expect_close(got.output, expected, **TOLERANCE, where={"case": name},
                          what=f"{name}: the output against torch.nn.functional.scaled_dot_product_attention",
                          alternatives=attention_alternatives(attention, query, key, value))
        case.expect_close(got.read("attention_weights"), weights, **TOLERANCE, where={"case": name},
                          what=f"{name}: self.attention_weights (the softmax weights, shape (B, h, T, S))",
                          factors={"√d": head_size ** 0.5, "1/√d": head_size ** -0.5})


@pytest.mark.points(1, readme=ATTENTION)
def test_causal_attention_ignores_future_tokens(case):
    attention = case.module(MHA, hidden_size=16, num_heads=4, causal=True, dropout=DROPOUT)
    x = case.randn(2, 7, 16)
    got = case.call(attention, x, x, x, read=("attention_weights",))
    expected, weights = oracles.attention(attention.params, attention.config, x, x, x)
    case.expect_close(got.output, expected, **TOLERANCE,
                      what="causal self-attention against scaled_dot_product_attention with a lower-triangular mask",
                      alternatives=attention_alternatives(attention, x, x, x))
    above = torch.ones(7, 7, dtype=torch.bool).triu(diagonal=1)

    def future_weights(w):
        if tuple(w.shape) != (2, 4, 7, 7):
            return f"should hold the (B, h, T, T) = (2, 4, 7, 7) weights, got {tuple(w.shape)}"
        leak = w[..., above].abs().max().item()
        return None if leak == 0 else f"weights on future keys (above the diagonal) should be exactly 0; the largest is {leak:.3g}"

    case.expect(future_weights, got.read("attention_weights"), what="self.attention_weights of causal attention")
    case.expect_close(got.read("attention_weights"), weights, **TOLERANCE, what="self.attention_weights")
    changed = x.clone()
    changed[:, 4:] = case.randn(2, 3, 16)
    later = case.call(attention, changed, changed, changed)
    case.expect_close(later.output[:, :4], got.output[:, :4], **TOLERANCE,
                      what="outputs at positions 0-3 after changing the inputs at positions 4-6 (should not change)")


# --- Q1.2 encoder ---------------------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=ENCODER)
def test_sinusoidal_positional_encoding_matches_the_formula(case):
    for length, hidden in ((50, 16), (9, 6)):
        got = case.call("transformer:sinusoidal_positional_encoding", length, hidden)
        expected = oracles.sinusoidal_positional_encoding(length, hidden)
        position = torch.arange(length, dtype=torch.float64)[:, None]
        i = torch.arange(hidden // 2, dtype=torch.float64)[None, :]
        alternatives = {
            "cos on the even columns and sin on the odd ones":
                torch.stack([torch.cos(position / 10000 ** (2 * i / hidden)),
                             torch.sin(position / 10000 ** (2 * i / hidden))], dim=-1).reshape(length, hidden),
            "10000^(i/H) instead of 10000^(2i/H)":
                torch.stack([torch.sin(position / 10000 ** (i / hidden)),
                             torch.cos(position / 10000 ** (i / hidden))], dim=-1).reshape(length, hidden),
        }
        case.expect_close(got.output, expected, atol=1e-5, rtol=1e-5, where={"size": f"{length}x{hidden}"},
                          what=f"sinusoidal_positional_encoding({length}, {hidden}) against PE[pos, 2i] = "
                               f"sin(pos / 10000^(2i/H)), PE[pos, 2i+1] = cos(pos / 10000^(2i/H))",
                          alternatives={k: v.float() for k, v in alternatives.items()})


@pytest.mark.points(0.25, readme=ENCODER)
def test_encoder_layer_adds_attention_then_mlp_each_of_the_normalised_input(case):
    layer = case.module("transformer:EncoderLayer", hidden_size=16, num_heads=2, dropout=DROPOUT)
    x = case.randn(3, 6, 16)
    got = case.call(layer, x)
    params, config = layer.params, layer.config
    case.expect_close(got.output, oracles.encoder_layer(params, config, x), **TOLERANCE,
                      what="EncoderLayer: x + attention(norm(x)), then + feed_forward(norm(...))",
                      alternatives={
                          "the two LayerNorms exchanged": oracles.encoder_layer(
                              swapped(params, "attention_norm", "feed_forward_norm"), config, x),
                          "attention_norm used for both sublayers": oracles.encoder_layer(
                              copied(params, "attention_norm", "feed_forward_norm"), config, x),
                          "a normalisation without the LayerNorms' own weights": oracles.encoder_layer(
                              plain_norm(plain_norm(params, "attention_norm"), "feed_forward_norm"), config, x)})


@pytest.mark.points(0.25, readme=ENCODER)
def test_encoder_adds_positions_to_embeddings_runs_every_layer_and_normalises(case):
    encoder = case.module("transformer:TransformerEncoder", vocab_size=VOCAB_SIZE, hidden_size=16, num_heads=2,
                          num_layers=2, dropout=DROPOUT, positional="learned")
    source = case.randint(0, 27, (3, 5))
    got = case.call(encoder, source)
    params, config = encoder.params, encoder.config
    case.expect_close(got.output, oracles.encoder(params, config, source), **TOLERANCE,
                      what="TransformerEncoder: embeddings + positions, every layer in order, the final LayerNorm",
                      alternatives={"no positions added": oracles.encoder(without(params, "positions.table"), config,
                                                                          source),
                                    "only the first layer": oracles.encoder(params, {**config, "num_layers": 1}, source)})


# --- Q1.3 decoder ---------------------------------------------------------------------------------------------


@pytest.mark.points(0.5, readme=DECODER)
def test_decoder_layer_runs_causal_self_attention_then_cross_attention_then_mlp(case):
    layer = case.module("transformer:DecoderLayer", hidden_size=16, num_heads=2, dropout=DROPOUT)
    x, annotations = case.randn(3, 5, 16), case.randn(3, 7, 16)
    got = case.call(layer, x, annotations)
    params, config = layer.params, layer.config
    case.expect_close(got.output, oracles.decoder_layer(params, config, x, annotations), **TOLERANCE,
                      what="DecoderLayer: causal self-attention, cross-attention (queries from the decoder, keys "
                           "and values from the annotations), MLP, each x + sublayer(norm(x))",
                      alternatives={
                          "self-attention through the cross_attention module (not causal)": oracles.decoder_layer(
                              copied(params, "cross_attention", "self_attention"), config, x, annotations),
                          "the self- and cross-attention norms exchanged": oracles.decoder_layer(
                              swapped(params, "self_attention_norm", "cross_attention_norm"), config, x, annotations)})


@pytest.mark.points(0.5, readme=DECODER)
def test_decoder_adds_positions_runs_every_layer_normalises_and_projects_to_the_vocabulary(case):
    decoder = case.module("transformer:TransformerDecoder", vocab_size=VOCAB_SIZE, hidden_size=16, num_heads=2,
                          num_layers=2, dropout=DROPOUT, positional="sinusoidal")
    target_in, annotations = case.randint(0, VOCAB_SIZE, (3, 6)), case.randn(3, 4, 16)
    got = case.call(decoder, target_in, annotations)
    params, config = decoder.params, decoder.config
    case.expect_close(got.output, oracles.decoder(params, config, target_in, annotations), **TOLERANCE,
                      what="TransformerDecoder: embeddings + positions, every layer, the final LayerNorm, the "
                           "projection to the 29 tokens",
                      alternatives={"no positions added (the original starter code's bug)": oracles.decoder(
                          without(params, "positions.table"), config, target_in, annotations)})
    future = target_in.clone()
    future[:, 4:] = (future[:, 4:] + 1) % VOCAB_SIZE
    changed = case.call(decoder, future, annotations)
    case.expect_close(changed.output[:, :4], got.output[:, :4], **TOLERANCE,
                      what="logits at target positions 0-3 after changing target tokens 4-5 (should not change)")
