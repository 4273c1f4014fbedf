"""`python -m grading regrade`, end to end, on a class of synthetic submissions (tests/instructor/
synthetic_submissions.py): correct, stubs, partly right, hanging, exiting, flooding, escaping (a write
outside its folder, a network connection), broken (a syntax error) and tampering. Each gets zero on what
it broke and keeps the rest; the batch goes on; a rerun skips what did not change. (Instructor-only.
About half a minute on two cores.)"""

import csv
import json
from pathlib import Path

import pytest

from synthetic_submissions import AFTER, LIMITS, ROOT, commit, regrade


@pytest.fixture(scope="module")
def graded(graded_class):
    return graded_class


def results(out: Path) -> dict:
    return {path.stem: json.loads(path.read_text()) for path in (out / "results").glob("*.json")}


def rows(result: dict, **where) -> list[dict]:
    return [row for row in result["tests"] if all(row[key] == value for key, value in where.items())]


def test_the_reference_earns_everything_and_the_stubs_nothing(graded):
    _, out, _, _ = graded
    every = results(out)
    assert (every["correct"]["grade"], every["correct"]["public"], every["correct"]["hidden"]) == (10, 10, 2)
    assert every["correct"]["status"] == "ok" and every["correct"]["tamper"] == [] and every["correct"]["blocked"] == []
    assert (every["stubs"]["grade"], every["stubs"]["status"]) == (0, "ok")
    assert "is not implemented yet" in rows(every["stubs"], name="test_parallel_scan_agrees_with_the_sequential_scan")[0]["message"]


def test_hidden_tests_catch_what_the_public_ones_cannot_and_the_deadline_holds(graded):
    _, out, _, _ = graded
    partly = results(out)["partly"]
    assert partly["public"] == 5 and partly["hidden"] == 0.75, "graded the late commit, or the hidden test missed"
    assert partly["grade"] == round((5 + 0.75) * 10 / 12, 2)
    (mask,) = rows(partly, name="test_hidden_causal_mask_for_rectangular_and_single_positions")
    assert mask["outcome"] == "failed" and "causal_mask(3, 5)" in mask["message"]


def test_a_hang_times_out_only_the_tests_that_call_it(graded):
    _, out, _, _ = graded
    hangs = results(out)["hangs"]
    timed_out = {row["name"] for row in hangs["tests"] if row["outcome"] != "passed"}
    assert timed_out == {"test_sinusoidal_positional_encoding_matches_the_formula",
                         "test_hidden_positions_and_whole_model_for_other_sizes"}
    assert all(row["outcome"] == "timeout" for row in hangs["tests"] if row["name"] in timed_out)
    assert hangs["public"] == 9.5 and "timeout" in hangs["status"]


def test_os_exit_costs_the_test_it_ended_and_the_run_resumes_after_it(graded):
    _, out, _, _ = graded
    exits = results(out)["exits"]
    (crashed,) = [row for row in exits["tests"] if row["outcome"] != "passed"]
    assert crashed["name"] == "test_residual_block_adds_the_mixer_of_the_rms_normalised_input"
    assert crashed["outcome"] == "crashed" and "exit status 0" in crashed["message"]
    assert exits["public"] == 9.5 and exits["hidden"] == 2


def test_a_flood_of_output_is_cut_off_and_costs_the_tests_that_flood(graded):
    _, out, _, _ = graded
    floods = results(out)["floods"]
    lost = [row for row in floods["tests"] if row["outcome"] != "passed"]
    # Python ignores SIGXFSZ: past the limit, a write raises OSError (EFBIG) in the student's code.
    assert lost and all(row["outcome"] == "failed" and "File too large" in row["message"] for row in lost)
    assert floods["public"] >= 9 and (out / "logs" / "floods.log").stat().st_size < 200_000


def test_writing_outside_and_the_network_are_blocked_and_cost_the_tests_that_tried(graded):
    _, out, _, outside = graded
    escapes = results(out)["escapes"]
    assert not outside.exists(), "the submission wrote outside its folder"
    assert any("write to" in item and str(outside) in item for item in escapes["blocked"])
    assert any("network" in item and "192.0.2.1" in item for item in escapes["blocked"])
    assert rows(escapes, name="test_causal_mask_lets_each_position_see_itself_and_the_past_only")[0]["earned"] == 0
    assert rows(escapes, name="test_sinusoidal_positional_encoding_matches_the_formula")[0]["earned"] == 0
    assert rows(escapes, name="test_parallel_scan_agrees_with_the_sequential_scan")[0]["earned"] == 0.25


