"""A scripted semester through the course commands, end to end and offline: a roster of five synthetic students
(tests/instructor/semester.py: honest, partly right, late, and two who copied each other with renamed variables)
whose repositories are local bare repositories standing in for GitHub; collect → regrade → scores by hand →
similarity → gradebook → Canvas export → feedback branches → a regrade request. The totals are worked out by
hand below, from the rubric (grading/course/rubric.toml), not recomputed with the code under test. (Instructor-only.
About a minute and a half on two cores: one regrade of five submissions.)"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from semester import DEADLINE, students
from grading.regrade.results import format_points
from synthetic_submissions import LIMITS, ROOT, make_release, regrade

TITLE = "Pig Latin with a Transformer and Mamba"
ROSTER = """student,repository,name,canvas_id,sis_user_id,sis_login_id,section
alice,{alice},"Liddell, Alice",1001,S1001,alice@uni.example,Section A
bob,{bob},"Builder, Bob",1002,,,Section A
carol,{carol},"Danvers, Carol",,S1003,,Section B
dana,{dana},"Scully, Dana",1004,S1004,dana@uni.example,Section B
eve,{eve},"Moneypenny, Eve",,,eve@uni.example,Section B
"""
FULL = {"W1": 0.5, "W2": 0.5, "W3": 0.25, "notebook-attention": 0.25, "W4": 0.25, "notebook-embeddings": 0.25,
        "derivation": 0.5, "W5": 0.25, "W6": 0.5, "W7": 0.25, "notebook-ssm": 0.25, "W8": 0.25}
W2_COMMENT = "The curves show the change, but you never say what you expected of it."
# The instructor's scores, as they would type them.
SCORES = {
    "alice": {**FULL, "W2": 0.25, "W9": 1.5},
    "bob": {**FULL, "W2": 0, "W6": 0, "W7": 0, "notebook-ssm": 0, "W8": 0},
    "carol": FULL,
    "dana": FULL,
    "eve": FULL,
}
EVE_ADJUSTMENT = '\n[[adjustments]]\npoints = -5\ncomment = "Your model files are a renamed copy of another submission."\n'
RESPONSE = "Your W2 states the expectation in its first paragraph after all: full points."


def grading(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def scores_file(marks: dict, comments: dict = {}) -> str:
    lines = []
    for item, points in marks.items():
        lines += [f"[{item}]", f"points = {points}", f'comment = "{comments.get(item, "")}"', ""]
    return "\n".join(lines)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def gradebook(course: Path) -> dict[str, dict]:
    with open(course / "final" / "gradebook.csv", newline="", encoding="utf-8") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def in_shell(command: str) -> subprocess.CompletedProcess:
    """A command line as the instructor would paste it into a shell at the repository's root."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    return subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def semester(tmp_path_factory):
    """Every step of the semester, in order; (course folder, remotes, the steps' outputs, a snapshot of the
    gradebook and Canvas file before the regrade request)."""
    root = tmp_path_factory.mktemp("semester")
    release = make_release(root / "release")
    remotes = root / "github"
    remotes.mkdir()
    repositories = students(release, remotes)
    course = root / "course"
    course.mkdir()
    (course / "roster.csv").write_text(ROSTER.format(**{name: str(path) for name, path in repositories.items()}))
    steps = {"collect": ok(grading("collect", str(course), "--deadline", DEADLINE, "--release", str(release)))}
    # The regrade is the one collect says to run, as it says it (the test's limits added).
    steps["suggested"] = steps["collect"].split("regrade them with: ", 1)[1].splitlines()[0]
    steps["regrade"] = ok(in_shell(f"{steps['suggested']} {' '.join(LIMITS)}"))
    steps["scores"] = ok(grading("scores", str(course)))
    steps["skeletons"] = sorted(path.name for path in (course / "scores").iterdir())
    for name, marks in SCORES.items():
        text = scores_file(marks, {"W2": W2_COMMENT} if name == "alice" else {})
        (course / "scores" / f"{name}.toml").write_text(text + (EVE_ADJUSTMENT if name == "eve" else ""))
    steps["similarity"] = ok(grading("similarity", str(course)))
    steps["gradebook"] = ok(grading("gradebook", str(course)))
    before = gradebook(course)
    steps["export"] = ok(grading("export", str(course), "--assignment-id", "4321"))
    canvas = read_csv(course / "final" / "canvas.csv")
    steps["review"] = ok(grading("review", *map(str, sorted((course / "submissions").glob("*.git"))), "--course",
                                 str(course), "--out", str(root / "site")))
    # The other deadline path: carol's own repository regraded with the deadline gives collect's commit and
    # lateness; the collected copies, whose commit collect already chose, are refused a second deadline.
    steps["regrade --deadline"] = ok(regrade(str(remotes / "carol.git"), "--out", str(root / "carol"), "--deadline",
                                             DEADLINE, "--release", str(release), *LIMITS))
    steps["mixed deadlines"] = regrade(*map(str, sorted((course / "submissions").glob("*.git"))), "--out",
                                       str(root / "mixed"), "--deadline", DEADLINE)
    steps["feedback"] = ok(grading("feedback", str(course), "--push"))
    steps["first feedback"] = git(remotes / "alice.git", "show", "feedback:FEEDBACK.md")
    # After publication, alice asks for W2 to be looked at again; the instructor agrees.
    steps["request"] = ok(grading("request", str(course), "alice", "W2", 'I did say what I expected: "faster".'))
    alice = course / "scores" / "alice.toml"
    text = alice.read_text()
    assert text.count("[W2]\npoints = 0.25\n") == 1 and text.count('response = ""') == 1
    alice.write_text(text.replace("[W2]\npoints = 0.25\n", "[W2]\npoints = 0.5\n")
                     .replace('response = ""', f'response = "{RESPONSE}"'))
    steps["regraded"] = ok(grading("gradebook", str(course)))
    steps["republished"] = ok(grading("feedback", str(course), "--push"))
    return course, remotes, root / "site", steps, before, canvas


