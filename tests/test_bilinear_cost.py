"""bench.bilinear_cost: its "no log" variants train exactly as the real ones do, so their time is a fair bound."""

import dataclasses

import pytest
import torch

from bench import bilinear_cost
from data.datamodule import PigLatinDataModule
from training.config import REPOSITORY, build_config
from training.piglatin import Seq2SeqModule

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.needs_solution]


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_without_the_log_the_given_scan_computes_the_same_loss_and_gradients(discretization):
    config = build_config(bilinear_cost.CONFIG, ["--discretization", discretization, "--hidden_size", "16",
                                                  "--dt_min", "0.5", "--dt_max", "2.0"])  # some Ā < 0 (bilinear)
    datamodule = PigLatinDataModule(REPOSITORY / "data" / "pig_latin_small.txt", 8, 0.2, 0)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    results = []
    for replacement in (None, bilinear_cost.decay_only):
        torch.manual_seed(0)
        module = Seq2SeqModule(dataclasses.asdict(config)).eval()
        with bilinear_cost.log_of_decay_replaced(replacement):
            loss = module.loss(batch)
            loss.backward()
        results.append((loss.detach(), [parameter.grad for parameter in module.parameters()]))
    (loss, grads), (loss_no_log, grads_no_log) = results
    assert torch.equal(loss, loss_no_log) and torch.isfinite(loss)
    for grad, grad_no_log in zip(grads, grads_no_log):
        assert torch.equal(grad, grad_no_log)


def test_the_benchmark_reports_every_variant_against_zero_order_hold(capsys):
    assert bilinear_cost.main(["--steps", "1", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Machine: ")
    assert [line.split("  ")[0].strip() for line in lines[2:]] == list(bilinear_cost.VARIANTS)
    assert "1.00x zoh" in lines[2]


def test_bad_counts_are_refused_in_one_line():
    with pytest.raises(SystemExit):
        bilinear_cost.main(["--steps", "0"])
