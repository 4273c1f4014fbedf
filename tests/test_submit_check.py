"""`python -m submit_check` names each thing left to do before a push, and passes a finished repository.

Each test builds a small finished repository in tmp_path (a stub-free model file, a filled-in writeup, its
figures, full-length runs, answered notebooks, all committed), breaks one thing, and checks that exactly
that thing is reported, in one line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import submit_check
from submit_check import main, problems

ROOT = Path(__file__).resolve().parent.parent

FINISHED_README = """# The assignment

## Quickstart

Tables in other sections keep their … and *prompts*: only the writeup is checked.

| a | … |
| --- | --- |

## Your writeup

Replace each *…* below with your own text.

### W1 Transformer

| run | params | epochs |
| --- | ---: | ---: |
| `transformer_small_h64` | 239,325 | 150 |

![curves](assets/curves_transformer.png)

The gap grows with the hidden size… and *shrinks* with the data, and so on.

### W2 Attention

![attention](assets/attention_brown.png)

Ā = (1 + αΔA) / (1 − (1 − α)ΔA), and *this* is my answer.
"""

ANSWER_CELL = {"cell_type": "markdown", "source": ["The cross-attention moves along the source."],
               "metadata": {"nbgrader": {"solution": True, "grade_id": "attention_reading", "grade": False}}}


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-c", "user.name=Student", "-c", "user.email=student@example.invalid", *args],
                            cwd=root, capture_output=True, text=True, check=True)
    return result.stdout


def write(root: Path, path: str, content):
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content if isinstance(content, str) else json.dumps(content, indent=1))


def results_table(*rows) -> str:
    """assets/results.md as python -m analysis.figures writes it (its own results_table), one run per
    (model, run, data, epochs)."""
    from analysis.figures import Run
    from analysis.figures import results_table as written_by_figures

    metrics = {"params": 239_325, "val_loss": 0.0114, "val_word_acc": 0.9812, "train_seconds": 432}
    return written_by_figures([Run(Path(run), {"model": model, "data": f"data/pig_latin_{data}.txt", "hidden_size": 64},
                                   {**metrics, "epochs": epochs, "best_epoch": epochs - 1}, {})
                               for model, run, data, epochs in rows])


def commit(root: Path):
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "work")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A finished, committed repository: submit_check must find nothing to do in it."""
    for variable in ("PIGLATIN_TRANSFORMER_RUN", "PIGLATIN_LEARNED_POSITIONS_RUN", "PIGLATIN_MAMBA_RUN"):
        monkeypatch.delenv(variable, raising=False)
    root = tmp_path / "repo"
    write(root, "README.md", FINISHED_README)
    write(root, "models/transformer.py", 'def forward(x):\n    """README: Q1.1"""\n    return x\n')
    write(root, "exps/args_piglatin_small_transformer.txt", "model transformer\nepochs 150\nlr 3e-3\n")
    write(root, "assets/curves_transformer.png", b"\x89PNG")
    write(root, "assets/attention_brown.png", b"\x89PNG")
    write(root, "assets/results.md", results_table(("transformer", "transformer_small_h64", "small", 150)))
    write(root, "notebooks/attention.ipynb", {"cells": [ANSWER_CELL], "metadata": {}, "nbformat": 4,
                                              "nbformat_minor": 5})
    write(root, ".gitignore", "runs/\n")
    git(root, "init", "-q")
    commit(root)
    return root


def run_dir(root: Path, name: str, data: str, epochs, finished=True) -> Path:
    """A run directory as main.py leaves it (only the files submit_check reads)."""
    path = root / "runs" / name
    write(root, f"runs/{name}/config.json", {"model": "transformer", "data": data, "epochs": epochs})
    if finished:
        write(root, f"runs/{name}/metrics.json", {"epochs": epochs, "val_word_acc": 0.98})
    return path


def test_a_finished_repository_is_ready_to_push(repo, capsys):
    assert main(["--repo", str(repo)]) == 0
    assert capsys.readouterr().out.startswith("ready to push")


def test_a_model_function_still_a_stub_is_named_with_its_readme_section(repo):
    write(repo, "models/mamba.py", "def pscan(log_a, b):\n    # YOUR CODE HERE\n    raise NotImplementedError("
                                   "\"pscan is not written yet: see README section 'Q2.2 Parallel scan'\")\n")
    commit(repo)
    assert problems(repo) == ["models/mamba.py:3: pscan is not written yet (README section 'Q2.2 Parallel scan')"]


