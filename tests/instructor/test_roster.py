"""Collecting from a roster and everything around it that needs no regrade: the roster's checks, the commit to
grade, lateness and its evidence (our own fetches against the student's commit dates), regrade requests, the
Canvas export's refusals, the similarity of a copy. Repositories here are small local bare repositories with
hand-set commit dates, and the fetch clock is set by the test. (Instructor-only; seconds.)"""

import csv
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from grading.course import collect, export, roster
from grading.course import rubric
from grading.course import scores
from grading.course import similarity
from semester import a_result
from synthetic_submissions import ROOT

DEADLINE = datetime(2026, 10, 1, 23, 59, tzinfo=timezone.utc)
LATE = rubric.Late(grace_minutes=15, penalty_per_day=1, max_days=3)


def grading(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def git(repo: Path, *args: str, when: datetime = None) -> str:
    env = {**os.environ}
    if when is not None:
        env.update(GIT_AUTHOR_DATE=when.isoformat(), GIT_COMMITTER_DATE=when.isoformat())
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=S", "-c", "user.email=s@example.invalid", *args],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()


class Student:
    """A student's working copy and the bare repository ("GitHub") they push to."""

    def __init__(self, root: Path, name: str):
        self.remote, self.work = root / "github" / f"{name}.git", root / "work" / name
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        git(self.work, "remote", "add", "origin", str(self.remote))

    def push(self, dated: datetime, text: str) -> str:
        (self.work / "README.md").write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", text, when=dated)
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")


@pytest.fixture
def course(tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    return folder


def with_roster(course: Path, *students: Student, extra: str = "") -> Path:
    rows = [f"{path.remote.stem},{path.remote}" for path in students]
    (course / "roster.csv").write_text("student,repository\n" + "\n".join(rows) + "\n" + extra)
    return course


def clock_at(when: datetime):
    return lambda: when


def head(course: Path, name: str) -> str:
    return git(course / "submissions" / f"{name}.git", "rev-parse", "HEAD")


def test_collect_grades_the_last_commit_of_the_late_window_and_skips_later_ones(tmp_path, course):
    student = Student(tmp_path, "ann")
    late = student.push(DEADLINE + timedelta(days=2, hours=1), "late")
    student.push(DEADLINE + timedelta(days=3, hours=1), "too late")
    lines = []
    problems = collect.collect(with_roster(course, student), DEADLINE, LATE, log=lines.append)
    assert problems == [] and head(course, "ann") == late
    assert lines == [f"ann: {late[:7]}, dated 2026-10-04T00:59:00+00:00, 3 days late"]


def test_a_commit_within_the_grace_is_on_time_and_one_minute_after_it_a_day_late(tmp_path, course):
    student = Student(tmp_path, "ann")
    commit = student.push(DEADLINE + timedelta(minutes=15), "just in time")
    assert collect.lateness(student.remote, commit, DEADLINE, LATE, []).days == 0
    commit = student.push(DEADLINE + timedelta(minutes=16), "a minute late")
    assert collect.lateness(student.remote, commit, DEADLINE, LATE, []).days == 1


def test_a_back_dated_commit_missing_from_a_fetch_after_the_deadline_counts_from_that_fetch(tmp_path, course):
    student = Student(tmp_path, "ann")
    student.push(DEADLINE - timedelta(days=1), "on time")
    with_roster(course, student)
    collect.collect(course, DEADLINE, LATE, clock=clock_at(DEADLINE + timedelta(hours=1)))
    back_dated = student.push(DEADLINE - timedelta(hours=1), "dated before the deadline, pushed 30 hours after it")
    lines = []
    collect.collect(course, DEADLINE, LATE, clock=clock_at(DEADLINE + timedelta(hours=30)), log=lines.append)
    assert head(course, "ann") == back_dated
    assert lines == [f"ann: {back_dated[:7]}, dated 2026-10-01T22:59:00+00:00, 1 day late; dated "
                     "2026-10-01T22:59:00+00:00, but the branch did not have it when fetched at "
                     "2026-10-02T00:59:00+00:00: counted as arriving then"]


def test_a_commit_seen_by_a_fetch_before_the_deadline_is_on_time_whatever_its_date(tmp_path, course):
    student = Student(tmp_path, "ann")
    commit = student.push(DEADLINE + timedelta(hours=5), "a clock five hours fast")
    lines = []
    collect.collect(with_roster(course, student), DEADLINE, LATE, clock=clock_at(DEADLINE - timedelta(hours=1)),
                   log=lines.append)
    assert lines == [f"ann: {commit[:7]}, dated 2026-10-02T04:59:00+00:00, on time; dated 2026-10-02T04:59:00+00:00, "
                     "after a fetch at 2026-10-01T22:59:00+00:00 that already had it: counted as arriving by then"]


def test_an_extension_moves_the_deadline_of_one_student(tmp_path, course):
    student = Student(tmp_path, "ann")
    commit = student.push(DEADLINE + timedelta(days=1, hours=12), "with two days' extension")
    (course / "roster.csv").write_text(f"student,repository,extension_days\nann,{student.remote},2\n")
    (found,) = roster.read_roster(course)
    assert found.extension_days == 2
    assert collect.lateness(student.remote, commit, DEADLINE, LATE, [], found.extension_days).days == 0


def test_a_repository_that_cannot_be_fetched_is_named_and_the_others_are_collected(tmp_path, course):
    student = Student(tmp_path, "ann")
    student.push(DEADLINE - timedelta(days=1), "on time")
    with_roster(course, student, extra=f"gone,{tmp_path / 'nowhere.git'}\n")
    result = grading("collect", str(course), "--deadline", "2026-10-01 23:59 +0000")
    assert result.returncode == 1 and "ann: " in result.stdout and ", on time" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"grading collect: gone: not collected from {tmp_path / 'nowhere.git'}: git fetch failed:")


def test_collect_ends_with_the_regrade_to_run_release_included_and_remembers_the_release(tmp_path, course):
    student = Student(tmp_path, "ann")
    student.push(DEADLINE - timedelta(days=1), "on time")
    with_roster(course, student)
    release = student.remote  # any repository with a branch main stands in for the release here
    regrade = f"python -m grading regrade {course}/submissions/* --out {course}/grades --release "
    first = grading("collect", str(course), "--deadline", "2026-10-01 23:59 +0000", "--release", str(release))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == f"regrade them with: {regrade}{release}"
    again = grading("collect", str(course), "--deadline", "2026-10-01 23:59 +0000")  # after the late window
    assert again.stdout.splitlines()[-1] == f"regrade them with: {regrade}{release.resolve()}"


def test_collect_without_a_release_says_where_it_goes_in_the_regrade_command(tmp_path, course):
    student = Student(tmp_path, "ann")
    student.push(DEADLINE - timedelta(days=1), "on time")
    result = grading("collect", str(with_roster(course, student)), "--deadline", "2026-10-01 23:59 +0000")
    assert result.stdout.splitlines()[-1] == (
        f"regrade them with: python -m grading regrade {course}/submissions/* --out {course}/grades --release RELEASE "
        "(the repository python -m grading release wrote; collect --release RELEASE puts it here)")


def test_collect_refuses_a_release_that_is_not_one_before_fetching(tmp_path, course):
    student = Student(tmp_path, "ann")
    (tmp_path / "empty").mkdir()
    result = grading("collect", str(with_roster(course, student)), "--deadline", "2026-10-01 23:59 +0000",
                     "--release", str(tmp_path / "empty"))
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"grading collect: --release {tmp_path / 'empty'}: not a release repository with a branch main"]
    assert not (course / "submissions").exists()


