"""The autograder's plugin (autograde/plugin.py): points add up to the assignment's, the score table and
its JSON, short failure reports, and skips for tests that need the finished models."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autograde import points

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_graded_points_add_up_to_the_assignment():
    """The assignment's points (SPEC §2): 10 for the graded tests, 5 a question; read from the markers, as
    every total of the project is (autograde/points.py)."""
    marked = points.markers(TESTS / "graded")
    total = lambda keep: sum(p for file, name, p, section in marked if keep(file, name, section))  # noqa: E731
    assert total(lambda *_: True) == points.total(ROOT) == 10
    assert total(lambda file, name, section: file == "test_q1_transformer") == 5
    assert total(lambda file, name, section: file == "test_q2_ssm") == 5
    assert total(lambda file, name, section: section.startswith("Q1.1")) == 3, "attention: 3 points"
    assert total(lambda file, name, section: section.startswith("Q2.1")) == 1, "bilinear discretisation: 1 point"
    assert total(lambda file, name, section: section.startswith("Q2.2")) == 1, "parallel scan: 1 point"
    assert total(lambda file, name, section: section.startswith("Q2.3")) == 3, "Mamba block and residual block: 3 points"
    assert all(name.startswith("test_") and len(name) < 100 for _, name, _, _ in marked)


DEMO = '''
import pytest
import torch
from autograde.plugin import expect_close


def unwritten(x):
    """A stub.

    README: Q9 Demo
    """
    raise NotImplementedError("unwritten is not written yet: see README section 'Q9 Demo'")


@pytest.mark.points(1, readme="Q9 Demo")
def test_right():
    expect_close(torch.ones(3), torch.ones(3), atol=1e-6, rtol=0, what="ones")


@pytest.mark.points(2, readme="Q9 Demo")
def test_wrong():
    expect_close(torch.tensor([1.0, 2.0, 3.5]), torch.tensor([1.0, 2.0, 3.0]), atol=1e-6, rtol=1e-5,
                 what="the demo output")


@pytest.mark.points(1.5, readme="Q9 Demo")
def test_stub():
    unwritten(1)


@pytest.mark.points(0.5, readme="Q9 Demo")
def test_crash():
    torch.ones(2) @ torch.ones(3)


@pytest.mark.needs_solution
def test_needs_the_models():
    unwritten(1)


def test_plain_stub_still_fails():
    unwritten(1)
'''


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """pytest on a demo suite with the plugin: (exit status, output, score JSON)."""
    directory = tmp_path_factory.mktemp("demo")
    (directory / "conftest.py").write_text('pytest_plugins = ["autograde.plugin"]\n')
    (directory / "test_q9_demo.py").write_text(textwrap.dedent(DEMO))
    score = directory / "score.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--score-json",
                             str(score), str(directory)], cwd=directory, capture_output=True, text=True, env=env,
                            timeout=300)
    return result.returncode, result.stdout + result.stderr, json.loads(score.read_text())


def test_score_table_lists_each_graded_test_with_earned_and_possible_points_and_the_total(demo_run):
    status, output, _ = demo_run
    assert status == 1
    table = output.split("assignment score", 1)[1]
    assert "test_right" in table and "test_wrong" in table and "earned" in table and "possible" in table
    assert [line.split()[-2:] for line in table.splitlines() if line.startswith("total")] == [["1", "5"]]


def test_score_json_holds_every_graded_test_and_the_other_tests_outcomes(demo_run):
    _, _, score = demo_run
    assert (score["total"], score["max"]) == (1.0, 5.0)
    earned = {row["name"]: row["earned"] for row in score["tests"]}
    assert earned == {"test_right": 1.0, "test_wrong": 0.0, "test_stub": 0.0, "test_crash": 0.0}
    assert list(score["ungraded"]["failed"]) == ["test_q9_demo.py::test_plain_stub_still_fails"]
    assert list(score["ungraded"]["skipped"]) == ["test_q9_demo.py::test_needs_the_models"]


def test_a_graded_failure_says_expected_got_difference_tolerance_and_section_without_a_traceback(demo_run):
    _, _, score = demo_run
    message = {row["name"]: row["message"] for row in score["tests"]}["test_wrong"]
    for part in ("the demo output", "expected [1, 2, 3]", "got      [1, 2, 3.5]", "largest difference 0.5",
                 "at index (2,)", "tolerance: |got - expected| <= 1e-06 + 1e-05 * |expected|",
                 "reread README section 'Q9 Demo'"):
        assert part in message, f"{part!r} missing from:\n{message}"
    assert len(message.splitlines()) <= 7 and "Traceback" not in message and "def test_wrong" not in message


def test_an_unwritten_stub_costs_the_points_with_a_one_line_message(demo_run):
    _, _, score = demo_run
    message = {row["name"]: row["message"] for row in score["tests"]}["test_stub"]
    assert message.count("\n") == 0 and "unwritten" in message and "Q9 Demo" in message


def test_a_crash_in_a_graded_test_is_reported_in_two_or_three_lines(demo_run):
    _, _, score = demo_run
    message = {row["name"]: row["message"] for row in score["tests"]}["test_crash"]
    assert message.startswith("your code raised RuntimeError") and len(message.splitlines()) <= 3


def test_a_test_that_needs_the_models_skips_naming_the_stub(demo_run):
    _, output, score = demo_run
    reason = score["ungraded"]["skipped"]["test_q9_demo.py::test_needs_the_models"]
    assert "needs the finished models" in reason and "unwritten" in reason
    assert "SKIPPED" in output


def test_the_score_table_is_the_last_thing_pytest_prints(demo_run):
    _, output, _ = demo_run
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].split()[:1] == ["total"] and "assignment score" in lines[-7]


STOPPED = '''
import pytest


@pytest.mark.points(1, readme="Q9 Demo")
def test_first():
    pass


@pytest.mark.points(2, readme="Q9 Demo")
def test_stops_the_session():
    pytest.exit("the session's time is up")


@pytest.mark.points(3, readme="Q9 Demo")
def test_never_reached():
    pass
'''


def test_a_session_stopped_early_scores_the_tests_it_never_reached_as_zero(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["autograde.plugin"]\n')
    (tmp_path / "test_q9_stopped.py").write_text(STOPPED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--score-json", str(tmp_path / "s.json"),
                    str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    score = json.loads((tmp_path / "s.json").read_text())
    assert (score["total"], score["max"], score["complete"]) == (1.0, 6.0, False)
    outcomes = {row["name"]: (row["outcome"], row["earned"]) for row in score["tests"]}
    assert outcomes["test_never_reached"] == ("not run", 0.0)


KILLED = '''
import os
import signal

import pytest


@pytest.mark.points(1, readme="Q9 Demo")
def test_first():
    pass


@pytest.mark.points(2, readme="Q9 Demo")
def test_kills_the_process():
    os.kill(os.getpid(), signal.SIGKILL)  # as a job's time limit or the out-of-memory killer would


@pytest.mark.points(3, readme="Q9 Demo")
def test_never_reached():
    pass
'''


def test_a_session_killed_outright_leaves_the_points_earned_before(tmp_path):
    """No hook runs after SIGKILL: what is left is the score written after the last graded test."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["autograde.plugin"]\n')
    (tmp_path / "test_q9_killed.py").write_text(KILLED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--score-json",
                             str(tmp_path / "s.json"), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == -9
    score = json.loads((tmp_path / "s.json").read_text())
    assert (score["total"], score["max"], score["finished"]) == (1.0, 6.0, False)
    outcomes = {row["name"]: (row["outcome"], row["earned"]) for row in score["tests"]}
    assert outcomes["test_kills_the_process"] == ("not run", 0.0) == outcomes["test_never_reached"]
    assert not (tmp_path / "s.json.partial").exists()
