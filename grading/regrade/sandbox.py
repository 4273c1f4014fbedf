"""The sandbox a submission's code computes in, from the kernel: bubblewrap, seccomp and resource limits.

Student code runs only in `probe_main.py` (autograde/probe.py) inside `bwrap`, which gives it

- new mount, PID, network, IPC and UTS namespaces: no network at all, no view of other processes; and
  never root, not even outside: uid 65534 with no capabilities (by a user namespace when an ordinary user
  grades, by `setpriv` when root does: a user namespace's root would be the machine's root outside it,
  which owns /proc/sys);
- a file system of its own: a read-only view of /usr (and the /lib, /bin links), of the Python installation
  and of the few /etc files the dynamic linker reads; its folder (the template's models/ with the student's
  two files, and the probe) read-only; /tmp an empty tmpfs of limited size. Nothing else exists there: not
  the instructor's repository, not the hidden tests, not the other submissions, not the grades;
- no new processes: a seccomp filter refuses fork, vfork, clone without CLONE_THREAD and clone3 (threads
  still work), and the calls that widen the kernel's attack surface (ptrace, mount, unshare, setns, bpf,
  perf_event_open, keyctl, userfaultfd, io_uring, module and kexec loading);
- limits set before it starts (`prlimit`): address space, CPU seconds, the size of any file, open files,
  no core dumps; and inside, before any student code, the number of threads;
- `--die-with-parent` and `--new-session`: when the grader kills it, or dies, every process in it dies
  (the PID namespace's init goes, and the kernel kills the rest).

Its only output is data on a pipe (tensors, see probe.py), read here with a cap on its size, and its
stdout/stderr on another pipe, kept in part for the instructor's log. The wall clock is measured here,
never inside: each call has `call_seconds` from the moment it starts, and a run has `run_seconds` in all.

`check_available()` refuses, in one line, when the machine cannot give all of this: the grade of record
never falls back to running student code without the sandbox.
"""

import errno
import functools
import json
import os
import queue
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograde import wire
from grading.errors import GradingError

REPO = Path(__file__).resolve().parents[2]
SANDBOX_ROOT = "/sandbox"  # where the submission's folder appears inside
INSTALL_HINT = ("Debian/Ubuntu: sudo apt-get install bubblewrap; then python -m pip install -r "
                "requirements-dev.txt")


class SandboxUnavailable(GradingError):
    """The machine cannot run the sandbox: said in one line, with what to install or change."""


@dataclass(frozen=True)
class Limits:
    call_seconds: float = 30.0  # one call of the student's code (or importing one of their files)
    startup_seconds: float = 60.0  # the sandbox's Python and torch starting, and the student's files imported
    run_seconds: float = 300.0  # one submission's calls in all, restarts included
    memory_mb: int = 4096  # address space; torch alone maps about 0.8 GB
    output_mb: int = 64  # the data the probe sends back
    log_kb: int = 256  # its stdout and stderr kept for the instructor (first and last halves)
    tmp_mb: int = 64  # its /tmp, a tmpfs
    threads: int = 256  # threads (the kernel counts them per user: sandboxes of a regrade share the count)
    open_files: int = 256


# --- what the kernel must give ------------------------------------------------------------------------------


def seccomp_program() -> bytes:
    """The BPF filter (libseccomp, through pyseccomp): process creation and attack surface refused."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as error:
        raise SandboxUnavailable(f"the sandbox needs libseccomp and pyseccomp ({INSTALL_HINT}): {error}") from None
    program = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    refuse = seccomp.ERRNO(errno.EPERM)
    for name in ("fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
                 "pivot_root", "chroot", "unshare", "setns", "bpf", "perf_event_open", "keyctl", "add_key",
                 "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
                 "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "open_by_handle_at",
                 "name_to_handle_at", "acct", "swapon", "swapoff", "reboot", "syslog", "personality"):
        program.add_rule(refuse, name)
    # clone makes threads too: refuse only the calls without CLONE_THREAD (new processes)
    program.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, 0x00010000, 0))
    program.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # glibc then falls back to clone
    import tempfile

    with tempfile.TemporaryFile() as file:
        program.export_bpf(file)
        file.seek(0)
        return file.read()


def python_paths() -> list[str]:
    """The folders of this Python installation and its packages, outermost only."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages())}
    paths.add(os.path.realpath(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))))
    paths |= {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix)}  # the venv as named, if it is a link
    kept = sorted(p for p in paths if os.path.isdir(p))
    return [p for p in kept if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in kept)]