def test_the_command_alone_lists_every_command_in_the_order_of_the_course():
    result = grading()
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == ["release", "collect", "regrade", "merge", "rubric", "scores", "similarity", "gradebook", "export",
                      "feedback", "request", "review", "mutants"]
    assert result.returncode == 2 and result.stderr == ""
    described = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert all(len(line.split(maxsplit=1)[1]) > 20 for line in described), "each command says what it does"
    assert set(described) <= set(grading("--help").stdout.splitlines()), "--help lists them the same way"


@pytest.mark.parametrize("rows, message", [
    ("student,repository\nann,\n", "roster.csv:2: student ann has no repository"),
    ("student,repository\nann,/a\nann,/b\n", "roster.csv:3: student ann is also on line 2"),
    ("student,repository\n../ann,/a\n", "roster.csv:2: student '../ann' must be letters, digits, '-', '_' or '.' "
                                        "(it names folders)"),
    ("student,repo\nann,/a\n", "roster.csv: the first line must name the columns student,repository (missing: "
                               "repository)"),
    ("student,repository,email\nann,/a,a@b\n", "roster.csv: unknown column 'email' (the columns are student, "
                                               "repository, name, canvas_id, sis_user_id, sis_login_id, section, "
                                               "extension_days)"),
    ("student,repository\nann,ext::sh -c touch% /tmp/pwned\n", "roster.csv:2: repository 'ext::sh -c touch% "
                                                                  "/tmp/pwned' of ann is not a URL or a path git "
                                                                  "fetches plainly (https://, ssh://, git@host:path, "
                                                                  "a folder)"),
    ("student,repository,extension_days\nann,/a,soon\n", "roster.csv:2: extension_days must be a number of days, "
                                                         "0 or more, not 'soon'"),
])
def test_a_bad_roster_row_is_refused_with_one_line_and_nothing_is_fetched(course, rows, message):
    (course / "roster.csv").write_text(rows)
    result = grading("collect", str(course), "--deadline", "2026-10-01 23:59 +0000")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"grading collect: {course}/{message}"]
    assert not (course / "submissions").exists()


