"""How the release turns the reference into the student template: stubs, notebooks, leak detection,
and the score checks it refuses on. (Instructor-only: not shipped.)"""

import ast
import json
import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import submit_check
from grading.publish.release import score_problems
from grading.publish.template import (
    Region,
    TemplateError,
    find_regions,
    is_instructor_only,
    leaks,
    make_template,
    secret_lines,
    stub_python,
)


MODULE = textwrap.dedent('''
    """A module."""


    def given(x):
        return x + 1


    class Layer:
        def forward(self, x):
            """Doubles x.

            README: Q9 Doubling
            """
            ### BEGIN SOLUTION
            doubled = x * 2
            return doubled
            ### END SOLUTION
''')


def test_a_region_becomes_a_stub_naming_function_and_section_at_its_indentation():
    stubbed = stub_python(MODULE, "models/layer.py")
    assert "doubled" not in stubbed and "SOLUTION" not in stubbed
    assert ('        raise NotImplementedError("Layer.forward is not written yet: '
            "see README section 'Q9 Doubling'\")") in stubbed
    assert "        # YOUR CODE HERE (the reference solution takes 2 lines)" in stubbed
    assert '"""Doubles x.' in stubbed and "def given(x):\n    return x + 1" in stubbed


def test_the_stubbed_module_imports_and_the_stub_raises_its_message():
    namespace = {}
    exec(compile(stub_python(MODULE, "models/layer.py"), "layer.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="Layer.forward is not written yet: see README section 'Q9 Doubling'"):
        namespace["Layer"]().forward(3)
    assert namespace["given"](1) == 2


@pytest.mark.parametrize("broken, complaint", [
    (MODULE.replace("        README: Q9 Doubling\n", ""), "README: <section>"),
    (MODULE.replace("        ### END SOLUTION\n", ""), "do not pair up"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "inside a function"),
])
def test_a_region_the_release_cannot_stub_is_refused_with_file_and_reason(broken, complaint):
    with pytest.raises(TemplateError, match=complaint):
        find_regions(broken, "models/layer.py")


def test_the_real_student_files_stub_into_valid_python_with_every_region_replaced(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in ("models/transformer.py", "models/mamba.py"):
        source = (root / name).read_text()
        regions = find_regions(source, name)
        stubbed = make_template({name: source.encode()})[name].decode()
        ast.parse(stubbed)
        assert stubbed.count("raise NotImplementedError(") == len(regions) > 0
        assert "BEGIN SOLUTION" not in stubbed  # the prose about the markers is rewritten too


def tiny_notebook() -> str:
    nbgrader = {"grade": False, "locked": False, "task": False, "schema_version": 3}
    answer = new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return x * 2  # secret\n    ### END SOLUTION\n"
                           "double(21)", metadata={"nbgrader": {**nbgrader, "solution": True, "grade_id": "double"}})
    answer.outputs = [new_output("execute_result", data={"text/plain": "42"}, execution_count=1)]
    answer.execution_count = 1
    essay = new_markdown_cell("Doubling is linear (a written secret).",
                              metadata={"nbgrader": {**nbgrader, "solution": True, "grade_id": "essay"}})
    checks = new_code_cell("assert double(1) == 2\n### BEGIN HIDDEN TESTS\nassert double(5) == 10\n"
                           "### END HIDDEN TESTS", metadata={"nbgrader": {**nbgrader, "grade": True, "points": 1,
                                                                          "solution": False, "grade_id": "checks",
                                                                          "locked": True}})
    notebook = new_notebook(cells=[answer, essay, checks],
                            metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    return nbformat.writes(notebook)


def test_notebooks_are_stripped_by_nbgrader_of_solutions_hidden_tests_and_outputs():
    files = {"notebooks/q1.ipynb": tiny_notebook().encode()}
    template = make_template(files)["notebooks/q1.ipynb"]
    cells = json.loads(template)["cells"]
    sources = ["".join(cell["source"]) for cell in cells]
    assert "raise NotImplementedError()" in sources[0] and "secret" not in sources[0]
    assert sources[1] == "YOUR ANSWER HERE"
    assert sources[2] == "assert double(1) == 2"
    assert all(not cell.get("outputs") for cell in cells)
    assert leaks("notebooks/q1.ipynb", template, secret_lines(files)) == []


def test_the_real_notebooks_lose_their_reference_answers_and_keep_everything_else():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = {path.relative_to(root).as_posix(): path.read_bytes() for path in (root / "notebooks").glob("*.ipynb")}
    assert files, "notebooks/ should hold the writeup's notebooks"
    secrets = secret_lines(files)
    for name, stripped in make_template(files).items():
        original, template = json.loads(files[name])["cells"], json.loads(stripped)["cells"]
        assert len(original) == len(template), f"{name}: the release should keep every cell"
        for before, after in zip(original, template):
            answer = before.get("metadata", {}).get("nbgrader", {}).get("solution", False)
            source = "".join(after["source"])
            assert source == ("YOUR ANSWER HERE" if answer else "".join(before["source"])), (
                f"{name}: an answer cell should become 'YOUR ANSWER HERE', any other cell stay as it is")
        assert leaks(name, stripped, secrets) == [], f"{name}: {leaks(name, stripped, secrets)}"


def test_leak_check_finds_a_solution_line_in_a_notebook_output_and_in_a_python_file():
    files = {"notebooks/q1.ipynb": tiny_notebook().encode(), "models/layer.py": MODULE.encode()}
    secrets = secret_lines(files)
    assert {"return x * 2  # secret", "42", "doubled = x * 2", "Doubling is linear (a written secret)."} <= secrets
    assert "def given(x):" not in secrets  # given code is public
    assert any("solution line" in problem for problem in leaks("notebooks/q1.ipynb", files["notebooks/q1.ipynb"], secrets))
    copied = b"def helper(x):\n    doubled = x * 2\n"
    assert leaks("tests/test_helper.py", copied, secrets) == ["tests/test_helper.py: solution line 'doubled = x * 2'"]
    assert leaks("models/layer.py", MODULE.encode(), secrets)[0].startswith("models/layer.py: keeps the marker line")


@pytest.mark.parametrize("path, only_for_instructors", [
    ("grading/publish/release.py", True), ("tests/instructor/test_release.py", True), ("INSTRUCTOR.md", True),
    ("tests/hidden/test_more.py", True), (".ci/run", True), ("requirements-dev.txt", True),
    ("tests/graded/test_q1_transformer.py", False), ("models/mamba.py", False),
    (".github/workflows/autograde.yml", False), ("requirements-grading.txt", False),
    ("requirements-optional.txt", False), ("autograde/plugin.py", False), ("gradingnotes.md", False),
])
def test_instructor_only_paths(path, only_for_instructors):
    assert is_instructor_only(path) == only_for_instructors


@pytest.mark.parametrize("line, named", [
    ("# regenerate it with python -m grading rubric --update-readme", "python -m grading"),
    ("from grading.publish.template import Region", "grading.publish.template"),
    ("see grading/course/rubric.toml", "grading/course/rubric.toml"),
    ("pip install -r requirements-dev.txt", "requirements-dev.txt"),
    ("INSTRUCTOR.md, section 9", "INSTRUCTOR.md"),
    ("pytest.skip('.ci/run is the instructor's CI')", ".ci/"),
    ("the tests in tests/hidden are the instructor's", "tests/hidden"),
    ("python -m pip install -r requirements-grading.txt", None),
    ("name: Autograding Tests", None),
    ("pytest_plugins = ['autograde.plugin']", None),
    ("The grading. Then the regrade.", None),
])
def test_a_template_file_that_names_an_instructor_tool_is_a_leak(line, named):
    problems = leaks("tests/test_x.py", f"import os\n{line}\n".encode(), set())
    assert problems == ([f"tests/test_x.py:2: names {named!r}, which students do not get"] if named else [])


def test_the_stub_the_release_writes_is_the_stub_submit_check_looks_for():
    _, stub = Region("models/mamba.py", "MambaBlock.ssm", "Q2.3 Mamba block", 0, 1, "        ").stub()
    match = submit_check.STUB.search(stub)
    assert match and match.groups() == ("MambaBlock.ssm", "Q2.3 Mamba block"), stub


def score(total, failed=None, skipped=None):
    tests = [{"name": "test_a", "points": 10.0, "earned": total, "outcome": "passed" if total else "failed"}]
    return {"total": total, "max": 10.0, "complete": True, "tests": tests,
            "ungraded": {"passed": 3, "failed": failed or {}, "skipped": skipped or {}}}


def test_release_checks_want_zero_on_the_template_and_ten_on_the_solution_with_nothing_else_failing():
    assert score_problems("main", score(0.0), 0.0) == []
    assert score_problems("solution", score(10.0), 10.0) == []
    assert "score 10/10, expected 0" in score_problems("main", score(10.0), 0.0)[0]
    assert "failed" in score_problems("main", score(0.0, failed={"tests/test_x.py::test_y": "boom"}), 0.0)[0]
    skipped = {"tests/test_x.py::test_y": "Skipped: needs the finished models; pscan is not implemented"}
    assert score_problems("main", score(0.0, skipped=skipped), 0.0) == []
    assert "skipped" in score_problems("solution", score(10.0, skipped=skipped), 10.0)[0]
