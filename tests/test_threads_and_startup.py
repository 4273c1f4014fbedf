"""main.py's start: how many CPU threads a run uses, what `--help` and a bad option load before answering,
and running from another folder than the repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import main
from training.config import Config, build_config, cpu_threads, describe_options, locate

REPO = Path(__file__).resolve().parents[1]


def modules_loaded_by(argv: list) -> set:
    """The heavy modules a fresh interpreter has imported after main.main(argv)."""
    script = ("import json, sys, main\n"
              "try:\n    main.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(name for name in ('torch', 'lightning') if name in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["--hidden_size", "abc"], ["--config", "exps/no_such.txt"],
                                  ["--hiden_size", "32"], ["--data", "no_such_data.txt"]], ids=" ".join)
def test_help_and_option_errors_answer_before_torch_or_lightning_load(argv):
    assert modules_loaded_by(argv) == set(), f"main.py {' '.join(argv)} should answer without loading them"


def test_help_states_each_default_once():
    for line in describe_options().splitlines():
        assert line.lower().count("default") == 1, f"each option should state its default once: {line}"


def test_threads_default_to_one(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads(Config()) == 1


def test_threads_default_to_omp_num_threads_when_it_is_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(Config()) == 3


def test_threads_option_beats_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(build_config(None, ["--threads", "2"])) == 2


def test_a_negative_thread_count_is_refused(capsys):
    assert main.main(["--threads", "-1"]) == 2
    assert "threads must be at least 0" in capsys.readouterr().err


def test_a_negative_time_limit_is_refused(capsys):
    assert main.main(["--max_minutes", "-1"]) == 2
    assert "max_minutes must be between 0 (no limit)" in capsys.readouterr().err


def test_a_shipped_config_is_found_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = build_config("exps/args_piglatin_small_mamba.txt")
    assert config.model == "mamba"
    assert locate(config.data) == REPO / "data" / "pig_latin_small.txt"


def test_a_file_in_the_working_directory_comes_before_the_repositorys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pig_latin_small.txt").write_text("the ethay\n")
    assert locate("data/pig_latin_small.txt") == Path("data/pig_latin_small.txt")


def test_a_path_found_nowhere_is_left_for_the_caller_to_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locate("data/no_such_file.txt") == Path("data/no_such_file.txt")


@pytest.mark.needs_solution
def test_training_from_another_folder_reads_the_repositorys_data(tmp_path, monkeypatch, capsys,
                                                                 single_torch_thread):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    config = os.path.relpath(REPO / "exps" / "args_piglatin_small_gru.txt", folder)  # ../../…/exps/…
    status = main.main(["--config", config, "--hidden_size", "8", "--epochs", "1", "--accelerator", "cpu",
                        "--out_dir", "runs"])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((folder / "runs" / "args_piglatin_small_gru" / "metrics.json").read_text())
    assert metrics["threads"] == 1
