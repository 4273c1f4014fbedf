"""Grades out: `python -m grading export COURSE` (the LMS's gradebook file) and `python -m grading feedback
COURSE` (each student's feedback, on a branch of their own repository).

**Canvas.** Canvas imports a CSV whose header is `Student, ID, SIS User ID, SIS Login ID, Section`, then one
column per assignment named `Title (assignment id)`; a second row that starts `Points Possible` may give each
assignment's points. Canvas finds each student by ID (its user id), else by SIS User ID, else by SIS Login ID,
else by name; it finds the assignment by the id in parentheses, else by its title, else creates a new one. So
the roster must give every student at least one of canvas_id, sis_user_id, sis_login_id (Canvas's own export,
Grades → Export, lists them), and `--assignment-id` the number at the end of the assignment's Canvas address.
The cells hold the final grade: the late penalty applied, the bonus included (Canvas accepts scores over the
points possible). Nothing is exported while a student's scores are missing, unless `--partial` (then that
student's cell is left empty, which Canvas leaves unchanged).

**Feedback branch.** For each student, a commit on top of the commit that was graded adds FEEDBACK.md (the
feedback `gradebook` wrote) and nothing else; it becomes the branch `feedback` of the course's copy, and with
`--push` of the student's own repository (force-pushed: it is the course's branch, rewritten at each
publication; their other branches are never touched). A `feedback` branch of the student's that the course
did not write is left alone, and said. After it, the grades are published: later changes are regrades.
Nothing is published while a student's scores are missing (the export's rule), unless `--partial`: then
that student's FEEDBACK.md calls the grade provisional and names what is not graded yet.
"""

import csv
import json
import os
import subprocess
from pathlib import Path

from grading.course import gradebook as course_module
from grading.course import roster
from grading.regrade.results import cell, format_points
from grading.course.rubric import Rubric

FEEDBACK_BRANCH = "feedback"
MESSAGE = "Feedback from the course staff"


class ExportError(Exception):
    """Grades that cannot go out: one line per problem."""


def canvas_rows(state: dict, students: list[roster.Student], rubric: Rubric, assignment_id: str = "",
                partial: bool = False) -> list[list[str]]:
    column = f"{rubric.title} ({assignment_id})" if assignment_id else rubric.title
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column],
            ["Points Possible", "", "", "", "", format_points(rubric.total)]]
    problems = []
    for student in students:
        record = state["students"].get(student.student)
        if not (student.canvas_id or student.sis_user_id or student.sis_login_id):
            problems.append(f"roster.csv: {student.student} has none of canvas_id, sis_user_id, sis_login_id: "
                            "Canvas could only guess the student from the name")
            continue
        if record is None:
            problems.append(f"{student.student}: not in the gradebook (run python -m grading gradebook)")
            continue
        grade = format_points(record["final"])
        if record["status"].startswith("missing scores"):
            if not partial:
                problems.append(f"{student.student}: {record['status']} (or --partial to leave the cell empty)")
                continue
            grade = ""
        rows.append([student.name or student.student, student.canvas_id, student.sis_user_id, student.sis_login_id,
                     student.section, grade])
    if problems:
        raise ExportError("\n".join(problems))
    return rows


def write_canvas(path: Path, state: dict, students: list, rubric: Rubric, assignment_id: str = "",
                 partial: bool = False):
    rows = canvas_rows(state, students, rubric, assignment_id, partial)
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([[cell(value) for value in row] for row in rows])


# --- the feedback branch ---------------------------------------------------------------------------------------


def git(repo: Path, *args: str, input: str = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    result = subprocess.run(["git", "-C", str(repo), *roster.SAFE, *args], capture_output=True, text=True,
                            input=input, env=env, timeout=600)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        raise ExportError(f"git {args[0]} failed in {repo}: {last}")
    return result.stdout


def feedback_commit(mirror: Path, commit: str, text: str) -> str:
    """A commit on top of `commit` whose tree is commit's with FEEDBACK.md added (or replaced)."""
    blob = git(mirror, "hash-object", "-w", "--stdin", input=text).strip()
    entries = [entry for entry in git(mirror, "ls-tree", "-z", commit).split("\0")
               if entry and entry.split("\t", 1)[1] != "FEEDBACK.md"]
    tree = git(mirror, "mktree", "-z", input="\0".join(entries + [f"100644 blob {blob}\tFEEDBACK.md"]) + "\0").strip()
    return git(mirror, "commit-tree", tree, "-p", commit, "-m", f"{MESSAGE} on {commit[:12]}").strip()


def theirs(mirror: Path) -> bool:
    """Whether the student's repository has a `feedback` branch the course did not write."""
    ref = f"refs/remotes/origin/{FEEDBACK_BRANCH}"
    head = subprocess.run(["git", "-C", str(mirror), "rev-parse", "--verify", "-q", ref], capture_output=True,
                          text=True).stdout.strip()
    return bool(head) and not git(mirror, "log", "-1", "--format=%s", head).startswith(MESSAGE)


def unfinished(state: dict) -> list[str]:
    """The students whose scores are missing, one line each: their feedback would give a grade that will change."""
    return [f"{name}: {record['status']} (or --partial to publish their feedback marked provisional, naming "
            "what is missing)" for name, record in state["students"].items() if record.get("missing")]


def publish(course_folder: Path, rubric: Rubric, push: bool = False, partial: bool = False, log=print) -> list[str]:
    """Writes every feedback branch (and pushes it), then records the grades as published; returns problems.
    Nothing is published while a student's scores are missing, unless `partial`: then their feedback says in
    words that the grade is provisional and what is not graded yet."""
    state = course_module.write_all(course_folder, rubric, log=lambda line: None)
    if not partial and unfinished(state):
        raise ExportError("\n".join(unfinished(state)))
    students = {student.student: student for student in roster.read_roster(course_folder)}
    problems = []
    for name, record in state["students"].items():
        mirror = course_folder / "submissions" / f"{name}.git"
        if not record["commit"] or not mirror.is_dir():
            log(f"{name}: no graded commit, no feedback branch ({record['status']})")
            continue
        text = (course_folder / "final" / "feedback" / f"{name}.md").read_text(encoding="utf-8")
        try:
            if theirs(mirror):
                raise ExportError(f"the repository has a branch '{FEEDBACK_BRANCH}' the course did not write: "
                                  "not overwritten")
            commit = feedback_commit(mirror, record["commit"], text)
            git(mirror, "update-ref", f"refs/heads/{FEEDBACK_BRANCH}", commit)
            if push:
                git(mirror, "push", "-q", "--force", students[name].repository,
                    f"refs/heads/{FEEDBACK_BRANCH}:refs/heads/{FEEDBACK_BRANCH}")
            log(f"{name}: FEEDBACK.md on branch {FEEDBACK_BRANCH} ({commit[:7]})" + (", pushed" if push else "")
                + (", provisional" if record.get("missing") else ""))
        except ExportError as error:
            problems.append(f"{name}: {error}")
    final = course_folder / "final"
    if state["pending"]:
        log_path = final / "regrades.csv"
        new = not log_path.exists()
        with open(log_path, "a", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=["student", "what", "old", "new", "why"])
            if new:
                writer.writeheader()
            writer.writerows({**change, "old": format_points(change["old"], missing=""),
                              "new": format_points(change["new"], missing="")} for change in state["pending"])
    published = {key: value for key, value in state.items() if key != "pending"}
    (final / course_module.PUBLISHED).write_text(json.dumps(published, indent=1) + "\n")
    log(f"published: later changes of points are listed as regrades ({final / 'regrades.csv'})")
    return problems
