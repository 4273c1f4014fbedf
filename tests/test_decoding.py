"""Step-by-step decoding (models/decoding.py) against the whole-sequence forward pass it replaces.

The oracle is the model's own `forward` (the reference solution): fed the same tokens, one step at a time
must give the logits the whole sequence gives at every position. In float64, so that any difference
beyond rounding is a real one.
"""

import pytest
import torch

from data.vocab import VOCAB
from models import MambaSeq2Seq, RNNSeq2Seq, TransformerSeq2Seq
from models.decoding import FullRerun, MambaStepper, TransformerStepper, greedy_decode, stepper_for, with_sos

pytestmark = pytest.mark.needs_solution

V = len(VOCAB)


def words(batch: int, source_length: int, target_length: int, seed: int = 0):
    """Random source (B, S) and target (B, T) character ids (letters and dashes, no SOS/EOS)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 27, (batch, source_length), generator=generator),
            torch.randint(0, 27, (batch, target_length), generator=generator))


def stepped_logits(stepper, target_in: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits (B, T, V), one position per step."""
    return torch.stack([stepper.step(token) for token in target_in.unbind(dim=1)], dim=1)


def mamba(**options) -> MambaSeq2Seq:
    torch.manual_seed(0)
    return MambaSeq2Seq(V, VOCAB.EOS, hidden_size=16, num_layers=2, state_size=4, **options).double().eval()


def transformer(**options) -> TransformerSeq2Seq:
    torch.manual_seed(0)
    return TransformerSeq2Seq(V, hidden_size=16, num_heads=2, **options).double().eval()


@pytest.mark.parametrize("discretization", ["zoh", "zoh_exact", "bilinear"])
@pytest.mark.parametrize("scan", ["sscan", "pair_scan"])
def test_mamba_steps_give_the_logits_of_the_whole_sequence(discretization, scan):
    model = mamba(discretization=discretization, scan=scan, conv_kernel=3)
    source, target = words(3, 5, 7)
    with torch.no_grad():
        expected = model(source, with_sos(target))  # (B, T+1, V)
        got = stepped_logits(MambaStepper(model, source), with_sos(target))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("layout", ["reversed", "twice"])
def test_mamba_steps_read_the_source_in_the_models_layout(layout):
    model = mamba(layout=layout)
    source, target = words(3, 5, 7, seed=2)
    with torch.no_grad():
        expected = model(source, with_sos(target))
        got = stepped_logits(MambaStepper(model, source), with_sos(target))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_mamba_steps_agree_where_the_bilinear_decay_is_negative():
    model = mamba(discretization="bilinear", dt_min=2.0, dt_max=4.0)  # Δ ≈ 3: Ā = (1 + ΔA/2)/(1 − ΔA/2) < 0
    block = model.mamba.layers[0].mixer
    smallest = []
    discretize = block.discretize
    block.discretize = lambda *args: smallest.append(discretize(*args)[0].min()) or discretize(*args)
    source, target = words(2, 4, 6, seed=1)
    with torch.no_grad():
        expected = model(source, with_sos(target))
        got = stepped_logits(MambaStepper(model, source), with_sos(target))
    assert min(smallest) < 0, "the test needs some Ā < 0"
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_transformer_steps_give_the_logits_of_the_whole_sequence(positional):
    model = transformer(positional=positional, num_decoder_layers=3)
    source, target = words(3, 6, 8)
    with torch.no_grad():
        expected = model(source, with_sos(target))
        got = stepped_logits(TransformerStepper(model, source), with_sos(target))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_transformer_computes_the_annotations_keys_and_values_once_per_word(monkeypatch):
    model = transformer()
    source, target = words(2, 5, 6)
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda s: calls.append(s.shape) or encode(s))
    with torch.no_grad():
        stepped_logits(TransformerStepper(model, source), with_sos(target))
    assert len(calls) == 1, f"the encoder should run once per word, ran {len(calls)} times"


def test_transformer_stepper_refuses_to_step_past_its_position_table():
    model = transformer(max_length=4)
    stepper = TransformerStepper(model, words(1, 3, 1)[0])
    with torch.no_grad():
        for _ in range(4):
            stepper.step(torch.tensor([VOCAB.SOS]))
        with pytest.raises(ValueError, match="max_length=4"):
            stepper.step(torch.tensor([VOCAB.SOS]))


@pytest.mark.parametrize("make", [mamba, transformer])
def test_greedy_decoding_step_by_step_writes_what_rerunning_the_whole_sequence_writes(make):
    model = make()
    source, _ = words(4, 6, 1, seed=2)
    with torch.no_grad():
        rerun, token, expected = FullRerun(model, source), torch.full((4,), VOCAB.SOS), []
        for _ in range(10):
            token = rerun.step(token).argmax(dim=-1)
            expected.append(token)
    got = greedy_decode(model, source, max_new_tokens=10)
    assert torch.equal(got, torch.stack(expected, dim=1)[:, :got.shape[1]])


def test_models_without_a_step_path_decode_by_rerunning():
    torch.manual_seed(0)
    model = RNNSeq2Seq(V, "gru", hidden_size=8).eval()
    assert stepper_for(model, words(1, 3, 1)[0]) is None
