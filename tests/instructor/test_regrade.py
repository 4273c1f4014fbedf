"""`python -m grading regrade`, end to end, on a class of synthetic submissions (tests/instructor/
synthetic_submissions.py): correct, stubs, partly right, hanging, exiting, flooding, escaping (a write
outside its folder, a network connection), broken (a syntax error) and tampering — and a hostile class
(forging from inside the sandbox, the tests' own oracles, lies in names, hidden inputs carried into public
outputs, crafted git trees). Each honest one keeps exactly what it earned; no hostile one earns a point it
did not compute; the batch goes on; a rerun skips what did not change. (Instructor-only. A minute or two
on two cores.)"""

import csv
import json
import subprocess
from pathlib import Path

import pytest

from grading.regrade.run import LATENESS
from synthetic_submissions import AFTER, HIDDEN_MARK, LIMITS, ROOT, commit, regrade


@pytest.fixture(scope="module")
def graded(graded_class):
    return graded_class


def results(out: Path) -> dict:
    return {path.stem: json.loads(path.read_text()) for path in (out / "results").glob("*.json")}


def rows(result: dict, **where) -> list[dict]:
    return [row for row in result["tests"] if all(row[key] == value for key, value in where.items())]


def lost(result: dict) -> set:
    return {row["name"] for row in result["tests"] if row["outcome"] != "passed"}


def test_the_class_leaves_no_process_and_no_scratch_file_behind(graded):
    _, _, _, _, scratch = graded
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(scratch) not in listing, "a sandbox outlived the regrade"
    assert list(scratch.iterdir()) == [], "the regrade left scratch files"


def test_the_reference_earns_everything_and_the_stubs_nothing(graded):
    _, out, output, _, _ = graded
    every = results(out)
    assert (every["correct"]["grade"], every["correct"]["public"], every["correct"]["hidden"]) == (10, 10, 2)
    assert every["correct"]["status"] == "ok" and every["correct"]["tamper"] == [] and every["correct"]["review"] == []
    assert (every["stubs"]["grade"], every["stubs"]["status"]) == (0, "ok")
    message = rows(every["stubs"], name="test_parallel_scan")[0]["message"]
    assert "pscan is not written yet" in message and "README section 'Q2.2 Parallel scan'" in message
    assert "the reference solution earns every point in the sandbox" in output


def test_hidden_tests_catch_what_the_public_ones_cannot_and_the_deadline_holds(graded):
    _, out, _, _, _ = graded
    partly = results(out)["partly"]
    assert partly["public"] == 5 and partly["hidden"] == 0.75, "graded the late commit, or the hidden test missed"
    assert partly["grade"] == round((5 + 0.75) * 10 / 12, 2)
    (block,) = rows(partly, name="test_hidden_mamba_block_with_other_kernels_expansions_and_sizes")
    assert block["outcome"] == "failed" and "MambaBlock.forward with an input" in block["message"]
    assert "conv kernel 4" not in block["message"], "the hidden sizes are not the public ones"


def test_a_hang_costs_only_the_tests_that_call_it_and_the_run_goes_on(graded):
    _, out, _, _, _ = graded
    hangs = results(out)["hangs"]
    assert lost(hangs) == {"test_sinusoidal_positional_encoding", "test_hidden_positions_and_encoder_at_other_sizes"}
    assert all(row["outcome"] == "timeout" for row in hangs["tests"] if row["name"] in lost(hangs))
    assert hangs["public"] == 9.5 and "timeout" in hangs["status"]


def test_os_exit_costs_the_call_it_ended_and_the_run_resumes_after_it(graded):
    _, out, _, _, _ = graded
    exits = results(out)["exits"]
    assert lost(exits) == {"test_residual_block", "test_hidden_mamba_block_with_other_kernels_expansions_and_sizes"}
    assert rows(exits, name="test_residual_block")[0]["outcome"] == "crashed"
    assert exits["public"] == 9.5 and exits["hidden"] == 1.75


def test_a_flood_of_output_costs_nothing_and_is_cut_in_the_log(graded):
    _, out, _, _, _ = graded
    floods = results(out)["floods"]
    assert floods["grade"] == 10 and (out / "logs" / "floods.log").stat().st_size < 600_000