def test_collect_ends_with_the_regrade_command_that_was_run_release_included(semester):
    course, _, _, steps, _, _ = semester
    release = course.parent / "release"
    assert steps["suggested"] == (f"python -m grading regrade {course}/submissions/* --out {course}/grades "
                                  f"--release {release}")
    assert sorted(path.stem for path in (course / "grades" / "results").glob("*.json")) == [
        "alice", "bob", "carol", "dana", "eve"]


def test_collect_takes_each_last_commit_in_the_late_window_and_counts_days_late(semester):
    course, remotes, _, steps, before, _ = semester
    for name in ("alice", "bob", "carol", "dana", "eve"):
        mirror = course / "submissions" / f"{name}.git"
        assert git(mirror, "rev-parse", "HEAD") == git(remotes / f"{name}.git", "rev-parse", "main")
    assert "carol: " in steps["collect"] and ", 2 days late" in steps["collect"]
    assert steps["collect"].count("on time") == 4
    assert {name: row["days_late"] for name, row in before.items()} == {
        "alice": "0", "bob": "0", "carol": "2", "dana": "0", "eve": "0"}


def test_every_student_gets_a_scores_file_listing_every_rubric_item(semester):
    course, _, _, steps, _, _ = semester
    assert steps["skeletons"] == ["alice.toml", "bob.toml", "carol.toml", "dana.toml", "eve.toml"]
    assert "wrote 5 scores file(s)" in steps["scores"]
    assert "bob: 0 of 12 items scored, 0 of 2 bonus items; to score: W1, W2" in steps["scores"]


def test_the_gradebook_totals_are_the_ones_worked_out_by_hand(semester):
    _, _, _, _, before, _ = semester
    # tests: (public + hidden points) × 6 / 12. alice, carol, dana and eve earn all 12 test points; bob 6 (Q1's
    # public 5 and hidden 1: his Mamba file is the stubs).
    # alice: 6 + items 4 − 0.25 (W2) + bonus 1.5                     = 11.25
    # bob:   3 + items 4 − 0.5 (W2) − 0.5 (W6) − 3 × 0.25 (W7, notebook-ssm, W8) = 3 + 2.25 = 5.25
    # carol: 6 + items 4, two days late × 1 point                   = 8
    # dana:  6 + items 4                                             = 10
    # eve:   6 + items 4, adjustment −5                              = 5
    expected = {"alice": ("11.25", "11.25", "6", "12"), "bob": ("5.25", "5.25", "3", "6"),
                "carol": ("8", "10", "6", "12"), "dana": ("10", "10", "6", "12"), "eve": ("5", "5", "6", "12")}
    assert {name: (row["final"], row["total"], row["autograded"], row["test_points"])
            for name, row in before.items()} == expected
    assert {name: (row["penalty"], row["adjustments"], row["status"]) for name, row in before.items()} == {
        "alice": ("0", "0", "complete"), "bob": ("0", "0", "complete"), "carol": ("2", "0", "complete"),
        "dana": ("0", "0", "complete"), "eve": ("0", "-5", "complete")}
    assert (before["alice"]["W2"], before["alice"]["W9"], before["bob"]["W9"]) == ("0.25", "1.5", "")


