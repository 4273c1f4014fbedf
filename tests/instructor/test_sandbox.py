"""The sandbox the regrade runs student code in, attacked from the inside (grading/regrade/sandbox.py).

Each test puts hostile statements at the start of one student function, runs a call of it through the
real path (grading/regrade/judge.run_calls: bubblewrap, seccomp, limits, the judge's clock), and checks from
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

from autograde import standins, wire
from autograde.wire import Call
from grading.regrade import judge as checks
from grading.regrade import sandbox
from synthetic_submissions import ROOT, with_first_lines

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
    assert seen["/sandbox/autograde"] == ["__init__.py", "dropout.py", "probe.py", "wire.py"]


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


def test_output_is_capped_for_the_whole_submission_not_for_each_restarted_sandbox(tmp_path):
    """Each run answers one call with 3 MB, then exits on the next call: a fresh sandbox per call. The judge
    keeps at most --output-limit (8 MB here) of it in all, not 3 MB for each of the restarts."""
    outcomes, _, _ = run_attack(tmp_path, [
        "import os", "global SENT", "SENT = globals().get('SENT', 0) + 1",
        "if SENT > 1: os._exit(3)",
        "return torch.ones(3 << 17, dtype=torch.float64)",  # 3 MB
    ], lengths=(2, 3, 4, 5, 6, 7, 8, 9))
    kept = sum(tensor.numel() * tensor.element_size() for outcome in outcomes for tensor in outcome.tensors.values())
    assert kept <= FAST.output_mb << 20, f"the judge kept {kept >> 20} MB"
    # a run: one call answered, the next one ends it; the fifth call would pass 8 MB, and the rest never run
    assert [outcome.meta["status"] for outcome in outcomes[:4]] == ["ok", "crashed", "ok", "crashed"]
    assert all("MB of output" in outcome.meta.get("why", "") for outcome in outcomes[4:]), \
        [outcome.meta for outcome in outcomes]


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


def stand_in_request(name: str, params: dict, config: dict, args: list, keep: bool = False) -> tuple[dict, bytes]:
    packer = wire.Packer()
    floating = [i for i, arg in enumerate(args) if hasattr(arg, "is_floating_point") and arg.is_floating_point()]
    request = {"event": "stand-in", "name": name, "config": packer.value(config), "args": packer.value(args),
               "params": {key: packer.ref(value) for key, value in params.items()}, "grad_args": floating,
               "grad_params": list(params), "keep": keep}
    return request, wire.pack_tensors(packer.tensors)


def replied(reply: bytes):
    """The answer's value, or None for a refusal."""
    size = int.from_bytes(reply[:8], "little")
    header = json.loads(reply[8:8 + size])
    if not header["ok"]:
        return None
    blob = reply[16 + size:]
    return wire.unpack_value(header["value"], wire.unpack_tensors(blob))


def attention_parameters(hidden: int = 8) -> dict:
    import torch

    return {f"{name}.{part}": torch.randn(hidden, hidden) if part == "weight" else torch.randn(hidden)
            for name in ("W_q", "W_k", "W_v", "W_o") for part in ("weight", "bias")}


def encoder_layer_call() -> Call:
    """A planned call of EncoderLayer.forward: its module's parameters are what a stand-in may be sent."""
    import torch

    from autograde.harness import Case

    handle = Case("plan", run_now=False).module("transformer:EncoderLayer", hidden_size=8, num_heads=2)
    return Call("transformer:EncoderLayer.forward", wire.ModuleSpec(handle.path, handle.kwargs, handle.params),
                [torch.randn(2, 5, 8)])


