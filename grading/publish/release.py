"""`python -m grading release OUT`: the student template and the hidden solution as one git repository.

OUT gets two branches. `main` is the student template: one root commit, every solution region a stub,
notebooks stripped by nbgrader, no instructor-only file. `solution` is one commit on top of it with the
complete reference, so `git diff main solution` is exactly the answers. Nothing reaches OUT unless every
check passes: no solution line anywhere in main's history, the template imports and `main.py --help`
runs, the graded tests score 0 on the template and full marks on the solution, and every other test
passes on both (or, on the template, skips because it needs the finished models).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grading.errors import GradingError
from grading.git import git, succeeds
from grading.publish.template import TOTAL_POINTS, is_instructor_only, leaks, make_template, secret_lines

# Who wrote the release's two commits, whatever the instructor's git config says.
AUTHOR = {"GIT_AUTHOR_NAME": "Assignment release", "GIT_AUTHOR_EMAIL": "release@example.invalid",
          "GIT_COMMITTER_NAME": "Assignment release", "GIT_COMMITTER_EMAIL": "release@example.invalid"}


class ReleaseError(GradingError):
    """The release was refused: what failed, one problem per line."""


def check_release(repo: Path) -> Path:
    """`repo`, refused unless it is a repository this command wrote (a branch main, the student template)."""
    if not succeeds(repo, "rev-parse", "--verify", "-q", "main"):
        raise ReleaseError(f"--release {repo}: not a release repository with a branch main")
    return repo


def shipped_files(source: Path) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every tracked file of `source`'s working tree that students may see."""
    listed = git(source, "ls-files", "-z").split("\0")
    files = {}
    for path in filter(None, listed):
        full = source / path
        if is_instructor_only(path) or not full.is_file():  # a tracked file deleted in the working tree
            continue
        files[path] = (full.read_bytes(), full.stat().st_mode & 0o777)
    return files


def template_of(shipped: dict[str, tuple[bytes, int]]) -> dict[str, tuple[bytes, int]]:
    """The student template (path -> (content, mode)) of the files `shipped_files` gives."""
    template = make_template({path: content for path, (content, _) in shipped.items()})
    return {path: (template[path], mode) for path, (_, mode) in shipped.items()}


def write_tree(root: Path, files: dict[str, tuple[bytes, int]]):
    """Makes `root` (a git work tree) hold exactly `files`."""
    for existing in git(root, "ls-files", "-z").split("\0"):
        if existing and existing not in files:
            (root / existing).unlink()
    for path, (content, mode) in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


def build(source: Path, staging: Path) -> set[str]:
    """Writes the two-branch repository into `staging`; returns the secret lines to check for."""
    solution = shipped_files(source)
    template = template_of(solution)
    staging.mkdir(parents=True)
    git(staging, "init", "-q", "-b", "main")
    write_tree(staging, template)
    git(staging, "add", "-A")
    git(staging, "commit", "-q", "-m", "Student template", env=AUTHOR)
    git(staging, "checkout", "-q", "-b", "solution")
    write_tree(staging, solution)
    git(staging, "add", "-A")
    git(staging, "commit", "-q", "-m", "Reference solution", env=AUTHOR)
    git(staging, "checkout", "-q", "main")
    return secret_lines({path: content for path, (content, _) in solution.items()})


# --- checks ------------------------------------------------------------------------------------------------


def history_leaks(repo: Path, branch: str, secrets: set[str]) -> list[str]:
    """Every file of every commit reachable from `branch`, checked for solution lines and markers."""
    problems = []
    objects = git(repo, "rev-list", "--objects", branch).splitlines()
    blobs = {}
    for line in objects:
        sha, _, path = line.partition(" ")
        if path:
            blobs.setdefault(sha, path)
    for sha, path in blobs.items():
        if git(repo, "cat-file", "-t", sha).strip() != "blob":
            continue
        if is_instructor_only(path):
            problems.append(f"{branch}: instructor-only file {path}")
            continue
        content = git(repo, "cat-file", "blob", sha, binary=True)
        problems += [f"{branch}: {problem}" for problem in leaks(path, content, secrets)]
    return problems


def checkout(repo: Path, branch: str, where: Path) -> Path:
    git(repo, "clone", "-q", "--branch", branch, str(repo), str(where))
    return where


