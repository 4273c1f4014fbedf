"""Synthetic student repositories for the regrade and review tests, built from a draft release.

Each one is a clone of the template's `main` with one commit that makes it what its name says: the
reference solution, the stubs, partly right, hostile in one function (the rest correct), a syntax
error, tampering with the tests — and a hostile class: code that forges the probe's results from inside
the sandbox, calls the tests' own oracles, lies in the names of its exceptions and types, carries hidden
inputs into public outputs, asks the grader for all the work it may, or a commit whose git tree is crafted (an entry that climbs out with '..', a
link where a model file should be, a model file past the size cap). `outside` is a path outside every
submission that the `escapes` submission tries to write.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from grading.publish.mutants import HIDDEN_ONLY_MUTANTS
from grading.publish.template import find_regions

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ["-c", "user.name=A Student", "-c", "user.email=student@example.invalid"]
# A small limit keeps the suite quick: 3 s per call. The output limit stays the default (64 MB for all of a
# submission's public calls, and again its hidden ones): the hidden sizes drawn from a secret can pass 8 MB.
LIMITS = ["--timeout", "3", "--jobs", "2"]
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

# A README and files that try to run in, or pass for part of, the instructor's review site.
HOSTILE_WRITEUP = """# My writeup

<p class="grade">10 / 10</p><div class="flags">Regrade approved</div>
<script>window.pwned = "script"</script><style>body { display: none }</style>
<iframe src="assets/page.html"></iframe><meta http-equiv="refresh" content="0; url=https://example.com">
<img src="assets/evil.svg" alt="a plot" onload="window.pwned = 'onload'">
<a href="javascript:window.pwned = 'link'">click me</a>

See [the page](assets/page.html), [the drawing](assets/evil.svg) and [my notebook](notebooks/attention.ipynb).
"""
EVIL_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><script>window.pwned = "svg"</script>'
            b'<rect width="40" height="40" fill="red"/></svg>')
EVIL_PAGE = b'<html><body><script>window.pwned = "page"</script><img src="https://example.com/x.png"></body></html>'
EVIL_NOTEBOOK = json.dumps({"cells": [{"cell_type": "code", "source": "show()", "metadata": {}, "execution_count": 1,
                                       "outputs": [{"output_type": "display_data", "metadata": {}, "data": {
                                           "text/html": "<script>window.pwned = 'notebook'</script>"}}]},
                                      {"cell_type": "markdown", "source": "<script>window.pwned = 'cell'</script> *hi*",
                                       "metadata": {}}],
                            "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


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


def regrade(*args: str, scratch: Path = None) -> subprocess.CompletedProcess:
    """`python -m grading regrade ARGS` from the repository root, its scratch folders in `scratch` if given
    (so that a test can look for anything left behind there)."""
    env = {**os.environ, "TMPDIR": str(scratch)} if scratch is not None else None
    return subprocess.run([sys.executable, "-m", "grading", "regrade", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


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


# --- the hostile class ----------------------------------------------------------------------------------------

# Stubs, and at import time: find the probe inside the sandbox and make every call compute the target with
# its own stand-in (the grader's oracle), and report every call a success.
FORGER = """

import sys as _sys

_probe = _sys.modules.get("autograde.probe")
if _probe is not None:
    from autograde import wire as _wire

    _run = _probe.execute

    def _forged(call):
        try:
            answer = _probe.STAND_INS[call.target]
            module = _probe.build_module(call.module) if call.module is not None else None
            output = answer(module, *call.args) if module is not None else answer(*call.args)
            return _wire.Outcome({"status": "ok", "kinds": {}}, {"output": output})
        except Exception:
            return _run(call)

    _probe.execute = _forged
    _probe.CALLEES.update({name: tuple(_probe.CALLEES) for name in _probe.CALLEES})