def test_placeholder_cells_of_a_writeup_table_are_counted_in_one_line(repo):
    readme = FINISHED_README.replace("| 239,325 | 150 |", "| … | … |\n| `transformer_small_h32` | … | 150 |")
    write(repo, "README.md", readme)
    commit(repo)
    assert problems(repo) == ["README.md:18: W1 Transformer: 3 table cells still hold '…'"]


def test_an_italic_prompt_left_in_the_writeup_is_reported(repo):
    write(repo, "README.md", FINISHED_README.replace("The gap grows with the hidden size… and *shrinks* with the "
                                                     "data, and so on.", "*How does the gap\nchange with the data?*"))
    commit(repo)
    assert problems(repo) == ["README.md:22: W1 Transformer: replace the prompt 'How does the gap change with the "
                              "data?' with your answer"]


def test_a_placeholder_left_inside_an_answer_is_reported(repo):
    answer = FINISHED_README.replace("Ā = (1 + αΔA) / (1 − (1 − α)ΔA)", "Ā = (1 + αΔA), B̄ = …")
    write(repo, "README.md", answer)
    commit(repo)
    assert problems(repo) == ["README.md:28: W2 Attention: a '…' is still waiting for your text"]


def test_a_figure_slot_without_its_file_names_what_makes_it(repo):
    (repo / "assets" / "attention_brown.png").unlink()
    commit(repo)
    assert problems(repo) == ["README.md:26: assets/attention_brown.png is missing (made by notebooks/attention.ipynb)"]


def test_a_figure_that_git_ignores_is_reported_because_it_would_never_be_pushed(repo):
    git(repo, "rm", "-q", "--cached", "assets/curves_transformer.png")
    write(repo, ".gitignore", "runs/\n*.png\n")
    commit(repo)
    assert problems(repo) == ["assets/curves_transformer.png: is ignored by .gitignore, so it will never be pushed"]


def test_curves_from_a_run_on_test_data_are_reported(repo):
    write(repo, "assets/results.md", results_table(("transformer", "transformer_small_h64", "small", 150),
                                                   ("transformer", "transformer_h16", "tiny_pairs", 3)))
    commit(repo)
    found = problems(repo)
    assert len(found) == 1 and found[0].startswith(
        "assets/results.md: run `transformer_h16` trained on tiny_pairs, not on the small or the large dataset")


@pytest.mark.parametrize("epochs, short", [(37, True), (38, False)])
def test_curves_from_a_run_cut_below_a_quarter_of_its_configs_epochs_are_reported(repo, epochs, short):
    write(repo, "assets/results.md", results_table(("transformer", "transformer_small_h64", "small", epochs)))
    commit(repo)
    expected = [f"assets/results.md: run `transformer_small_h64` trained {epochs} of the 150 epochs of "
                f"exps/args_piglatin_small_transformer.txt: the curves and this table come from it; rerun "
                f"python -m analysis.figures runs/transformer_* runs/mamba_* --out assets/ on your full runs"]
    assert problems(repo) == (expected if short else [])


@pytest.mark.parametrize("line", ["epochs=150", "--epochs 150", "epochs 150  # the default"])
def test_the_configs_epochs_are_read_in_every_form_main_py_accepts(repo, line):
    write(repo, "exps/args_piglatin_small_transformer.txt", f"model transformer\n{line}\n")
    write(repo, "assets/results.md", results_table(("transformer", "transformer_small_h64", "small", 37)))
    commit(repo)
    assert [problem.split(": the curves")[0] for problem in problems(repo)] == [
        "assets/results.md: run `transformer_small_h64` trained 37 of the 150 epochs of "
        "exps/args_piglatin_small_transformer.txt"]