def test_writing_outside_and_the_network_fail_inside_and_cost_the_tests_that_tried(graded):
    _, out, _, outside, _ = graded
    escapes = results(out)["escapes"]
    assert not outside.exists(), "the submission wrote outside its sandbox"
    assert lost(escapes) == {"test_causal_mask", "test_sinusoidal_positional_encoding",
                             "test_hidden_masks_and_heads_at_other_sizes", "test_hidden_positions_and_encoder_at_other_sizes"}
    assert any("imports socket" in flag for flag in escapes["review"])


def test_a_file_that_does_not_import_costs_its_own_tests_only(graded):
    _, out, _, _, _ = graded
    broken = results(out)["broken"]
    assert broken["public"] == 5 and broken["hidden"] == 1
    assert all(row["question"] == "Q2" for row in broken["tests"] if row["outcome"] != "passed")
    message = rows(broken, name="test_residual_block")[0]["message"]
    assert "models/mamba.py does not import: SyntaxError at line" in message


def test_tampering_is_flagged_with_the_files_named_and_graded_with_the_instructors_tests(graded):
    _, out, _, _, _ = graded
    tampers = results(out)["tampers"]
    assert tampers["tamper"] == ["changed .github/workflows/autograde.yml", "changed exps/args_piglatin_small_transformer.txt",
                                 "changed tests/graded/test_q1_transformer.py", "added conftest.py"]
    assert tampers["grade"] == 0
    feedback = (out / "feedback" / "tampers.md").read_text()
    assert "4 file(s) you were not meant to change" in feedback and "course staff's copies" in feedback


# --- the hostile class ----------------------------------------------------------------------------------------


def test_forging_results_from_inside_the_sandbox_earns_nothing_and_is_flagged(graded):
    _, out, _, _, _ = graded
    forges = results(out)["forges"]
    assert (forges["public"], forges["hidden"]) == (0, 0), lost(forges)
    assert any("imports sys" in flag for flag in forges["review"])


def test_the_tests_own_oracles_are_not_there_to_call_in_the_regrade(graded):
    _, out, _, _, _ = graded
    oracles = results(out)["oracles"]
    assert lost(oracles) == {"test_causal_mask", "test_encoder_layer", "test_hidden_masks_and_heads_at_other_sizes",
                             "test_hidden_positions_and_encoder_at_other_sizes"}
    assert any("imports autograde" in flag for flag in oracles["review"])


def test_words_the_student_chose_never_reach_the_feedback(graded):
    _, out, _, _, _ = graded
    lies = results(out)["lies"]
    feedback = (out / "feedback" / "lies.md").read_text()
    assert "Regrade approved" not in feedback and "10_of_10" not in feedback and "10of10" not in feedback
    assert "your code raised an exception while running causal_mask" in feedback
    assert "should be a tensor, got an object of another type" in feedback
    assert lies["public"] == 9.25


def test_hidden_inputs_never_reach_a_public_output(graded):
    _, out, _, _, _ = graded
    leaks = results(out)["leaks"]
    assert leaks["grade"] == 10, lost(leaks)
    assert f"{HIDDEN_MARK:g}" not in (out / "feedback" / "leaks.md").read_text()


def test_no_submission_takes_the_judge_past_a_gigabyte(graded):
    """The hostile class includes one that asks the grader for every stand-in answer and gradient it may,
    each as large as it may: the judge's memory stays bounded whatever student code asks (its peak, for
    the whole class, is in the regrade's last line)."""
    _, out, output, _, _ = graded
    peak = float(output.split("the judge's memory peaked at ")[1].split(" MB")[0])
    assert peak < 1024, f"the judge peaked at {peak:.0f} MB"
    exhausts = results(out)["exhausts"]
    assert exhausts["commit"] and not exhausts["status"].startswith("not graded"), exhausts["status"]


def test_crafted_trees_are_refused_before_anything_is_written(graded):
    made, out, _, _, _ = graded
    every = results(out)
    assert every["climbs"]["status"] == "not graded: refused: a file in the commit has a name with an absolute, " \
                                        "empty, '.' or '..' component"
    assert every["links"]["status"].startswith("not graded: refused: a file students write is a link")
    assert every["bloats"]["status"] == "not graded: refused: models/mamba.py is larger than 1 MB"
    assert all(every[name]["grade"] == 0 for name in ("climbs", "links", "bloats"))
    assert "assets/../../escaped.txt" in every["climbs"]["notes"][0]  # the instructor sees the entry, quoted
    found = subprocess.run(["find", str(made["climbs"].parent.parent), "/tmp", "-name", "escaped.txt"],
                           capture_output=True, text=True).stdout
    assert found == ""


