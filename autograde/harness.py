"""How a graded test is written once and run two ways.

A graded test is a function of a `case`. It builds modules and inputs through the case, asks it to run
your code (`case.call`, which gives back *values*), and states what those values must be
(`case.expect_close`, `case.expect`). The case then gives the verdict with a message that says what was
compared, on which inputs, what was expected, what came out, where and by how much they differ, the
tolerance, and — only where one of the rules in autograde/diagnoses.py is sure — the likely cause.

- Under pytest, in your process (`python -m pytest tests/graded`), every call runs at once
  (autograde/probe.py) and the verdict comes when the test function returns.
- In the course staff's regrade, the same function runs in the grader's process without your code: the
  calls are only recorded, sent as data to a sandbox that runs them on your code and sends back tensors,
  and the verdict is reached outside the sandbox, from the values alone. Nothing your code does inside
  the sandbox can change how the values are compared, or the message you read.

Most graded tests are one line, `check(case, FUNCTION)` (autograde/uniform.py), which runs the same
battery on every function you write; a few add what that battery cannot see (no loop over time).
"""

import builtins
import hashlib
import math
import re
from dataclasses import dataclass, field

import torch

from autograde import diagnoses, oracles, probe, standins, wire

README_SECTION = re.compile(r"README: (.+)")

if probe.BACKEND is None:  # in this process the stand-ins' answers come from the oracles themselves
    probe.BACKEND = standins.LocalBackend()

# test name -> the functions its calls ran (their targets): what a mistake there can cost
TARGETS_RUN: dict = {}


class GradedFailure(AssertionError):
    """A graded check that missed: its message is all the student needs to see; `diagnoses` holds (rule, cause)
    of the rules that gave a likely cause (autograde/diagnoses.py), for the project's own tests of them."""

    def __init__(self, message: str, diagnoses: tuple = ()):
        super().__init__(message)
        self.diagnoses = tuple(diagnoses)


class CallProblem(Exception):
    """A value that cannot be compared: the call raised, timed out, or returned something else. A `whole`
    problem (a function not written yet) is the whole story: the message is just it, the same in every test."""

    def __init__(self, message: str, whole: bool = False):
        super().__init__(message)
        self.whole = whole


