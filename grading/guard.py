"""An audit hook that keeps a student's code in its folder and off the network, and records what it tried.

Installed by grading/runner.py in the process that runs a submission's tests, before pytest or the
student's code is imported. Configured by a JSON object in the environment variable PIGLATIN_GUARD:

    writable   directories where files may be created, changed or removed (the submission's TMPDIR and HOME)
    hidden     directories that may not be read or listed (the instructor's tree, the other submissions, the
               regrade's output)
    readable   directories inside `hidden` that may be read all the same (this submission's own folder,
               the Python installation when it lives inside the instructor's tree)

Blocked: writing outside `writable`, reading or listing `hidden`, network connections and name lookups,
starting processes. Each refusal raises PermissionError in the student's code and appends one JSON line
to the log file descriptor the runner opened, so the gradebook can say what was tried.

This is not a security boundary: CPython's audit hooks stop Python code, not native code (ctypes, a
compiled extension) that makes the system calls itself. It stops the accidents and the casual attempts;
the network namespace (grading/sandbox.py) and the checks after the run back it up.
"""

import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# audit event -> indexes of the arguments that are paths written to
WRITE_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.link": (0, 1),
                "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
                "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.move": (1,)}
LIST_EVENTS = ("os.listdir", "os.scandir", "glob.glob", "os.chdir")
PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "pty.spawn")
NETWORK_EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind", "socket.getaddrinfo",
                  "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")


def _inside(path: str, roots) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


class Guard:
    def __init__(self, writable, hidden, readable, log_fd: int):
        real = os.path.realpath
        self.writable = [real(path) for path in writable] + ["/dev/null"]
        self.hidden = [real(path) for path in hidden]
        self.readable = [real(path) for path in readable]
        self.log_fd = log_fd

    def refuse(self, what: str):
        try:
            os.write(self.log_fd, (json.dumps({"blocked": what}) + "\n").encode())
        except OSError:
            pass
        raise PermissionError(f"blocked while grading: {what}")

    def _path(self, value):
        if isinstance(value, int) or value is None:
            return None  # a file descriptor: its path was checked when it was opened
        try:
            return os.path.realpath(os.fsdecode(os.fspath(value)))
        except (TypeError, ValueError):
            return None

    def check_write(self, value, event: str):
        path = self._path(value)
        if path is not None and not _inside(path, self.writable):
            self.refuse(f"{event}: write to {path}")

    def check_read(self, value, event: str):
        path = self._path(value if value is not None else ".")
        if path is not None and _inside(path, self.hidden) and not _inside(path, self.readable):
            self.refuse(f"{event}: read {path}")

    def __call__(self, event: str, args: tuple):
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            (self.check_write if writing else self.check_read)(path, "open")
        elif event in WRITE_EVENTS:
            for index in WRITE_EVENTS[event]:
                if index < len(args):
                    self.check_write(args[index], event)
        elif event in LIST_EVENTS:
            self.check_read(args[0] if args else None, event)
        elif event in NETWORK_EVENTS:
            if event == "socket.connect" or event == "socket.bind":
                import socket

                if getattr(args[0], "family", None) == socket.AF_UNIX:
                    return
            shown = args[1] if event in ("socket.connect", "socket.sendto", "socket.bind") and len(args) > 1 else args[0]
            self.refuse(f"{event}: network access to {shown!r}")
        elif event in PROCESS_EVENTS:
            self.refuse(f"{event}: starting a process ({args[0]!r})" if args else f"{event}: starting a process")


def install(config: dict, log_fd: int):
    """Installs the hook for the rest of this process (audit hooks cannot be removed)."""
    sys.addaudithook(Guard(config["writable"], config["hidden"], config["readable"], log_fd))
