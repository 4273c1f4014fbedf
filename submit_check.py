"""`python -m submit_check`: is your repository ready to push? One line for each thing left to do.

It reads what the graders will read (and asks git what is committed); it never runs your code:

  models       functions in models/*.py that are still stubs ("... is not written yet")
  writeup      the README's "Your writeup": table cells still '…', *italic prompts* not yet replaced
  figures      images the writeup shows whose file is not in the repository (or is git-ignored)
  short runs   figures made from test-sized runs: rows of assets/results.md, and the runs the notebooks read
  notebooks    answer cells that still say YOUR ANSWER HERE, or are empty
  git          changes that are not committed yet (what `git status` lists)

and ends with a one-line summary. Exit status 0 when nothing is left to do, 1 otherwise. It needs only the
standard library and git, so it runs before anything else is installed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from analysis.figures import read_markdown_table
from analysis.runs import LEARNED_POSITIONS, MAMBA, TRANSFORMER
from training.config import ConfigError, read_config_file

ROOT = Path(__file__).resolve().parent
WRITEUP_HEADING = "## Your writeup"
PLACEHOLDER = "…"
# A run that trained for less than this share of its config's epochs made a figure that shows little but
# the first epochs: the test suite's runs are 2-3 epochs, the configs' 25-150.
MIN_EPOCH_SHARE = 0.25
DATASETS = ("small", "large")
NOTEBOOK_STUBS = ("YOUR ANSWER HERE", "YOUR CODE HERE")

# What makes each figure of the writeup, for the line that says it is missing.
FIGURE_MAKERS = {
    "curves_": "python -m analysis.figures runs/transformer_* runs/mamba_* --out assets/",
    "results.md": "python -m analysis.figures runs/transformer_* runs/mamba_* --out assets/",
    "attention_": "notebooks/attention.ipynb",
    "embeddings.png": "notebooks/embeddings.ipynb",
    "positions.png": "notebooks/embeddings.ipynb",
    "mamba_delta.png": "notebooks/ssm.ipynb",
    "scans.png": "notebooks/ssm.ipynb",
}


# The runs the notebooks read (analysis/runs.py) and, by name or prefix, the figures each makes from them.
NOTEBOOK_RUNS = ((TRANSFORMER, ("attention_", "embeddings.png", "positions.png")),
                 (LEARNED_POSITIONS, ("positions.png",)),
                 (MAMBA, ("embeddings.png", "mamba_delta.png", "scans.png")))


def maker(figure: str) -> str:
    """The command or notebook that writes `figure` into assets/ ('' for a figure of the student's own)."""
    name = Path(figure).name
    return next((how for start, how in FIGURE_MAKERS.items() if name.startswith(start)), "")


# --- models -------------------------------------------------------------------------------------------------

STUB = re.compile(r"""raise NotImplementedError\(["'](.+?) is not written yet: see README section '(.+?)'""")


def unwritten_functions(root: Path) -> list[str]:
    """One line per function of models/*.py that still raises its stub's NotImplementedError."""
    problems = []
    for path in sorted((root / "models").glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = STUB.search(line)
            if match:
                problems.append(f"models/{path.name}:{number}: {match.group(1)} is not written yet "
                                f"(README section '{match.group(2)}')")
    return problems


# --- the writeup --------------------------------------------------------------------------------------------


def writeup_lines(root: Path):
    """(line number, line) of the README's writeup section, fenced code left out; None if there is none."""
    lines = (root / "README.md").read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == WRITEUP_HEADING), None)
    if start is None:
        return None
    section, fenced = [], False
    for number, line in enumerate(lines[start + 1:], start + 2):
        if line.startswith("## "):
            break
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            section.append((number, line))
    return section


def blocks(section):
    """The section cut into (heading, kind, [(line number, line)]): kind is 'table' or 'paragraph'."""
    heading, current = "", None
    for number, line in section:
        stripped = line.strip()
        kind = "table" if stripped.startswith("|") else "paragraph" if stripped else None
        if stripped.startswith("#"):
            heading, kind = stripped.lstrip("#").strip(), None
        if current and current[1] != kind:
            yield current
            current = None
        if kind:
            current = current or (heading, kind, [])
            current[2].append((number, stripped))
    if current:
        yield current


def is_prompt(text: str) -> bool:
    """A paragraph wholly in *single-asterisk italics*: the handout's question, not yet an answer."""
    return text.startswith("*") and not text.startswith("**") and text.endswith("*") and not text.endswith("**")