# --- the outputs ----------------------------------------------------------------------------------------------


def test_gradebook_has_a_row_per_student_and_a_column_per_test_and_progress_was_shown(graded):
    made, out, output, _, _ = graded
    with open(out / "gradebook.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert [row["student"] for row in table] == sorted(made)
    header = list(table[0])
    assert header[:10] == ["student", "commit", "grade", "public", "hidden", "status", "days_late", "tamper", "review",
                           "notes"]
    assert len(header) == 10 + 26 and "hidden: test_hidden_masks_and_heads_at_other_sizes" in header
    correct = next(row for row in table if row["student"] == "correct")
    assert sum(float(correct[column]) for column in header[10:]) == 12 and correct["days_late"] == "0"
    assert "changed tests/graded/test_q1_transformer.py" in next(row for row in table if row["student"] == "tampers")["tamper"]
    assert all(f"] {name} (" in output for name in made), output
    assert output.count(f"/{len(made)}] ") == len(made)


def test_a_gradebook_cell_never_starts_a_spreadsheet_formula():
    from grading.regrade.results import cell

    assert [cell(text) for text in ("=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "alice", 3.5)] == \
        ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "alice", "3.5"]


def test_feedback_says_what_failed_by_how_much_and_which_section_to_reread(graded):
    _, out, _, _, _ = graded
    feedback = (out / "feedback" / "partly.md").read_text()
    assert "**4.79 / 10**" in feedback
    assert "- Q1.1 Multi-head attention\n- Q1.2 Encoder\n- Q1.3 Decoder\n- Q2.3 Mamba block" in feedback
    assert "- Q2 hidden test `test_hidden_mamba_block_with_other_kernels_expansions_and_sizes`: 0 / 0.25 (failed)" \
        in feedback
    assert feedback.count("causal_mask is not written yet") == 1  # one message, many tests


def test_a_rerun_skips_unchanged_submissions_and_regrades_a_new_commit(graded):
    made, out, _, _, _ = graded
    before = results(out)
    commit(made["stubs"], {"models/transformer.py": (ROOT / "models" / "transformer.py").read_text()}, date=AFTER)
    result = regrade(str(made["correct"]), str(made["stubs"]), "--out", str(out), "--release",
                     str(made["correct"].parent.parent / "release"), *LIMITS)
    assert result.returncode == 0, result.stderr
    assert "correct (" in result.stdout and "unchanged since the last run" in result.stdout.split("correct (")[1]
    after = results(out)
    # the same grade, without the days late the first run's --deadline counted (this one has none)
    assert after["correct"] == {key: value for key, value in before["correct"].items() if key not in LATENESS}
    assert before["correct"]["days_late"] == 0
    assert after["stubs"]["commit"] != before["stubs"]["commit"] and after["stubs"]["public"] == 5


def test_bad_submissions_are_refused_in_one_line_each_before_anything_runs(tmp_path):
    (tmp_path / "not-a-repo").mkdir()
    result = regrade(str(tmp_path / "missing"), str(tmp_path / "not-a-repo"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "missing: no such directory" in result.stderr and "not-a-repo: not a git repository" in result.stderr
    assert not (tmp_path / "out").exists()


def test_too_many_files_or_a_writeup_file_past_its_cap_is_refused_or_skipped_before_it_is_read(tmp_path, monkeypatch):
    from grading.regrade import submissions

    repo = tmp_path / "alice"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "assets").mkdir()
    for index in range(6):
        (repo / "assets" / f"plot{index}.png").write_bytes(b"x" * (index * 100))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "x"], cwd=repo, check=True)
    monkeypatch.setattr(submissions, "MAX_FILE_BYTES", 250)
    read = submissions.read(repo)
    assert not read.problem and sorted(read.files) == ["assets/plot0.png", "assets/plot1.png", "assets/plot2.png"]
    assert len(read.notes) == 3 and all("over 0 MB" in note or "bytes" in note for note in read.notes)
    monkeypatch.setattr(submissions, "MAX_ENTRIES", 5)
    assert submissions.read(repo).problem == "more than 5 files in the commit"
