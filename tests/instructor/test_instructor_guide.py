"""Every command of INSTRUCTOR.md works as written: the guide's ```sh blocks run, in order, as one bash
script, in a scratch course where local bare repositories stand in for GitHub (git's `insteadOf` maps
git@github.com:your-course/ to them) and `pig-latin/` is a clone of this repository's last commit.

One substitution: the release runs with `--no-check` here; the checked release, the same command
without it, is tests/instructor/test_release.py's. (Instructor-only. About a minute.)"""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autograde import points
from synthetic_submissions import ROOT, make_release, make_submission, reference

GUIDE = ROOT / "INSTRUCTOR.md"
RELEASE = "python -m grading release ../pig-latin-release"


def guide_blocks(kind: str = "sh") -> list[str]:
    """The fenced code blocks of the guide marked `kind`, in order. Each is marked sh (this test runs it) or
    console (a container's commands, which tests/instructor/test_container.py checks)."""
    fenced = re.findall(r"^```(\w*)\n(.*?)^```", GUIDE.read_text(), flags=re.M | re.S)
    unmarked = [body for language, body in fenced if language not in ("sh", "console")]
    assert not unmarked, f"INSTRUCTOR.md: every fenced block must be ```sh (run here) or ```console: {unmarked}"
    return [body for language, body in fenced if language == kind]


def test_the_checked_release_command_is_the_release_tests_own():
    assert RELEASE in "".join(guide_blocks())
    release_test = (ROOT / "tests" / "instructor" / "test_release.py").read_text()
    assert '[sys.executable, "-m", "grading", "release", str(out)]' in release_test


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(scratch folder, the script's output) after running the whole guide there."""
    scratch = tmp_path_factory.mktemp("course")
    remotes = scratch / "remotes"
    remotes.mkdir()
    for name in ("pig-latin", "pig-latin-staff"):
        subprocess.run(["git", "init", "-q", "--bare", str(remotes / f"{name}.git")], check=True)
    draft = make_release(scratch / "draft")
    models = {f"models/{name}": reference(name) for name in ("transformer.py", "mamba.py")}
    make_submission(draft, remotes, "pig-latin-alice", models, bare=True)
    make_submission(draft, remotes, "pig-latin-bob", {"README.md": "# Bob\n"}, bare=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(scratch / "pig-latin")], check=True)
    (scratch / "pig-latin" / "node_modules").symlink_to(ROOT / "node_modules")
    gitconfig = scratch / "gitconfig"
    gitconfig.write_text(f'[url "{remotes}/"]\n\tinsteadOf = git@github.com:your-course/\n'
                         "[user]\n\tname = Course Staff\n\temail = staff@example.invalid\n")
    script = "\n".join(guide_blocks())
    assert script.count(RELEASE) == 1
    script = script.replace(RELEASE, RELEASE + " --no-check")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(gitconfig), "OMP_NUM_THREADS": "1",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=scratch / "pig-latin", env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"the guide's commands failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return scratch, result.stdout


def branches(repo: Path) -> set[str]:
    return set(subprocess.run(["git", "-C", str(repo), "branch", "--format=%(refname:short)"], capture_output=True,
                              text=True, check=True).stdout.split())


def test_the_template_reaches_the_students_remote_and_the_solution_only_the_staff_one(course):
    scratch, output = course
    assert branches(scratch / "remotes" / "pig-latin.git") == {"main"}
    assert branches(scratch / "remotes" / "pig-latin-staff.git") == {"solution"}
    assert "refs/heads/main" in output and "refs/heads/solution" not in output


def test_the_regrade_grades_the_class_and_the_rerun_skips_it(course):
    scratch, output = course
    with open(scratch / "class" / "grades" / "gradebook.csv", newline="") as file:
        grades = {row["student"]: row for row in csv.DictReader(file)}
    assert (grades["alice"]["grade"], grades["bob"]["grade"]) == ("10", "0")
    assert grades["alice"]["tamper"] == grades["bob"]["tamper"] == ""
    assert output.count("unchanged since the last run") == 2


def test_the_class_in_two_shards_merges_into_the_same_grades(course):
    scratch, output = course
    with open(scratch / "class" / "merged" / "gradebook.csv", newline="") as file:
        merged = {row["student"]: row for row in csv.DictReader(file)}
    with open(scratch / "class" / "grades" / "gradebook.csv", newline="") as file:
        whole = {row["student"]: row for row in csv.DictReader(file)}
    assert {name: row["grade"] for name, row in merged.items()} == {name: row["grade"] for name, row in whole.items()}
    assert "merged 2 shards, 2 students" in output


def test_the_hidden_tests_the_corpus_and_the_review_sites_ran(course):
    scratch, output = course
    assert "MISSED" not in output and "WRONGLY FAILED" not in output and "kept all" in output
    public, hidden = (len(points.markers(ROOT / folder)) for folder in ("tests/graded", "tests/hidden"))
    assert f"\n{hidden} passed" in output and f"\n{public + hidden} passed" in output
    for site in ("site", "site-and-grades"):
        assert (scratch / "class" / site / "students" / "alice" / "index.html").is_file()
    assert (scratch / "class" / "site-and-grades" / "grades" / "gradebook.csv").is_file()
