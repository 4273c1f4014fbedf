"""The autograder's workflow is valid GitHub Actions, and does what the assignment promises: the CPU build of
torch and nothing more, a cache that survives a failing grade, superseded runs cancelled, time limits that
nest, and a score artifact in every case. (Instructor-only: actionlint comes from requirements-dev.txt.)"""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grading.publish.template import TOTAL_POINTS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "autograde.yml"
# The majors that were current when the workflow was last reviewed (2026-11, from each action's tags); a
# newer one is fine. actionlint, above, knows which runtimes GitHub has retired (node20 since 2026-09).
CURRENT_MAJORS = {"actions/checkout": 7, "actions/setup-python": 7, "actions/cache/restore": 5,
                  "actions/cache/save": 5, "actions/upload-artifact": 7}
# What runs outside the graded step's limit: checkout, Python, the cache, the install, the upload.
SETUP_ALLOWANCE_S = 300


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    return workflow["jobs"]["grade"]["steps"]


def step(steps, uses=None, step_id=None) -> tuple[int, dict]:
    """(position, step) of the one step that uses `uses` (an action, without @version) or has id `step_id`."""
    found = [(i, s) for i, s in enumerate(steps)
             if (uses and s.get("uses", "").split("@")[0] == uses) or (step_id and s.get("id") == step_id)]
    assert len(found) == 1, f"the workflow should have exactly one step {uses or step_id!r}, has {len(found)}"
    return found[0]