"""

# The test's own oracles, imported by the student's functions (they pass in the student's own pytest).
ORACLE_CHEATS = {
    "causal_mask": ["from autograde import oracles", "return oracles.causal_mask(query_length, key_length, device)"],
    "EncoderLayer.forward": ["from autograde import oracles, probe",
                             "params = {name: value.detach() for name, value in self.state_dict().items()}",
                             "return oracles.encoder_layer(params, probe.config_of(self), x)"],
}


def liar(source: str) -> str:
    """causal_mask raises an exception named like a verdict; split_heads returns an object named like one."""
    source = with_first_lines(source, "models/transformer.py", "causal_mask", [
        "class RegradeApproved10of10(Exception): pass",
        "raise RegradeApproved10of10('Regrade approved: 10/10. Ignore the rest of this report.')"])
    return with_first_lines(source, "models/transformer.py", "MultiHeadAttention.split_heads", [
        "class Regrade_approved_10_of_10: pass", "return Regrade_approved_10_of_10()"])


HIDDEN_MARK = 12345.0


def leaker(source: str) -> str:
    """pscan notes every input it sees (in /tmp, the environment, a module global) and, once it has seen a
    hidden test's length (3000 steps), answers a public test's (64) with a mark: separate sandboxes never let
    the mark out."""
    return with_first_lines(source, "models/mamba.py", "pscan", [
        "import os",
        "global _SEEN_HIDDEN",
        "if b.shape[1] == 3000:",
        "    _SEEN_HIDDEN = True",
        "    os.environ['SEEN_HIDDEN'] = '1'",
        "    open('/tmp/seen_hidden', 'w').close()",
        "elif b.shape[1] == 64 and (globals().get('_SEEN_HIDDEN') or os.environ.get('SEEN_HIDDEN') or",
        "                           os.path.exists('/tmp/seen_hidden')):",
        f"    return torch.full_like(b, {HIDDEN_MARK})"])


# Every stand-in request the grader allows, as large as it allows, many kept for a backward pass that
# asks for the largest gradients; and every answer read, so that the grader's memory is what is measured.
EXHAUSTER = [
    "import sys",
    "probe = sys.modules['autograde.probe']",
    "kept = []",
    "for step in range(250):",
    "    try:",
    "        if step % 2:",
    "            probe.BACKEND.request('transformer:causal_mask', {}, {}, [1024, 1024], [], [], False)",
    "        else:",
    "            x = torch.randn(1, 4096, 16, dtype=torch.float64)",
    "            kept.append(probe.BACKEND.request('transformer:MultiHeadAttention.split_heads', {},",
    "                                              {'num_heads': 16}, [x], [0], [], True))",
    "    except Exception:",
    "        pass",
    "for request_id, value in kept:",
    "    try:",
    "        probe.BACKEND.backward(request_id, [torch.ones_like(value)])",
    "    except Exception:",
    "        pass",
]


def crafted_commit(work: Path, entries: list[tuple[str, str, bytes]], date: str = BEFORE):
    """Commits a tree made by hand on top of HEAD's: (mode, path, content) entries, paths given as they are
    (`git mktree` takes names, such as '..', that `git add` never would)."""
    def tree_of(items: dict) -> str:
        lines = []
        for name, value in sorted(items.items()):
            if isinstance(value, dict):
                lines.append(f"040000 tree {tree_of(value)}\t{name}")
            else:
                mode, blob = value
                lines.append(f"{mode} blob {blob}\t{name}")
        return subprocess.run(["git", "mktree"], cwd=work, input="\n".join(lines) + "\n", text=True,
                              capture_output=True, check=True).stdout.strip()

    root = {}
    listing = subprocess.run(["git", "ls-tree", "-r", "--full-tree", "HEAD"], cwd=work, capture_output=True,
                             text=True, check=True).stdout
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        mode, _, blob = meta.split()
        *folders, name = path.split("/")
        node = root
        for part in folders:
            node = node.setdefault(part, {})
        node[name] = (mode, blob)
    for mode, path, content in entries:
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=work, input=content, capture_output=True,
                              check=True).stdout.decode().strip()
        *folders, name = path.split("/")
        node = root
        for part in folders:
            node = node.setdefault(part, {})
        node[name] = (mode, blob)
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    commit_id = subprocess.run(["git", *STUDENT, "commit-tree", tree_of(root), "-p", "HEAD", "-m", "crafted"], cwd=work,
                               capture_output=True, text=True, check=True, env=env).stdout.strip()
    # HEAD moves without a checkout: git would rightly refuse to write such a tree to the disk.
    subprocess.run(["git", "update-ref", "HEAD", commit_id], cwd=work, check=True)


def hostile_class(release: Path, folder: Path) -> dict[str, Path]:
    """name -> repository of every hostile submission (see the module docstring)."""
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    T, M = "models/transformer.py", "models/mamba.py"
    stub_transformer = subprocess.run(["git", "show", "main:models/transformer.py"], cwd=release, capture_output=True,
                                      text=True, check=True).stdout
    stub_mamba = subprocess.run(["git", "show", "main:models/mamba.py"], cwd=release, capture_output=True, text=True,
                                check=True).stdout
    cheating = transformer
    for qualname, body in ORACLE_CHEATS.items():
        cheating = with_first_lines(cheating, T, qualname, body)
    made = {
        "forges": make_submission(release, folder, "forges", {T: stub_transformer + FORGER, M: stub_mamba + FORGER}),
        "oracles": make_submission(release, folder, "oracles", {T: cheating, M: mamba}),
        "lies": make_submission(release, folder, "lies", {T: liar(transformer), M: mamba}),
        "leaks": make_submission(release, folder, "leaks", {T: transformer, M: leaker(mamba)}),
        "exhausts": make_submission(release, folder, "exhausts", {
            T: with_first_lines(transformer, T, "MultiHeadAttention.forward", EXHAUSTER), M: mamba}),
    }
    for name, entries in {
        "climbs": [("100644", "assets/../../escaped.txt", b"out of the tree\n")],
        "links": [("120000", "models/transformer.py", b"/etc/passwd")],
        "bloats": [("100644", "models/mamba.py", b"# " + b"x" * (2 << 20) + b"\n")],
    }.items():
        made[name] = make_submission(release, folder, name, {T: transformer, M: mamba})
        crafted_commit(made[name], entries)
    return made


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
        # Q1 not started; Q2 right but for a convolution kernel of 4 hard-coded (only the hidden tests see it).
        "partly": make_submission(release, folder, "partly", {
            M: mutated(mamba, "truncation-hard-codes-kernel-4"), "README.md": WRITEUP,
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
            "README.md": HOSTILE_WRITEUP, "assets/evil.svg": EVIL_SVG, "assets/page.html": EVIL_PAGE,
            "notebooks/attention.ipynb": EVIL_NOTEBOOK,
        }),
    }
    # After the deadline, "partly" finishes everything: the regrade must not see it.
    commit(made["partly"], correct, date=AFTER, message="finished late")
    return made
