"""How a graded test is written once and run two ways.

A graded test is a function of a `case`. It builds modules and inputs through the case, asks it to run
your code (`case.call`, which gives back *values*), and states what those values must be
(`case.expect_close`, `case.expect`). The case then gives the verdict with a message that says what was
compared, what was expected, what came out, where and by how much they differ, the tolerance, and, where
the comparison can tell, the likely mistake.

- Under pytest, in your process (`python -m pytest tests/graded`), every call runs at once
  (autograde/probe.py) and the verdict comes when the test function returns.
- In the course staff's regrade, the same function runs in the grader's process without your code: the
  calls are only recorded, sent as data to a sandbox that runs them on your code and sends back tensors,
  and the verdict is reached outside the sandbox, from the values alone. Nothing your code does inside
  the sandbox can change how the values are compared, or the message you read.

    def test_split_heads(case):
        attention = case.module("transformer:MultiHeadAttention", hidden_size=12, num_heads=3)
        x = case.randn(2, 5, 12)
        got = case.call(attention, x, method="split_heads")
        case.expect_close(got.output, oracles.split_heads(x, 3), atol=0, rtol=0, what="split_heads")
"""

import builtins
import math
import re
import zlib
from dataclasses import dataclass, field

import torch

from autograde import oracles, probe

README_SECTION = re.compile(r"README: (.+)")

if probe.BACKEND is None:  # in this process the stand-ins' answers come from the oracles themselves
    probe.BACKEND = oracles.answer


KNOWN_TYPES = {"NoneType", "tuple", "list", "dict", "int", "float", "bool", "str", "complex", "Parameter",
               "ndarray", "generator", "function", "method", "type", "module"}


class GradedFailure(AssertionError):
    """A graded check that missed: its message is all the student needs to see."""


class CallProblem(Exception):
    """A value that cannot be compared: the call raised, timed out, or returned something else. A `whole`
    problem (a function not written yet) is the whole story: the message is just it, the same in every test."""

    def __init__(self, message: str, whole: bool = False):
        super().__init__(message)
        self.whole = whole


class Whole(str):
    """A verdict message that stands alone (see CallProblem.whole)."""


# test name -> the functions its calls ran (their targets): what a mistake there can cost
TARGETS_RUN: dict = {}


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


# --- values: what a call gave, now (in your process) or later (from the sandbox) ---------------------------


class Result:
    """The outcome of one call of your code; its parts are `Value`s."""

    def __init__(self, call: probe.Call, label: str):
        self.call, self.label = call, label
        self.outcome: probe.Outcome = None  # set when the call has run

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
        """The gradient with respect to argument `index` (see Case.call's grad_of)."""
        return Value(self, f"grad.{index}")

    @property
    def torch_calls(self) -> "Value":
        return Value(self, "torch_calls")


class SourceResult(Result):
    """The source of one function you write, read as text (never run): in your process from models/*.py,
    in the regrade from the file in your repository."""

    def __init__(self, target: str):
        super().__init__(None, f"the source of {target.split(':', 1)[1]}")
        self.target = target

    @property
    def text(self) -> "Value":
        return Value(self, "source")


@dataclass
class Value:
    """A named part of a Result, with indexing or a function applied once it is known."""

    result: Result
    name: str
    steps: tuple = ()

    def __getitem__(self, index) -> "Value":
        return Value(self.result, self.name, self.steps + (("index", index),))

    def map(self, function) -> "Value":
        return Value(self.result, self.name, self.steps + (("map", function),))

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
        elif self.name in outcome.tensors:
            value = outcome.tensors[self.name]
        else:
            kind = outcome.meta.get("kinds", {}).get(self.name)
            what = describe_part(self.name)
            if kind is not None:  # only a type everyone knows is named: a class of the student's own is not
                named = kind if kind in KNOWN_TYPES else "an object of another type"
                raise CallProblem(f"{self.result.label}: {what} should be a tensor, got {named}")
            raise CallProblem(f"{self.result.label}: {what} is missing")
        for kind, step in self.steps:
            value = value[step] if kind == "index" else step(value)
        return value


