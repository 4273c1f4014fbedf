"""The synthetic tasks' models (models/hybrid.py): causal, wired as documented, built from the students' layers."""

import pytest
import torch

from models.hybrid import JOINS, HybridBlock, RecurrentTokenModel, causal_transformer, hybrid
from models.mamba import Mamba, ResidualBlock
from models.transformer import EncoderLayer
from training.config import Config
from training.synthetic import TOKEN_MODELS, build_token_model

pytestmark = pytest.mark.needs_solution  # the models are made of the students' layers

VOCAB, LENGTH, HIDDEN = 16, 11, 16  # recall of seq_len 12 reads 11 positions


def small_config(model: str, **changes) -> Config:
    values = dict(task="incontext_recall", model=model, seq_len=LENGTH + 1, hidden_size=HIDDEN, num_heads=2,
                  num_layers=2, state_size=4)
    return Config(**{**values, **changes})


@pytest.mark.parametrize("config", [
    small_config("transformer"), small_config("mamba"), small_config("lstm"), small_config("gru"),
    *(small_config("hybrid", hybrid_join=join) for join in JOINS),
    small_config("hybrid", hybrid_order="attention_first", hybrid_blocks=2, mamba_layers=2),
    small_config("mamba_s4d_real"), small_config("s6"), small_config("gated_mlp"),
], ids=lambda config: f"{config.model}-{config.hybrid_join}-{config.hybrid_order}-{config.hybrid_blocks}")
def test_output_at_a_position_ignores_later_tokens(config):
    torch.manual_seed(0)
    model = build_token_model(config).eval()
    tokens = torch.randint(0, VOCAB, (2, LENGTH))
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % VOCAB  # everything from position 7 on is different
    before, after = model(tokens), model(changed)
    assert before.shape == (2, LENGTH, VOCAB)
    torch.testing.assert_close(after[:, :7], before[:, :7])
    assert not torch.allclose(after[:, 7:], before[:, 7:])


def block_and_input(join: str):
    torch.manual_seed(0)
    block = HybridBlock(HIDDEN, 2, attention_layers=1, mamba_layers=1, join=join, state_size=4)
    return block, torch.randn(2, LENGTH, HIDDEN)


def test_null_join_is_the_layers_one_after_the_other():
    block, x = block_and_input("null")
    mamba, attention = block.layers
    torch.testing.assert_close(block(x), attention(mamba(x)))


def test_res_join_adds_the_block_input():
    block, x = block_and_input("res")
    mamba, attention = block.layers
    torch.testing.assert_close(block(x), x + attention(mamba(x)))


def test_gated_res_join_gates_the_block_by_its_input():
    block, x = block_and_input("gated_res")
    mamba, attention = block.layers
    gate = torch.sigmoid(x @ block.gate.weight.T + block.gate.bias)
    torch.testing.assert_close(block(x), x + gate * attention(mamba(x)))


def test_attention_first_order_puts_the_transformer_layer_first():
    torch.manual_seed(0)
    block = HybridBlock(HIDDEN, 2, attention_layers=1, mamba_layers=2, order="attention_first", state_size=4)
    assert [type(layer) for layer in block.layers] == [EncoderLayer, ResidualBlock, ResidualBlock]


def test_hybrid_has_the_asked_number_of_blocks_and_layers():
    model = hybrid(VOCAB, HIDDEN, 2, blocks=3, attention_layers=2, mamba_layers=1, join="res",
                   order="mamba_first", max_length=LENGTH, state_size=4)
    kinds = [[type(layer) for layer in block.layers] for block in model.layers]
    assert kinds == [[ResidualBlock, EncoderLayer, EncoderLayer]] * 3


def test_transformer_layers_are_the_students_encoder_layers_made_causal():
    model = causal_transformer(VOCAB, HIDDEN, 2, num_layers=2, max_length=LENGTH)
    assert all(type(layer) is EncoderLayer and layer.self_attention.causal for layer in model.layers)


def test_hybrid_without_attention_has_no_position_table():
    model = hybrid(VOCAB, HIDDEN, 2, blocks=1, attention_layers=0, mamba_layers=2, join="null",
                   order="mamba_first", max_length=LENGTH, state_size=4)
    assert model.positions is None


def test_mamba_is_the_students_mamba_model():
    assert type(build_token_model(small_config("mamba"))) is Mamba


def test_unknown_join_is_refused():
    with pytest.raises(ValueError, match="join must be one of"):
        HybridBlock(HIDDEN, 2, 1, 1, join="sum")


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of"):
        RecurrentTokenModel(VOCAB, "rnn", HIDDEN, 1)


def test_every_registered_model_builds_for_a_task():
    for name in TOKEN_MODELS:
        logits = build_token_model(small_config(name))(torch.randint(0, VOCAB, (1, LENGTH)))
        assert logits.shape == (1, LENGTH, VOCAB), name