def unfilled_writeup(root: Path) -> list[str]:
    """One line per table that still has '…' cells, per prompt still in place, per paragraph with a '…' slot."""
    section = writeup_lines(root)
    if section is None:
        return [f"README.md: the section '{WRITEUP_HEADING[3:]}' is missing: your answers go there"]
    problems = []
    for heading, kind, lines in blocks(section):
        if not heading:
            continue  # the section's own instructions, before the first question
        if kind == "table":
            unfilled = [(number, sum(cell.strip() in (PLACEHOLDER, "...") for cell in line.strip("|").split("|")))
                        for number, line in lines]
            unfilled = [(number, count) for number, count in unfilled if count]
            if unfilled:
                empty = sum(count for _, count in unfilled)
                problems.append(f"README.md:{unfilled[0][0]}: {heading}: {empty} table cell{'s' if empty > 1 else ''} "
                                f"still {'hold' if empty > 1 else 'holds'} '{PLACEHOLDER}'")
            continue
        where = f"README.md:{lines[0][0]}: {heading}"
        text = " ".join(line for _, line in lines)
        if text.startswith("!["):
            continue
        if is_prompt(text):
            question = text.strip("*")
            shown = question if len(question) <= 40 else question[:40].rstrip() + "…"
            problems.append(f"{where}: replace the prompt '{shown}' with your answer")
        elif re.search(rf"(?<!\w){PLACEHOLDER}(?!\w)", text):
            problems.append(f"{where}: a '{PLACEHOLDER}' is still waiting for your text")
    return problems


IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)|<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']")


def figure_slots(root: Path) -> list[tuple[int, str]]:
    """(line number, path) of every local image the writeup shows."""
    slots = []
    for number, line in writeup_lines(root) or []:
        for match in IMAGE.finditer(line):
            target = match.group(1) or match.group(2)
            if "://" not in target:
                slots.append((number, target.split("#")[0]))
    return slots


def missing_figures(root: Path, git_ok: bool) -> list[str]:
    """One line per image of the writeup that has no file, or whose file git ignores (so it is never pushed)."""
    problems, present = [], []
    for number, target in figure_slots(root):
        if (root / target).is_file():
            present.append(target)
            continue
        how = maker(target)
        problems.append(f"README.md:{number}: {target} is missing" + (f" (made by {how})" if how else ""))
    if git_ok and present:
        ignored = git(root, "check-ignore", *present).stdout.splitlines()  # tracked files are never ignored
        problems += [f"{path}: is ignored by .gitignore, so it will never be pushed" for path in ignored]
    return problems


# --- figures from short runs --------------------------------------------------------------------------------


def planned_epochs(root: Path, model: str, dataset: str):
    """(epochs, config file) of exps/args_piglatin_<dataset>_<model>.txt, or (None, path) without one."""
    config = root / "exps" / f"args_piglatin_{dataset}_{model}.txt"
    if not config.is_file():
        return None, config
    try:  # main.py's own reader: every form it accepts (epochs 150, epochs=150, --epochs 150)
        return read_config_file(config).get("epochs"), config
    except ConfigError:
        return None, config  # main.py refuses this file itself; not this check's to judge


def why_short(root: Path, model: str, data: str, epochs: int):
    """Why a run is too short to show in the writeup (test data, or a fraction of its epochs), else None."""
    dataset = Path(data).stem.removeprefix("pig_latin_")
    if dataset not in DATASETS:
        return f"trained on {Path(data).name or data}, not on the small or the large dataset"
    planned, config = planned_epochs(root, model, dataset)
    if planned and epochs < MIN_EPOCH_SHARE * planned:
        return f"trained {epochs} of the {planned} epochs of {config.relative_to(root)}"
    return None