def test_a_readme_that_is_not_utf8_is_refused_in_one_line(repo, capsys):
    (repo / "README.md").write_bytes((repo / "README.md").read_text().encode("utf-8") + "caf\xe9".encode("latin-1"))
    assert main(["--repo", str(repo)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_notebook_whose_cells_are_not_cells_is_reported_as_unreadable(repo):
    write(repo, "notebooks/attention.ipynb", {"cells": ["oops"], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    commit(repo)
    assert problems(repo) == ["notebooks/attention.ipynb: is not a readable notebook (TypeError): restore it with git"]


def test_curves_without_their_results_table_are_reported(repo):
    (repo / "assets" / "results.md").unlink()
    commit(repo)
    assert problems(repo) == ["assets/results.md is missing: python -m analysis.figures runs/transformer_* "
                              "runs/mamba_* --out assets/ writes it beside the curves"]


def test_a_notebook_figure_made_from_a_short_local_run_is_reported(repo):
    run_dir(repo, "transformer_small_h64", "data/pig_latin_small.txt", 2)
    assert problems(repo) == [
        "runs/transformer_small_h64: trained 2 of the 150 epochs of exps/args_piglatin_small_transformer.txt, yet "
        "assets/ holds figures made from it: attention_brown.png; retrain it and rerun notebooks/attention.ipynb"]


def test_a_notebook_figure_from_an_unfinished_run_is_reported_and_a_full_run_is_not(repo, monkeypatch):
    run_dir(repo, "transformer_small_h64", "data/pig_latin_small.txt", 150)
    assert problems(repo) == []
    elsewhere = run_dir(repo, "elsewhere", "data/pig_latin_small.txt", 150, finished=False)
    monkeypatch.setenv("PIGLATIN_TRANSFORMER_RUN", str(elsewhere))  # where the notebook reads it from
    assert problems(repo) == ["runs/elsewhere: has not finished training, yet assets/ holds figures made from it: "
                              "attention_brown.png"]


@pytest.mark.parametrize("source, state", [("YOUR ANSWER HERE", "still says YOUR ANSWER HERE"), ("  \n", "is empty")])
def test_a_notebook_answer_cell_left_as_it_came_is_reported(repo, source, state):
    write(repo, "notebooks/attention.ipynb", {"cells": [{"cell_type": "markdown", "source": "Question"},
                                                        {**ANSWER_CELL, "source": source}], "nbformat": 4})
    commit(repo)
    assert problems(repo) == [f"notebooks/attention.ipynb: answer cell 'attention_reading' (cell 2) {state}"]


def test_changed_and_untracked_files_are_reported_in_one_line(repo):
    write(repo, "models/transformer.py", "def forward(x):\n    return 2 * x\n")
    write(repo, "assets/new figure.png", b"\x89PNG")
    assert problems(repo) == ["git: 2 files are not committed (models/transformer.py, \"assets/new figure.png\"): "
                              "git add what belongs to your submission, then git commit"]


def test_a_folder_that_is_not_a_git_repository_is_reported(repo):
    copy = repo.parent / "copy"
    subprocess.run(["cp", "-r", str(repo), str(copy)], check=True)
    subprocess.run(["rm", "-rf", str(copy / ".git")], check=True)
    assert problems(copy) == [f"git: {copy} is not the top of a git repository: work in a clone of your repository"]


def test_the_command_needs_only_the_standard_library_and_ends_with_a_summary(repo):
    (repo / "assets" / "attention_brown.png").unlink()
    result = subprocess.run([sys.executable, "-S", "-m", "submit_check", "--repo", str(repo)], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[-1] == "not ready to push: 2 things left to do (one per line above)" and len(lines) == 4


def test_a_folder_without_a_readme_is_refused_in_one_line(tmp_path, capsys):
    assert main(["--repo", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_figure_the_handout_shows_names_something_that_makes_it():
    slots = submit_check.figure_slots(ROOT)
    assert len(slots) >= 7, "the writeup shows the curves, attention, embeddings, positions, Δ and scans figures"
    for _, target in slots:
        how = submit_check.maker(target)
        assert how, f"{target}: FIGURE_MAKERS should say what makes it"
        notebook = re.search(r"notebooks/\S+\.ipynb", how)
        assert notebook is None or (ROOT / notebook.group()).is_file(), how


def test_every_question_of_the_handouts_writeup_is_checked():
    section = "\n".join(line for _, line in submit_check.writeup_lines(ROOT))
    if "…" not in section:
        pytest.skip("the writeup in README.md is filled in: there is no handout left to check against")
    questions = re.findall(r"^### (W\d+)", section, re.M)
    reported = {re.search(r": (W\d+) ", line).group(1) for line in submit_check.unfilled_writeup(ROOT)}
    assert questions and reported == set(questions)
