"""The Transformer's given parts: positions as parameters or buffer, shapes, the maps bertviz draws.

What students write is checked, for points, in tests/graded/test_q1_transformer.py. Tests here that run
a whole model need those functions written: on the student template they skip, naming the first one
that is not (the `needs_solution` marker)."""

import pytest
import torch

from models.transformer import (
    MultiHeadAttention,
    PositionalEncoding,
    TransformerSeq2Seq,
)

VOCAB_SIZE = 29


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)





@pytest.mark.needs_solution
def test_learned_positions_are_parameters_and_sinusoidal_ones_are_not():
    learned = PositionalEncoding(8, 10, "learned")
    fixed = PositionalEncoding(8, 10, "sinusoidal")
    assert sum(p.numel() for p in learned.parameters()) == 80
    assert sum(p.numel() for p in fixed.parameters()) == 0






def make_model(**options):
    return TransformerSeq2Seq(VOCAB_SIZE, hidden_size=16, num_heads=2, num_encoder_layers=2,
                              num_decoder_layers=2, **options).eval()


@pytest.mark.needs_solution
def test_model_maps_token_ids_to_logits_of_every_target_position():
    logits = make_model()(torch.randint(0, 27, (4, 6)), torch.randint(0, 29, (4, 9)))
    assert logits.shape == (4, 9, VOCAB_SIZE)




@pytest.mark.needs_solution
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_decoder_knows_positions(positional):
    """The original starter's decoder had no positions: a repeated input gave identical outputs."""
    model = make_model(positional=positional)
    logits = model(torch.randint(0, 27, (1, 4)), torch.full((1, 6), 5))
    assert not torch.allclose(logits[0, 2], logits[0, 3]), "same token at two positions gave the same output"


@pytest.mark.needs_solution
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
