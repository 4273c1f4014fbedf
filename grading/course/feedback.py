"""Grades out to the students: `python -m grading feedback COURSE`, each student's feedback on a branch of their
own repository.

For each student, a commit on top of the commit that was graded adds FEEDBACK.md (the feedback `gradebook`
wrote) and nothing else; it becomes the branch `feedback` of the course's copy, and with `--push` of the
student's own repository (force-pushed: it is the course's branch, rewritten at each publication; their other
branches are never touched). A `feedback` branch of the student's that the course did not write is left alone,
and said. After it, the grades are published: later changes are regrades. Nothing is published while a
student's scores are missing (the export's rule), unless `--partial`: then that student's FEEDBACK.md calls the
grade provisional and names what is not graded yet.
"""

import csv
import json
from pathlib import Path

from grading.course import gradebook as course_module
from grading.course import roster
from grading.course.rubric import Rubric
from grading.errors import GradingError
from grading.git import GitError, git, receive_pack
from grading.regrade.results import format_points

FEEDBACK_BRANCH = "feedback"
MESSAGE = "Feedback from the course staff"


class FeedbackError(GradingError):
    """A student's feedback branch that is not written: said in one line."""


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
    head = git(mirror, "rev-parse", "--verify", "-q", ref, check=False).strip()
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
        raise FeedbackError("\n".join(unfinished(state)))
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
                raise FeedbackError(f"the repository has a branch '{FEEDBACK_BRANCH}' the course did not write: "
                                  "not overwritten")
            commit = feedback_commit(mirror, record["commit"], text)
            git(mirror, "update-ref", f"refs/heads/{FEEDBACK_BRANCH}", commit)
            if push:
                repository = students[name].repository
                git(mirror, "push", "-q", "--force", *receive_pack(repository), repository,
                    f"refs/heads/{FEEDBACK_BRANCH}:refs/heads/{FEEDBACK_BRANCH}")
            log(f"{name}: FEEDBACK.md on branch {FEEDBACK_BRANCH} ({commit[:7]})" + (", pushed" if push else "")
                + (", provisional" if record.get("missing") else ""))
        except (FeedbackError, GitError) as error:
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