SANDBOX_UID = 65534  # nobody


def ancestors(path: str) -> list[str]:
    """/a/b/c -> [/a, /a/b]: the folders bwrap must make, traversable, before it binds /a/b/c."""
    parts = Path(path).parts[1:-1]
    return [str(Path("/", *parts[:i + 1])) for i in range(len(parts))]


def bwrap_command(folder: Path, limits: Limits, seccomp_fd: int) -> list[str]:
    """bwrap's arguments (up to the command) for a sandbox whose root shows `folder` read-only at /sandbox.

    The sandboxed process never runs as root, not even outside the sandbox: run by an ordinary user, bwrap
    makes a user namespace (uid 65534 inside is that user outside); run by root, bwrap keeps no user
    namespace (its uid 0 would be the machine's root, which owns /proc/sys) and `setpriv` turns the
    process into uid 65534 with no capabilities before Python starts."""
    as_root = os.geteuid() == 0
    if as_root:
        command = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        command = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
                   "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    command += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            command += ["--ro-bind", str(path), str(path)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime"):
        command += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    # The kernel's files and /tmp first: a Python installation that lives under /tmp (a CI checkout's venv)
    # is then bound on top of the fresh tmpfs instead of being hidden by it.
    command += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.tmp_mb << 20),
                "--tmpfs", "/tmp"]
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
    for path in python_paths():
        for parent in ancestors(path):
            if parent not in made and not parent.startswith("/usr/"):
                command += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        command += ["--ro-bind", path, path]
    command += ["--ro-bind", str(folder), SANDBOX_ROOT, "--chdir", SANDBOX_ROOT, "--seccomp", str(seccomp_fd)]
    environment = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "USER": "sandbox",
                   "LOGNAME": "sandbox", "MPLCONFIGDIR": "/tmp", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    for key, value in environment.items():
        command += ["--setenv", key, value]
    return command


def unprivileged(command: list[str]) -> list[str]:
    """What follows bwrap's `--`: under a root regrade, first setpriv drops to uid 65534 with no capabilities."""
    if os.geteuid() != 0:
        return command
    return ["/usr/bin/setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--", *command]


def limited(command: list[str], limits: Limits) -> list[str]:
    """The command under `prlimit`: the limits hold for bwrap and everything it starts."""
    cpu = int(limits.run_seconds * 2) + 60
    return [shutil.which("prlimit") or "prlimit", f"--as={limits.memory_mb << 20}", f"--cpu={cpu}",
            f"--fsize={limits.tmp_mb << 20}", "--core=0", f"--nofile={limits.open_files}", "--", *command]


def in_container() -> bool:
    """Whether this runs in a container: the regrade's image says so (PIGLATIN_CONTAINER), Docker and Podman
    leave a file at the root."""
    return bool(os.environ.get("PIGLATIN_CONTAINER")) or any(
        Path(marker).exists() for marker in ("/.dockerenv", "/run/.containerenv"))


# What a container runtime withholds by default, by what bubblewrap says when it meets it: (its words, the
# setting to give `docker run` or `podman run`). INSTRUCTOR.md, "Regrade in a container", explains each.
CONTAINER_SETTINGS = (
    (("Creating new namespace failed", "No permissions to create", "setting up uid map", "Can't set hostname"),
     "the runtime's seccomp profile refuses the namespace calls; run it with --security-opt seccomp=unconfined"),
    (("Can't mount proc",),
     "the runtime masks parts of /proc, so no fresh /proc can be mounted; run it with --security-opt "
     "systempaths=unconfined (Docker) or --security-opt unmask=ALL (Podman)"),
    (("Permission denied",),
     "AppArmor refuses the mounts; run it with --security-opt apparmor=unconfined"),
)


