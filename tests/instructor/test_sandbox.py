"""The sandbox the regrade runs student code in, attacked from the inside (grading/regrade/sandbox.py).

Each test puts hostile statements at the start of one student function, runs a call of it through the
real path (grading/checks.run_calls: bubblewrap, seccomp, limits, the judge's clock), and checks from
outside what the code could see, change, reach or leave behind. What the code found, it prints: the
sandbox's log is the instructor's, so the tests read it there. (Instructor-only; a few seconds each.)
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from grading.regrade import judge as checks
from grading.regrade import sandbox
from synthetic_submissions import ROOT, with_first_lines

sys.path.insert(0, str(ROOT / "tests"))
from autograde.probe import Call  # noqa: E402

FAST = sandbox.Limits(call_seconds=5, startup_seconds=90, run_seconds=120, output_mb=8, log_kb=64)
T = "models/transformer.py"


def template_models() -> dict:
    return {f"models/{path.name}": path.read_bytes() for path in (ROOT / "models").glob("*.py")}


def snapshot(folder) -> dict:
    return {str(path): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def run_attack(tmp_path, statements: list[str], lengths=(3,), qualname: str = "causal_mask"):
    """Runs causal_mask(n, n) for each n in `lengths`, with `statements` first in it (they may look at
    `query_length`): (outcomes, notes, log text). The sandbox's folder must be as it was after."""
    source = with_first_lines((ROOT / T).read_text(), T, qualname, statements)
    folder = tmp_path / "box"
    sandbox.write_probe_folder(folder, {**template_models(), T: source.encode()})
    before = snapshot(folder)
    plan = [Call("transformer:causal_mask", None, [length, length]) for length in lengths]
    outcomes, notes, log = checks.run_calls(plan, folder, FAST, sandbox.seccomp_program(),
                                            time.monotonic() + FAST.run_seconds)
    assert snapshot(folder) == before, "the sandbox changed its own read-only folder"
    return outcomes, notes, log.decode(errors="replace")


def findings(log: str) -> dict:
    (line,) = [line for line in log.splitlines() if line.startswith("FINDINGS ")]
    return json.loads(line[len("FINDINGS "):])


def report(body: str) -> list[str]:
    """Statements that run `body` (which fills the dict `found`) and print it for the test to read."""
    return ["import json, os", "found = {}", *body.strip().splitlines(), "print('FINDINGS ' + json.dumps(found), flush=True)"]


def nothing_left_behind(tmp_path):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return str(tmp_path / "box") not in listing


@pytest.fixture(scope="module", autouse=True)
def sandbox_works():
    sandbox.check_available()