def describe_part(name: str) -> str:
    if name == "output":
        return "the returned value"
    if name.startswith("output."):
        return f"element {name.split('.', 1)[1]} of the returned tuple"
    if name.startswith("read."):
        return f"self.{name.split('.', 1)[1]} after the call"
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
    error = meta.get("error")
    file, line = meta.get("file"), meta.get("line")
    at_line = isinstance(line, int) and not isinstance(line, bool)
    if error in ("SyntaxError", "IndentationError", "TabError") and file in ("transformer", "mamba"):
        return f"models/{file}.py does not import: {error}" + (f" at line {line}" if at_line else "")
    exception = getattr(builtins, error, None) if isinstance(error, str) and error.isidentifier() else None
    kind = error if isinstance(exception, type) and issubclass(exception, BaseException) else "an exception"
    text = f"your code raised {kind} while running {qualname}"
    local = result.outcome.exception
    if local is not None:  # in your own process the message is yours to read
        message = str(local).strip().splitlines()[0] if str(local).strip() else ""
        text = f"your code raised {type(local).__name__}: {message}"
    if file in ("transformer", "mamba") and at_line:
        text += f"\n  at models/{file}.py, line {line}"
    return text


# --- expectations ------------------------------------------------------------------------------------------


@dataclass
class Expectation:
    check: object  # () -> failure message or None
    where: dict = field(default_factory=dict)


def _show(tensor: torch.Tensor, limit: int = 6) -> str:
    flat = tensor.detach().flatten()
    shown = ", ".join(f"{value:.4g}" for value in flat[:limit].tolist())
    return f"[{shown}{', …' if flat.numel() > limit else ''}]"


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> bool:
    if actual.shape != expected.shape:
        return False
    actual, expected = actual.to(torch.float64), expected.to(torch.float64)
    return bool(((actual - expected).abs() <= atol + rtol * expected.abs()).all())


def likely_mistakes(actual, expected, atol, rtol, alternatives: dict, factors: dict) -> list[str]:
    """What the difference looks like, where a comparison can tell."""
    hints = []
    if actual.is_floating_point() and expected.is_floating_point() and actual.numel() > 1:
        loose = (max(atol, 1e-6) * 10, max(rtol, 1e-5) * 10)
        if actual.dim() >= 2 and actual.shape == expected.shape and actual.shape[-1] == actual.shape[-2] \
                and _close(actual.transpose(-1, -2), expected, *loose):
            hints.append("it is the expected result transposed (the last two axes swapped)")
        scale = float((actual * expected).sum() / (expected * expected).sum()) if expected.abs().sum() > 0 else 0.0
        if math.isfinite(scale) and abs(scale - 1) > 1e-3 and abs(scale) > 1e-6 and \
                _close(actual, scale * expected, *loose):
            named = [name for name, value in factors.items() if abs(scale / value - 1) < 0.02]
            hints.append(f"it is {scale:.4g} × the expected values" + (f", that is {named[0]}" if named else ""))
        negative = expected < 0
        if negative.any() and _close(actual, expected.abs(), *loose):
            hints.append("it matches where the expected values are positive and has the wrong sign where they are "
                         "negative: a sign is lost (an absolute value, or a logarithm of a negative number?)")
    for label, alternative in alternatives.items():
        if alternative.shape == actual.shape and _close(actual, alternative, max(atol, 1e-6) * 10, max(rtol, 1e-5) * 10):
            hints.append(f"it matches what {label} would give")
    return hints


