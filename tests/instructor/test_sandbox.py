"""The sandbox's parts on their own, without torch: the guard's audit hook, the watchdog, the runner's
events. (Instructor-only. A few seconds.)"""

import json
import subprocess
import sys
import textwrap

from grading import sandbox

GUARDED = textwrap.dedent('''
    import json, os, socket, subprocess, sys
    sys.path.insert(0, {harness!r})
    import guard
    log = os.open({log!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    guard.install(json.loads({config!r}), log)

    def attempt(name, action):
        try:
            action()
            print(name, "allowed")
        except PermissionError:
            print(name, "blocked")

    attempt("write-inside", lambda: open(os.path.join({tmp!r}, "ok.txt"), "w").write("fine"))
    attempt("write-outside", lambda: open({outside!r}, "w").write("no"))
    attempt("remove-outside", lambda: os.remove({existing!r}))
    attempt("read-hidden", lambda: open({secret!r}).read())
    attempt("list-hidden", lambda: os.listdir({secret_dir!r}))
    attempt("read-own-folder", lambda: open({own!r}).read())
    attempt("connect", lambda: socket.create_connection(("192.0.2.1", 9), timeout=1))
    attempt("resolve", lambda: socket.getaddrinfo("example.com", 80))
    attempt("start-a-process", lambda: subprocess.run(["true"]))
''')


def test_the_guard_blocks_writes_outside_reads_of_hidden_folders_the_network_and_processes(tmp_path):
    harness = sandbox.write_harness(tmp_path / "harness")
    folder = tmp_path / "work" / "alice"
    (folder / "tmp").mkdir(parents=True)
    (folder / "tree.txt").write_text("mine")
    instructor = tmp_path / "instructor"
    (instructor / "models").mkdir(parents=True)
    (instructor / "models" / "solution.py").write_text("answers")
    existing = tmp_path / "keep.txt"
    existing.write_text("keep")
    config = {"writable": [str(folder / "tmp")], "hidden": [str(instructor), str(tmp_path / "work")],
              "readable": [str(folder), str(harness), sys.prefix, sys.base_prefix]}
    log = tmp_path / "blocked.jsonl"
    script = GUARDED.format(harness=str(harness), log=str(log), config=json.dumps(config), tmp=str(folder / "tmp"),
                            outside=str(tmp_path / "outside.txt"), existing=str(existing),
                            secret=str(instructor / "models" / "solution.py"), secret_dir=str(instructor / "models"),
                            own=str(folder / "tree.txt"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    verdicts = dict(line.split() for line in result.stdout.splitlines())
    assert verdicts == {"write-inside": "allowed", "write-outside": "blocked", "remove-outside": "blocked",
                        "read-hidden": "blocked", "list-hidden": "blocked", "read-own-folder": "allowed",
                        "connect": "blocked", "resolve": "blocked", "start-a-process": "blocked"}, result.stderr
    assert not (tmp_path / "outside.txt").exists() and existing.exists()
    blocked = [json.loads(line)["blocked"] for line in log.read_text().splitlines()]
    assert len(blocked) == 7 and any("192.0.2.1" in item for item in blocked)


HANG = '''
import signal


def test_quick():
    pass


def test_hangs_and_ignores_the_timeout_signal():
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    while True:
        pass


def test_never_reached():
    pass
'''


def test_the_watchdog_kills_a_hang_the_test_timeout_cannot_stop_and_the_events_name_it(tmp_path):
    harness = sandbox.write_harness(tmp_path / "harness")
    folder = tmp_path / "alice"
    (folder / "tree").mkdir(parents=True)
    (folder / "tree" / "test_hang.py").write_text(HANG)
    events = folder / "events.jsonl"
    ended = sandbox.run_tests(folder / "tree", folder, harness, ["-p", "no:cacheprovider", "-q", "test_hang.py"],
                              sandbox.Limits(test_seconds=1, idle_seconds=3), [], events, folder / "out.log",
                              folder / "blocked.jsonl")
    assert ended.killed == "no progress for 3 s" and ended.returncode < 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    started = [line["nodeid"] for line in lines if line["event"] == "start"]
    finished = [line["nodeid"] for line in lines if line["event"] == "result"]
    assert started == ["test_hang.py::test_quick", "test_hang.py::test_hangs_and_ignores_the_timeout_signal"]
    assert finished == ["test_hang.py::test_quick"]
    assert ended.seconds < 30
