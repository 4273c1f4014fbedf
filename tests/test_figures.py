"""`python -m analysis.figures`: run directories in, the writeup's curves and results table out; a
directory that is not a finished run is refused with one line."""

import json
import shutil
from pathlib import Path

import pytest

from analysis.figures import main, read_run
from training.config import build_config
from training.piglatin import train

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.needs_solution]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data_file, finished_models, single_torch_thread) -> list:
    """Two tiny runs of each model, hidden 8 and 16, as main.py writes them."""
    out = tmp_path_factory.mktemp("figure_runs")
    made = []
    for model in ("transformer", "mamba"):
        for hidden in (8, 16):
            settings = {"model": model, "data": tiny_data_file, "val_fraction": 0.25, "hidden_size": hidden,
                        "num_heads": 2, "state_size": 4, "epochs": 2, "out_dir": out,
                        "run_name": f"{model}_h{hidden}", "accelerator": "cpu", "num_samples": 1}
            made.append(train(build_config(None, [f"--{key}={value}" for key, value in settings.items()]), quiet=True))
    return made


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    assert main([str(run) for run in runs] + ["--out", str(out)]) == 0
    return out


def test_one_curves_figure_per_model_and_a_results_table(written):
    names = sorted(path.name for path in written.iterdir())
    assert names == ["curves_mamba.png", "curves_transformer.png", "results.md"]
    for name in ("curves_mamba.png", "curves_transformer.png"):
        assert (written / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} should be a PNG image"


def test_results_table_has_one_row_per_run_with_its_metrics_json_values(written, runs):
    rows = [line.split("|")[1:-1] for line in (written / "results.md").read_text().splitlines()[2:]]
    by_run = {cells[1].strip().strip("`"): [cell.strip() for cell in cells] for cells in rows}
    assert sorted(by_run) == sorted(run.name for run in runs)
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        model, _, data, hidden, params, epochs, _, val_loss, val_word_acc = by_run[run.name][:9]
        assert (model, data, hidden) == (run.name.split("_")[0], "tiny_pairs", run.name.split("_h")[1])
        assert (params, epochs) == (f"{metrics['params']:,}", str(metrics["epochs"]))
        assert (val_loss, val_word_acc) == (f"{metrics['val_loss']:.4f}", f"{metrics['val_word_acc']:.4f}")


def test_curves_are_read_per_epoch_from_the_csv_log(runs):
    run = read_run(runs[0])
    assert {column: sorted(values) for column, values in run.curves.items()} == {
        "train_loss": [0, 1], "val_loss": [0, 1], "val_word_acc": [0, 1]}


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("analysis.figures: error: "), err
    return err


def test_a_missing_directory_is_one_line(tmp_path, capsys):
    assert "is not a directory" in one_line_error(capsys, [str(tmp_path / "nothing"), "--out", str(tmp_path)])


def test_an_unfinished_run_is_one_line_that_says_how_to_resume_it(runs, tmp_path, capsys):
    broken = Path(shutil.copytree(runs[0], tmp_path / "broken"))
    (broken / "metrics.json").unlink()
    err = one_line_error(capsys, [str(broken), "--out", str(tmp_path / "out")])
    assert "metrics.json missing" in err and f"--resume {broken}" in err
    assert not (tmp_path / "out").exists(), "nothing should be written when a run is refused"


def test_a_folder_of_runs_is_refused_with_a_hint(runs, capsys, tmp_path):
    assert "a folder of runs" in one_line_error(capsys, [str(runs[0].parent), "--out", str(tmp_path)])
