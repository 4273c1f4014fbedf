"""The regrade's container (grading/regrade/container): its build file, its entry point, and the sandbox's
refusal, in one line naming the setting, where a container runtime withholds what bubblewrap needs.

Everything here runs on this Linux machine without a container runtime: the entry point is a plain Python
program, and a container's refusals are provoked with a stand-in bwrap that answers as bubblewrap does
under Docker's and Podman's defaults. With PIGLATIN_CONTAINER_IMAGE=NAME (an image built from the
Containerfile) and podman or docker installed, the last tests also regrade a small class in that image
and check the refusals of the real runtime. (Instructor-only.)"""

import csv
import importlib.util
import os
import re
import shlex
import shutil
import stat
import tempfile
import subprocess
import sys
from pathlib import Path

import pytest

from grading.regrade import sandbox
from synthetic_submissions import (ROOT, make_release, make_submission, mutated, reference, regrade,
                                   with_first_lines)

CONTAINER = ROOT / "grading" / "regrade" / "container"
ENTRYPOINT = CONTAINER / "entrypoint.py"
IMAGE = os.environ.get("PIGLATIN_CONTAINER_IMAGE", "")
RUNTIME = shutil.which("podman") or shutil.which("docker")


def pins(path: Path) -> dict[str, str]:
    """name -> the version it is pinned to (==) or bounded by (>=), from a requirements file and those it includes."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found.update(pins(path.parent / line[3:].strip()))
        elif match := re.fullmatch(r"([A-Za-z0-9_.-]+)\s*((?:==|>=)[^,;\s]+)", line):
            found[match[1].lower()] = match[2]
    return found


def test_the_image_pins_what_the_repository_pins():
    containerfile = (CONTAINER / "Containerfile").read_text()
    image, repository = pins(CONTAINER / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    torch = re.search(r"^ARG TORCH_VERSION=(\S+)$", containerfile, re.M)[1]
    assert f"=={torch}" == repository["torch"], "the image's torch should be requirements.txt's"
    assert "--index-url \"${TORCH_INDEX}\"" in containerfile and "download.pytorch.org/whl/cpu" in containerfile
    for name, pin in image.items():
        assert repository.get(name) == pin, f"{name}{pin} in the image, {repository.get(name)} in requirements-dev.txt"
    # what the regrade imports from outside the standard library, and nothing for training or the writeup
    assert {"einops", "pytest", "numpy", "pyseccomp", "safetensors", "nbgrader"} <= set(image)
    assert not {"lightning", "jupyter", "bertviz", "matplotlib"} & set(image)


def test_the_containerfile_passes_hadolint_and_brings_the_sandbox():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt installs it)")
    result = subprocess.run([hadolint, "--no-color", str(CONTAINER / "Containerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (CONTAINER / "Containerfile").read_text()
    assert re.search(r"apt-get install[^&]*\bbubblewrap\b[^&]*\butil-linux\b", text), "bwrap and prlimit"
    assert "PIGLATIN_CONTAINER=1" in text, "the sandbox names the runtime's settings only where it knows"
    assert 'ENTRYPOINT ["/opt/venv/bin/python", "/opt/regrade/entrypoint.py"]' in text
    for source in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (CONTAINER / source).is_file(), f"COPY {source}: not in the build folder"
    assert "COPY . " not in text and "tests/hidden" not in text.split("FROM", 1)[1], \
        "the image holds no course material"


def test_the_guides_commands_build_this_image_and_run_it_with_the_settings_the_sandbox_names():
    from test_instructor_guide import guide_blocks

    (block,) = guide_blocks("console")
    build, run = block.strip().splitlines()
    tag = re.fullmatch(r"docker build -t (\S+) grading/regrade/container", build)[1]
    words = shlex.split(run)
    assert words[:3] == ["docker", "run", "--rm"] and tag in words
    after = words[words.index(tag) + 1:]
    assert after[0] == "regrade" and after[1] == "/class/submissions/*", "a quoted wildcard, for the entry point"
    assert ["-v", "$PWD:/repo:ro"] == words[words.index("$PWD:/repo:ro") - 1:words.index("$PWD:/repo:ro") + 1]
    assert any(word.endswith(":/class") for word in words)
    named = " ".join(setting for _, setting in sandbox.CONTAINER_SETTINGS)
    for option in re.findall(r"--security-opt (\S+)", run):
        assert option in named, f"{option}: a setting the sandbox does not ask for"
    assert "--privileged" not in words and "--cap-add" not in words


def entrypoint(*args: str, repo: Path = ROOT, work: Path = None, user: int = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIGLATIN_REPO": str(repo), "PIGLATIN_CLASS": str(work or "/nonexistent")}
    return subprocess.run([sys.executable, str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=120,
                          env=env, user=user)


@pytest.fixture
def open_folder():
    """A folder every user can reach (pytest's own are root's alone), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="entrypoint-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def class_folder(parent: Path) -> Path:
    """A class folder that an ordinary user owns (uid 1234 where the tests run as root)."""
    work = parent / "class"
    work.mkdir()
    if os.geteuid() == 0:
        os.chown(work, 1234, 1234)
    return work