def test_a_deadline_without_its_offset_is_refused(course):
    (course / "roster.csv").write_text("student,repository\nann,/a\n")
    result = grading("collect", str(course), "--deadline", "2026-10-01 23:59")
    assert result.returncode == 1 and result.stderr == (
        "grading collect: deadline '2026-10-01 23:59': write it as 'YYYY-MM-DD HH:MM +HHMM', with the offset "
        "from UTC\n")


def test_a_request_against_an_unknown_item_or_a_stranger_is_refused(course):
    (course / "roster.csv").write_text("student,repository\nann,/a\n")
    assert grading("request", str(course), "ann", "W11", "please").stderr == (
        "grading request: 'W11' is neither a rubric item (W1, W2, W3, notebook-attention, W4, notebook-embeddings, "
        "derivation, W5, W6, W7, notebook-ssm, W8, W9, W10) nor a graded test\n")
    assert grading("request", str(course), "bob", "W1", "please").stderr == (
        "grading request: bob is not in the class (the roster)\n")
    assert not (course / "scores").exists()


def test_a_request_keeps_the_students_words_as_they_are(course):
    (course / "roster.csv").write_text("student,repository\nann,/a\n")
    words = 'I wrote "α = ½" \\ and a tab\there;\nsee [W3] = 1 # really'
    result = grading("request", str(course), "ann", "W3", words)
    assert result.returncode == 0, result.stderr
    marks, problems = scores.parse(course / "scores" / "ann.toml", rubric.load())
    assert problems == [] and marks.requests[0]["request"] == words.strip() and marks.requests[0]["item"] == "W3"