def test_no_instructor_file_no_oracle_and_no_hidden_test_is_visible_inside(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the grades")
    paths = [str(ROOT / "models" / "transformer.py"), str(ROOT / "tests" / "hidden" / "test_q1_hidden.py"),
             str(ROOT / "autograde" / "oracles.py"), str(secret), "/etc/shadow", os.path.expanduser("~/.bashrc")]
    outcomes, _, log = run_attack(tmp_path, report(f'''
for path in {paths!r}:
    try:
        open(path, "rb").read()
        found[path] = "read"
    except Exception as error:
        found[path] = type(error).__name__
for name in ("autograde.oracles", "oracles", "autograde.harness", "grading", "hidden", "autograde.plugin"):
    try:
        __import__(name)
        found[name] = "imported"
    except Exception as error:
        found[name] = type(error).__name__
found["/sandbox"] = sorted(os.listdir("/sandbox"))
found["/sandbox/autograde"] = sorted(os.listdir("/sandbox/autograde"))
'''))
    seen = findings(log)
    assert outcomes[0].meta["status"] == "ok"
    assert all(seen[path] in ("FileNotFoundError", "PermissionError") for path in paths), seen
    assert all(seen[name] == "ModuleNotFoundError" for name in ("autograde.oracles", "oracles",
                                                                 "autograde.harness", "grading", "hidden",
                                                                 "autograde.plugin")), seen
    assert seen["/sandbox"] == ["autograde", "models", "probe_main.py"]
    assert seen["/sandbox/autograde"] == ["__init__.py", "probe.py"]


def test_writes_reach_nothing_outside_and_nothing_of_the_sandboxes_own_files(tmp_path):
    outside = tmp_path / "outside" / "was_here.txt"
    outside.parent.mkdir()
    site_packages = [path for path in sys.path if path.endswith("site-packages")][0]
    targets = [str(outside), "/sandbox/models/transformer.py", "/sandbox/probe_main.py",
               f"{site_packages}/zz_evil.pth", "/usr/lib/evil", "/tmp/scratch.txt"]
    # Global kernel settings: opened for writing only (never written), which the kernel refuses to anyone
    # but the machine's root. (A sandbox whose user were root outside it could rewrite core_pattern.)
    settings = ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/hostname"]
    outcomes, _, log = run_attack(tmp_path, report(f'''
for path in {targets!r}:
    try:
        with open(path, "w") as file:
            file.write("was here")
        found[path] = "written"
    except Exception as error:
        found[path] = type(error).__name__
for path in {settings!r}:
    try:
        os.close(os.open(path, os.O_WRONLY))
        found[path] = "written"
    except Exception as error:
        found[path] = type(error).__name__
found["uid"] = os.getuid()
'''))
    seen = findings(log)
    assert outcomes[0].meta["status"] == "ok"
    assert seen.pop("/tmp/scratch.txt") == "written"  # its own tmpfs, gone with it
    assert seen.pop("uid") == 65534
    assert "written" not in seen.values(), seen
    assert not outside.exists() and not os.path.exists(f"{site_packages}/zz_evil.pth")


def test_no_network_not_even_the_graders_own_loopback(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted = []

    def accept():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not accepted:
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    listener = threading.Thread(target=accept, daemon=True)
    listener.start()
    port = server.getsockname()[1]
    outcomes, _, log = run_attack(tmp_path, report(f'''
import socket
for host, port in (("127.0.0.1", {port}), ("192.0.2.1", 9)):
    try:
        socket.create_connection((host, port), timeout=2).close()
        found[host] = "connected"
    except Exception as error:
        found[host] = type(error).__name__
try:
    socket.getaddrinfo("example.com", 80)
    found["dns"] = "resolved"
except Exception as error:
    found["dns"] = type(error).__name__
'''))
    accepted.append(None)
    listener.join()
    server.close()
    seen = findings(log)
    assert outcomes[0].meta["status"] == "ok"
    assert "connected" not in seen.values() and seen["dns"] != "resolved", seen
    assert accepted == [None], "a connection reached the grader's machine"


def test_no_process_can_start_threads_still_can_and_nothing_is_left_behind(tmp_path):
    outcomes, _, log = run_attack(tmp_path, report('''
import ctypes, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
attempts = {"fork": lambda: os.fork(), "popen": lambda: subprocess.Popen(["/usr/bin/sleep", "60"]),
            "system": lambda: os.system("/usr/bin/sleep 60 &"), "raw fork": lambda: libc.syscall(57),
            "raw clone3": lambda: libc.syscall(435, 0, 0), "setsid and fork": lambda: (os.setsid(), os.fork())}
for name, attempt in attempts.items():
    try:
        result = attempt()
        found[name] = "started" if result not in (-1, 127, 32512) and not (isinstance(result, int) and result < 0) else f"refused {ctypes.get_errno()}"
    except Exception as error:
        found[name] = type(error).__name__
thread = threading.Thread(target=lambda: found.__setitem__("thread", "ran"))
thread.start()
thread.join()
'''))
    seen = findings(log)
    assert outcomes[0].meta["status"] == "ok"
    assert seen.pop("thread") == "ran"
    assert "started" not in seen.values(), seen
    assert nothing_left_behind(tmp_path)


def test_a_hang_is_stopped_at_the_call_limit_even_while_it_writes_to_every_pipe_and_the_next_call_runs(tmp_path):
    started = time.monotonic()
    outcomes, notes, _ = run_attack(tmp_path, [
        "import os, time",
        "while query_length == 3:",
        "    for fd in map(int, os.listdir('/proc/self/fd')):",
        "        try: os.write(fd, b'x') if fd > 2 else None",  # 'progress' the grader must not count
        "        except OSError: pass",
        "    time.sleep(0.2)"], lengths=(3, 2))
    assert outcomes[0].meta["status"] in ("timeout", "crashed") and outcomes[1].meta["status"] == "ok"
    assert time.monotonic() - started < 2 * FAST.startup_seconds
    assert notes and nothing_left_behind(tmp_path)


def test_memory_past_the_limit_fails_that_call_only(tmp_path):
    outcomes, _, _ = run_attack(tmp_path, ["if query_length == 3:", "    hog = torch.ones(2 ** 33)"],  # 32 GB
                                lengths=(3, 2))
    assert outcomes[0].meta["status"] == "error" and outcomes[1].meta["status"] == "ok"


def test_a_flood_of_output_is_cut_to_the_log_limit_and_the_call_still_counts(tmp_path):
    outcomes, _, log = run_attack(tmp_path, ["import sys", "for _ in range(30):", "    sys.stdout.write('spam ' * 200_000)"])
    assert outcomes[0].meta["status"] == "ok"
    assert len(log.encode()) < (FAST.log_kb << 10) + 1000 and "bytes of output left out" in log


def test_garbage_on_the_result_pipe_ends_the_run_as_a_crash_not_a_grade(tmp_path):
    outcomes, _, _ = run_attack(tmp_path, [
        "import os, struct",
        "for fd in map(int, os.listdir('/proc/self/fd')):",
        "    try: os.write(fd, struct.pack('<Q', 2 ** 40) + b'{}') if fd > 2 else None",
        "    except OSError: pass"])
    assert outcomes[0].meta["status"] in ("crashed", "not run", "timeout")


def test_signals_reach_nothing_outside_and_a_killed_probe_leaves_no_process(tmp_path):
    outcomes, _, _ = run_attack(tmp_path, ["import os, signal", "for pid in (1, -1, os.getpid()):",
                                           "    try: os.kill(pid, signal.SIGKILL)", "    except OSError: pass"])
    assert outcomes[0].meta["status"] in ("crashed", "not run")
    assert nothing_left_behind(tmp_path)


def test_the_regrade_refuses_in_one_line_where_the_sandbox_cannot_run(tmp_path):
    tools = tmp_path / "bin"  # git, but no bwrap, on the PATH
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git"))
    submission = tmp_path / "alice"
    subprocess.run(["git", "init", "-q", str(submission)], check=True)
    env = {**os.environ, "PATH": str(tools)}
    result = subprocess.run([sys.executable, "-m", "grading", "regrade", str(submission), "--out",
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs bwrap" in lines[0] and "apt-get install bubblewrap" in lines[0], lines


def stand_in_request(name: str, params: dict, config: dict, args: list) -> tuple[dict, bytes]:
    from autograde import probe

    packer = probe.Packer()
    request = {"event": "stand-in", "name": name, "config": packer.value(config), "args": packer.value(args),
               "params": {key: packer.ref(value) for key, value in params.items()}}
    return request, probe.pack_tensors(packer.tensors)


def replied(reply: bytes) -> bool:
    size = int.from_bytes(reply[:8], "little")
    return json.loads(reply[8:8 + size])["ok"]


def test_the_grader_answers_a_stand_in_only_for_the_running_targets_callees_and_only_a_small_one():
    import torch

    attention = {f"{name}.{part}": torch.randn(8, 8) if part == "weight" else torch.randn(8)
                 for name in ("W_q", "W_k", "W_v", "W_o") for part in ("weight", "bias")}
    x = torch.randn(2, 5, 8)
    answer = checks.stand_in_server([Call("transformer:EncoderLayer.forward", None, [])])
    config = {"num_heads": 2, "causal": False}
    assert replied(answer(0, *stand_in_request("transformer:MultiHeadAttention.forward", attention, config, [x, x, x])))
    refused = [  # the target itself, a function it does not call, an unknown one, bad attributes, too much work
        ("transformer:EncoderLayer.forward", {}, {"num_heads": 2}, [x]),
        ("mamba:MambaBlock.forward", {}, {}, [x]),
        ("transformer:nothing", {}, {}, [x]),
        ("transformer:MultiHeadAttention.forward", attention, {"num_heads": "2"}, [x, x, x]),
        ("transformer:MultiHeadAttention.forward", attention, {"num_heads": 1000}, [x, x, x]),
        ("transformer:MultiHeadAttention.forward", attention, {"num_heads": 64, "causal": False},
         [torch.randn(1, 4096, 8)] * 3),
    ]
    for name, params, config, args in refused:
        assert not replied(answer(0, *stand_in_request(name, params, config, args))), name



def test_the_grader_refuses_a_stand_in_over_any_size_limit_and_answers_one_just_under():
    """A scan (no attention-work bound applies) with one tensor past each limit: a sequence longer than
    LENGTH_LIMIT, a tensor past ELEMENT_LIMIT, a request past TOTAL_LIMIT in tensors each under the rest."""
    import torch

    answer = checks.stand_in_server([Call("mamba:MambaBlock.selective_scan", None, [])])

    def scan(*shape, count=2):
        return replied(answer(0, *stand_in_request("mamba:pscan", {}, {}, [torch.zeros(shape) for _ in range(count)])))

    assert scan(1, checks.LENGTH_LIMIT, 2)
    assert not scan(1, checks.LENGTH_LIMIT + 1, 2)
    assert not scan(1, 8, checks.ELEMENT_LIMIT // 8 + 1)
    width = checks.TOTAL_LIMIT // 64  # 8 tensors of 8 x width: TOTAL_LIMIT exactly, each under ELEMENT_LIMIT
    assert 8 * (width + 1) <= checks.ELEMENT_LIMIT
    assert scan(1, 8, width, count=8)
    assert not scan(1, 8, width + 1, count=8)