def test_the_entry_point_refuses_a_folder_that_is_not_the_instructors_repository(tmp_path):
    result = entrypoint("regrade", "x", "--out", "y", repo=tmp_path)
    assert result.returncode == 1 and result.stderr == (
        f"pig-latin-regrade: {tmp_path} does not hold your repository (grading/ and tests/hidden/): mount it with "
        f"-v PATH_TO_YOUR_REPOSITORY:{tmp_path}:ro\n")


def test_the_entry_point_expands_wildcards_where_the_class_is_mounted(open_folder):
    spec = importlib.util.spec_from_file_location("entrypoint", ENTRYPOINT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("shard-2", "shard-1", "other"):
        (open_folder / name).mkdir()
    assert module.expanded(["merge", f"{open_folder}/shard-*", "--out", f"{open_folder}/out"], open_folder) == [
        "merge", f"{open_folder}/shard-1", f"{open_folder}/shard-2", "--out", f"{open_folder}/out"], \
        "each wildcard replaced by its matches, in order"
    words = ["request", str(open_folder), "alice", "W3", "why did I lose points? [all of them]"]
    assert module.expanded(words, open_folder) == words, "only paths under the class folder are patterns"
    work = class_folder(open_folder)
    result = entrypoint("merge", f"{work}/none-*", "--out", str(work / "out"), work=work)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"pig-latin-regrade: {work}/none-* matches nothing inside the container: is its folder mounted "
        "(-v HOST:/class)?"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root start leaves root")
@pytest.mark.parametrize("owner, mode, user", [(1234, 0o500, 1234), (0, 0o700, 1000)])
def test_started_as_root_it_becomes_the_class_folders_owner_and_refuses_a_folder_it_cannot_write(open_folder, owner,
                                                                                              mode, user):
    work = open_folder / "class"
    work.mkdir()
    os.chown(work, owner, owner)
    work.chmod(mode)
    result = entrypoint("regrade", "x", "--out", str(work / "grades"), work=work)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"pig-latin-regrade: {work} cannot be written by uid {user}, who runs the regrade here: give it to that user, "
        "or run the container with --user UID:GID (Docker) or --userns keep-id (rootless Podman)"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root start leaves root")
def test_started_as_root_it_leaves_root_for_good_and_writes_as_the_class_folders_owner(open_folder):
    work = open_folder / "class"
    work.mkdir()
    os.chown(work, 1234, 1235)
    script = ("import os, sys; sys.path.insert(0, sys.argv[1]); import entrypoint; from pathlib import Path; "
              "work = Path(sys.argv[2]); entrypoint.become(*entrypoint.user_for(work)); (work / 'made').write_text('');"
              "print(os.getresuid(), os.getresgid(), os.getgroups())")
    result = subprocess.run([sys.executable, "-c", script, str(CONTAINER), str(work)], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split("\n")[0] == "(1234, 1234, 1234) (1235, 1235, 1235) []", result.stderr
    assert ((work / "made").stat().st_uid, (work / "made").stat().st_gid) == (1234, 1235)


def test_a_python_the_user_cannot_start_is_refused_in_one_line(open_folder):
    work = class_folder(open_folder)
    env = {**os.environ, "PIGLATIN_REPO": str(ROOT), "PIGLATIN_CLASS": str(work)}
    result = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.executable = '/nonexistent/python'; "
                             f"sys.argv = ['entrypoint.py', 'merge']; runpy.run_path({str(ENTRYPOINT)!r}, "
                             "run_name='__main__')"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"pig-latin-regrade: /nonexistent/python cannot be started as uid {os.getuid() or 1234} "
        "([Errno 2] No such file or directory)"]


# --- the sandbox's refusals in a container, from a stand-in bwrap --------------------------------------------

# What bubblewrap prints where each setting is withheld (seen under Podman 4.3 and Docker's defaults).
WITHHELD = {
    "seccomp": ("bwrap: Can't set hostname to sandbox: Operation not permitted", "--security-opt seccomp=unconfined"),
    "seccomp (Docker)": ("bwrap: No permissions to create new namespace, likely because the kernel does not allow "
                         "non-privileged user namespaces.", "--security-opt seccomp=unconfined"),
    "/proc masked": ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted",
                     "--security-opt systempaths=unconfined (Docker) or --security-opt unmask=ALL (Podman)"),
    "AppArmor": ("bwrap: Failed to make / slave: Permission denied", "--security-opt apparmor=unconfined"),
}


