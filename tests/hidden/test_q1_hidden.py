"""Q1 Transformer, hidden tests (instructor-only; `python -m grading regrade` runs them): 1 point.

The same check as the public tests (autograde/uniform.py), at sizes the public tests never use, drawn
from the regrade's secret: other batch sizes, lengths (rectangular masks and attention), head counts and
hidden sizes, and float32 or float64. A submission fitted to the public tests' sizes loses these points;
a correct one cannot. A failure shows shapes, never the hidden inputs' values.
"""

import pytest

from autograde import functions
from autograde.uniform import check
from hidden.secret_sizes import attention_sizes, heads_sizes, mask_sizes, stack_sizes

ATTENTION, ENCODER, DECODER = "Q1.1 Multi-head attention", "Q1.2 Encoder", "Q1.3 Decoder"


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_masks_and_heads_at_other_sizes(case):
    check(case, functions.CAUSAL_MASK, **mask_sizes(case))
    check(case, functions.SPLIT_HEADS, **heads_sizes(case))
    check(case, functions.MERGE_HEADS, **heads_sizes(case))


@pytest.mark.points(0.25, readme=ATTENTION)
def test_hidden_attention_at_other_sizes(case):
    sizes = attention_sizes(case)
    check(case, functions.ATTENTION, **sizes)
    square = {**sizes["sizes"], "keys": sizes["sizes"]["queries"]}
    check(case, functions.CAUSAL_ATTENTION, sizes={**square, "causal": True}, variants=sizes["variants"])


@pytest.mark.points(0.25, readme=ENCODER)
def test_hidden_positions_and_encoder_at_other_sizes(case):
    length, hidden = case.choice([3, 11, 23, 40]), case.choice([2, 4, 10, 24, 40])
    check(case, functions.POSITIONS, sizes={"length": length, "hidden": hidden},
          variants=({"hidden": case.choice([8, 12, 20])}, {"length": case.choice([2, 5, 17])}))
    check(case, functions.ENCODER_LAYER, **stack_sizes(case, layer=True))
    check(case, functions.ENCODER, **stack_sizes(case))


@pytest.mark.points(0.25, readme=DECODER)
def test_hidden_decoder_at_other_sizes(case):
    check(case, functions.DECODER_LAYER, **stack_sizes(case, layer=True, source=True))
    check(case, functions.DECODER, **stack_sizes(case, source=True))