def test_the_grader_answers_a_stand_in_only_for_the_running_targets_callees_and_only_a_small_one():
    import torch

    call = encoder_layer_call()
    attention = {key[len("self_attention."):]: value for key, value in call.module.state.items()
                 if key.startswith("self_attention.")}
    x = torch.randn(2, 5, 8)
    answer = checks.stand_in_server([call])
    config = {"num_heads": 2, "causal": False}
    assert replied(answer(0, *stand_in_request("transformer:MultiHeadAttention.forward", attention, config, [x, x, x])))
    refused = [  # the target itself, a function it does not call, an unknown one, bad attributes, too much work,
        # parameters of shapes its module does not have
        ("transformer:EncoderLayer.forward", {}, {"num_heads": 2}, [x]),
        ("mamba:MambaBlock.forward", {}, {}, [x]),
        ("transformer:nothing", {}, {}, [x]),
        ("transformer:MultiHeadAttention.forward", attention, {"num_heads": "2"}, [x, x, x]),
        ("transformer:MultiHeadAttention.forward", attention, {"num_heads": 1000}, [x, x, x]),
        ("transformer:MultiHeadAttention.forward", attention, {"num_heads": 64, "causal": False},
         [torch.randn(1, 4096, 8)] * 3),
        ("transformer:MultiHeadAttention.forward", attention_parameters(4096 // 8), {"num_heads": 2}, [x, x, x]),
    ]
    for name, params, config, args in refused:
        assert replied(answer(0, *stand_in_request(name, params, config, args))) is None, name


def test_the_grader_refuses_a_stand_in_over_any_size_limit_and_answers_one_just_under():
    """One request just under and one just over each limit: a tensor's values (TENSOR_LIMIT), a sequence's
    length (LENGTH_LIMIT: the oracles loop over it), a request's values (REQUEST_LIMIT), and the work of a
    discretisation (B·L·E·N, WORK_LIMIT) made of small tensors."""
    import torch

    answer = checks.stand_in_server([Call("mamba:MambaBlock.selective_scan", None, []), Call("mamba:MambaBlock.ssm")])

    def asked(name, args, index=0, config=None):
        return replied(answer(index, *stand_in_request(name, {}, config or {}, args))) is not None

    def scan(*shape):
        return asked("mamba:pscan", [torch.zeros(shape), torch.zeros(shape)])

    assert scan(1, 16, standins.TENSOR_LIMIT // 16) and not scan(1, 16, standins.TENSOR_LIMIT // 16 + 1)
    assert scan(1, standins.LENGTH_LIMIT, 1) and not scan(1, standins.LENGTH_LIMIT + 1, 1)

    def selective(length, state=16, expanded=16):  # u, Δ (1, L, E), A (E, N), B, C (1, L, N), D (E,)
        u, delta = torch.randn(1, length, expanded), torch.rand(1, length, expanded)
        A, B, C, D = -torch.rand(expanded, state), torch.randn(1, length, state), torch.randn(1, length, state), \
            torch.randn(expanded)
        return asked("mamba:MambaBlock.selective_scan", [u, delta, A, B, C, D], index=1,
                     config={"discretization": "zoh", "alpha": 0.5})

    assert 4 * 4096 * 16 + 16 * 16 + 16 > standins.REQUEST_LIMIT >= 4 * 4090 * 16 + 16 * 16 + 16
    assert selective(4090) and not selective(4096)
    delta, A, B = torch.rand(1, 64, 256), torch.rand(256, 64) * -1, torch.rand(1, 64, 64)  # 1·64·256·64 = 2^20
    assert asked("mamba:discretize_bilinear", [delta, A, B, 0.5])
    assert not asked("mamba:discretize_bilinear", [delta, torch.cat([A, A], 1), torch.cat([B, B], 2), 0.5])


def test_the_grader_answers_a_backward_pass_only_for_a_request_it_kept_and_only_once():
    import torch

    answer = checks.stand_in_server([Call("mamba:MambaBlock.selective_scan", None, [])])
    log_a, b = -torch.rand(1, 6, 2, 3), torch.randn(1, 6, 2, 3)
    request_id, value = replied(answer(0, *stand_in_request("mamba:pscan", {}, {}, [log_a, b], keep=True)))
    packer = wire.Packer()
    grads = {"event": "stand-in-backward", "request": request_id, "grads": packer.value([torch.ones_like(value)])}
    blob = wire.pack_tensors(packer.tensors)
    grad_log_a, grad_b = replied(answer(0, grads, blob))
    leaf_a, leaf_b = log_a.clone().requires_grad_(), b.clone().requires_grad_()
    from autograde import oracles

    oracles.scan(leaf_a, leaf_b).sum().backward()
    torch.testing.assert_close(grad_b, leaf_b.grad)
    torch.testing.assert_close(grad_log_a, leaf_a.grad)
    assert replied(answer(0, grads, blob)) is None, "a kept request is answered backwards once"
    not_kept, _ = replied(answer(0, *stand_in_request("mamba:pscan", {}, {}, [log_a, b])))
    assert replied(answer(0, {**grads, "request": not_kept}, blob)) is None
    wrong_shape = wire.Packer()
    kept, _ = replied(answer(0, *stand_in_request("mamba:pscan", {}, {}, [log_a, b], keep=True)))
    assert replied(answer(0, {"event": "stand-in-backward", "request": kept,
                              "grads": wrong_shape.value([torch.ones(4096, 4096)])},
                          wire.pack_tensors(wrong_shape.tensors))) is None


def test_a_probe_that_stops_reading_the_graders_answers_ends_its_run(tmp_path):
    """Stand-in requests sent without reading the answers, each the largest the grader answers: the answers
    must not pile up in the grader (the probe reads each one before it asks again), so one waiting answer
    more ends the run, in the grader's own words."""
    import torch

    attack = [
        "import json, sys",
        "from autograde import wire",
        "fd = sys.modules['autograde.probe'].BACKEND.output_fd",
        "packer = wire.Packer()",
        "request = {'event': 'stand-in', 'name': 'transformer:MultiHeadAttention.split_heads', 'config': {'num_heads': 2},",
        "           'args': packer.value([torch.zeros(1, 16, 1024)]), 'params': {}, 'keep': False}",
        "blob = wire.pack_tensors(packer.tensors)",
        "for _ in range(100):",
        "    wire.write_frame(fd, json.dumps(request).encode())",
        "    wire.write_frame(fd, blob)",
        "import time",
        "time.sleep(60)"]
    source = with_first_lines((ROOT / T).read_text(), T, "MultiHeadAttention.forward", attack)
    folder = tmp_path / "box"
    sandbox.write_probe_folder(folder, {**template_models(), T: source.encode()})
    from autograde.harness import Case

    handle = Case("plan", run_now=False).module("transformer:MultiHeadAttention", hidden_size=8, num_heads=2)
    x = torch.randn(1, 3, 8)
    plan = [Call("transformer:MultiHeadAttention.forward", wire.ModuleSpec(handle.path, handle.kwargs, handle.params),
                 [x, x, x])]
    started = time.monotonic()
    outcomes, notes, _ = checks.run_calls(plan, folder, FAST, sandbox.seccomp_program(),
                                          time.monotonic() + FAST.run_seconds)
    assert outcomes[0].meta["status"] == "crashed", outcomes[0].meta
    assert notes and "it stopped reading the grader's answers" in notes[0]
    assert time.monotonic() - started < FAST.startup_seconds + 2 * FAST.call_seconds