def container_setting(detail: str) -> str:
    """The container setting that bubblewrap's message `detail` asks for, in words."""
    if os.geteuid() == 0:
        return ("the regrade runs as root here, and a container's root lacks what bubblewrap needs; let the "
                "image's entry point start it (it leaves root), or run it with --user UID:GID")
    for words, setting in CONTAINER_SETTINGS:
        if any(word in detail for word in words):
            return setting
    return ("run it as INSTRUCTOR.md's 'Regrade in a container' says: --security-opt seccomp=unconfined, "
            "--security-opt systempaths=unconfined (Podman: unmask=ALL) and, where AppArmor runs, "
            "--security-opt apparmor=unconfined")


@functools.cache
def check_available() -> str:
    """A one-line description of the isolation, or SandboxUnavailable saying what is missing."""
    if sys.platform != "linux":
        raise SandboxUnavailable(f"the sandbox needs Linux (bubblewrap and seccomp), not {sys.platform}")
    for tool in ("bwrap", "prlimit") + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            raise SandboxUnavailable(f"the sandbox needs {tool}, which is not installed ({INSTALL_HINT})")
    program = seccomp_program()
    read, write = os.pipe()
    os.write(write, program)
    os.close(write)
    try:
        trial = subprocess.run(limited([*bwrap_command(Path("/usr"), Limits(), read), "--",  # never as root
                                        *unprivileged([sys.executable, "-I", "-S", "-c", "import os, sys; sys.exit(os.getuid() == 0)"])],
                                       Limits()),
                               pass_fds=(read,), capture_output=True, text=True, timeout=30)
    finally:
        os.close(read)
    if trial.returncode:
        detail = (trial.stderr.strip().splitlines() or ["no message"])[-1]
        if in_container():
            raise SandboxUnavailable(f"bubblewrap cannot make its sandbox in this container ({detail}): "
                                     f"{container_setting(detail)}")
        raise SandboxUnavailable(f"bubblewrap cannot make its namespaces here ({detail}); unprivileged user "
                                 f"namespaces must be allowed (sysctl kernel.unprivileged_userns_clone=1, or "
                                 f"kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu)")
    user = ("uid 65534, dropped by setpriv (the regrade runs as root)" if os.geteuid() == 0
            else "uid 65534 in a user namespace")
    return (f"bubblewrap: mount, PID, network, IPC and UTS namespaces, {user}, a read-only system, no new "
            f"processes (seccomp), limits on memory, CPU, threads, files, output and time")


# --- one run of the probe ---------------------------------------------------------------------------------


# The only code of ours in the sandbox: the probe and what it imports. No oracle, no test, no expected value.
PROBE_FILES = ("autograde/__init__.py", "autograde/probe.py", "autograde/wire.py", "autograde/dropout.py")


def write_probe_folder(folder: Path, models: dict[str, bytes]):
    """The sandbox's folder: the template's models/ with the student's files on top, and the probe (which
    holds no oracle and no expected value: stand-ins are answered from outside)."""
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "autograde").mkdir(parents=True, exist_ok=True)
    for path, content in models.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    # The package's own __init__ imports every model file; the probe needs only the two it grades.
    (folder / "models" / "__init__.py").write_text('"""The model files the probe grades."""\n')
    for path in PROBE_FILES:
        shutil.copyfile(REPO / path, folder / path)
    (folder / "probe_main.py").write_text(
        "import sys\n"
        f"sys.path[:0] = [{SANDBOX_ROOT!r}]\n"
        "from autograde import probe\n"
        "sys.exit(probe.sandbox_main())\n")
    for path in [folder, *folder.rglob("*")]:  # readable by the sandbox's uid, whoever grades
        path.chmod(0o755 if path.is_dir() else 0o644)


@dataclass
class Run:
    """What one sandbox run gave: results by call index, and how it ended."""

    results: dict = field(default_factory=dict)  # i -> (meta, tensors blob)
    imported: dict = field(default_factory=dict)  # module -> meta
    finished: bool = False
    running: int = None  # the call that was running when it ended, if any
    importing: str = None  # the file being imported when it ended, if any
    ended: str = ""  # why it ended early: "timeout", "deadline", or in the grader's words
    log: bytes = b""


