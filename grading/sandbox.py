"""One process per submission run, fenced in: limits, a watchdog, a clean environment, no network.

What fences a submission's tests (none of it needs root):

- its own process group (a new session), killed whole by the watchdog and again when the run ends, so
  nothing it started outlives it;
- a watchdog that kills the group when no test event arrives for `idle_seconds` (a hang pytest-timeout
  cannot interrupt: native code, a swallowed timeout, a hang while importing), on top of pytest-timeout's
  per-test limit (signal method: the test fails, the session goes on);
- resource limits set by the runner on itself, soft and hard: address space (RLIMIT_AS), the size of any
  file it writes, its captured output included (RLIMIT_FSIZE: a flood ends the run with SIGXFSZ), no core
  dumps;
- a clean environment: HOME and TMPDIR inside the submission's folder, one torch thread, no bytecode
  written, a fixed hash seed;
- the network: a new, empty network namespace (`unshare -rn`) where the kernel allows unprivileged user
  namespaces; everywhere, the guard's audit hook (grading/guard.py) refuses connections and name lookups;
- the file system: the guard refuses writes outside HOME and TMPDIR and reads of the instructor's tree,
  the other submissions and the regrade's output; regrade checks afterwards that no file of the tree changed.

Not fenced: native code that makes system calls itself (ctypes, a compiled extension) gets past the
guard, so without the network namespace it could reach the network, and it could write wherever the
instructor's account can. RLIMIT_NPROC is not used: it counts every process of the account (and is
ignored for root), so it cannot be set per run. Run regrades as an account that owns nothing else of
value, or in a container, when the class is not trusted.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HARNESS_FILES = ("runner.py", "guard.py")


@dataclass(frozen=True)
class Limits:
    test_seconds: float = 60.0  # one test (pytest-timeout)
    idle_seconds: float = 120.0  # no test event for this long: the watchdog kills the run
    memory_mb: int = 4096  # address space of the test process; torch alone maps about 0.8 GB
    output_mb: int = 64  # any one file the run writes, its output included


@dataclass(frozen=True)
class Ended:
    returncode: int
    killed: str  # why the watchdog killed the run, or "" when it ended by itself
    seconds: float


def write_harness(directory: Path) -> Path:
    """Copies the runner and the guard into `directory` (the guard hides grading/ from the tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in HARNESS_FILES:
        shutil.copyfile(Path(__file__).with_name(name), directory / name)
    return directory


@functools.cache
def network_namespace_works() -> bool:
    """Whether `unshare -rn` can start a process without network here (unprivileged user namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def isolation_summary() -> str:
    network = ("a network namespace (unshare -rn) and the guard's audit hook" if network_namespace_works()
               else "the guard's audit hook only (unshare -rn is not allowed here)")
    return f"network blocked by {network}; files by the audit hook; limits, process group and watchdog"


def environment(folder: Path, sandbox_settings: dict) -> dict:
    """What the test process sees: nothing of the instructor's environment beyond PATH and the locale."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL") if key in os.environ}
    env.update(HOME=str(folder / "home"), TMPDIR=str(folder / "tmp"), MPLCONFIGDIR=str(folder / "home"),
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",  # only the plugins named: none of the machine's others
               PIGLATIN_SANDBOX=json.dumps(sandbox_settings))
    return env


def run_tests(tree: Path, folder: Path, harness: Path, pytest_args: list[str], limits: Limits, hidden: list[Path],
              events: Path, output: Path, blocked: Path) -> Ended:
    """Runs pytest on `tree` (inside `folder`) in the sandbox; events and output go to those files."""
    for name in ("home", "tmp"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    settings = {
        "limits": {"RLIMIT_AS": limits.memory_mb << 20, "RLIMIT_FSIZE": limits.output_mb << 20, "RLIMIT_CORE": 0},
        "blocked_log": str(blocked),
        "guard": {"writable": [str(folder / "home"), str(folder / "tmp")], "hidden": [str(path) for path in hidden],
                  "readable": [str(folder), str(harness), sys.prefix, sys.base_prefix, sys.exec_prefix]},
    }
    command = [sys.executable, str(harness / "runner.py"), str(events), "-p", "pytest_timeout", *pytest_args,
               f"--timeout={limits.test_seconds:g}", "--timeout-method=signal"]
    if network_namespace_works():
        command = [shutil.which("unshare"), "-rn", *command]
    started = time.monotonic()
    with open(output, "wb") as log:
        process = subprocess.Popen(command, cwd=tree, env=environment(folder, settings), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    killed = watch(process, events, limits.idle_seconds)
    kill_group(process.pid)
    return Ended(process.returncode, killed, time.monotonic() - started)


def watch(process: subprocess.Popen, events: Path, idle_seconds: float) -> str:
    """Waits for the process; kills its group when the events file stops growing for `idle_seconds`."""
    size, last_change = -1, time.monotonic()
    while process.poll() is None:
        current = events.stat().st_size if events.exists() else 0
        if current != size:
            size, last_change = current, time.monotonic()
        elif time.monotonic() - last_change > idle_seconds:
            kill_group(process.pid)
            process.wait()
            return f"no progress for {idle_seconds:g} s"
        time.sleep(0.05)
    return ""


def kill_group(pgid: int):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
