"""Every notebook runs from top to bottom on tiny runs trained here, and a missing run is one clear line.

The runs are 2 epochs of 16-wide models on the 120-word tiny dataset (a second or two each): enough for
every cell to draw something, not to learn Pig Latin.
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from training.config import build_config
from training.piglatin import train

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# What the notebooks save into assets/ (PIGLATIN_ASSETS) for the writeup (tests/test_readme.py reads it too).
NOTEBOOK_ASSETS = [f"attention_{word}{suffix}" for word in ("brown", "conditioning", "is")
                   for suffix in (".png", "_head_view.html", "_model_view.html")] + [
    "embeddings.png", "positions.png", "mamba_delta.png", "scans.png"]

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.needs_solution]


def tiny_run(data: Path, out_dir: Path, name: str, **options) -> Path:
    settings = {"data": data, "val_fraction": 0.25, "hidden_size": 16, "num_heads": 2, "state_size": 4,
                "epochs": 2, "out_dir": out_dir, "run_name": name, "accelerator": "cpu", "num_samples": 2, **options}
    return train(build_config(None, [f"--{key}={value}" for key, value in settings.items()]), quiet=True)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_data_file, finished_models, single_torch_thread) -> dict:
    """Environment variables that point the notebooks at tiny runs and a scratch assets folder."""
    out = tmp_path_factory.mktemp("notebook_runs")
    return {
        "PIGLATIN_TRANSFORMER_RUN": str(tiny_run(tiny_data_file, out, "transformer")),
        "PIGLATIN_LEARNED_POSITIONS_RUN": str(tiny_run(tiny_data_file, out, "learned", positional="learned")),
        "PIGLATIN_MAMBA_RUN": str(tiny_run(tiny_data_file, out, "mamba", model="mamba")),
        "PIGLATIN_ASSETS": str(out / "assets"),
    }


def execute(path: Path, environment: dict):
    """Runs the notebook in a fresh kernel, in notebooks/ as Jupyter would, with `environment` added."""
    notebook = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.update(environment)  # the kernel inherits the environment of the process that starts it
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def test_there_are_three_notebooks():
    assert [path.name for path in NOTEBOOKS] == ["attention.ipynb", "embeddings.ipynb", "ssm.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    with_outputs = [number for number, cell in enumerate(notebook.cells)
                    if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    assert with_outputs == [], f"{path.name}: clear the outputs of cells {with_outputs} before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_has_written_answer_cells_that_the_release_strips(path):
    notebook = nbformat.read(path, as_version=4)
    answers = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert answers, f"{path.name} should end with a written-answer cell (nbgrader solution metadata)"
    assert all(cell.cell_type == "markdown" for cell in answers), (
        "answer cells must be Markdown: a code solution cell becomes `raise NotImplementedError()` in the "
        "template and would stop the notebook from running for students")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom_on_tiny_runs(path, tiny_runs):
    notebook = execute(path, tiny_runs)
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert errors == [], f"{path.name} raised {errors[0]['ename']}: {errors[0]['evalue']}"
    drawn = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
             if "image/png" in output.get("data", {}) or "text/html" in output.get("data", {})
             or "application/javascript" in output.get("data", {})]
    assert drawn, f"{path.name} ran but showed no figure or view"


def test_notebooks_write_the_files_the_writeup_shows(tiny_runs):
    assets = Path(tiny_runs["PIGLATIN_ASSETS"])
    missing = [name for name in NOTEBOOK_ASSETS if not (assets / name).is_file()]
    assert missing == [], f"after running every notebook, {assets} lacks {missing}"


def test_a_missing_run_is_one_line_naming_the_command_that_makes_it(tmp_path, monkeypatch):
    from analysis.runs import TRANSFORMER, MissingRun, load_run

    monkeypatch.setenv(TRANSFORMER.variable, str(tmp_path / "nothing"))
    with pytest.raises(MissingRun) as raised:
        load_run(TRANSFORMER)
    assert TRANSFORMER.command in str(raised.value) and TRANSFORMER.variable in str(raised.value)


def test_without_a_setting_the_notebooks_read_the_newest_trained_run_of_the_name(tmp_path, monkeypatch):
    from analysis import runs

    monkeypatch.setattr(runs, "ROOT", tmp_path)
    monkeypatch.delenv(runs.TRANSFORMER.variable, raising=False)
    default = tmp_path / runs.TRANSFORMER.default
    assert runs.TRANSFORMER.path() == default  # nothing trained yet: the name the command makes
    for name, trained in [("", True), ("-2", True), ("-3", True), ("-10", False), ("-x", True), ("_2", True)]:
        (default.parent / f"{default.name}{name}" / "checkpoints").mkdir(parents=True)
        if trained:
            (default.parent / f"{default.name}{name}" / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert runs.TRANSFORMER.path() == default.parent / f"{default.name}-3"  # -10 stopped before its first epoch


NOTEBOOK_RUNS = {"attention": ["TRANSFORMER"], "embeddings": ["TRANSFORMER", "MAMBA", "LEARNED_POSITIONS"],
                 "ssm": ["MAMBA"]}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_a_notebook_without_its_runs_prints_one_line_per_run_naming_the_command_and_no_error(path, tmp_path, request):
    from analysis import runs

    if path.stem == "ssm":
        request.getfixturevalue("finished_models")  # its scans' comparison runs your pscan, run or no run

    specs = [getattr(runs, name) for name in NOTEBOOK_RUNS[path.stem]]
    nowhere = {spec.variable: str(tmp_path / "not trained" / spec.variable) for spec in specs}
    notebook = execute(path, {**nowhere, "PIGLATIN_ASSETS": str(tmp_path / "assets")})  # raises at an error
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    printed = [line for output in outputs if output.output_type == "stream" for line in output.text.splitlines()]
    run_lines = [line for line in printed if line.startswith("no trained")]
    assert len(run_lines) == len(specs), f"{path.name} should print one line per missing run: {printed}"
    for spec, line in zip(specs, run_lines):
        assert spec.command in line and spec.variable in line, line


def test_jupyter_shows_a_missing_run_as_its_one_line_without_a_traceback(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from analysis.runs import MissingRun

    shell = InteractiveShell.instance()
    try:
        shell.user_ns["MissingRun"] = MissingRun
        shell.run_cell("raise MissingRun('no trained transformer in runs/x: make it with `python main.py ...`')")
    finally:
        InteractiveShell.clear_instance()
    shown = capsys.readouterr()
    lines = [line for line in (shown.out + shown.err).splitlines() if line.strip()]
    assert lines == ["MissingRun: no trained transformer in runs/x: make it with `python main.py ...`"], lines


def test_the_attention_command_writes_views_heatmaps_and_screenshots(tiny_runs, tmp_path, capsys):
    from analysis.attention import main
    from tests.browser import missing_requirement, unavailable

    if reason := missing_requirement():
        unavailable(reason)
    assert main([tiny_runs["PIGLATIN_TRANSFORMER_RUN"], "--words", "brown", "--out", str(tmp_path), "--screenshots"]) == 0
    written = {path.name: path.stat().st_size for path in tmp_path.iterdir()}
    for name in ("attention_brown.png", "attention_brown_head_view.html", "attention_brown_model_view.html",
                 "bertviz_head_view.png", "bertviz_model_view.png"):
        assert written.get(name, 0) > 1000, f"{name} missing or nearly empty: {written}"
    assert "screenshot:" in capsys.readouterr().out