def test_export_refuses_a_student_canvas_cannot_find_or_with_scores_missing():
    loaded = rubric.load()
    state = {"students": {
        "ann": {"final": 7.5, "status": "complete"},
        "bob": {"final": 5, "status": "missing scores: W3"},
        "cat": {"final": 9, "status": "complete"}}}
    people = [roster.Student("ann", "/a", "A, Ann", canvas_id="1"), roster.Student("bob", "/b", sis_login_id="bob"),
              roster.Student("cat", "/c")]
    with pytest.raises(export.ExportError) as refused:
        export.canvas_rows(state, people, loaded)
    assert str(refused.value).splitlines() == [
        "bob: missing scores: W3 (or --partial to leave the cell empty)",
        "roster.csv: cat has none of canvas_id, sis_user_id, sis_login_id: Canvas could only guess the student "
        "from the name"]
    rows = export.canvas_rows(state, people[:2], loaded, partial=True)
    assert rows[2:] == [["A, Ann", "1", "", "", "", "7.5"], ["bob", "", "", "bob", "", ""]]


def test_a_renamed_copy_is_alike_and_the_reference_is_nobodys_own_code():
    reference = (ROOT / "models" / "transformer.py").read_text()
    boilerplate = similarity.boilerplate_hashes([("models/transformer.py", reference)])
    given = "return torch.tril(torch.ones(query_length, key_length, dtype=torch.bool, device=device))"
    mine = ("rows = torch.arange(query_length, device=device)[:, None]\n"
            "    columns = torch.arange(key_length, device=device)[None, :]\n    visible = columns <= rows\n"
            "    return visible")
    own = reference.replace(given, mine)
    copy = reference.replace(given, mine.replace("rows", "r").replace("columns", "c").replace("visible", "ok"))
    texts = {"ann": {"models/transformer.py": own}, "bob": {"models/transformer.py": copy},
             "cat": {"models/transformer.py": reference}}
    pairs = {(pair.a, pair.b): pair for pair in similarity.analyse(texts, boilerplate, min_shared=20)}
    assert pairs["ann", "bob"].share_a == pairs["ann", "bob"].share_b == 1.0 and pairs["ann", "bob"].flagged
    assert pairs["ann", "cat"].own_b == 0 and not pairs["ann", "cat"].flagged
    (ranges_a, ranges_b) = pairs["ann", "bob"].lines["models/transformer.py"]
    line = own.splitlines().index("    columns = torch.arange(key_length, device=device)[None, :]") + 1
    assert any(first <= line <= last for first, last in ranges_a)


def test_similarity_reads_student_code_and_never_runs_it(tmp_path, course):
    marker = tmp_path / "ran.txt"
    hostile = f"open({str(marker)!r}, 'w').write('ran')\nimport os\nos._exit(3)\n"
    for name in ("ann", "bob"):
        student = Student(tmp_path, name)
        (student.work / "models").mkdir()
        (student.work / "models" / "transformer.py").write_text(hostile + f"# {name}\n")
        student.push(DEADLINE - timedelta(days=1), name)
    paths = [tmp_path / "github" / "ann.git", tmp_path / "github" / "bob.git"]
    pairs = similarity.run(paths, [], course / "similarity", min_shared=10, log=lambda line: None)
    assert not marker.exists(), "a student's code ran"
    assert pairs[0].share_a == 1.0 and (course / "similarity" / "report.md").is_file()


def test_a_student_with_nothing_to_grade_gets_zero_and_needs_no_scores(tmp_path, course):
    (course / "roster.csv").write_text("student,repository,canvas_id\nann,/nowhere,7\n")
    result = grading("gradebook", str(course))
    assert result.returncode == 0, result.stderr
    assert "1 not graded" in result.stdout
    with open(course / "final" / "gradebook.csv", newline="") as file:
        (row,) = list(csv.DictReader(file))
    assert (row["final"], row["W1"]) == ("0", "")
    assert row["status"] == "not graded: not regraded (run python -m grading regrade on COURSE/submissions)"
    assert grading("export", str(course)).returncode == 0
    with open(course / "final" / "canvas.csv", newline="") as file:
        assert list(csv.reader(file))[2] == ["ann", "7", "", "", "", "0"]