def seed_of(*parts) -> int:
    """A 63-bit seed that depends on every bit of every part (names, and the regrade's secret)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --- values: what a call gave, now (in your process) or later (from the sandbox) ---------------------------


class Result:
    """The outcome of one call of your code; its parts are `Value`s."""

    def __init__(self, call: wire.Call, label: str):
        self.call, self.label = call, label
        self.outcome: wire.Outcome = None  # set when the call has run

    @property
    def output(self) -> "Value":
        return Value(self, "output")

    def item(self, index: int) -> "Value":
        """Element `index` of a returned tuple."""
        return Value(self, f"output.{index}")

    def read(self, attribute: str) -> "Value":
        """A module attribute after the call (e.g. attention_weights)."""
        return Value(self, f"read.{attribute}")

    def grad(self, index: int) -> "Value":
        """The gradient with respect to argument `index` (see Case.call's grad_of); zeros where none came."""
        return Value(self, f"grad.{index}")

    def grad_param(self, name: str) -> "Value":
        """The gradient with respect to the module's parameter `name`; zeros where none came."""
        return Value(self, f"grad.param.{name}")

    @property
    def torch_calls(self) -> "Value":
        return Value(self, "torch_calls")

    @property
    def device_used(self) -> "Value":
        """Whether the device the call was given reached a torch function (probe.DeviceSpy)."""
        return Value(self, "device_used")


class SourceResult(Result):
    """The source of one function you write, read as text (never run): in your process from models/*.py,
    in the regrade from the file in your repository."""

    def __init__(self, target: str):
        super().__init__(None, f"the source of {target.split(':', 1)[1]}")
        self.target = target

    @property
    def text(self) -> "Value":
        return Value(self, "source")


def _raised(problem: "CallProblem", what: str, facet: str, where: dict) -> diagnoses.Checked:
    """A check that could not look: the call failed, or the part it reads is missing or of another type."""
    message = str(problem) if problem.whole else f"{what}: {problem}"
    return diagnoses.Checked(False, message, facet, dict(where or {}), whole=problem.whole, raised=True)


@dataclass
class Value:
    """A named part of a Result, with indexing or a function applied once it is known."""

    result: Result
    name: str
    steps: tuple = ()
    like: torch.Tensor = None  # for a gradient: what a missing one is (zeros of this shape and dtype)

    def __getitem__(self, index) -> "Value":
        return Value(self.result, self.name, self.steps + (("index", index),), self.like)

    def parts(self) -> int:
        """How many items the probe saw in this part, a tuple or a list (0 for anything else)."""
        outcome = self.result.outcome
        if outcome is None or outcome.meta.get("status") != "ok":
            return 0
        names = {*outcome.tensors, *outcome.meta.get("kinds", {}), *outcome.meta.get("devices", {})}
        prefix = f"{self.name}."
        return len({name[len(prefix):].split(".")[0] for name in names if name.startswith(prefix)})

    def fact(self, key: str):
        """What the probe said of this part when it is not a tensor on the CPU: its type or its device."""
        outcome = self.result.outcome
        if outcome is None or outcome.meta.get("status") != "ok":
            return None
        if key == "kind":
            return outcome.meta.get("kinds", {}).get(self.name)
        return outcome.meta.get("devices", {}).get(self.name)

    def resolve(self):
        outcome = self.result.outcome
        if outcome is None:
            raise CallProblem(f"{self.result.label} did not run")
        if outcome.meta.get("status") != "ok":
            raise CallProblem(describe_failed_call(self.result), whole=outcome.meta.get("not_implemented") is True)
        if self.name == "source":
            value = outcome.meta.get("source")
            if not isinstance(value, str):
                raise CallProblem(f"{self.result.label} could not be read (does the file parse?)")
        elif self.name == "torch_calls":
            value = outcome.meta.get("torch_calls")
            if not isinstance(value, int):
                raise CallProblem(f"{self.result.label}: the number of torch operations was not recorded")
        elif self.name == "device_used":
            value = outcome.meta.get("device_used")
            if not isinstance(value, bool):
                raise CallProblem(f"{self.result.label}: whether the device was used was not recorded")
        elif self.name in outcome.tensors:
            value = outcome.tensors[self.name]
        elif self.name.startswith("grad.") and self.like is not None:
            value = torch.zeros_like(self.like)  # no gradient reached it
        else:
            device = outcome.meta.get("devices", {}).get(self.name)
            if isinstance(device, dict):
                raise CallProblem(f"{self.result.label}: {describe_part(self.name)} is on the "
                                  f"{device.get('device')} device, not the CPU")
            kind = outcome.meta.get("kinds", {}).get(self.name)
            what = describe_part(self.name)
            if kind is not None:  # only a type everyone knows is named: a class of the student's own is not
                named = kind if kind in KNOWN_TYPES else "an object of another type"
                raise CallProblem(f"{self.result.label}: {what} should be a tensor, got {named}")
            raise CallProblem(f"{self.result.label}: {what} is missing")
        for _, index in self.steps:
            value = value[index]
        return value


KNOWN_TYPES = {"NoneType", "tuple", "list", "dict", "int", "float", "bool", "str", "complex", "Parameter",
               "ndarray", "generator", "function", "method", "type", "module"}


def describe_part(name: str) -> str:
    if name == "output":
        return "the returned value"
    if name.startswith("output."):
        return f"element {name.split('.', 1)[1]} of the returned tuple"
    if name.startswith("read."):
        return f"self.{name.split('.', 1)[1]} after the call"
    if name.startswith("grad.param."):
        return f"the gradient with respect to {name.split('.', 2)[2]}"
    if name.startswith("grad."):
        return f"the gradient with respect to argument {name.split('.', 1)[1]}"
    return name


def section_of(target: str) -> str:
    """The README section named in the target function's docstring (the trusted copy's, in the regrade)."""
    try:
        _, owner, name = probe.resolve(target)
        match = README_SECTION.search(getattr(owner, name).__doc__ or "")
        return match.group(1).strip() if match else ""
    except Exception:
        return ""


def describe_failed_call(result: Result) -> str:
    """What went wrong in a call, in words the grader writes (never text that came from the sandbox)."""
    meta, target = result.outcome.meta, result.call.target
    qualname = target.split(":", 1)[1]
    status = meta.get("status")
    if status == "timeout":
        return f"{qualname} did not finish within the time limit (an endless loop?)"
    if status == "crashed":
        return f"{qualname} ended the process that ran it ({meta.get('why', 'it died')})"
    if status == "not run":
        return f"{qualname} was not run: {meta.get('why', 'the sandbox stopped before it')}"
    if meta.get("not_implemented") is True:
        section = section_of(target)
        return f"{qualname} is not written yet (it raises NotImplementedError)" + (
            f": see README section '{section}'" if section else "")
    if meta.get("given_scan") is True:
        return ("pscan called one of the given scans (sscan, pair_scan): Q2.2 asks for a parallel scan of "
                "your own, in log space")
    if meta.get("stand_in_refused") is True:
        return (f"while {qualname} ran, the grader would not answer for another function it called: the call asked "
                f"for more than a graded test ever needs (a size, a count or a kind of argument)")
    error = meta.get("error")
    file, line = meta.get("file"), meta.get("line")
    at_line = isinstance(line, int) and not isinstance(line, bool)
    if error in ("SyntaxError", "IndentationError", "TabError") and file in probe.MODEL_MODULES:
        return f"models/{file}.py does not import: {error}" + (f" at line {line}" if at_line else "")
    exception = getattr(builtins, error, None) if isinstance(error, str) and error.isidentifier() else None
    kind = error if isinstance(exception, type) and issubclass(exception, BaseException) else "an exception"
    text = f"your code raised {kind} while running {qualname}"
    local = result.outcome.exception
    if local is not None:  # in your own process the message is yours to read
        message = str(local).strip().splitlines()[0] if str(local).strip() else ""
        text = f"your code raised {type(local).__name__}: {message}"
    if file in probe.MODEL_MODULES and at_line:
        text += f"\n  at models/{file}.py, line {line}"
    return text


# --- comparing ----------------------------------------------------------------------------------------------


def _show(tensor: torch.Tensor, limit: int = 6) -> str:
    flat = tensor.detach().flatten()
    shown = ", ".join(f"{value:.4g}" for value in flat[:limit].tolist())
    return f"[{shown}{', …' if flat.numel() > limit else ''}]"


def _apart(expected, got) -> str:
    """'expected e, got g' with as many digits as it takes to see them differ (a float32 rounding in a
    float64 result differs in the eighth)."""
    if isinstance(expected, complex) or isinstance(got, complex):
        return f"expected {expected:.6g}, got {got:.6g}"
    scale = max(abs(expected), abs(got), 1e-300)
    digits = 6 if expected == got else min(17, max(6, math.ceil(-math.log10(abs(expected - got) / scale)) + 2))
    return f"expected {expected:.{digits}g}, got {got:.{digits}g}"


def compare(actual, expected, *, atol, rtol, what, hidden):
    """None if |actual − expected| <= atol + rtol·|expected| everywhere, else the message: what differs,
    where and by how much (never why: that is autograde/diagnoses.py's)."""
    if not isinstance(actual, torch.Tensor):
        return f"{what}: expected a tensor of shape {tuple(expected.shape)}, got {type(actual).__name__}"
    if actual.is_complex() and not expected.is_complex():
        return f"{what}: expected a real tensor, got dtype {actual.dtype}"
    if actual.shape != expected.shape:
        return f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}"
    kind = torch.complex128 if expected.is_complex() else torch.float64
    actual, expected = actual.detach().to(kind), expected.detach().to(kind)
    if actual.numel() == 0:
        return None
    if not torch.isfinite(actual).all() and torch.isfinite(expected).all():
        where = tuple(int(i) for i in torch.nonzero(~torch.isfinite(actual))[0])
        count = int((~torch.isfinite(actual)).sum())
        message = f"{what}: {count} of {actual.numel()} values are not finite (inf or nan), the first at index {where}"
        if not hidden:
            message += f" where {expected[where].item():.6g} was expected"
        return message
    difference = (actual - expected).abs()
    allowed = atol + rtol * expected.abs()
    if (difference <= allowed).all():
        return None
    excess = difference - allowed  # the value shown is the one furthest outside the tolerance
    worst = tuple(int(i) for i in torch.nonzero(excess == excess.max())[0])
    lines = [f"{what} differs from the expected values"]
    off = f"{int((difference > allowed).sum())} of {difference.numel()} values are off"
    if not hidden:
        largest = difference.max().item()
        at = "" if difference[worst] == largest else f" ({largest:.3g} largest, where the tolerance allows it)"
        lines += [f"  expected {_show(expected)}", f"  got      {_show(actual)}",
                  f"  largest difference {difference[worst].item():.3g} at index {worst}{at} ("
                  f"{_apart(expected[worst].item(), actual[worst].item())}); {off}"]
    else:
        lines.append(f"  largest difference {difference.max().item():.3g}; {off} (a hidden test: its inputs' "
                     f"values are not shown)")
    lines.append(f"  tolerance: |got - expected| <= {atol:g} + {rtol:g} * |expected|")
    return "\n".join(lines)


