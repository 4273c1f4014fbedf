"""Synthetic student repositories for the regrade and review tests, built from a draft release.

Each one is a clone of the template's `main` with one commit that makes it what its name says: the
reference solution, the stubs, partly right, hostile in one function (the rest correct), or tampering
with the tests. `outside` is a path outside every submission that the `escapes` submission tries to write.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from grading.mutants import HIDDEN_ONLY_MUTANTS
from grading.template import find_regions

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ["-c", "user.name=A Student", "-c", "user.email=student@example.invalid"]
# Commits dated like this are made "before the deadline" in the tests; later ones after it.
BEFORE, DEADLINE, AFTER = "2030-01-01T12:00:00+00:00", "2030-01-02T00:00:00+00:00", "2030-01-03T12:00:00+00:00"


def git(repo: Path, *args: str, date: str = BEFORE) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", *STUDENT, *args], cwd=repo, capture_output=True, text=True, check=True,
                          env=env).stdout


def reference(name: str) -> str:
    return (ROOT / "models" / name).read_text()


def with_first_lines(source: str, path: str, qualname: str, statements: list[str]) -> str:
    """The module with `statements` run first in the solution region of `qualname`."""
    (region,) = [region for region in find_regions(source, path) if region.qualname == qualname]
    lines = source.splitlines()
    lines[region.begin + 1:region.begin + 1] = [region.indent + statement for statement in statements]
    return "\n".join(lines) + "\n"


def mutated(source: str, mutant_name: str) -> str:
    (variant,) = [variant for variant in HIDDEN_ONLY_MUTANTS if variant.name == mutant_name]
    for old, new in variant.replace:
        assert source.count(old) == 1, f"{old!r} is not unique in the file"
        source = source.replace(old, new)
    return source


def make_release(where: Path) -> Path:
    """A draft release of this repository (no checks: the release tests check it)."""
    subprocess.run([sys.executable, "-m", "grading", "release", str(where), "--no-check"], cwd=ROOT, check=True,
                   capture_output=True)
    return where


def make_submission(release: Path, folder: Path, name: str, files: dict[str, str], date: str = BEFORE,
                    bare: bool = False) -> Path:
    """A clone of the template's main with `files` (path -> text, None to delete) committed on top."""
    work = folder / (f"{name}-work" if bare else name)
    subprocess.run(["git", "clone", "-q", "-b", "main", str(release), str(work)], check=True)
    commit(work, files, date)
    if not bare:
        return work
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(folder / f"{name}.git")], check=True)
    shutil.rmtree(work)
    return folder / f"{name}.git"


def commit(work: Path, files: dict[str, str], date: str = BEFORE, message: str = "my work"):
    for path, text in files.items():
        target = work / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message, date=date)


def class_of_submissions(release: Path, folder: Path, outside: Path) -> dict[str, Path]:
    """name -> repository of every synthetic submission."""
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    T, M = "models/transformer.py", "models/mamba.py"
    correct = {T: transformer, M: mamba}
    tests_q1 = "tests/graded/test_q1_transformer.py"
    made = {
        "correct": make_submission(release, folder, "correct", correct, bare=True),
        "stubs": make_submission(release, folder, "stubs", {"README.md": "# Not started\n"}),
        # Q1 right but for a mask built square (only the hidden tests see it); Q2 not started.
        "partly": make_submission(release, folder, "partly", {T: mutated(transformer, "mask-built-square-from-one-length")}),
        "hangs": make_submission(release, folder, "hangs", {**correct, T: with_first_lines(
            transformer, T, "sinusoidal_positional_encoding", ["while True:", "    pass"])}),
        "exits": make_submission(release, folder, "exits", {**correct, M: with_first_lines(
            mamba, M, "ResidualBlock.forward", ["import os", "os._exit(0)"])}),
        "floods": make_submission(release, folder, "floods", {**correct, T: with_first_lines(
            transformer, T, "EncoderLayer.forward", ["for _ in range(40):", "    print('spam ' * 200_000)"])}),
        "escapes": make_submission(release, folder, "escapes", {**correct, T: with_first_lines(
            with_first_lines(transformer, T, "causal_mask", [f"open({str(outside)!r}, 'w').write('was here')"]),
            T, "sinusoidal_positional_encoding",
            ["import socket", "socket.create_connection(('192.0.2.1', 9), timeout=1)"])}),
        "tampers": make_submission(release, folder, "tampers", {
            tests_q1: "import pytest\n\n@pytest.mark.points(5)\ndef test_everything():\n    pass\n",
            ".github/workflows/autograde.yml": "name: Autograding\non: push\njobs: {}\n",
            "exps/args_piglatin_small_transformer.txt": "--epochs 1\n",
            "conftest.py": "collect_ignore = ['tests']\n",
            "exps/my_run.txt": "--epochs 3\n",  # a new configuration of their own: allowed
        }),
    }
    # After the deadline, "partly" finishes everything: the regrade must not see it.
    commit(made["partly"], correct, date=AFTER, message="finished late")
    return made