def test_the_copied_pair_is_flagged_with_its_matching_lines_and_no_other_pair_is(semester):
    course, _, _, steps, before, _ = semester
    pairs = {(row["student_a"], row["student_b"]): row for row in csv.DictReader(
        open(course / "similarity" / "pairs.csv", encoding="utf-8"))}
    assert len(pairs) == 10
    assert [pair for pair, row in pairs.items() if row["flagged"] == "yes"] == [("dana", "eve")]
    assert float(pairs["dana", "eve"]["share_a"]) >= 0.9 and float(pairs["dana", "eve"]["share_b"]) >= 0.9
    assert float(pairs["alice", "dana"]["similarity"]) < 0.2
    assert int(pairs["bob", "carol"]["own_a"]) == 0, "the reference and the stubs count as nobody's own code"
    report = (course / "similarity" / "report.md").read_text()
    assert "### dana and eve" in report and "#### `models/transformer.py`" in report
    # eve's renamed lines are shown beside dana's
    assert "x.view(batch, length, self.num_heads, self.head_size)" in report
    assert "x.view(n_batch, seq_len, self.num_heads, self.head_size)" in report
    assert before["eve"]["similar_to"] == "dana (1.00)" and before["alice"]["similar_to"] == ""


def test_the_canvas_file_has_canvas_columns_a_points_row_and_the_final_grades(semester):
    *_, canvas = semester
    assert canvas == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{TITLE} (4321)"],
        ["Points Possible", "", "", "", "", "10"],
        ["Liddell, Alice", "1001", "S1001", "alice@uni.example", "Section A", "11.25"],
        ["Builder, Bob", "1002", "", "", "Section A", "5.25"],
        ["Danvers, Carol", "", "S1003", "", "Section B", "8"],
        ["Scully, Dana", "1004", "S1004", "dana@uni.example", "Section B", "10"],
        ["Moneypenny, Eve", "", "", "eve@uni.example", "Section B", "5"],
    ]


def test_feedback_is_a_branch_of_the_students_repository_on_the_graded_commit_and_main_is_untouched(semester):
    course, remotes, _, steps, _, _ = semester
    for name in ("alice", "carol"):
        repository = remotes / f"{name}.git"
        assert git(repository, "rev-parse", "feedback^") == git(repository, "rev-parse", "main")
        assert git(repository, "diff", "--name-only", "main", "feedback") == "FEEDBACK.md\n"
    first = steps["first feedback"]
    assert "**Your grade: 11.25 / 10 (+3 bonus)**" in first
    assert f"**W2 Your modified Transformer** (0.25 / 0.5): {W2_COMMENT}" in first
    assert "## The graded tests" in first and "Every test passed." in first
    carol = git(remotes / "carol.git", "show", "feedback:FEEDBACK.md")
    assert "| late: 2 day(s) × 1 | -2 | |" in carol and "**Your grade: 8 / 10 (+3 bonus)**" in carol


def test_a_regrade_request_is_answered_with_the_item_its_old_and_new_points_and_why(semester):
    course, remotes, _, steps, _, _ = semester
    assert "noted in" in steps["request"]
    assert (f"alice: W2 Your modified Transformer: 0.25 → 0.5 (your regrade request: {RESPONSE})"
            in steps["regraded"])
    assert "alice: grade: 11.25 → 11.5" in steps["regraded"]
    assert gradebook(course)["alice"]["final"] == "11.5"
    feedback = git(remotes / "alice.git", "show", "feedback:FEEDBACK.md")
    assert f"- W2 Your modified Transformer: 0.25 → 0.5 (your regrade request: {RESPONSE})" in feedback
    assert "I did say what I expected" not in feedback, "the student's own words are not copied into feedback"
    log = read_csv(course / "final" / "regrades.csv")
    assert log[0] == ["student", "what", "old", "new", "why"] and ["alice", "grade", "11.25", "11.5",
                                                                    "the sum of the parts above"] in log
    assert all(format_points(float(row[3])) == row[3] for row in log[1:]), "points written as the feedback writes them"


