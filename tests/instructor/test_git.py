"""A student's repository runs nothing on the instructor's machine (grading/git.py): not its hooks, not its
`core.fsmonitor`, whichever grading command reads or writes it: collect (a fetch from it), the regrade's and
the review's reading of a submission, and feedback --push (a push to it). Each trap is first sprung by plain
git, so the test shows it would notice. (Instructor-only; seconds.)"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grading.regrade import submissions
from synthetic_submissions import ROOT

# Every hook git runs on the client or the server side of the commands the grading tools use, and more.
HOOKS = ("applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
         "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge", "pre-push",
         "pre-receive", "update", "proc-receive", "post-receive", "post-update", "reference-transaction",
         "push-to-checkout", "pre-auto-gc", "post-rewrite", "sendemail-validate", "fsmonitor-watchman",
         "post-index-change")


def run(*command: str, cwd: Path = None) -> str:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def trap(path: Path, name: str, marker: Path):
    """An executable at `path` that notes `name` in `marker` when anything runs it."""
    path.write_text(f"#!/bin/sh\necho {name} >> {marker}\n")
    path.chmod(0o755)


@pytest.fixture
def hostile(tmp_path):
    """(a student's clone whose every hook, in .git/hooks and in the folder its core.hooksPath names, and whose
    core.fsmonitor note their name in `marker` when run; the marker)."""
    marker = tmp_path / "ran.txt"
    repo = tmp_path / "mallory"
    run("git", "init", "-q", "-b", "main", str(repo))
    (repo / "README.md").write_text("# Mallory\n")
    run("git", "-c", "user.name=M", "-c", "user.email=m@example.invalid", "add", "README.md", cwd=repo)
    run("git", "-c", "user.name=M", "-c", "user.email=m@example.invalid", "commit", "-q", "-m", "mine", cwd=repo)
    elsewhere = tmp_path / "hooks"
    elsewhere.mkdir()
    for hook in HOOKS:
        trap(repo / ".git" / "hooks" / hook, f"hook {hook}", marker)
        trap(elsewhere / hook, f"hooksPath {hook}", marker)
    trap(tmp_path / "fsmonitor", "fsmonitor", marker)
    run("git", "config", "core.hooksPath", str(elsewhere), cwd=repo)
    run("git", "config", "core.fsmonitor", str(tmp_path / "fsmonitor"), cwd=repo)
    run("git", "config", "receive.denyCurrentBranch", "ignore", cwd=repo)
    # The traps work: plain git springs them.
    run("git", "status", cwd=repo)
    run("git", "clone", "-q", str(repo), str(tmp_path / "copy"))
    run("git", "push", "-q", str(repo), "main:refs/heads/sprung", cwd=tmp_path / "copy")
    sprung = marker.read_text()
    assert "fsmonitor" in sprung and "hooksPath pre-receive" in sprung and "hooksPath post-update" in sprung
    run("git", "branch", "-D", "sprung", cwd=repo)
    marker.unlink()
    return repo, marker


def grading(*args: str, gitconfig: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "GIT_CONFIG_GLOBAL": str(gitconfig)})


def test_reading_a_submission_runs_nothing_of_the_students(hostile):
    repo, marker = hostile
    (found,) = submissions.check_paths([str(repo)])
    read = submissions.read(found)
    assert read.commit and read.files["README.md"] == b"# Mallory\n"
    assert submissions.read(found, deadline="2090-01-01 00:00 +0000").commit == read.commit
    assert not marker.exists(), marker.read_text()


def test_collect_and_feedback_push_run_nothing_of_the_students(hostile, tmp_path):
    repo, marker = hostile
    course = tmp_path / "course"
    course.mkdir()
    (course / "roster.csv").write_text(f"student,repository\nmallory,{repo}\n")
    staff = tmp_path / "gitconfig"  # the course staff's own git settings: who writes the feedback commits
    staff.write_text("[user]\n\tname = Course Staff\n\temail = staff@example.invalid\n")
    collected = grading("collect", str(course), "--deadline", "2090-01-01 00:00 +0000", gitconfig=staff)
    assert collected.returncode == 0, collected.stderr
    commit = run("git", "rev-parse", "main", cwd=repo).strip()
    (course / "grades" / "results").mkdir(parents=True)  # a regrade's record of the commit, in brief
    (course / "grades" / "results" / "mallory.json").write_text(json.dumps(
        {"name": "mallory", "commit": commit, "grade": 0.0, "public": 0.0, "hidden": 0.0, "status": "ok", "tests": [],
         "tamper": [], "review": [], "notes": []}))
    published = grading("feedback", str(course), "--push", "--partial", gitconfig=staff)  # no scores here
    assert published.returncode == 0, published.stderr
    assert "FEEDBACK.md" in run("git", "ls-tree", "--name-only", "feedback", cwd=repo)  # the push went through
    assert not marker.exists(), marker.read_text()


def test_no_grading_module_but_the_runner_starts_git_itself():
    started = re.compile(r"""\[\s*["']git["']""")  # subprocess.run(["git", ...]) and the like
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "grading").rglob("*.py"))
                 if path.name != "git.py" and started.search(path.read_text(encoding="utf-8"))]
    assert offenders == [], "run git through grading.git.git, with the safe settings"
    assert started.search((ROOT / "grading" / "git.py").read_text(encoding="utf-8"))
