"""The container's entry point: `python -m grading COMMAND ARGS...` in the instructor's repository.

    docker run --rm --security-opt seccomp=unconfined --security-opt systempaths=unconfined \\
        -v "$PWD:/repo:ro" -v "$PWD/../class:/class" pig-latin-regrade \\
        regrade '/class/submissions/*' --out /class/grades

- The repository is mounted read-only at /repo (PIGLATIN_REPO elsewhere), the class at /class
  (PIGLATIN_CLASS); a /repo without grading/ and tests/hidden/ is refused in one line.
- Started as root (what `docker run` does), it becomes the owner of /class, or uid 1000 where /class belongs
  to root, before anything else runs: the sandbox is then made in a user namespace, as on a laptop, and
  what the regrade writes belongs to you. A /class that user cannot write is refused in one line.
- A wildcard in a path under /class is expanded here, where the mounted paths exist: the host's shell sees
  other paths, and PowerShell and cmd expand nothing. Quote it. One that matches nothing is refused in one
  line; any other argument (a regrade request's text, say) is passed on as it is.
- Then it becomes `python -m grading` in /repo, with this image's Python. The sandbox checks itself first
  and, in a container, names the runtime's setting it lacks (grading/regrade/sandbox.py).

Standard library only; tests/instructor/test_container.py runs it outside a container too.
"""

import glob
import os
import stat
import sys
from pathlib import Path

WILDCARDS = ("*", "?", "[")
FALLBACK_UID = 1000  # whom a root-owned /class is written by (Docker Desktop's mounts take any writer)


def refuse(message: str) -> int:
    print(f"pig-latin-regrade: {message}", file=sys.stderr)
    return 1


def expanded(args: list[str], work: Path) -> list[str]:
    """The arguments with each wildcard in a path under `work` replaced by the paths it matches, sorted;
    ValueError names one that matches nothing."""
    out = []
    for arg in args:
        if not arg.startswith(f"{work}/") or not any(mark in arg for mark in WILDCARDS):
            out.append(arg)
            continue
        matches = sorted(glob.glob(arg))
        if not matches:
            raise ValueError(f"{arg} matches nothing inside the container: is its folder mounted (-v HOST:/class)?")
        out += matches
    return out


def user_for(folder: Path) -> tuple[int, int]:
    """(uid, gid) to run as, for a root start: the folder's owner, unless that is root."""
    try:
        info = folder.stat()
    except OSError:
        return FALLBACK_UID, FALLBACK_UID
    return (info.st_uid, info.st_gid) if info.st_uid else (FALLBACK_UID, FALLBACK_UID)


def become(uid: int, gid: int):
    """Leaves root for good: no supplementary groups, then the group, then the user."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def writable(folder: Path) -> bool:
    try:
        mode = folder.stat().st_mode
    except FileNotFoundError:
        return True  # nothing mounted there: a command that writes elsewhere, or says what is missing itself
    except OSError:
        return False  # a folder above it that this user cannot enter
    return stat.S_ISDIR(mode) and os.access(folder, os.W_OK | os.X_OK)


def main(argv: list[str]) -> int:
    repo = Path(os.environ.get("PIGLATIN_REPO", "/repo"))
    work = Path(os.environ.get("PIGLATIN_CLASS", "/class"))
    if not (repo / "grading" / "__main__.py").is_file() or not (repo / "tests" / "hidden").is_dir():
        return refuse(f"{repo} does not hold your repository (grading/ and tests/hidden/): mount it with "
                      f"-v PATH_TO_YOUR_REPOSITORY:{repo}:ro")
    if os.geteuid() == 0:
        become(*user_for(work))
    if not writable(work):
        return refuse(f"{work} cannot be written by uid {os.getuid()}, who runs the regrade here: give it to that "
                      f"user, or run the container with --user UID:GID (Docker) or --userns keep-id (rootless Podman)")
    try:
        args = expanded(argv, work)
    except ValueError as error:
        return refuse(str(error))
    os.chdir(repo)
    try:
        os.execv(sys.executable, [sys.executable, "-m", "grading", *args])
    except OSError as error:
        return refuse(f"{sys.executable} cannot be started as uid {os.getuid()} ({error})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