def quiet_env() -> dict:
    """One thread per process (the machines that release are small and busy), no stray bytecode."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    # A released tree has no node_modules/ (students run `npm ci` if they want the browser checks).
    env.pop("PIGLATIN_REQUIRE_BROWSER", None)
    return env


def smoke_problems(tree: Path) -> list[str]:
    """The template must import and `main.py --help` must run, before any student writes a line."""
    problems = []
    commands = {
        "import the models": [sys.executable, "-c", "import main, models, models.transformer, models.mamba"],
        "python main.py --help": [sys.executable, "main.py", "--help"],
    }
    for what, command in commands.items():
        result = subprocess.run(command, cwd=tree, capture_output=True, text=True, env=quiet_env(), timeout=300)
        if result.returncode:
            problems.append(f"template: cannot {what}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return problems


def start_pytest(tree: Path, score_json: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--score-json", str(score_json)]
    return subprocess.Popen(command, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=quiet_env())


def score_problems(branch: str, result: dict, expected_total: float) -> list[str]:
    """What is wrong with one branch's test results: its score, failing or wrongly skipped tests."""
    problems = []
    if result["max"] != TOTAL_POINTS or not result["complete"]:
        problems.append(f"{branch}: the graded tests are worth {result['max']:g} points, not {TOTAL_POINTS:g}")
    if result["total"] != expected_total:
        earned = [f"{row['name']} ({row['earned']:g})" for row in result["tests"] if row["earned"]]
        lost = [row["name"] for row in result["tests"] if not row["earned"]]
        detail = f"earned: {', '.join(earned)}" if expected_total == 0 else f"lost: {', '.join(lost)}"
        problems.append(f"{branch}: the graded tests score {result['total']:g}/{result['max']:g}, "
                        f"expected {expected_total:g}; {detail}")
    for nodeid, message in result["ungraded"]["failed"].items():
        problems.append(f"{branch}: {nodeid} failed: {message.strip().splitlines()[-1] if message.strip() else ''}")
    if expected_total:  # on the solution nothing may skip for want of a finished model
        for nodeid, reason in result["ungraded"]["skipped"].items():
            if "needs the finished models" in reason:
                problems.append(f"{branch}: {nodeid} skipped: {reason}")
    return problems


def verify(staging: Path, secrets: set[str], log=print) -> list[str]:
    problems = history_leaks(staging, "main", secrets)
    with tempfile.TemporaryDirectory(prefix="release-check-") as scratch:
        scratch = Path(scratch)
        trees = {branch: checkout(staging, branch, scratch / branch) for branch in ("main", "solution")}
        problems += smoke_problems(trees["main"])
        log("running the test suite on both branches ...")
        runs = {branch: start_pytest(tree, scratch / f"{branch}.json") for branch, tree in trees.items()}
        outputs = {branch: run.communicate()[0] for branch, run in runs.items()}
        for branch, expected in (("main", 0.0), ("solution", float(TOTAL_POINTS))):
            report = scratch / f"{branch}.json"
            if runs[branch].returncode not in (0, 1) or not report.is_file():
                tail = "\n".join(outputs[branch].strip().splitlines()[-15:])
                problems.append(f"{branch}: pytest did not run (exit status {runs[branch].returncode}):\n{tail}")
                continue
            result = json.loads(report.read_text())
            problems += score_problems(branch, result, expected)
            log(f"{branch}: graded {result['total']:g}/{result['max']:g}; other tests: "
                f"{result['ungraded']['passed']} passed, {len(result['ungraded']['skipped'])} skipped, "
                f"{len(result['ungraded']['failed'])} failed")
    return problems


def release(source: Path, out: Path, check: bool = True, log=print) -> Path:
    """Builds the release of `source` (a git work tree) and moves it to `out` if every check passes."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReleaseError(f"{out} already exists and is not empty: choose a new directory")
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        staging = Path(scratch) / "repo"
        log(f"building the template and the solution from {source} ...")
        secrets = build(source, staging)
        if check:
            problems = verify(staging, secrets, log)
            if problems:
                raise ReleaseError("the release is refused:\n" + "\n".join(f"  {problem}" for problem in problems))
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(out))
    log(f"released to {out}: branch main = student template, branch solution = reference")
    return out
