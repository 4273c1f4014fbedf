"""bench.sweep and bench.train_targets: what they read and write, never how fast anything is."""

import csv
import json

import pytest

from bench import sweep, train_targets
from training.config import build_config


@pytest.mark.parametrize("setting, config, options", sweep.PLANS["defaults"], ids=lambda value: str(value)[:40])
def test_every_setting_of_the_sweep_is_a_valid_config(setting, config, options):
    build_config(config, options)


def write_run(runs, name, accuracies, metrics=None):
    """A run directory as main.py leaves it: logs/metrics.csv, and metrics.json once it has finished."""
    log = runs / name / "logs"
    log.mkdir(parents=True)
    with open(log / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["epoch", "step", "val_loss", "val_word_acc"])
        writer.writeheader()
        writer.writerows({"epoch": epoch, "step": epoch, "val_loss": 1.0, "val_word_acc": accuracy}
                         for epoch, accuracy in enumerate(accuracies))
    if metrics:
        (runs / name / "metrics.json").write_text(json.dumps(metrics))


def test_collect_reads_finished_and_stopped_runs_into_one_table(tmp_path):
    runs = tmp_path / "runs"
    finished = {"val_word_acc": 0.95, "val_loss": 0.1, "params": 10, "epochs": 3, "train_seconds": 120.0,
                "seconds_per_epoch": 40.0, "peak_memory_mb": 500.0}
    write_run(runs, "transformer_bs64-seed0", [0.5, 0.9, 0.95], finished)
    write_run(runs, "transformer_bs64-seed1", [0.4, 0.8], None)  # stopped after two epochs
    assert sweep.main(["--collect", str(runs), "--out", str(tmp_path), "--machine", "Machine: test"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep_defaults.csv", newline="")))
    assert [(row["seed"], row["failed"], row["val_word_acc"]) for row in rows] == [("0", "", "0.95"),
                                                                                    ("1", "stopped", "0.8")]
    table = (tmp_path / "sweep_defaults.md").read_text()
    assert "Machine: test" in table and "| transformer bs64 |" in table and "2–3 of 90 (stopped)" in table
    assert "0.8750" in table, "the mean over seeds of what each reached"
    assert (tmp_path / "sweep_defaults.png").stat().st_size > 0


def test_train_targets_judges_a_config_on_its_mean_accuracy_and_slowest_run():
    config = "exps/args_piglatin_small_transformer.txt"
    run = {"val_word_acc": 0.985, "wall_seconds": 250.0, "cpu_seconds": 240.0}
    slow = {"val_word_acc": 0.99, "wall_seconds": 400.0, "cpu_seconds": 280.0}
    weak = {"val_word_acc": 0.97, "wall_seconds": 250.0, "cpu_seconds": 240.0}
    assert train_targets.verdict(config, [run, run]).endswith(": met")
    assert "met in CPU time (wall time 6.7 min" in train_targets.verdict(config, [run, slow])
    assert train_targets.verdict(config, [weak, run]).endswith("MISSED (accuracy)")


@pytest.mark.parametrize("argv, mentions", [
    (["--jobs", "0"], "at least 1"),
    (["--only", "no such setting"], "no setting"),
    (["--replot", "missing.csv"], "no such file"),
    (["--collect", "no_runs_here"], "no run directories"),
])
def test_a_sweep_given_nothing_to_do_is_refused_in_one_line_and_writes_nothing(argv, mentions, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        sweep.main(argv + ["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and mentions in err and err.strip().splitlines()[-1].startswith("python -m")
    assert not any((tmp_path / "out").glob("sweep_*"))


def test_a_run_is_read_from_the_directory_main_named_not_the_one_asked_for(tmp_path):
    """A taken --run_name gets -2: reading out_dir/<run_name> would report the older run's metrics."""
    from bench.measure import run_directory

    output = "training ...\nrun directory: runs/x-seed0-2\nval_word_acc 0.9\n"
    assert run_directory(output, tmp_path) == tmp_path / "runs" / "x-seed0-2"
    assert run_directory(f"run directory: {tmp_path}/y\n") == tmp_path / "y"
    with pytest.raises(ValueError):
        run_directory("no such line\n")
