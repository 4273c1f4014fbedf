"""The program that runs one submission's tests inside the sandbox, streaming each result as it comes.

    python runner.py EVENTS_FILE [pytest arguments ...]

It runs as a script copied next to guard.py (not from the instructor's tree, which the guard hides),
with the configuration in the environment (grading/sandbox.py sets it): it lowers its resource limits,
opens its two output files, installs the guard, then runs pytest in-process with a plugin that appends
one JSON line per event to EVENTS_FILE, unbuffered:

    {"event": "collected", "nodeid", "name", "file", "points", "readme", "hidden"}   one per graded test
    {"event": "collect_error", "nodeid", "message"}                                  a test file did not import
    {"event": "start", "nodeid"}                                                     a test begins
    {"event": "result", "nodeid", "outcome", "message"}                              it ended
    {"event": "finished"}                                                             pytest got to its end

So when the process dies (os._exit, a signal, the memory limit, the watchdog), every result before it
is kept, and the last "start" without a "result" names the test that killed it.
"""

import json
import os
import resource
import sys
from pathlib import Path

MESSAGE_LIMIT = 3000  # characters of a failure report kept; a flood of output must not reach the gradebook


def lower_limits(limits: dict):
    """Soft and hard limits, so the student's code cannot raise them again (unless it runs as root)."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


class Stream:
    """The pytest plugin: writes each event to the file descriptor as one line, as soon as it happens."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, **event):
        os.write(self.fd, (json.dumps(event) + "\n").encode())

    def pytest_collection_finish(self, session):
        for item in session.items:
            marker = item.get_closest_marker("points")
            if marker is not None:
                path = Path(str(item.fspath))
                self.write(event="collected", nodeid=item.nodeid, name=getattr(item, "originalname", None) or item.name,
                           file=path.name, points=float(marker.args[0]), readme=marker.kwargs.get("readme"),
                           hidden=path.parent.name == "hidden")

    def pytest_collectreport(self, report):
        if report.failed:
            lines = str(report.longrepr).strip().splitlines()
            self.write(event="collect_error", nodeid=report.nodeid, message="\n".join(lines[-8:]))

    def pytest_runtest_logstart(self, nodeid, location):
        self.write(event="start", nodeid=nodeid)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            if report.failed and "Timeout (>" in str(report.longrepr):
                outcome = "timeout"
            else:
                outcome = report.outcome
            message = str(report.longrepr) if report.longrepr else ""
            if len(message) > MESSAGE_LIMIT:
                message = message[:MESSAGE_LIMIT] + "\n… (cut)"
            self.write(event="result", nodeid=report.nodeid, when=report.when, outcome=outcome, message=message)

    def pytest_sessionfinish(self, session):
        self.write(event="finished")


def main(argv: list[str]) -> int:
    events_path, pytest_args = argv[0], argv[1:]
    settings = json.loads(os.environ.pop("PIGLATIN_SANDBOX"))
    lower_limits(settings["limits"])
    events = os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    blocked = os.open(settings["blocked_log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    import guard  # beside this script, which is sys.path[0]

    guard.install(settings["guard"], blocked)
    import pytest

    return pytest.main(pytest_args, plugins=[Stream(events)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
