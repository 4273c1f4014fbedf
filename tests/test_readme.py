"""The README and the code stay in step: the Quickstart CI runs, and the sections stubs point to."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
STUDENT_FILES = [ROOT / "models" / "transformer.py", ROOT / "models" / "mamba.py"]


def quickstart_lines():
    section = README.split("\n## Quickstart", 1)[1]
    return re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1).strip().splitlines()


def test_quickstart_is_install_train_test():
    install, train, test = quickstart_lines()  # exactly three lines: .ci/run runs the first and last
    assert "pip install -r requirements.txt" in install
    config = re.search(r"--config (\S+)", train).group(1)
    assert (ROOT / config).is_file(), f"the Quickstart trains on {config}, which does not exist"
    assert "pytest" in test


def test_ci_runs_the_quickstart_install_and_test_lines_as_written():
    ci_script = ROOT / ".ci" / "run"
    if not ci_script.is_file():
        pytest.skip(".ci/run is the instructor repository's CI; the student release leaves it out")
    install, _, test = quickstart_lines()
    ci = ci_script.read_text().splitlines()
    assert any(line.startswith(install) for line in ci), f".ci/run should run the Quickstart's {install!r}"
    assert test in ci, f".ci/run should run the Quickstart's {test!r} as written"


def test_requirements_pin_torch_so_ci_never_pulls_cuda_packages():
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", requirements, re.M)


def functions_students_write(path: Path):
    """(qualified name, docstring) of every function that holds a solution region (the reference) or its
    stub (the student template: `raise NotImplementedError("... is not written yet ...")`)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []

    def students_write(body):
        return any(line.strip() == "### BEGIN SOLUTION" for line in body) or any(
            line.strip().startswith("raise NotImplementedError(") and "is not written yet" in line for line in body)

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef) and students_write(lines[child.lineno - 1: child.end_lineno + 1]):
                found.append((f"{prefix}{child.name}", ast.get_docstring(child) or ""))

    visit(ast.parse(source))
    return found


@pytest.mark.parametrize("path", STUDENT_FILES, ids=lambda p: p.name)
def test_every_function_students_write_names_its_readme_section(path):
    headings = set(re.findall(r"^#+ (.+)$", README, re.M))
    functions = functions_students_write(path)
    assert functions, f"{path.name} has no solution regions or stubs"
    markers = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    assert markers.count("### BEGIN SOLUTION") == markers.count("### END SOLUTION")
    assert markers.count("### BEGIN SOLUTION") in (0, len(functions)), "one solution region per function"
    for name, docstring in functions:
        match = re.search(r"README: (.+)", docstring)
        assert match, f"{name}'s docstring should say which README section explains it ('README: ...')"
        assert match.group(1).strip() in headings, f"{name} points to README section {match.group(1)!r}, which is missing"
