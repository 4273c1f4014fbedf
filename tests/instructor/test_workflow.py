"""The autograder's workflow is valid GitHub Actions, and does what the assignment promises.
(Instructor-only: it checks the instructor's workflow, with actionlint from requirements.txt.)"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "autograde.yml"


def test_actionlint_finds_nothing_wrong_with_the_workflow():
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install -r requirements.txt installs it)")
    result = subprocess.run([actionlint, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_workflow_installs_cpu_torch_and_only_the_grading_requirements_then_reports_the_score():
    text = WORKFLOW.read_text()
    for expected in ("push:", "workflow_dispatch:", "--index-url https://download.pytorch.org/whl/cpu",
                     "torch==2.13.0", "requirements-grading.txt", "cache: pip", "--timeout=",
                     "--score-json=score.json", "$GITHUB_STEP_SUMMARY", "actions/upload-artifact",
                     "autograding-grading-reporter"):
        assert expected in text, f"the workflow should mention {expected!r}"
    grading = (ROOT / "requirements-grading.txt").read_text()
    assert "lightning" not in grading and "pytest-timeout" in grading


def test_graded_tests_import_nothing_beyond_torch_einops_and_pytest():
    """The workflow installs only those: Lightning, numpy or matplotlib in a graded test would break it."""
    allowed = {"torch", "einops", "pytest", "models", "scoring", "functools", "math", "main", "data"}
    for path in [*(ROOT / "tests" / "graded").glob("*.py"), ROOT / "tests" / "scoring.py", ROOT / "tests" / "conftest.py"]:
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                top = line.split()[1].split(".")[0]
                assert top in allowed or top in {"base64", "json", "traceback", "pathlib", "inspect", "re", "sys"}, (
                    f"{path.name} imports {top}, which the autograder does not install")
