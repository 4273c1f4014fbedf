"""The judge: the graded tests (public and hidden) run in the grader's process, without the student's code.

Each graded test is a function of a `case` (autograde/harness.py). Here it runs once per regrade with a
case that only *records* the calls it makes of the student's code, and computes its expected values from
the oracles at once. The calls go, as data, to the sandbox (grading/regrade/sandbox.py); what comes back
(tensors, and a few validated facts such as "it raised a TypeError at line 12") is put into the recorded
calls, and the same test's expectations give the verdict and the message. This process imports the
instructor's tests and the trusted copy of the models (for the given `__init__`s), never a submission's
files. It also answers the stand-in requests of the calls (autograde/standins.py), with limits on what one
request may make it compute, so that no submission can make it run out of memory or time.
"""

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from autograde import standins, wire
from grading.errors import GradingError
from grading.regrade import sandbox

TEST_FOLDERS = ("graded", "hidden")  # under tests/
NAME = re.compile(r"(output(\.\d{1,2}){0,2}|read\.[A-Za-z_][A-Za-z0-9_]{0,40}|grad\.\d{1,2}|"
                  r"grad\.param\.[A-Za-z_][A-Za-z0-9_.]{0,80})(::re|::im)?")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
META_KINDS = {"status": str, "error": str, "not_implemented": bool, "given_scan": bool, "stand_in_refused": bool,
              "device_used": bool, "file": str, "line": int,
              "torch_calls": int, "kinds": dict, "devices": dict}
RESULT_LIMIT = 1 << 22  # values in one call's tensors: the tests' own outputs have a few thousand


class CheckError(GradingError):
    """A graded test cannot be planned (a mistake in the test itself): said in one line."""


@dataclass
class Check:
    name: str
    file: str  # test_q1_transformer.py
    question: str  # Q1
    points: float
    readme: str
    hidden: bool
    function: object


def question_of(file: str) -> str:
    parts = Path(file).stem.split("_")
    return parts[1].upper() if len(parts) > 1 and parts[1][:1] == "q" else Path(file).stem


def graded_checks(repo: Path) -> list[Check]:
    """Every graded test function of the instructor's tests/graded and tests/hidden, with its points."""
    tests = str(repo / "tests")
    for path in (str(repo), tests):
        if path not in sys.path:
            sys.path.insert(0, path)
    checks = []
    for folder in TEST_FOLDERS:
        for path in sorted((repo / "tests" / folder).glob("test_*.py")):
            module = importlib.import_module(f"{folder}.{path.stem}")
            for name, function in vars(module).items():
                marks = [mark for mark in getattr(function, "pytestmark", []) if mark.name == "points"]
                if name.startswith("test_") and callable(function) and marks:
                    checks.append(Check(name, path.name, question_of(path.name), float(marks[0].args[0]),
                                        marks[0].kwargs.get("readme") or "", folder == "hidden", function))
    return checks


def plan(check: Check, secret: int):
    """The check's case with its calls recorded (not run) and its expected values computed, its inputs
    drawn with `secret` (see harness.Case)."""
    from autograde.harness import Case

    case = Case(check.name, run_now=False, hidden=check.hidden, secret=secret)
    try:
        check.function(case)
    except Exception as error:
        raise CheckError(f"the graded test {check.name} cannot be planned: {type(error).__name__}: {error}") from None
    return case


# --- what comes back from the sandbox, believed only as far as it can be checked ---------------------------


