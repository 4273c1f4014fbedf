"""bench.small_data and analysis.small_data: what a run records and how the tables add it up, never how
fast or how accurate anything is."""

import json

import pytest

from analysis import small_data as analysis
from bench import small_data
from training.config import REPOSITORY, build_config

pytestmark = [pytest.mark.usefixtures("single_torch_thread")]


@pytest.mark.parametrize("setting", [setting for plan in small_data.PLANS.values() for setting in plan],
                         ids=lambda setting: setting.name)
def test_every_setting_of_every_plan_is_a_valid_config(setting):
    build_config(REPOSITORY / setting.config, list(setting.options))
    assert setting.implementation in ("ours", "mambapy", "mambapy_lm")
    assert setting.device in ("cpu", "gpu", "laptop")


@pytest.mark.needs_solution
def test_the_word_log_agrees_with_the_accuracy_the_run_logs_and_its_greedy_decoding(tiny_data_file, tmp_path):
    setting = small_data.Setting("tiny", small_data.SMALL_MAMBA, (
        "--data", str(tiny_data_file), "--val_fraction", "0.25", "--hidden_size", "16", "--state_size", "4",
        "--epochs", "3"))
    run_dir = small_data.train_one(setting, 0, "cpu", tmp_path)
    row = small_data.collect_run(setting, 0, "cpu", run_dir, "finished", 1.0)
    assert len(row["right_by_epoch"]) == 3 == len(row["curves"]["val_word_acc"])
    for bits, logged in zip(row["right_by_epoch"], row["curves"]["val_word_acc"]):
        assert bits.count("1") / len(bits) == pytest.approx(logged, abs=1e-6)
    val = row["words"]["val"]
    assert sorted(val) == row["val_words"] and len(val) == 30
    right = sum(expected == predicted for expected, predicted in val.values())
    assert right / len(val) == pytest.approx(row["metrics"]["val_word_acc"])
    assert row["words"]["train_words"] == 90


@pytest.mark.needs_solution
@pytest.mark.parametrize("implementation", ["mambapy", "mambapy_lm"])
def test_mambapy_builds_its_blocks_inside_our_model_for_both_tasks(implementation, monkeypatch):
    pytest.importorskip("mambapy")
    import torch
    from mambapy.mamba import ResidualBlock

    from training import module, synthetic

    monkeypatch.setattr(module, "build_model", module.build_model)  # use_mambapy swaps both; put them back after
    monkeypatch.setitem(synthetic.TOKEN_MODELS, "mamba", synthetic.TOKEN_MODELS["mamba"])
    small_data.use_mambapy(implementation)
    config = build_config(REPOSITORY / small_data.SMALL_MAMBA, ["--hidden_size", "16", "--state_size", "4"])
    model = module.build_model(config)
    assert all(isinstance(layer, ResidualBlock) for layer in model.mamba.layers)
    assert model(torch.randint(0, 27, (2, 5)), torch.randint(0, 27, (2, 7))).shape == (2, 7, 29)
    copying = build_config(REPOSITORY / small_data.COPYING_MAMBA, ["--hidden_size", "8"])
    assert all(isinstance(layer, ResidualBlock) for layer in synthetic.build_token_model(copying).layers)
    delta_bias = model.mamba.layers[0].mixer.dt_proj.bias
    assert torch.all(delta_bias == 0) == (implementation == "mambapy_lm"), "the LM's init zeroes Δ's bias"


def run(setting, seed, accuracy, status="finished", curve=None, words=None, right_by_epoch=None):
    """A results row as bench.small_data writes it, for the analysis."""
    row = {"setting": setting, "config": small_data.SMALL_MAMBA, "options": "--epochs 3", "implementation": "ours",
           "seed": seed, "device": "cpu", "status": status, "curves": {"val_word_acc": curve or [0.1, 0.5, accuracy],
                                                                        "train_loss": [1.0, 0.5, 0.1]},
           "machine": "Machine: test (1 core); torch"}
    if status == "finished":
        row["metrics"] = {"val_word_acc": accuracy, "seconds_per_epoch": 2.0}
    if words is not None:
        row["words"] = {"val": words, "train_words": 10, "train_wrong": []}
    if right_by_epoch is not None:
        row["val_words"], row["right_by_epoch"] = sorted(words), right_by_epoch
    return row


def test_summary_averages_complete_runs_and_leaves_out_those_a_deadline_cut_short():
    runs = [run("a", 0, 0.9), run("a", 1, 0.8), run("a", 2, 0.0, status="stopped", curve=[0.1, 0.2]),
            run("b", 0, 0.5, status="failed", curve=[0.3, 0.4, 0.5])]
    rows = {row[0]: row for row in analysis.summary_rows(runs)}
    assert rows["a"][1:4] == ["0 1", "0.8500 (0.8000–0.9000)", "0.9000 / 0.8000"]
    assert rows["b"][2] == "0.5000 (0.5000–0.5000)" and "1 without the final evaluation" in rows["b"][5]
    assert rows["a"][8] == "cpu, test"


def test_a_synthetic_run_that_stopped_at_a_perfect_score_counts_though_its_evaluation_failed():
    perfect = {**run("c", 0, 1.0, status="failed"), "curves": {"val_acc": [0.5, 1.0]}}
    cut = {**run("c", 1, 0.9, status="stopped"), "curves": {"val_acc": [0.5, 0.9]}}
    rows = analysis.summary_rows([perfect, cut])
    assert rows[0][1:3] == ["0", "1.0000 (1.0000–1.0000)"]


def test_a_seed_run_twice_counts_once():
    rows = analysis.summary_rows([run("a", 0, 0.9), run("a", 0, 0.7), run("a", 1, 0.8)])
    assert rows[0][1:3] == ["0 1", "0.7500 (0.7000–0.8000)"]


def test_errors_pool_the_seeds_greedy_translations_and_per_epoch_logs():
    words_0 = {"team": ["eamtay", "eamtay"], "shopping": ["oppingshay", "opingshay"]}
    words_1 = {"team": ["eamtay", "eamtway"], "yet": ["yetay", "yetay"]}
    group = [run("a", 0, 0.5, words=words_0, right_by_epoch=["00", "01"]),  # sorted words: shopping, team
             run("a", 1, 0.5, words=words_1, right_by_epoch=["00", "10"])]  # team, yet
    errors = analysis.pooled_errors(group)
    assert errors["clause"] == {"one consonant": (1, 2), "consonant cluster": (1, 1), "y": (0, 1)}
    assert errors["kinds"]["suffix"] == 1 and errors["kinds"]["copy: length"] == 1
    curves = analysis.error_curves(group, "clause")
    assert curves["one consonant"] == [1.0, 0.0] and curves["consonant cluster"] == [1.0, 1.0]
    assert curves["y"] == [1.0, 1.0]


def test_results_files_are_read_plain_or_gzipped(tmp_path):
    import gzip

    report = {"plan": "p", "machine": "Machine: test", "runs": [run("a", 0, 0.9)]}
    (tmp_path / "plain.json").write_text(json.dumps(report))
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(json.dumps(report).encode()))
    assert analysis.load_runs([tmp_path / "plain.json"]) == analysis.load_runs([tmp_path / "packed.json.gz"])