@pytest.mark.parametrize("withheld", list(WITHHELD))
def test_in_a_container_a_withheld_setting_is_refused_in_one_line_naming_it(tmp_path, withheld):
    message, setting = WITHHELD[withheld]
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho {shlex.quote(message)} >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "PIGLATIN_CONTAINER": "1"}
    result = subprocess.run([sys.executable, "-c", "import os, sys; os.geteuid = lambda: 1000; "
                             "from grading.__main__ import main; sys.exit(main(sys.argv[1:]))",
                             "regrade", str(ROOT), "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("grading regrade: bubblewrap cannot make its sandbox in this container")
    assert message in result.stderr and setting in result.stderr
    assert not (tmp_path / "out").exists(), "a refused regrade wrote something"


def test_a_containers_root_is_told_to_leave_root_whatever_bubblewrap_says(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "let the image's entry point start it (it leaves root), or run it with --user UID:GID" in \
        sandbox.container_setting("bwrap: Creating new namespace failed: Operation not permitted")


# --- in the image itself ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image():
    if not IMAGE or RUNTIME is None:
        pytest.skip("no image to try: build one from grading/regrade/container and set PIGLATIN_CONTAINER_IMAGE "
                    "(podman or docker needed)")
    return IMAGE


def in_image(image: str, repo: Path, work: Path, *args: str,
             settings=("seccomp", "proc")) -> subprocess.CompletedProcess:
    options = {"seccomp": ["--security-opt", "seccomp=unconfined"],
               "proc": ["--security-opt", "unmask=ALL" if "podman" in RUNTIME else "systempaths=unconfined"]}
    command = [RUNTIME, "run", "--rm", *(part for name in settings for part in options[name]),
               "-v", f"{repo}:/repo:ro", "-v", f"{work}:/class", image, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def small_class(tmp_path_factory):
    """(a committed copy of this repository, the class folder, this machine's grades of it with --seed 7) for
    the image to regrade."""
    root = tmp_path_factory.mktemp("image")
    repo = root / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for path in filter(None, listed):
        if (ROOT / path).is_file() and not path.startswith("node_modules"):
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, repo / path)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    work = root / "class"
    release = make_release(work / "release")
    T, M = "models/transformer.py", "models/mamba.py"
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    # "dee" reaches for what the container holds beside the sandbox: the hidden tests, the class folder.
    peek = ["import pathlib", "pathlib.Path('/class/peeked').write_text(pathlib.Path('/repo/tests/hidden/"
            "secret_sizes.py').read_text())"]
    for name, files in {"ada": {T: transformer, M: mamba}, "bo": {"README.md": "# Not started\n"},
                        "cy": {T: transformer, M: mutated(mamba, "truncation-hard-codes-kernel-4")},
                        "dee": {T: with_first_lines(transformer, T, "causal_mask", peek), M: mamba}}.items():
        make_submission(release, work / "submissions", name, files, bare=True)
    # This machine's grades first: git here refuses repositories that another user owns.
    here = regrade(*map(str, sorted((work / "submissions").iterdir())), "--out", str(root / "here"),
                   "--release", str(release), "--seed", "7")
    assert here.returncode == 0, here.stderr
    if os.geteuid() == 0:  # the class belongs to someone: the entry point becomes them
        for path in [work, *work.rglob("*")]:
            os.chown(path, 1234, 1234, follow_symlinks=False)
    return repo, work, root / "here"


def test_the_image_writes_the_gradebook_this_machine_writes(image, small_class):
    repo, work, here = small_class
    result = in_image(image, repo, work, "regrade", "/class/submissions/*", "--out", "/class/grades",
                      "--release", "/class/release", "--seed", "7")
    assert result.returncode == 0, result.stderr
    inside = (work / "grades" / "gradebook.csv").read_text()
    assert inside == (here / "gradebook.csv").read_text()
    grades = {row["student"]: row["grade"] for row in csv.DictReader(inside.splitlines())}
    # dee loses causal_mask's tests, public (0.5) and hidden (0.25), and nothing else: 11.25 of 12
    assert grades == {"ada": "10", "bo": "0", "cy": "9.79", "dee": "9.38"}
    assert not (work / "peeked").exists(), "student code reached the class folder or the hidden tests"
    if os.geteuid() == 0:
        assert (work / "grades" / "gradebook.csv").stat().st_uid == 1234, "written as the class folder's owner"


@pytest.mark.parametrize("settings, setting", [(("proc",), "seccomp=unconfined"), (("seccomp",), "unmask=ALL")])
def test_the_image_refuses_a_withheld_setting_in_one_line(image, small_class, settings, setting):
    repo, work, _ = small_class
    result = in_image(image, repo, work, "regrade", "/class/submissions/*", "--out", "/class/refused",
                      settings=settings)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert setting in result.stderr
    assert not (work / "refused").exists()