def clean_meta(meta) -> dict:
    """The facts the probe reports about a call, of the right types only (the rest is dropped)."""
    if not isinstance(meta, dict):
        return {"status": "error", "error": "probe"}
    clean = {}
    for key, kind in META_KINDS.items():
        value = meta.get(key)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            clean[key] = value
    if clean.get("status") not in ("ok", "error"):
        clean["status"] = "error"
    for key in ("error", "file"):
        if key in clean and not WORD.fullmatch(clean[key]):
            del clean[key]
    if "kinds" in clean:
        clean["kinds"] = {k: v for k, v in list(clean["kinds"].items())[:64]
                          if isinstance(k, str) and NAME.fullmatch(k) and isinstance(v, str) and WORD.fullmatch(v)}
    if "devices" in clean:
        clean["devices"] = {k: clean_device(v) for k, v in list(clean["devices"].items())[:16]
                            if isinstance(k, str) and NAME.fullmatch(k) and clean_device(v)}
    return clean


def clean_device(fact) -> dict:
    """{"device", "dtype", "shape"} of a tensor the probe could not send, if every part is plain."""
    if not isinstance(fact, dict):
        return {}
    device, dtype, shape = fact.get("device"), fact.get("dtype"), fact.get("shape")
    if device not in ("meta", "cuda", "mps") or not (isinstance(dtype, str) and WORD.fullmatch(dtype)) or not (
            isinstance(shape, list) and len(shape) <= 8 and all(type(n) is int and 0 <= n < 1 << 31 for n in shape)):
        return {}
    return {"device": device, "dtype": dtype, "shape": shape}


def load_tensors(blob, any_names: bool = False, limit: int = RESULT_LIMIT) -> dict:
    """The tensors of one message, by their names; anything misnamed is dropped, and a message of more than
    `limit` values in all is dropped whole (a result's names are "output", "read.x", "grad.i"; a stand-in
    request's are the sender's references, checked when used)."""
    from safetensors.torch import load

    if not blob:
        return {}
    try:
        tensors = load(blob)
    except Exception:  # safetensors' own parser refused it
        return {}
    if sum(tensor.numel() for tensor in tensors.values()) > limit or any(t.dim() > 8 for t in tensors.values()):
        return {}
    return wire.from_real({name: tensor for name, tensor in tensors.items()
                           if (any_names and WORD.fullmatch(name.replace("::re", "").replace("::im", "")))
                           or NAME.fullmatch(name)})


# --- one submission --------------------------------------------------------------------------------------


@dataclass
class Verdict:
    outcome: str  # passed, failed, timeout, crashed, not run
    message: str


def stand_in_server(calls: list):
    """answer(call index, event, tensors blob) -> reply bytes: the trusted answer (or gradients) for a function
    the running call's target calls (probe.CALLEES), or a refusal. Events come from student code: the
    call's `standins.Server` checks names, types and sizes before any oracle sees them, and only the running
    call's server is kept."""
    refusal = wire.message({"type": "stand-in", "ok": False}, {})
    current = {}

    def server_for(index: int) -> standins.Server:
        if index not in current:
            call = calls[index]
            current.clear()
            current[index] = standins.Server(call.target, call.dropout_seed,
                                             call.module.state if call.module is not None else None)
        return current[index]

    def answer(index: int, event: dict, blob: bytes) -> bytes:
        server = server_for(index)
        try:
            tensors = load_tensors(blob, any_names=True, limit=standins.REQUEST_LIMIT)
            if event.get("event") == "stand-in":
                params = event.get("params")
                if not isinstance(params, dict):
                    return refusal
                params = {str(key): tensors[ref] for key, ref in params.items()}
                value = list(server.request(event.get("name"), params, wire.unpack_value(event.get("config"), tensors),
                                            wire.unpack_value(event.get("args"), tensors), event.get("grad_args", ()),
                                            event.get("grad_params", ()), event.get("keep") is True))
            else:
                value = server.backward(event.get("request"), wire.unpack_value(event.get("grads"), tensors))
            packer = wire.Packer()
            return wire.message({"type": "stand-in", "ok": True, "value": packer.value(value)}, packer.tensors)
        except Exception:  # whatever the request did wrong: refused, the call goes on (and fails)
            return refusal

    return answer


