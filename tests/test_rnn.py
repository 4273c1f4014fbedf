"""The LSTM and GRU baselines (models/rnn.py, given): shapes, causal decoding, and a real run via main.py."""

import csv
import json

import pytest
import torch

import main
from models.rnn import RNNSeq2Seq
from models.decoding import greedy_decode, with_sos

pytestmark = pytest.mark.usefixtures("single_torch_thread")
CELLS = ["lstm", "gru"]


def small_model(cell, encoder_layers=1, decoder_layers=1):
    torch.manual_seed(0)
    return RNNSeq2Seq(29, cell, hidden_size=16, num_encoder_layers=encoder_layers,
                      num_decoder_layers=decoder_layers).eval()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [(1, 1), (2, 3)])
def test_rnn_gives_logits_for_every_target_position_and_attention_over_the_source(cell, layers):
    model = small_model(cell, *layers)
    source, target_in = torch.randint(0, 27, (3, 5)), torch.randint(0, 29, (3, 7))
    logits = model(source, target_in)
    assert logits.shape == (3, 7, 29)
    assert model.attention_weights.shape == (3, 7, 5)
    torch.testing.assert_close(model.attention_weights.sum(-1), torch.ones(3, 7))


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_decoder_output_ignores_later_target_tokens(cell):
    model = small_model(cell)
    source, target_in = torch.randint(0, 27, (2, 6)), torch.randint(0, 29, (2, 8))
    changed = target_in.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 29
    torch.testing.assert_close(model(source, changed)[:, :5], model(source, target_in)[:, :5])


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_decoding_agrees_with_the_teacher_forced_pass_on_its_own_output(cell):
    """For a causal decoder, feeding greedy decoding's tokens back in one pass picks the same tokens."""
    model = small_model(cell)
    source = torch.randint(1, 27, (4, 6))
    decoded = greedy_decode(model, source, max_new_tokens=9)
    forced = model(source, with_sos(decoded[:, :-1])).argmax(dim=-1)
    assert torch.equal(forced, decoded), f"greedy {decoded.tolist()} vs teacher-forced {forced.tolist()}"


@pytest.mark.parametrize("cell", CELLS)
def test_shipped_rnn_config_trains_through_main(cell, tiny_data_file, tmp_path, capsys):
    status = main.main(["--config", f"exps/args_piglatin_small_{cell}.txt", "--data", str(tiny_data_file),
                        "--epochs", "3", "--hidden_size", "16", "--out_dir", str(tmp_path), "--run_name", cell,
                        "--accelerator", "cpu", "--num_samples", "3", "--lr", "1e-2"])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / cell / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and 0 <= metrics["val_word_acc"] <= 1, metrics
    with open(tmp_path / cell / "logs" / "metrics.csv", newline="") as file:
        losses = [float(row["train_loss"]) for row in csv.DictReader(file) if row.get("train_loss")]
    assert len(losses) == 3 and losses[-1] < losses[0], f"train_loss per epoch should fall: {losses}"