def test_a_test_that_passes_after_a_regrade_is_listed_with_its_outcomes_or_the_staffs_answer():
    from grading.course import gradebook as course

    loaded = rubric.load()

    def state(outcome, earned, final, response=""):
        return {"students": {"ann": {
            "commit": "abcdef1234567", "tests": {"test_pscan": {"earned": earned, "outcome": outcome}},
            "items": {item.id: 0.25 for item in loaded.items}, "comments": {}, "adjustments": [], "days_late": 0,
            "late_notes": [], "final": final,
            "requests": [{"item": "test_pscan", "response": response}] if response else []}}}

    assert course.changes(state("failed", 0, 7.5), state("passed", 0.25, 7.625), loaded) == [
        {"student": "ann", "what": "test test_pscan", "old": 0, "new": 0.25,
         "why": "the regrade of commit abcdef1: failed → passed"},
        {"student": "ann", "what": "grade", "old": 7.5, "new": 7.625, "why": "the sum of the parts above"}]
    answered = course.changes(state("failed", 0, 7.5), state("passed", 0.25, 7.625, "The tolerance was too tight."),
                              loaded)
    assert answered[0]["why"] == "your regrade request: The tolerance was too tight."


def test_feedback_is_not_published_while_scores_are_missing_and_with_partial_says_the_grade_is_provisional(
        tmp_path, course):
    import json

    student = Student(tmp_path, "ann")
    commit = student.push(DEADLINE - timedelta(days=1), "on time")
    collect.collect(with_roster(course, student), DEADLINE, LATE, log=lambda line: None)
    (course / "grades" / "results").mkdir(parents=True)
    (course / "grades" / "results" / "ann.json").write_text(json.dumps(a_result("ann", commit, 10.0)))
    (course / "scores").mkdir()
    (course / "scores" / "ann.toml").write_text("W1 = { points = 0.5 }\n")
    refused = grading("feedback", str(course), "--push")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("grading feedback: ann: missing scores: W2, W3, notebook-attention, ")
    assert refused.stderr.endswith("(or --partial to publish their feedback marked provisional, naming what is "
                                   "missing)\n") and len(refused.stderr.splitlines()) == 1
    assert git(student.remote, "branch", "--list", "feedback") == ""
    assert not (course / "final" / "published.json").exists()

    published = grading("feedback", str(course), "--push", "--partial")
    assert published.returncode == 0, published.stderr
    assert "provisional" in published.stdout
    text = git(student.remote, "show", "feedback:FEEDBACK.md")
    # the tests' 6 points and W1's 0.5 so far; 11 items still to grade
    assert "**Your grade so far: 6.5 / 10 (+3 bonus), provisional**" in text
    assert "Not graded yet: W2, W3, notebook-attention, W4, notebook-embeddings, derivation, W5, W6, W7, " \
           "notebook-ssm, W8. They count 0 until the course staff grade them, so this grade will change." in text
    assert "| W2 Your modified Transformer | not graded yet | 0.5 |" in text
    assert "| W9 Bonus: your Mamba change (bonus) | – | 2 |" in text  # an ungraded bonus is not missing
    assert "/ 10**" not in text.split("## The graded tests")[1], "the tests' own grade out of 10 is not repeated"


def test_the_gradebook_refuses_results_of_another_commit_than_the_one_collect_chose(tmp_path, course):
    import json

    student = Student(tmp_path, "ann")
    first = student.push(DEADLINE - timedelta(days=2), "first")
    collect.collect(with_roster(course, student), DEADLINE, LATE, log=lambda line: None)
    (course / "grades" / "results").mkdir(parents=True)
    (course / "grades" / "results" / "ann.json").write_text(json.dumps(a_result("ann", first, 10.0)))
    assert grading("gradebook", str(course)).returncode == 0
    second = student.push(DEADLINE - timedelta(days=1), "second")
    collect.collect(course, DEADLINE, LATE, log=lambda line: None)
    result = grading("gradebook", str(course))
    assert result.returncode == 1 and result.stderr == (
        f"grading gradebook: ann: the regrade graded {first[:7]}, but collect chose {second[:7]} since: regrade "
        "COURSE/submissions (without --deadline) first\n")