def short_run_figures(root: Path) -> list[str]:
    """The curves' table (assets/results.md, written with them) and the runs the notebooks read, checked
    for runs too short to show: one line per short run."""
    problems = []
    results = root / "assets" / "results.md"
    if results.is_file():
        for row in read_markdown_table(results.read_text(encoding="utf-8")):
            try:
                reason = why_short(root, row["model"], row["data"], int(row["epochs"]))
            except (KeyError, ValueError):
                continue  # a row analysis.figures did not write: not ours to judge
            if reason:
                problems.append(f"assets/results.md: run {row.get('run', '?')} {reason}: the curves and this "
                                f"table come from it; rerun {maker('results.md')} on your full runs")
    elif any((root / "assets").glob("curves_*.png")):
        problems.append(f"assets/results.md is missing: {maker('results.md')} writes it beside the curves")
    for run, made in NOTEBOOK_RUNS:
        figures = sorted(path.name for path in (root / "assets").glob("*.png")
                         if any(path.name.startswith(start) for start in made))
        run_dir = Path(os.environ.get(run.variable) or run.default)
        run_dir = run_dir if run_dir.is_absolute() else root / run_dir
        if not figures or not (run_dir / "config.json").is_file():
            continue  # nothing made from it, or not on this machine: nothing to tell
        shown = run_dir.relative_to(root) if run_dir.is_relative_to(root) else run_dir
        try:
            config = json.loads((run_dir / "config.json").read_text())
            epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
        except (OSError, ValueError, KeyError):
            problems.append(f"{shown}: has not finished training, yet assets/ holds figures made from it: "
                            f"{', '.join(figures)}")
            continue
        reason = why_short(root, config.get("model", ""), config.get("data", ""), epochs)
        if reason:
            problems.append(f"{shown}: {reason}, yet assets/ holds figures made from it: {', '.join(figures)}; "
                            f"retrain it and rerun {maker(figures[0])}")
    return problems


# --- notebooks ----------------------------------------------------------------------------------------------


def unanswered_cells(root: Path) -> list[str]:
    """One line per nbgrader answer cell of notebooks/*.ipynb that still holds its stub, or nothing."""
    problems = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        shown = path.relative_to(root)
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            if not all(isinstance(cell, dict) for cell in cells):
                raise TypeError("a cell that is not an object")
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"{shown}: is not a readable notebook ({type(error).__name__}): restore it with git")
            continue
        for number, cell in enumerate(cells, 1):
            nbgrader = cell.get("metadata", {}).get("nbgrader", {})
            if not nbgrader.get("solution"):
                continue
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            name = f"answer cell '{nbgrader.get('grade_id', number)}' (cell {number})"
            if not source.strip():
                problems.append(f"{shown}: {name} is empty")
            elif any(stub in source for stub in NOTEBOOK_STUBS):
                problems.append(f"{shown}: {name} still says YOUR ANSWER HERE")
    return problems


# --- git ----------------------------------------------------------------------------------------------------


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def git_problems(root: Path) -> tuple[bool, list[str]]:
    """(whether git can be asked about `root`, one line if something is not committed)."""
    try:
        inside = git(root, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        return False, ["git: not installed, so nothing here can be pushed; install git"]
    if inside.returncode or Path(inside.stdout.strip()).resolve() != root.resolve():
        return False, [f"git: {root} is not the top of a git repository: work in a clone of your repository"]
    changed = [line[3:] for line in git(root, "status", "--porcelain=v1", "--untracked-files=all").stdout.splitlines()]
    if not changed:
        return True, []
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return True, [f"git: {len(changed)} file{'s are' if len(changed) > 1 else ' is'} not committed ({shown}): "
                  "git add what belongs to your submission, then git commit"]


# --- the command --------------------------------------------------------------------------------------------


def problems(root: Path) -> list[str]:
    """Everything left to do in the repository at `root`, one line each, in the order of the checks."""
    git_ok, git_lines = git_problems(root)
    return (unwritten_functions(root) + unfilled_writeup(root) + missing_figures(root, git_ok)
            + short_run_figures(root) + unanswered_cells(root) + git_lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m submit_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(ROOT), help="the repository to check (default: this one)")
    root = Path(parser.parse_args(argv).repo).resolve()
    if not (root / "README.md").is_file():
        print(f"submit_check: error: {root} has no README.md: run it in your assignment repository", file=sys.stderr)
        return 2
    try:
        found = problems(root)
    except UnicodeDecodeError as error:  # a README or model file saved in another encoding
        print(f"submit_check: error: a file here is not UTF-8 text ({error.reason} at byte {error.start}): "
              "save README.md and models/*.py as UTF-8", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    if found:
        print(f"\nnot ready to push: {len(found)} thing{'s' if len(found) > 1 else ''} left to do (one per line above)")
        return 1
    print("ready to push: every function written, the writeup filled in, every figure there and from full runs, "
          "every notebook answered, everything committed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