@pytest.mark.parametrize("path", sorted(WORKFLOW.parent.glob("*.yml")), ids=lambda path: path.name)
def test_actionlint_finds_nothing_wrong_with_any_workflow(path):
    """The autograder's, and the instructor's class regrade (tests/instructor/test_class_workflow.py)."""
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install -r requirements-dev.txt installs it)")
    result = subprocess.run([actionlint, "-no-color", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_every_action_is_githubs_own_pinned_to_a_current_major_version(steps):
    for s in steps:
        if "uses" not in s:
            continue
        name, _, version = s["uses"].partition("@")
        assert name in CURRENT_MAJORS, f"{s['uses']}: only GitHub's own actions, listed in CURRENT_MAJORS"
        assert re.fullmatch(r"v\d+", version), f"{s['uses']}: pin the major version (@vN), which gets fixes"
        assert int(version[1:]) >= CURRENT_MAJORS[name], f"{s['uses']}: v{CURRENT_MAJORS[name]} is current"


def test_workflow_installs_the_cpu_build_of_the_pinned_torch_then_only_the_grading_requirements(workflow, steps):
    _, install = step(steps, step_id="install")
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert workflow["env"]["TORCH_VERSION"] == pinned, "the workflow's torch should be requirements.txt's"
    assert '"torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu' in install["run"]
    assert "-r requirements-grading.txt" in install["run"]
    grading = (ROOT / "requirements-grading.txt").read_text()
    assert "lightning" not in grading and "pytest-timeout" in grading


def test_grading_requirements_install_numpy_so_the_cpu_torch_does_not_warn_without_it():
    """The CPU wheel does not depend on NumPy but imports it at start-up, warning 'Failed to initialize NumPy'."""
    names = [re.split(r"[<>=\s]", line)[0] for line in (ROOT / "requirements-grading.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "numpy" in names


def test_pip_cache_is_restored_before_the_install_and_saved_after_it_before_any_test_runs(steps):
    restore_at, restore = step(steps, uses="actions/cache/restore")
    install_at, _ = step(steps, step_id="install")
    save_at, save = step(steps, uses="actions/cache/save")
    graded_at, _ = step(steps, step_id="graded")
    assert restore_at < install_at < save_at < graded_at, "restore, install, save, then the graded tests"
    assert save["with"]["path"] == restore["with"]["path"]
    assert save["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"
    assert save.get("if") == f"steps.{restore['id']}.outputs.cache-hit != 'true'", "save what was not restored"
    assert all(not s.get("with", {}).get("cache") for s in steps), \
        "setup-python's `cache:` saves only when the whole job succeeds, which a grade below 10/10 never does"
    for part in ("runner.os", "steps.python.outputs.python-version", "env.TORCH_VERSION",
                 "hashFiles('requirements-grading.txt')"):
        assert part in restore["with"]["key"], f"the cache key should depend on {part}"


def runs_on_push(trigger: dict, ref: str) -> bool:
    """Whether GitHub starts the workflow for a push of `ref`, by its documented filter rules: a branch runs
    unless `branches` leaves it out or `branches-ignore` names it; a tag runs only where `tags` or
    `tags-ignore` is given, or no filter at all."""
    if "push" not in trigger:
        return False
    filters = trigger["push"] or {}
    kind, _, name = ref.removeprefix("refs/").partition("/")
    listed, ignored = (filters.get("branches"), filters.get("branches-ignore")) if kind == "heads" else \
        (filters.get("tags"), filters.get("tags-ignore"))
    if listed is None and ignored is None:
        return not filters
    return name in listed if listed is not None else name not in ignored


def test_students_pushes_and_a_manual_run_start_it_but_the_courses_feedback_branch_and_tags_do_not(workflow):
    from grading.course.feedback import FEEDBACK_BRANCH

    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert "workflow_dispatch" in trigger
    for ref in ("refs/heads/main", "refs/heads/try-rms-norm", "refs/heads/feedback-fix"):
        assert runs_on_push(trigger, ref), ref
    for ref in (f"refs/heads/{FEEDBACK_BRANCH}", "refs/tags/v1", "refs/tags/submitted"):
        assert not runs_on_push(trigger, ref), f"pushing {ref} would start an autograde run"


def test_a_newer_push_cancels_the_run_it_supersedes(workflow):
    concurrency = workflow["concurrency"]
    assert "github.ref" in concurrency["group"] and concurrency["cancel-in-progress"] is True


def test_time_limits_nest_per_test_session_step_job(workflow, steps):
    _, graded = step(steps, step_id="graded")
    per_test = float(re.search(r"--timeout=(\d+)", graded["run"]).group(1))
    session = float(re.search(r"--session-timeout=(\d+)", graded["run"]).group(1))
    step_limit = graded["timeout-minutes"] * 60
    job_limit = workflow["jobs"]["grade"]["timeout-minutes"] * 60
    # The last test may start just before the session limit and use its whole timeout; then the score
    # is written, which the step's limit must leave time for.
    assert per_test < session and session + per_test + 60 <= step_limit, (per_test, session, step_limit)
    assert step_limit + SETUP_ALLOWANCE_S <= job_limit, (step_limit, job_limit)


def test_the_score_artifact_is_uploaded_whatever_happened_before(steps):
    fallback_at, fallback = step(steps, step_id="no-score")
    upload_at, upload = step(steps, uses="actions/upload-artifact")
    graded_at, graded = step(steps, step_id="graded")
    assert "--score-json=score.json" in graded["run"] and "$GITHUB_STEP_SUMMARY" in graded["run"]
    assert graded_at < fallback_at < upload_at
    assert fallback["if"] == "always()" and upload["if"] == "always()"
    assert upload["with"]["path"] == "score.json"


def run_fallback(steps, directory: Path) -> Path:
    """Runs the fallback step's script in `directory` as the runner would; returns the job summary file."""
    _, fallback = step(steps, step_id="no-score")
    summary = directory / "summary.md"
    subprocess.run(["bash", "-e", "-c", fallback["run"]], cwd=directory, check=True, timeout=30,
                   env={"PATH": "/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(summary)}, capture_output=True)
    return summary


def test_without_a_score_from_pytest_the_fallback_writes_zero_points_and_says_why(steps, tmp_path):
    for path in ("autograde/__init__.py", "autograde/points.py", *(f"tests/graded/{test.name}" for test in
                                                                   (ROOT / "tests" / "graded").glob("test_*.py"))):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((ROOT / path).read_bytes())
    summary = run_fallback(steps, tmp_path)
    score = json.loads((tmp_path / "score.json").read_text())
    assert (score["total"], score["max"], score["complete"], score["tests"]) == (0, TOTAL_POINTS, False, [])
    assert "stopped before writing a score" in score["error"]
    assert summary.read_text().startswith("## Score: none")


def test_a_score_from_pytest_is_left_as_it_is(steps, tmp_path):
    written = '{"total": 7.5, "max": 10}\n'
    (tmp_path / "score.json").write_text(written)
    summary = run_fallback(steps, tmp_path)
    assert (tmp_path / "score.json").read_text() == written and not summary.exists()


def test_graded_tests_import_nothing_beyond_torch_einops_and_pytest():
    """The workflow installs only those (and NumPy): Lightning or matplotlib in a graded test would break it."""
    allowed = {"torch", "einops", "pytest", "models", "autograde", "main", "data", "graded", *sys.stdlib_module_names}
    tests = ROOT / "tests"
    for path in [*(tests / "graded").glob("*.py"), *(ROOT / "autograde").glob("*.py"), tests / "conftest.py"]:
        module = ast.parse(path.read_text())  # what runs on import: top-level statements, try and if blocks
        top_level = [node for statement in module.body for node in ast.walk(statement)
                     if not isinstance(statement, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        for node in top_level:
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for top in (name.split(".")[0] for name in names):
                assert top in allowed, (
                    f"{path.name} imports {top}, which the autograder does not install")