class ProtocolError(GradingError):
    """The probe's output is not what the probe writes: the run is stopped."""


STAND_IN_LIMIT = 256  # stand-in requests (and their backward passes) one call may make
FRAME_LIMIT = 1 << 20  # a JSON frame from the sandbox
KNOWN_EVENTS = ("import", "imported", "stand-in", "stand-in-backward", "result", "finished")


class OutputBudget:
    """The bytes a submission's sandbox runs may still send (JSON and tensors alike), shared by every run of
    one side (public or hidden): a sandbox restarted after a crash does not start afresh."""

    def __init__(self, limit: int):
        self.limit, self.left = limit, limit

    def spend(self, size: int):
        self.left -= size
        if self.left < 0:
            raise ProtocolError(f"more than {self.limit >> 20} MB of output in all")


def read_frames(stream, events: queue.Queue, budget: OutputBudget):
    """Reads the probe's messages into `events` as (event dict, tensors blob or None), until the pipe closes
    or what comes breaks the protocol or spends more than the budget."""

    def counted(payload: bytes) -> bytes:
        budget.spend(len(payload) + 8)
        return payload

    try:
        while True:
            event = json.loads(counted(wire.read_frame(stream, FRAME_LIMIT)))
            if not isinstance(event, dict) or event.get("event") not in KNOWN_EVENTS:
                raise ProtocolError("a message of no kind the probe sends")
            tensors = event["event"] in wire.EVENTS_WITH_TENSORS
            blob = counted(wire.read_frame(stream, budget.limit)) if tensors else None
            events.put((event, blob))
    except EOFError:
        pass
    except Exception as error:  # anything it sent that cannot be read ends the run
        kind = type(error).__name__ if not isinstance(error, (ProtocolError, wire.FrameTooLarge)) else str(error)
        events.put(({"event": "protocol-error", "why": kind}, None))
    finally:
        events.put(({"event": "eof"}, None))


def keep_log(stream, limit: int, sink: list):
    """Keeps the first and last limit/2 bytes of the probe's stdout and stderr."""
    head, tail, dropped, half = bytearray(), bytearray(), 0, limit // 2
    while chunk := stream.read(65536):
        room = half - len(head)
        head += chunk[:room]
        tail += chunk[max(room, 0):]
        if len(tail) > half:
            dropped += len(tail) - half
            del tail[:len(tail) - half]
    note = f"\n[... {dropped} bytes of output left out ...]\n".encode() if dropped else b""
    sink.append(bytes(head) + note + bytes(tail))


def write_messages(stream, outbox: queue.Queue):
    """Writes what the grader sends, in order, until None; a dead sandbox only ends it."""
    try:
        while (message := outbox.get()) is not None:
            stream.write(message)
            stream.flush()
        stream.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


class _Stop(Exception):
    """The run ends here (run.ended says why, where it is not a plain end of output)."""


