"""Synthetic student repositories for the regrade and review tests, built from a draft release.

Each one is a clone of the template's `main` with one commit that makes it what its name says: the
reference solution, the stubs, partly right, hostile in one function (the rest correct), a syntax
error, or tampering with the tests. `outside` is a path outside every submission that the `escapes` submission tries to write.
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
# Small limits keep the suite quick: 3 s per test, the watchdog after 8 s of silence, 8 MB of output.
LIMITS = ["--timeout", "3", "--grace", "5", "--output-limit", "8", "--jobs", "2"]
# Commits dated like this are made "before the deadline" in the tests; later ones after it.
BEFORE, DEADLINE, AFTER = "2030-01-01T12:00:00+00:00", "2030-01-02T00:00:00+00:00", "2030-01-03T12:00:00+00:00"


def git(repo: Path, *args: str, date: str = BEFORE) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", *STUDENT, *args], cwd=repo, capture_output=True, text=True, check=True,
                          env=env).stdout


def reference(name: str) -> str:
    return (ROOT / "models" / name).read_text()


def loss_curve_png() -> bytes:
    """A small PNG of a made-up loss curve, as a student's assets/ would hold."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 2.5), dpi=80)
    axes.plot([3.3, 1.2, 0.6, 0.3, 0.2, 0.15], label="train")
    axes.plot([3.3, 1.3, 0.8, 0.6, 0.55, 0.55], label="val")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


WRITEUP = """# Pig Latin: my writeup

## Q1 Transformer

The validation loss falls below the training loss early on ([the curves](#curves)); the decoder needs
its positions, as the [notebook](notebooks/attention.ipynb) shows.

### Curves

![loss curves](assets/loss.png)

<img src="assets/loss.png" width="160" alt="the same, small" onerror="alert('x')"><script>alert('x')</script>

| run | val loss | word accuracy |
| --- | ---: | ---: |
| hidden 32, small | 0.21 | 0.93 |
| hidden 64, large | 0.05 | 0.99 |

## Q2 State-space models

With the bilinear rule, $\\bar{A} = \\frac{1 + \\alpha \\Delta A}{1 - (1 - \\alpha) \\Delta A}$ and

$$\\bar{B} = \\frac{\\Delta B}{1 - (1 - \\alpha)\\Delta A}, \\qquad h_t = \\bar{A} h_{t-1} + \\bar{B} x_t.$$

![a plot I forgot to commit](assets/forgotten.png) ![from the web](https://example.com/plot.png)
See [my scan](models/mamba.py), [my configuration](exps/my_run.txt) and
[Heinsen (2023)](https://arxiv.org/abs/2311.06281).
"""
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'


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


def regrade(*args: str) -> subprocess.CompletedProcess:
    """`python -m grading regrade ARGS` from the repository root."""
    return subprocess.run([sys.executable, "-m", "grading", "regrade", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def make_release(where: Path) -> Path:
    """A draft release of this repository (no checks: the release tests check it)."""
    subprocess.run([sys.executable, "-m", "grading", "release", str(where), "--no-check"], cwd=ROOT, check=True,
                   capture_output=True)
    return where


def make_submission(release: Path, folder: Path, name: str, files: dict[str, str], date: str = BEFORE,
                    bare: bool = False) -> Path:
    """A clone of the template's main with `files` (path -> text or bytes, None to delete) committed on top."""
    work = folder / (f"{name}-work" if bare else name)
    subprocess.run(["git", "clone", "-q", "-b", "main", str(release), str(work)], check=True)
    commit(work, files, date)
    if not bare:
        return work
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(folder / f"{name}.git")], check=True)
    shutil.rmtree(work)
    return folder / f"{name}.git"


def commit(work: Path, files: dict[str, str], date: str = BEFORE, message: str = "my work"):
    for path, content in files.items():
        target = work / path
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message, date=date)


def class_of_submissions(release: Path, folder: Path, outside: Path) -> dict[str, Path]:
    """name -> repository of every synthetic submission."""
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    T, M = "models/transformer.py", "models/mamba.py"
    correct = {T: transformer, M: mamba}
    tests_q1 = "tests/graded/test_q1_transformer.py"
    made = {
        "correct": make_submission(release, folder, "correct", {
            **correct, "README.md": WRITEUP, "assets/loss.png": loss_curve_png(),
            "notebooks/attention.ipynb": NOTEBOOK}, bare=True),
        "stubs": make_submission(release, folder, "stubs", {"README.md": "# Not started\n"}),
        # Q1 right but for a mask built square (only the hidden tests see it); Q2 not started.
        "partly": make_submission(release, folder, "partly", {
            T: mutated(transformer, "mask-built-square-from-one-length"), "README.md": WRITEUP,
            "assets/loss.png": loss_curve_png(), "notebooks/attention.ipynb": NOTEBOOK}),
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
        "broken": make_submission(release, folder, "broken", {**correct, M: mamba.replace(
            "def pscan(", "def pscan(log_a, b) -> torch.Tensor\n    pass\n\n\ndef pscan_(", 1)}),
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