def test_the_review_site_shows_the_gradebooks_grade_with_its_parts_and_the_feedback_the_student_reads(semester):
    course, remotes, site, _, before, _ = semester
    pages = {name: (site / "students" / name / "index.html").read_text() for name in before}
    for name, row in before.items():
        panel = pages[name].split('<header class="score">')[1].split("</header>")[0]
        assert f'<p class="grade">{row["final"]} / 10 (+3 bonus)</p>' in panel, name
        assert "the grade of record, as the gradebook computes it" in panel
    carol = pages["carol"].split('<header class="score">')[1].split("</header>")[0]
    assert "late: 2 day(s) × 1</td><td class=\"points\">-2</td>" in carol and "public tests 10 / 10" in carol
    eve = pages["eve"].split('<header class="score">')[1].split("</header>")[0]
    assert "adjustments (1)</td><td class=\"points\">-5</td>" in eve
    index = (site / "index.html").read_text()
    assert "<td>11.25</td><td>complete</td>" in index and "<td>8</td><td>complete</td>" in index
    assert "**Your grade: 8 / 10 (+3 bonus)**" in pages["carol"], "the feedback shown is the one the student reads"


def test_regrade_with_a_deadline_grades_the_commit_collect_chose_with_its_days_late_and_refuses_collected_copies(
        semester):
    course, remotes, site, steps, before, _ = semester
    carol = json.loads((site.parent / "carol" / "results" / "carol.json").read_text())
    assert carol["commit"] == git(course / "submissions" / "carol.git", "rev-parse", "HEAD").strip()
    assert (carol["days_late"], carol["late_penalty"], carol["grade"]) == (2, 2, 10)
    assert "carol (" in steps["regrade --deadline"] and ", 2 days late" in steps["regrade --deadline"]
    feedback = (site.parent / "carol" / "feedback" / "carol.md").read_text()
    assert ("is 2 days late after the deadline 2026-10-01T23:59:00+00:00: the late policy takes 2 point(s) off"
            in feedback)
    mixed = steps["mixed deadlines"]
    assert mixed.returncode == 1 and not (site.parent / "mixed" / "results").exists()
    assert mixed.stderr.splitlines()[0] == (f"grading regrade: {course}/submissions/alice.git: collect chose its "
                                            "commit to grade, and counts its days late, at its deadline: regrade it "
                                            "without --deadline")


def test_the_review_site_shows_the_rubric_items_beside_the_writeup_and_runs_nothing(semester):
    *_, site, steps, _, _ = semester
    page = (site / "students" / "alice" / "index.html").read_text()
    panel = page.split('<section class="rubric">')[1].split("</section>")[0]
    assert '<a href="#w1-transformer-model-and-data-size-q1-05-points">README, W1</a>' in panel
    assert "no section W2 in the README" in panel
    assert "The cross-attention reads the vowel first" in panel
    assert '<span class="math inline">a_{ij}</span>' in panel, "the answer's math is left for KaTeX to typeset"
    assert "<script" not in panel and "onerror" not in panel and "<a href=\"https://example.com" not in panel
    assert "0.25 / 0.5" in panel and W2_COMMENT in panel and "1.5 / 2 bonus" in panel
    assert "1 point for a run that compares" in panel, "the grading guide is shown to the course staff"


def test_the_gradebook_refuses_scores_for_an_unknown_item_over_the_maximum_or_a_stranger(semester, tmp_path):
    course, *_ = semester
    broken = tmp_path / "course"
    broken.mkdir()
    (broken / "roster.csv").write_text((course / "roster.csv").read_text())
    (broken / "scores").mkdir()
    (broken / "scores" / "alice.toml").write_text("[W11]\npoints = 1\n\n[W1]\npoints = 0.75\n")
    (broken / "scores" / "mallory.toml").write_text("[W1]\npoints = 0.5\n")
    result = grading("gradebook", str(broken))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"grading gradebook: {broken}/scores/alice.toml: [W11] is not a rubric item (W1, W2, W3, notebook-attention, "
        "W4, notebook-embeddings, derivation, W5, W6, W7, notebook-ssm, W8, W9, W10)",
        f"grading gradebook: {broken}/scores/alice.toml: [W1] points = 0.75 is outside 0 … 0.5",
        f"grading gradebook: {broken}/scores/mallory.toml: mallory is not in the class (the roster)"]