def run_calls(calls: list, folder: Path, limits: sandbox.Limits, program: bytes, deadline: float):
    """Outcomes for every call (wire.Outcome), run in the sandbox one at a time and restarted after a call
    that hangs or kills it; (outcomes, notes for the instructor, the probe's log)."""
    import json
    import time

    from autograde.probe import MODEL_MODULES

    outcomes, notes, logs, skip = [None] * len(calls), [], [], set()
    pending, attempts, barren = list(range(len(calls))), 0, 0
    answer_for = stand_in_server(calls)
    budget = sandbox.OutputBudget(limits.output_mb << 20)  # for all the runs: a restart does not refill it
    while (pending and attempts <= len(calls) + 2 and barren < 3 and time.monotonic() < deadline
           and budget.left > 0):
        attempts += 1
        runnable = [i for i in pending if calls[i].target.split(":")[0] not in skip]
        if not runnable:
            break
        run = sandbox.run_probe(folder, wire.frame(json.dumps({"skip": sorted(skip)}).encode()),
                                [wire.encode_call(calls[i]) for i in runnable],
                                lambda local, event, blob: answer_for(runnable[local], event, blob),
                                [name for name in MODEL_MODULES if name not in skip], limits, deadline, program,
                                budget)
        logs.append(run.log)
        for local, (meta, blob) in run.results.items():
            outcomes[runnable[local]] = wire.Outcome(clean_meta(meta), load_tensors(blob))
        if not run.finished:
            why = {"timeout": f"it ran for more than {limits.call_seconds:g} s",
                   "deadline": f"the submission's {limits.run_seconds:g} s were used up"}.get(run.ended, run.ended)
            status = "timeout" if run.ended in ("timeout", "deadline") else "crashed"
            if run.importing:
                skip.add(run.importing)
                notes.append(f"importing models/{run.importing}.py stopped the sandbox: {why}")
                if run.ended == "timeout":
                    why = f"importing models/{run.importing}.py took more than {limits.startup_seconds:g} s"
                for i in runnable:
                    if calls[i].target.startswith(run.importing + ":"):
                        outcomes[i] = wire.Outcome({"status": status, "why": why}, {})
            elif run.running is not None:
                outcomes[runnable[run.running]] = wire.Outcome({"status": status, "why": why}, {})
                notes.append(f"{calls[runnable[run.running]].target.split(':')[1]} stopped the sandbox: {why}")
            else:
                notes.append(f"the sandbox stopped before any call: {why}")
        before, pending = len(pending), [i for i in pending if outcomes[i] is None]
        barren = barren + 1 if len(pending) == before else 0  # three restarts that settle nothing: give up
    why = (f"the submission's {limits.run_seconds:g} s were used up" if time.monotonic() >= deadline
           else f"its calls had sent {limits.output_mb} MB of output in all" if budget.left <= 0
           else "the sandbox kept stopping before any call gave a result")
    for i in pending:
        outcomes[i] = wire.Outcome({"status": "not run", "why": why}, {})
    return outcomes, notes, b"".join(logs)


def judge(check: Check, case, sources: dict) -> Verdict:
    """The verdict on a planned case whose calls have their outcomes."""
    from autograde.harness import SourceResult
    from autograde.probe import function_source

    statuses = set()
    for result in case.results:
        if isinstance(result, SourceResult):
            short, qualname = result.target.split(":")
            result.outcome = wire.Outcome({"status": "ok", "source": function_source(sources.get(short), qualname)}, {})
        statuses.add(result.outcome.meta.get("status"))
    message = case.verdict().message
    if message is None:
        return Verdict("passed", "")
    outcome = next((kind for kind in ("crashed", "timeout", "not run") if kind in statuses), "failed")
    return Verdict(outcome, message)


def describe(checks: list[Check]) -> list[dict]:
    """The checks as the gradebook lists them."""
    return [{"name": check.name, "file": check.file, "question": check.question, "points": check.points,
             "readme": check.readme, "hidden": check.hidden} for check in checks]
