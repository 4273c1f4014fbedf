"""`python -m grading release OUT`, end to end: the two branches, what each holds, and that nothing of
the solution reaches the template's history. (Instructor-only. One release takes about a minute: it
runs the whole suite on both branches before it lets the repository out.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grading.publish.release import ReleaseError, release
from grading.publish.template import INSTRUCTOR_MENTION

ROOT = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "assignment"
    result = subprocess.run([sys.executable, "-m", "grading", "release", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"the release was refused:\n{result.stdout}\n{result.stderr}"
    return out, result.stdout


def files_on(repo: Path, branch: str) -> set[str]:
    return set(git(repo, "ls-tree", "-r", "--name-only", branch).split())


def test_release_reports_zero_on_the_template_and_ten_on_the_solution(released):
    _, log = released
    assert "main: graded 0/10" in log and "solution: graded 10/10" in log
    assert ", 0 failed" in log.split("main: graded", 1)[1].splitlines()[0]


def test_main_is_one_root_commit_and_solution_one_commit_on_top_of_it(released):
    repo, _ = released
    assert git(repo, "rev-list", "--count", "main").strip() == "1"
    assert git(repo, "rev-parse", "solution^").strip() == git(repo, "rev-parse", "main").strip()
    assert git(repo, "branch", "--show-current").strip() == "main"


def test_instructor_only_files_are_on_neither_branch_and_the_autograder_is_on_both(released):
    repo, _ = released
    for branch in ("main", "solution"):
        files = files_on(repo, branch)
        assert not [f for f in files if f.startswith(("grading/", "tests/instructor/", "tests/hidden/", ".ci/"))
                    or f in ("INSTRUCTOR.md", "requirements-dev.txt")]
        assert {".github/workflows/autograde.yml", "requirements-grading.txt", "autograde/plugin.py",
                "tests/graded/test_q1_transformer.py", "tests/graded/test_q2_ssm.py", "requirements.txt",
                "requirements-optional.txt"} <= files


def test_no_file_of_the_template_names_an_instructor_tool(released):
    repo, _ = released
    named = {}
    for path in files_on(repo, "main"):
        blob = subprocess.run(["git", "show", f"main:{path}"], cwd=repo, capture_output=True, check=True).stdout
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            continue  # an image, a compressed table: no prose to name anything
        if not path.endswith((".csv", ".txt")) or "requirements" in path:
            named[path] = INSTRUCTOR_MENTION.findall(text)
    assert {path: found for path, found in named.items() if found} == {}


def test_the_quickstart_the_template_ships_is_what_ci_runs_as_written():
    """The README's Quickstart block: CI (.ci/run, instructor-only) makes its venv, installs and tests exactly so
    (the CPU-torch line aside: CI installs torch from requirements.txt, pinned)."""
    from tests.test_readme import quickstart_lines

    venv, activate, _, install, _, test = quickstart_lines()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for line in (venv, activate, install):
        assert any(ci_line.startswith(line) for ci_line in ci), f".ci/run should run the Quickstart's {line!r}"
    assert test in ci, f".ci/run should run the Quickstart's {test!r} as written"


def test_the_solution_branch_holds_the_reference_and_differs_from_main_only_in_the_student_files(released):
    repo, _ = released
    for name in ("models/transformer.py", "models/mamba.py", "tests/graded/test_q2_ssm.py"):
        assert git(repo, "show", f"solution:{name}") == (ROOT / name).read_text()
    changed = set(git(repo, "diff", "--name-only", "main", "solution").split())
    notebooks = {path.relative_to(ROOT).as_posix() for path in (ROOT / "notebooks").glob("*.ipynb")}
    assert changed <= {"models/transformer.py", "models/mamba.py", "README.md"} | notebooks
    assert "models/mamba.py" in changed and notebooks <= changed  # every notebook has an answer cell


def test_the_template_notebooks_ask_for_answers_and_hold_no_reference_text(released):
    repo, _ = released
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        name = path.relative_to(ROOT).as_posix()
        template = git(repo, "show", f"main:{name}")
        assert "YOUR ANSWER HERE" in template and "Reference" not in template, name
        assert git(repo, "show", f"solution:{name}") == path.read_text()


def test_the_template_has_a_stub_for_every_student_function(released):
    repo, _ = released
    template = git(repo, "show", "main:models/mamba.py")
    assert 'raise NotImplementedError("pscan is not written yet: see README section \'Q2.2 Parallel scan\'")' in template
    assert "logcumsumexp(" not in template and "BEGIN SOLUTION" not in template


def test_a_release_into_a_directory_with_files_is_refused_before_anything_is_built(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ReleaseError, match="not empty"):
        release(ROOT, tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_the_release_without_nbgrader_says_what_to_install_in_one_line(tmp_path):
    hidden = tmp_path / "no-nbgrader"
    hidden.mkdir()
    (hidden / "nbgrader.py").write_text("raise ModuleNotFoundError(\"No module named 'nbgrader'\", name='nbgrader')\n")
    env = {**os.environ, "PYTHONPATH": str(hidden)}
    out = tmp_path / "release"
    result = subprocess.run([sys.executable, "-m", "grading", "release", str(out)], cwd=ROOT, capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1:] == [
        "python -m grading release: nbgrader is not installed: python -m pip install -r requirements-dev.txt"]
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