# --- expectations ------------------------------------------------------------------------------------------


@dataclass
class Expectation:
    """One thing a test states: `check()` gives a diagnoses.Checked."""

    check: object
    facet: str
    where: dict = field(default_factory=dict)


@dataclass
class ModuleHandle:
    """A module for the tests: its class, constructor options, dtype, and the parameters it will be
    loaded with (`params`, also what the oracles compute from) and the attributes the oracles need."""

    path: str
    kwargs: dict
    dtype: str
    params: dict
    config: dict
    parameters: tuple = ()  # the names in `params` that are parameters (the rest are buffers)


@dataclass
class Verdict:
    """None-like when `message` is None; else the message and the diagnosis rules that fired."""

    message: str = None
    diagnoses: tuple = ()


class Case:
    """One graded test's access to your code (see the module docstring)."""

    def __init__(self, name: str, run_now: bool, hidden: bool = False, secret: int = 0):
        """`secret` changes every input and parameter: the regrade draws one per run, so that no input can be
        foreseen from the tests' code; under pytest it is 0, and the same seed gives the same numbers."""
        self.name, self.run_now, self.hidden, self.secret = name, run_now, hidden, secret
        self.generator = torch.Generator().manual_seed(seed_of(name, secret))
        self.results: list[Result] = []
        self.expectations: list[Expectation] = []

    # inputs
    def randn(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, dtype=dtype)

    def rand(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, dtype=dtype)

    def randint(self, low: int, high: int, shape: tuple) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator)

    def choice(self, options: list):
        """One of `options`, drawn like every input (from the test's name and the regrade's secret)."""
        return options[int(torch.randint(len(options), (1,), generator=self.generator))]

    def module(self, path: str, dtype: str = "float32", **kwargs) -> ModuleHandle:
        """A module of class `path` ("transformer:EncoderLayer") built by the given __init__, with every
        parameter moved off its initial value (so that two LayerNorms, or a norm and no norm, differ). Buffers
        stay as built: a sinusoidal table is what sinusoidal_positional_encoding gives, which a rewrite may
        compute again."""
        module_name, class_name = path.split(":")
        cls = getattr(probe.student_module(module_name), class_name)
        with probe.isolated(f"{module_name}:{class_name}.__init__", building=True,
                            table=oracles.sinusoidal_positional_encoding):
            torch.manual_seed(seed_of(self.name, len(self.results), path, self.secret))
            built = cls(**kwargs).to(wire.DTYPES[dtype])
        params, trained = {}, dict(built.named_parameters())
        for name, tensor in built.state_dict().items():
            tensor = tensor.detach().clone()
            if tensor.is_floating_point() and name in trained:
                spread = float(tensor.std()) if tensor.numel() > 1 else 0.0
                noise = torch.randn(tensor.shape, generator=self.generator, dtype=torch.float64).to(tensor.dtype)
                tensor = tensor + noise * (0.5 * spread if spread > 1e-6 else 0.2)
            params[name] = tensor
        return ModuleHandle(path, dict(kwargs), dtype, params, probe.config_of(built.eval()),
                            tuple(name for name, _ in built.named_parameters()))

    # calls
    def call(self, target, *args, method: str = "forward", attributes: dict = None, read=(), grad_of=(),
             grad_weights=None, grad_params: bool = False, training: bool = False, dropout_seed: int = 0,
             count_torch_calls: bool = False, module_key: str = "", **kwargs) -> Result:
        """Runs your `target` ("mamba:pscan", or a ModuleHandle and its `method`) on these inputs."""
        if isinstance(target, ModuleHandle):
            module_name, class_name = target.path.split(":")
            spec = wire.ModuleSpec(target.path, target.kwargs, target.params, target.dtype, dict(attributes or {}))
            name = f"{module_name}:{class_name}.{method}"
        else:
            spec, name = None, target
        call = wire.Call(name, spec, list(args), kwargs, tuple(read), grad_weights, tuple(grad_of), grad_params,
                         count_torch_calls, training, dropout_seed, module_key)
        result = Result(call, call.target.split(":", 1)[1])
        self.results.append(result)
        TARGETS_RUN.setdefault(self.name, set()).add(call.target)
        if self.run_now:
            result.outcome = probe.execute(call)
            if isinstance(result.outcome.exception, NotImplementedError):
                raise result.outcome.exception  # pytest names the stub (autograde/plugin.py)
        return result

    def source(self, target: str) -> "Value":
        """The source text of the function `target` ("mamba:pscan"), for checks that read code."""
        result = SourceResult(target)
        self.results.append(result)
        TARGETS_RUN.setdefault(self.name, set()).add(target)
        if self.run_now:
            result.outcome = wire.Outcome({"status": "ok", "source": probe.function_source(
                probe.module_file_text(target.split(":")[0]), target.split(":")[1])}, {})
        return result.text

    # expectations
    def expect_close(self, actual, expected, *, atol: float, rtol: float, what: str, facet: str = "value",
                     where: dict = None, alternatives: dict = None):
        """`actual` (a Value, or a tensor) must be within atol + rtol·|expected| of `expected` everywhere.
        `alternatives` (label -> (cause, tensor)): what likely mistakes give, for the diagnoses."""
        def check() -> diagnoses.Checked:
            try:
                resolved = actual.resolve() if isinstance(actual, Value) else actual
                wanted = expected.resolve() if isinstance(expected, Value) else expected
            except CallProblem as problem:
                return _raised(problem, what, facet, where)
            message = compare(resolved, wanted, atol=atol, rtol=rtol, what=what, hidden=self.hidden)
            return diagnoses.Checked(message is None, message, facet, dict(where or {}), resolved, wanted,
                                     dict(alternatives or {}), atol=atol, rtol=rtol)
        self.expectations.append(Expectation(check, facet, dict(where or {})))

    def expect(self, predicate, *values, what: str, facet: str = "value", where: dict = None, cause: str = None):
        """`predicate(*resolved values)` returns None when all is well, else what is wrong (a message the
        test writes from the values). `cause`: a diagnosis label the failure proves (diagnoses.Rule)."""
        def check() -> diagnoses.Checked:
            try:
                resolved = [value.resolve() if isinstance(value, Value) else value for value in values]
            except CallProblem as problem:
                return _raised(problem, what, facet, where)
            message = predicate(*resolved)
            return diagnoses.Checked(message is None, None if message is None else f"{what}: {message}", facet,
                                     dict(where or {}), proves=cause if message is not None else None)
        self.expectations.append(Expectation(check, facet, dict(where or {})))

    def expect_fact(self, predicate, value: Value, what: str, facet: str = "promise", where: dict = None):
        """`predicate(kind, device)` of what the probe said of a part (its type name when not a plain tensor,
        its device when not the CPU) returns None when all is well, else what is wrong."""
        def check() -> diagnoses.Checked:
            outcome = value.result.outcome
            if outcome is None or outcome.meta.get("status") != "ok":
                try:
                    value.resolve()
                except CallProblem as problem:
                    return _raised(problem, what, facet, where)
            message = predicate(value.fact("kind"), value.fact("device"))
            return diagnoses.Checked(message is None, None if message is None else f"{what}: {message}", facet,
                                     dict(where or {}))
        self.expectations.append(Expectation(check, facet, dict(where or {})))

    # the verdict
    def verdict(self) -> Verdict:
        """The first failure with what was compared; what else failed and what passed; and the likely cause
        where a rule of autograde/diagnoses.py is sure."""
        checked = []
        for expectation in self.expectations:
            try:
                checked.append(expectation.check())
            except Exception as error:  # a value of the wrong kind reached a predicate
                checked.append(diagnoses.Checked(False, f"a value could not be checked ({type(error).__name__})",
                                                 expectation.facet, expectation.where))
        failures = [item for item in checked if not item.passed]
        if not failures:
            return Verdict()
        if failures[0].whole:
            return Verdict(failures[0].message)
        found = []  # the rules read each function's checks apart (a test may check several functions)
        for function in dict.fromkeys(item.where.get("function") for item in checked):
            group = [item for item in checked if item.where.get("function") == function]
            found += [finding for finding in diagnoses.diagnose(group) if finding not in found]
        found = found[:2]
        lines = [failures[0].message]
        more = diagnoses.summary(checked)
        lines += [f"  {line}" for line in more]
        lines += [f"  likely cause: {finding.says}" for finding in found]
        return Verdict("\n".join(lines), tuple((finding.name, finding.cause) for finding in found))

    def finish(self):
        """Raises GradedFailure unless every expectation holds (in your process, after the test)."""
        verdict = self.verdict()
        if verdict.message is not None:
            raise GradedFailure(verdict.message, verdict.diagnoses)