def test_code_that_does_not_import_costs_the_tests_it_breaks_with_the_error_as_feedback(graded):
    _, out, _, _ = graded
    broken = results(out)["broken"]
    assert broken["grade"] == 0 and broken["status"] == "30 crashed"  # models/__init__.py imports both files
    assert all("could not import the tests" in row["message"] and "SyntaxError" in row["message"]
               for row in broken["tests"])
    assert 'File "models/mamba.py", line' in broken["tests"][0]["message"]  # not the scratch folder's path


def test_tampering_is_flagged_with_the_files_named_and_graded_with_the_instructors_tests(graded):
    _, out, _, _ = graded
    tampers = results(out)["tampers"]
    assert tampers["tamper"] == ["changed .github/workflows/autograde.yml", "changed exps/args_piglatin_small_transformer.txt",
                                 "changed tests/graded/test_q1_transformer.py", "added conftest.py"]
    assert tampers["grade"] == 0
    feedback = (out / "feedback" / "tampers.md").read_text()
    assert "tests/graded/test_q1_transformer.py" in feedback and "instructor's copies" in feedback


def test_gradebook_has_a_row_per_student_and_a_column_per_test_and_progress_was_shown(graded):
    made, out, output, _ = graded
    with open(out / "gradebook.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert [row["student"] for row in table] == sorted(made)
    header = list(table[0])
    assert header[:8] == ["student", "commit", "grade", "public", "hidden", "status", "tamper", "blocked"]
    assert len(header) == 8 + 30 and "hidden: test_hidden_causal_mask_for_rectangular_and_single_positions" in header
    correct = next(row for row in table if row["student"] == "correct")
    assert sum(float(correct[column]) for column in header[8:]) == 12
    assert "changed tests/graded/test_q1_transformer.py" in next(row for row in table if row["student"] == "tampers")["tamper"]
    assert all(f"] {name} (" in output for name in made), output
    assert output.count(f"/{len(made)}] ") == len(made)


def test_feedback_says_what_failed_by_how_much_and_which_section_to_reread(graded):
    _, out, _, _ = graded
    feedback = (out / "feedback" / "partly.md").read_text()
    assert "**4.79 / 10**" in feedback
    assert "- Q1.1 Multi-head attention\n- Q2.1 Discretisation\n- Q2.2 Parallel scan" in feedback
    assert "causal_mask(3, 5) should have shape (3, 5), got torch.Size([3, 3])" in feedback
    assert "- Q1 hidden test `test_hidden_causal_mask_for_rectangular_and_single_positions`: 0 / 0.25 (failed)" in feedback
    assert feedback.count("pscan in models/mamba.py is not implemented yet") == 1  # one message, many tests


def test_a_rerun_skips_unchanged_submissions_and_regrades_a_new_commit(graded, tmp_path):
    made, out, _, _ = graded
    before = results(out)
    commit(made["stubs"], {"models/transformer.py": (ROOT / "models" / "transformer.py").read_text()}, date=AFTER)
    result = regrade(str(made["correct"]), str(made["stubs"]), "--out", str(out), "--release",
                     str(made["correct"].parent.parent / "release"), *LIMITS)
    assert result.returncode == 0, result.stderr
    assert "correct (" in result.stdout and "unchanged since the last run" in result.stdout.split("correct (")[1]
    after = results(out)
    assert after["correct"] == before["correct"]
    assert after["stubs"]["commit"] != before["stubs"]["commit"] and after["stubs"]["public"] == 5


def test_bad_submissions_are_refused_in_one_line_each_before_anything_runs(tmp_path):
    (tmp_path / "not-a-repo").mkdir()
    result = regrade(str(tmp_path / "missing"), str(tmp_path / "not-a-repo"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "missing: no such directory" in result.stderr and "not-a-repo: not a git repository" in result.stderr
    assert not (tmp_path / "out").exists()


def test_files_a_run_changed_added_or_deleted_in_the_tree_are_named_and_put_back(tmp_path):
    from grading.regrade import changed_files, write_tree

    expected = {"tests/graded/test_q1.py": (b"def test(): pass\n", 0o644), "models/mamba.py": (b"x = 1\n", 0o644)}
    write_tree(tmp_path, expected)
    (tmp_path / "tests" / "graded" / "test_q1.py").write_text("def test(): assert True\n")
    (tmp_path / "models" / "mamba.py").unlink()
    (tmp_path / "conftest.py").write_text("")
    assert changed_files(tmp_path, expected) == ["added conftest.py while running",
                                                 "changed tests/graded/test_q1.py while running",
                                                 "deleted models/mamba.py while running"]
    assert changed_files(tmp_path, expected) == []
    assert (tmp_path / "tests" / "graded" / "test_q1.py").read_bytes() == b"def test(): pass\n"
