"""Every git command of the grading tools, through one function: `git(repo, *args)`.

Many repositories they read were written by students: a clone handed in, a roster's repository, the
course's copy of it. git obeys a repository's own settings, and some run programs: a hook (any file in
.git/hooks, or wherever `core.hooksPath` points), `core.fsmonitor`, `log.showSignature`'s `gpg.program`, a
transport such as `ext::` that runs a command the URL names. Every call overrides those on its command
line, whatever the repository says; never asks for a password (a missing repository fails instead of
waiting); and fails with one line, GitError.

A fetch from, or a push to, a repository on this machine (a path, file://) also runs git in that
repository, as upload-pack or receive-pack, and a push runs its hooks; git does not hand the settings
above on to it. `upload_pack` and `receive_pack` give the options that run it with them too.
"""

import os
import shlex
import subprocess
from pathlib import Path

from grading.errors import GradingError

SAFE = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "log.showSignature=false", "protocol.ext.allow=never",
        "protocol.fd.allow=never")
OVERRIDES = tuple(part for setting in SAFE for part in ("-c", setting))
TIMEOUT = 600  # seconds: a fetch from a slow host, not one that hangs for ever


class GitError(GradingError):
    """A git command failed: which command, and git's last line about it."""


def run(repo: Path, *args: str, input: bytes = None, env: dict = None):
    """git `args` in `repo` (None: wherever git is started) with the safe settings; the CompletedProcess
    (bytes), whatever its exit status. GitError if it does not finish within TIMEOUT seconds."""
    where = ["-C", str(repo)] if repo is not None else []
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", **(env or {})}
    try:
        return subprocess.run(["git", *where, *OVERRIDES, *args], capture_output=True, input=input, env=environment,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {TIMEOUT} s") from None


def git(repo: Path, *args: str, input=None, binary: bool = False, check: bool = True, env: dict = None):
    """What git `args` prints in `repo` (text, or bytes with `binary`); GitError if it fails, unless not `check`.
    `input`: text or bytes for its standard input; `env`: variables to add (an author, say)."""
    result = run(repo, *args, input=input.encode() if isinstance(input, str) else input, env=env)
    if check and result.returncode:
        last = (result.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise GitError(f"git {args[0]} failed: {last}")
    return result.stdout if binary else result.stdout.decode(errors="replace")


def succeeds(repo: Path, *args: str) -> bool:
    """Whether git `args` exits with status 0 in `repo` (a question git answers by its exit status)."""
    return run(repo, *args).returncode == 0


def is_local(url: str) -> bool:
    """Whether git reaches `url` on this machine: a path or a file:// URL (not https://, ssh://, host:path)."""
    if url.startswith("file://"):
        return True
    return "://" not in url and ":" not in url.split("/", 1)[0]


def answering_git(program: str) -> str:
    """The command that runs git's `program` (upload-pack, receive-pack) with the safe settings."""
    return shlex.join(["git", *OVERRIDES, program])


def upload_pack(url: str) -> list[str]:
    """What `git fetch` from `url` needs so that a repository on this machine runs nothing of its own."""
    return [f"--upload-pack={answering_git('upload-pack')}"] if is_local(url) else []


def receive_pack(url: str) -> list[str]:
    """What `git push` to `url` needs so that a repository on this machine runs no hook of its own."""
    return [f"--receive-pack={answering_git('receive-pack')}"] if is_local(url) else []