def compare(actual, expected, *, atol, rtol, what, hidden, alternatives=None, factors=None):
    """None if |actual − expected| <= atol + rtol·|expected| everywhere, else the message."""
    alternatives, factors = alternatives or {}, factors or {}
    if not isinstance(actual, torch.Tensor):
        return f"{what}: expected a tensor of shape {tuple(expected.shape)}, got {type(actual).__name__}"
    if actual.is_complex() and not expected.is_complex():
        return f"{what}: expected a real tensor, got dtype {actual.dtype}"
    if actual.shape != expected.shape:
        message = f"{what}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}"
        if actual.dim() >= 2 and actual.transpose(-1, -2).shape == expected.shape:
            message += "; transposed, the shapes would agree (are two axes swapped?)"
        return message
    kind = torch.complex128 if expected.is_complex() else torch.float64
    actual, expected = actual.detach().to(kind), expected.detach().to(kind)
    if actual.numel() == 0:
        return None
    if not torch.isfinite(actual).all() and torch.isfinite(expected).all():
        where = tuple(int(i) for i in torch.nonzero(~torch.isfinite(actual))[0])
        count = int((~torch.isfinite(actual)).sum())
        message = f"{what}: {count} non-finite values (inf or nan), the first at index {where}"
        if not hidden:
            message += f" where {expected[where].item():.6g} was expected"
        return message + " — an overflow? (exp of a large number, or a division by zero)"
    difference = (actual - expected).abs()
    allowed = atol + rtol * expected.abs()
    if (difference <= allowed).all():
        return None
    worst = tuple(int(i) for i in torch.nonzero(difference == difference.max())[0])
    lines = [f"{what} differs from the expected values"]
    if not hidden:
        lines += [f"  expected {_show(expected)}", f"  got      {_show(actual)}"]
        lines.append(f"  largest difference {difference.max().item():.3g} at index {worst} (expected "
                     f"{expected[worst].item():.6g}, got {actual[worst].item():.6g}); "
                     f"{int((difference > allowed).sum())} of {difference.numel()} values are off")
    else:
        lines.append(f"  largest difference {difference.max().item():.3g}; {int((difference > allowed).sum())} of "
                     f"{difference.numel()} values are off (a hidden test: its inputs and values are not shown)")
    lines.append(f"  tolerance: |got - expected| <= {atol:g} + {rtol:g} * |expected|")
    if not expected.is_complex():
        lines += [f"  likely mistake: {hint}" for hint in likely_mistakes(actual, expected, atol, rtol,
                                                                          alternatives, factors)]
    return "\n".join(lines)


def summarise_cases(results: list[tuple[dict, bool]]) -> list[str]:
    """From (where, passed) of every expectation: 'right only for short sequences', 'right in float64 only'."""
    lines = []
    keys = sorted({key for where, _ in results for key in where})
    for key in keys:
        passed = {where[key] for where, ok in results if key in where and ok}
        failed = {where[key] for where, ok in results if key in where and not ok}
        failed_only = failed - passed
        if not failed_only or not passed:
            continue
        if all(isinstance(value, (int, float)) for value in passed | failed_only) and \
                max(passed) < min(failed_only):
            noun = "sequences" if key == "length" else f"{key}s"
            lines.append(f"  right only for short {noun}: right up to {key} {max(passed):g}, wrong from "
                         f"{min(failed_only):g} on")
        elif key == "dtype" and passed == {"float64"}:
            lines.append("  right in float64 only: in float32 something overflows or loses precision")
        elif key == "dtype" and passed == {"float32"}:
            lines.append("  right in float32 only: is something computed in float32 whatever the input's dtype?")
        else:
            lines.append(f"  right for {key} {', '.join(map(str, sorted(map(str, passed))))}; wrong for "
                         f"{', '.join(sorted(map(str, failed_only)))}")
    return lines


# --- the case --------------------------------------------------------------------------------------------


@dataclass
class ModuleHandle:
    """A module for the tests: its class, constructor options, dtype, and the parameters it will be
    loaded with (`params`, also what the oracles compute from) and the attributes the oracles need."""

    path: str
    kwargs: dict
    dtype: str
    params: dict
    config: dict