class _Session:
    """One run's conversation with the probe: the events it sends, the answers the grader writes."""

    def __init__(self, process, limits: Limits, deadline: float, run: Run, events_read: int, budget: OutputBudget):
        self.limits, self.deadline, self.run = limits, deadline, run
        self.events, self.log = queue.Queue(), []
        # The probe reads each answer before it asks again: one waiting answer more means it stopped reading.
        self.outbox = queue.Queue(maxsize=2)
        self.threads = [threading.Thread(target=read_frames, args=(os.fdopen(events_read, "rb"), self.events, budget),
                                         daemon=True),
                        threading.Thread(target=keep_log, args=(process.stdout, limits.log_kb << 10, self.log),
                                         daemon=True),
                        threading.Thread(target=write_messages, args=(process.stdin, self.outbox), daemon=True)]
        for thread in self.threads:
            thread.start()

    def send(self, message: bytes):
        try:
            self.outbox.put(message, timeout=max(0.1, min(self.limits.call_seconds, self.deadline - time.monotonic())))
        except queue.Full:
            self.run.ended = "it stopped reading the grader's answers"
            raise _Stop from None

    def next_event(self, since: float, budget: float):
        """The next event, or _Stop when the step that began at `since`, or the run, is out of time, or the
        output ended or broke the protocol."""
        while True:
            now = time.monotonic()
            left = min(budget - (now - since), self.deadline - now)
            if left <= 0:
                self.run.ended = "timeout" if now < self.deadline else "deadline"
                raise _Stop
            try:
                event, blob = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if event.get("event") == "protocol-error":
                self.run.ended = f"its output broke the probe's protocol ({event.get('why')})"
            if event.get("event") in ("eof", "protocol-error"):
                raise _Stop
            return event, blob

    def imports(self, modules: list):
        started = time.monotonic()  # Python, torch and the student's files share the start-up's time
        for module in modules:
            event, _ = self.next_event(started, self.limits.startup_seconds)
            if event != {"event": "import", "module": module}:
                raise _Stop
            self.run.importing = module
            event, _ = self.next_event(started, self.limits.startup_seconds)
            if event.get("event") != "imported" or event.get("module") != module:
                raise _Stop
            self.run.imported[module] = event.get("meta") if isinstance(event.get("meta"), dict) else {}
            self.run.importing = None

    def call(self, index: int, message: bytes, answer):
        """Sends one call and answers its stand-in requests until its result comes."""
        self.run.running, since, requests = index, time.monotonic(), 0
        self.send(message)
        while True:
            event, blob = self.next_event(since, self.limits.call_seconds)
            kind = event.get("event")
            if kind in ("stand-in", "stand-in-backward") and requests < STAND_IN_LIMIT:
                requests += 1
                self.send(answer(index, event, blob))
            elif kind == "result":
                self.run.results[index] = (event.get("meta"), blob)
                self.run.running = None
                return
            else:  # the grader's words only: nothing the probe sent is quoted
                self.run.ended = ("it asked for more stand-in answers than a call may" if kind.startswith("stand-in")
                                  else "it sent a message out of turn")
                raise _Stop


def run_probe(folder: Path, header: bytes, messages: list, answer, imports: list, limits: Limits,
              deadline: float, program: bytes, budget: OutputBudget = None) -> Run:
    """Runs the probe in the sandbox: sends `header`, waits for the student files in `imports` to be
    imported, then sends each call of `messages` (wire.encode_call) only when the one before has answered,
    and answers its stand-in requests with `answer(call index, event, tensors blob) -> reply bytes`.
    It stops when a step (an import, a call) overruns `call_seconds`, the output breaks the protocol or its
    caps (`budget`, by default `limits.output_mb` for this run alone), or `deadline` (time.monotonic())
    passes; the whole sandbox is killed then, and always at the end."""
    run = Run()
    budget = budget or OutputBudget(limits.output_mb << 20)
    events_read, events_write = os.pipe()
    seccomp_read, seccomp_write = os.pipe()
    os.write(seccomp_write, program)
    os.close(seccomp_write)
    settings = json.dumps({"events_fd": events_write, "rlimits": {"RLIMIT_NPROC": limits.threads}})
    command = limited([*bwrap_command(folder, limits, seccomp_read), "--setenv", "PIGLATIN_PROBE", settings, "--",
                       *unprivileged([sys.executable, "-I", "-B", f"{SANDBOX_ROOT}/probe_main.py"])], limits)
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               pass_fds=(events_write, seccomp_read), start_new_session=True)
    os.close(events_write)
    os.close(seccomp_read)
    session = _Session(process, limits, deadline, run, events_read, budget)
    try:
        session.send(header)
        session.imports(imports)
        for index, message in enumerate(messages):
            session.call(index, message, answer)
        session.send(wire.message({"type": "end"}))
        event, _ = session.next_event(time.monotonic(), limits.call_seconds)
        run.finished = event.get("event") == "finished"
    except _Stop:
        pass
    finally:
        try:
            session.outbox.put_nowait(None)
        except queue.Full:
            pass
        kill(process)
        for thread in session.threads:
            thread.join(timeout=5)
    run.log = session.log[0] if session.log else b""
    if not run.finished and not run.ended:
        code = process.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            run.ended = f"killed by {name}"
        else:
            run.ended = f"ended (exit status {code}) before it finished: os._exit, or a crash"
    return run


def kill(process: subprocess.Popen):
    """Kills bwrap's whole group; its PID namespace goes with it."""
    for target in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
