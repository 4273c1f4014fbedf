"""Q1 Transformer, graded: 5 points.

Each test runs one function you write on inputs and parameters of its own and compares it with a trusted
oracle (autograde/oracles.py): PyTorch's `scaled_dot_product_attention`, the positional-encoding formula,
or the composition the README describes. `check` (autograde/uniform.py) judges every function the same
way: its values over several shapes and settings, its output's dtype, its gradients, training mode (with
dropout 0, and with dropout where the README puts it), each batch row alone, a second call after calls
with other sizes, and causality where it is promised. While one function runs, every other function you
write is replaced by its oracle, so a mistake costs points only in the tests of the function that holds it.
"""

import pytest

from autograde import functions
from autograde.uniform import check

ATTENTION = "Q1.1 Multi-head attention"
ENCODER = "Q1.2 Encoder"
DECODER = "Q1.3 Decoder"


@pytest.mark.points(0.5, readme=ATTENTION)
def test_causal_mask(case):
    check(case, functions.CAUSAL_MASK)


@pytest.mark.points(0.25, readme=ATTENTION)
def test_split_heads(case):
    check(case, functions.SPLIT_HEADS)


@pytest.mark.points(0.25, readme=ATTENTION)
def test_merge_heads(case):
    check(case, functions.MERGE_HEADS)


@pytest.mark.points(1, readme=ATTENTION)
def test_attention_matches_scaled_dot_product_attention(case):
    check(case, functions.ATTENTION)


@pytest.mark.points(1, readme=ATTENTION)
def test_causal_attention_ignores_future_tokens(case):
    check(case, functions.CAUSAL_ATTENTION)


@pytest.mark.points(0.5, readme=ENCODER)
def test_sinusoidal_positional_encoding(case):
    check(case, functions.POSITIONS)


@pytest.mark.points(0.25, readme=ENCODER)
def test_encoder_layer(case):
    check(case, functions.ENCODER_LAYER)


@pytest.mark.points(0.25, readme=ENCODER)
def test_encoder(case):
    check(case, functions.ENCODER)


@pytest.mark.points(0.5, readme=DECODER)
def test_decoder_layer(case):
    check(case, functions.DECODER_LAYER)


@pytest.mark.points(0.5, readme=DECODER)
def test_decoder(case):
    check(case, functions.DECODER)
