"""The instructor's tests: they need the instructor's tools, and skip in one line without them.

`python -m pip install -r requirements-dev.txt` brings nbgrader, Playwright and the rest; the regrade's
sandbox also needs Debian's bubblewrap (`apt-get install bubblewrap`). On a machine without them (a
student's, or a fresh one with only the Quickstart's install line) these tests are skipped with the
command that installs what is missing; with PIGLATIN_REQUIRE_INSTRUCTOR=1 (what .ci/run sets) they fail
instead, so CI cannot pass by skipping them.

The synthetic class is regraded once per session: tests/instructor/test_regrade.py checks the grades,
tests/instructor/test_review.py the site built from them.
"""

import importlib.util
import os
import shutil

import pytest

PYTHON_TOOLS = {"nbgrader": "nbgrader", "pytest_timeout": "pytest-timeout", "playwright": "playwright",
                "nh3": "nh3", "mdit_py_plugins": "mdit-py-plugins", "pyseccomp": "pyseccomp",
                "safetensors": "safetensors", "copydetect": "copydetect"}


def missing_tools() -> list[str]:
    missing = [package for module, package in PYTHON_TOOLS.items() if importlib.util.find_spec(module) is None]
    return missing + [tool for tool in ("bwrap", "actionlint", "hadolint") if shutil.which(tool) is None]


SKIPPED = []  # (how many tests, why), for the one line at the end


def pytest_collection_modifyitems(config, items):
    missing = missing_tools()
    if not missing:
        return
    message = (f"instructor tools missing ({', '.join(missing)}): python -m pip install -r requirements-dev.txt"
               + ("; sudo apt-get install bubblewrap" if "bwrap" in missing else ""))
    if os.environ.get("PIGLATIN_REQUIRE_INSTRUCTOR") == "1":
        raise pytest.UsageError(message)
    instructor = [item for item in items if "tests/instructor" in str(item.fspath).replace(os.sep, "/")]
    for item in instructor:
        item.add_marker(pytest.mark.skip(reason=message))
    if instructor:
        SKIPPED.append((len(instructor), message))


def pytest_terminal_summary(terminalreporter):
    for count, message in SKIPPED:
        terminalreporter.write_line(f"{count} instructor tests skipped: {message}")


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """(name -> submission, the regrade's out directory, its printed progress, the path `escapes` tried to
    write, the regrade's scratch folder) after one regrade of the synthetic and the hostile class at the
    deadline, with a rubric that accepts no late work."""
    from semester import rubric_without_late_days
    from synthetic_submissions import DEADLINE, LIMITS, class_of_submissions, hostile_class, make_release, regrade

    root = tmp_path_factory.mktemp("class")
    release = make_release(root / "release")
    outside = root / "outside" / "was_here.txt"
    outside.parent.mkdir()
    made = {**class_of_submissions(release, root / "submissions", outside),
            **hostile_class(release, root / "submissions")}
    out, scratch = root / "grades", root / "scratch"
    scratch.mkdir()
    # No late days: `partly`'s commit after the deadline is past the late window, and the one before is graded.
    rubric = rubric_without_late_days(root)
    result = regrade(*map(str, made.values()), "--out", str(out), "--deadline", DEADLINE, "--rubric", str(rubric),
                     "--release", str(release), *LIMITS, scratch=scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    return made, out, result.stdout, outside, scratch