class Case:
    """One graded test's access to your code (see the module docstring)."""

    def __init__(self, name: str, run_now: bool, hidden: bool = False, secret: int = 0):
        """`secret` changes every input and parameter: the regrade draws one per run, so that no input can be
        foreseen from the tests' code; under pytest it is 0, and the same seed gives the same numbers."""
        self.name, self.run_now, self.hidden, self.secret = name, run_now, hidden, secret
        self.generator = torch.Generator().manual_seed(seed_of(name) ^ secret)
        self.results: list[Result] = []
        self.expectations: list[Expectation] = []

    # inputs
    def randn(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, dtype=dtype)

    def rand(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, dtype=dtype)

    def randint(self, low: int, high: int, shape: tuple) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator)

    def module(self, path: str, dtype: str = "float32", **kwargs) -> ModuleHandle:
        """A module of class `path` ("transformer:EncoderLayer") built by the given __init__, with every
        parameter moved off its initial value (so that two LayerNorms, or a norm and no norm, differ)."""
        module_name, class_name = path.split(":")
        cls = getattr(probe.student_module(module_name), class_name)
        with probe.isolated(f"{module_name}:{class_name}.__init__"):
            torch.manual_seed(seed_of(f"{self.name}/{len(self.results)}/{path}") ^ self.secret)
            built = cls(**kwargs).to(probe.DTYPES[dtype])
        params = {}
        for name, tensor in built.state_dict().items():
            tensor = tensor.detach().clone()
            if tensor.is_floating_point():
                spread = float(tensor.std()) if tensor.numel() > 1 else 0.0
                noise = torch.randn(tensor.shape, generator=self.generator, dtype=torch.float64).to(tensor.dtype)
                tensor = tensor + noise * (0.5 * spread if spread > 1e-6 else 0.2)
            params[name] = tensor
        return ModuleHandle(path, dict(kwargs), dtype, params, probe.config_of(built))

    # calls
    def call(self, target, *args, method: str = "forward", attributes: dict = None, read=(), grad_of=(),
             grad_weights=None, count_torch_calls: bool = False, **kwargs) -> Result:
        """Runs your `target` ("mamba:pscan", or a ModuleHandle and its `method`) on these inputs."""
        if isinstance(target, ModuleHandle):
            module_name, class_name = target.path.split(":")
            spec = probe.ModuleSpec(target.path, target.kwargs, target.params, target.dtype, dict(attributes or {}))
            call = probe.Call(f"{module_name}:{class_name}.{method}", spec, list(args), kwargs, tuple(read),
                              grad_weights, tuple(grad_of), count_torch_calls)
        else:
            call = probe.Call(target, None, list(args), kwargs, tuple(read), grad_weights, tuple(grad_of),
                              count_torch_calls)
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
            result.outcome = probe.Outcome({"status": "ok", "source": probe.function_source(
                probe.module_file_text(target.split(":")[0]), target.split(":")[1])}, {})
        return result.text

    # expectations
    def expect_close(self, actual, expected, *, atol: float, rtol: float, what: str, where: dict = None,
                     alternatives: dict = None, factors: dict = None):
        """`actual` (a Value, or a tensor) must be within atol + rtol·|expected| of `expected` everywhere.
        `alternatives` (label -> tensor): what likely mistakes would give, named in the message when one
        matches; `factors` (label -> number): constant factors worth naming (√d)."""
        def check():
            try:
                resolved = actual.resolve() if isinstance(actual, Value) else actual
                wanted = expected.resolve() if isinstance(expected, Value) else expected
            except CallProblem as problem:
                return Whole(str(problem)) if problem.whole else f"{what}: {problem}"
            return compare(resolved, wanted, atol=atol, rtol=rtol, what=what, hidden=self.hidden,
                           alternatives=alternatives, factors=factors)
        self.expectations.append(Expectation(check, dict(where or {})))

    def expect(self, predicate, *values, what: str, where: dict = None):
        """`predicate(*resolved values)` returns None when all is well, else what is wrong (a message the
        test writes from the values)."""
        def check():
            try:
                resolved = [value.resolve() if isinstance(value, Value) else value for value in values]
            except CallProblem as problem:
                return Whole(str(problem)) if problem.whole else f"{what}: {problem}"
            message = predicate(*resolved)
            return None if message is None else f"{what}: {message}"
        self.expectations.append(Expectation(check, dict(where or {})))

    # the verdict
    def verdict(self) -> str:
        """None when every expectation holds, else the message: the first failure, then what the cases
        that passed and failed suggest."""
        outcomes = []
        for expectation in self.expectations:
            try:
                message = expectation.check()
            except Exception as error:  # a value of the wrong kind reached a predicate
                message = f"a value could not be checked ({type(error).__name__})"
            outcomes.append((expectation, message))
        failures = [message for _, message in outcomes if message is not None]
        if not failures:
            return None
        if isinstance(failures[0], Whole):
            return str(failures[0])
        summary = summarise_cases([(expectation.where, message is None) for expectation, message in outcomes
                                   if expectation.where])
        more = f"\n  ({len(failures) - 1} more comparison{'s' if len(failures) > 2 else ''} failed)" \
            if len(failures) > 1 else ""
        return failures[0] + more + ("\n" + "\n".join(summary) if summary else "")

    def finish(self):
        """Raises GradedFailure unless every expectation holds (in your process, after the test)."""
        message = self.verdict()
        if message is not None:
            raise GradedFailure(message)
