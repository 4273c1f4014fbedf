"""Runs your code the way a graded test asks, and nothing else: the probe.

A graded test describes each call of your code as a `Call`: which function (the *target*), on which
module (built from the given `__init__`, then loaded with the test's own parameters), with which inputs,
and what to bring back (the output, an attribute such as `attention_weights`, gradients, how many torch
operations ran). `execute` makes that call and returns an `Outcome`. While it runs, every *other*
function you write is replaced by its trusted version (tests/graded/oracles.py), so a test of the encoder
layer measures your encoder layer, not your attention: one mistake costs points in one function's tests.

The same `execute` serves both ways the tests run: in your process under pytest, and, for the course
staff's regrade, inside a sandbox that receives the calls as data on its standard input and sends back
only tensors (`serve`, below) — the comparison with the expected values happens outside.
"""

import contextlib
import importlib
import json
import os
import struct
import sys
import traceback
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

try:
    from graded import oracles
except ImportError:  # the sandbox puts tests/graded itself on the path
    import oracles

# --- what you write, and what stands in for it -------------------------------------------------------------

SPY_SCAN = "graded_scan"  # a scan the tests register in SCANS: the loop, with its states scaled by SPY_SCALE
SPY_SCALE = 1.5


def _params(module) -> dict:
    return dict(module.state_dict(keep_vars=True))


def _attention_forward(self, query, key, value):
    output, weights = oracles.attention(_params(self), oracles.config_of(self), query, key, value)
    self.attention_weights = weights.detach()
    return output


def _spy_scale(block) -> float:
    return SPY_SCALE if block.scan == SPY_SCAN else 1.0


# "module:qualified name" of every function students write -> the trusted stand-in, with the same signature.
STAND_INS = {
    "transformer:causal_mask": lambda query_length, key_length, device=None: oracles.causal_mask(
        query_length, key_length, device),
    "transformer:sinusoidal_positional_encoding": oracles.sinusoidal_positional_encoding,
    "transformer:MultiHeadAttention.split_heads": lambda self, x: oracles.split_heads(x, self.num_heads),
    "transformer:MultiHeadAttention.merge_heads": lambda self, x: oracles.merge_heads(x),
    "transformer:MultiHeadAttention.forward": _attention_forward,
    "transformer:EncoderLayer.forward": lambda self, x: oracles.encoder_layer(
        _params(self), oracles.config_of(self), x),
    "transformer:DecoderLayer.forward": lambda self, x, annotations: oracles.decoder_layer(
        _params(self), oracles.config_of(self), x, annotations),
    "transformer:TransformerEncoder.forward": lambda self, source: oracles.encoder(
        _params(self), oracles.config_of(self), source),
    "transformer:TransformerDecoder.forward": lambda self, target_in, annotations: oracles.decoder(
        _params(self), oracles.config_of(self), target_in, annotations),
    "mamba:discretize_bilinear": oracles.discretize_bilinear,
    "mamba:pscan": oracles.scan,
    "mamba:MambaBlock.forward": lambda self, x: oracles.mixer(_params(self), oracles.config_of(self), x),
    "mamba:MambaBlock.ssm": lambda self, u: oracles.ssm(_params(self), oracles.config_of(self), u, _spy_scale(self)),
    "mamba:MambaBlock.selective_scan": lambda self, u, delta, A, B, C, D: oracles.selective_scan(
        u, delta, A, B, C, D, self.discretization, self.alpha, _spy_scale(self)),
    "mamba:ResidualBlock.forward": lambda self, x: oracles.residual_block(_params(self), oracles.config_of(self), x),
}

# The given scans and their machinery: while your pscan runs, they refuse (Q2.2 asks for a scan of your own).
GIVEN_SCANS = ("sscan", "pair_scan", "_PairScan", "_scan_forward", "_scan_backward")


class GivenScanUsed(AssertionError):
    """pscan reached one of the given scans."""


class _Refusing:
    """Stands in for a given scan while pscan is tested: calling it, or anything on it, raises."""

    def __init__(self, name: str):
        self._name = name

    def _refuse(self, *args, **kwargs):
        raise GivenScanUsed(f"pscan used the given {self._name}: Q2.2 asks for a parallel scan of your own, "
                            f"in log space")

    __call__ = _refuse

    def __getattr__(self, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return self._refuse


def student_module(short_name: str):
    """models.transformer or models.mamba, imported on first use."""
    return importlib.import_module(f"models.{short_name}")


def module_file_text(short_name: str):
    """The text of models/<short_name>.py, found without importing (running) it; None if unreadable."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(f"models.{short_name}")
        with open(spec.origin, encoding="utf-8") as file:
            return file.read()
    except (ImportError, OSError, AttributeError, UnicodeDecodeError):
        return None


def function_source(text, qualname: str):
    """The source of the function `qualname` ("MambaBlock.ssm") in a module's text, or None."""
    import ast

    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    nodes, found = [tree], None
    for part in qualname.split("."):
        found = next((child for node in nodes[-1:] for child in ast.iter_child_nodes(node)
                      if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and child.name == part), None)
        if found is None:
            return None
        nodes.append(found)
    return ast.get_source_segment(text, found)


def resolve(target: str):
    """(module, owner, attribute name) of "module:Class.method" or "module:function"."""
    short_name, qualname = target.split(":")
    module = student_module(short_name)
    owner = module
    for part in qualname.split(".")[:-1]:
        owner = getattr(owner, part)
    return module, owner, qualname.split(".")[-1]


@contextlib.contextmanager
def rebound(replacements: list):
    """Each (module, owner, name, new) puts `new` wherever `owner.name` is bound in that module — the
    attribute itself, other module-level names, tables such as SCANS — and puts everything back after."""
    bindings = []
    for module, owner, name, new in replacements:
        original = getattr(owner, name)
        places = [(owner, name)]
        for key, value in list(vars(module).items()):
            if value is original and (module, key) != (owner, name):
                places.append((module, key))
            elif type(value) is dict:
                places += [(value, k) for k, item in value.items() if item is original]
        for where, key in places:
            bindings.append((where, key, where[key] if isinstance(where, dict) else getattr(where, key)))
            if isinstance(where, dict):
                where[key] = new
            else:
                setattr(where, key, new)
    try:
        yield
    finally:
        for where, key, old in reversed(bindings):
            if isinstance(where, dict):
                where[key] = old
            else:
                setattr(where, key, old)


SKIPPED_MODULES = set()  # files the regrade could not import (a hang, a crash): never imported again


@contextlib.contextmanager
def isolated(target: str):
    """Every student function but `target` replaced by its stand-in; the spy scan registered; the given
    scans refusing while `target` is pscan. A file other than the target's that does not import is left
    alone (its functions are not needed); the target's own raises."""
    target_module = target.split(":")[0]
    replacements = []
    for name, stand_in in STAND_INS.items():
        short = name.split(":")[0]
        if name == target or short in SKIPPED_MODULES:
            continue
        try:
            module, owner, attribute = resolve(name)
        except Exception:
            if short == target_module:
                raise
            continue
        replacements.append((module, owner, attribute, stand_in))
    scans = None
    if "mamba" not in SKIPPED_MODULES:
        try:
            mamba = student_module("mamba")
        except Exception:
            if target_module == "mamba":
                raise
        else:
            if target == "mamba:pscan":
                replacements += [(mamba, mamba, name, _Refusing(name)) for name in GIVEN_SCANS if hasattr(mamba, name)]
            scans = getattr(mamba, "SCANS", None)
    added = isinstance(scans, dict) and SPY_SCAN not in scans
    if added:
        scans[SPY_SCAN] = lambda log_a, b: SPY_SCALE * oracles.scan(log_a, b)
    try:
        with rebound(replacements):
            yield
    finally:
        if added:
            scans.pop(SPY_SCAN, None)


# --- a call, and what came back ----------------------------------------------------------------------------


@dataclass
class ModuleSpec:
    """A module of the student's files, built with `kwargs` and loaded with `state` (name -> tensor)."""

    path: str  # "transformer:MultiHeadAttention"
    kwargs: dict
    state: dict
    dtype: str = "float32"
    attributes: dict = field(default_factory=dict)  # set after loading, e.g. {"scan": "sscan"}


@dataclass
class Call:
    target: str  # the function under test, "module:qualified name"
    module: ModuleSpec = None  # None: the target is a plain function
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    read: tuple = ()  # module attributes to bring back after the call (e.g. "attention_weights")
    grad_weights: torch.Tensor = None  # bring back d(sum(output * weights)) / d(args[i]) for i in grad_of
    grad_of: tuple = ()
    count_torch_calls: bool = False


@dataclass
class Outcome:
    """What a call gave: `tensors` by name ("output", "output.0", "read.attention_weights", "grad.1"), and
    `meta`: status ("ok" or "error"), and for errors the exception's type, whether it was a stub
    (NotImplementedError), and where in models/*.py it was raised."""

    meta: dict
    tensors: dict
    exception: BaseException = None  # in-process only: the sandbox never sends a message of its own


class CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_module(spec: ModuleSpec):
    module_name, class_name = spec.path.split(":")
    cls = getattr(student_module(module_name), class_name)
    torch.manual_seed(0)
    module = cls(**spec.kwargs).to(DTYPES[spec.dtype])
    module.load_state_dict(spec.state, strict=True)
    module.eval()
    for name, value in spec.attributes.items():
        setattr(module, name, value)
    return module


def flatten(prefix: str, value, tensors: dict, kinds: dict, depth: int = 0):
    """Tensors of a returned value by name: "output" for a tensor, "output.0", "output.1" for a tuple."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach()
    elif isinstance(value, (tuple, list)) and depth < 2 and len(value) <= 16:
        kinds[prefix] = type(value).__name__
        for index, item in enumerate(value):
            flatten(f"{prefix}.{index}", item, tensors, kinds, depth + 1)
    else:
        kinds[prefix] = type(value).__name__


def _model_file(filename) -> str:
    parts = str(filename or "").replace("\\", "/").split("/")
    return parts[-1][:-3] if len(parts) >= 2 and parts[-2] == "models" and parts[-1].endswith(".py") else None


def where_raised(error: BaseException):
    """(file stem, line) of the deepest frame in models/*.py (or of a syntax error there), or (None, None)."""
    if isinstance(error, SyntaxError) and _model_file(error.filename):
        return _model_file(error.filename), error.lineno
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if _model_file(frame.filename):
            return _model_file(frame.filename), frame.lineno
    return None, None


def execute(call: Call) -> Outcome:
    """Runs one call of the student's code (in this process) and returns what it gave."""
    tensors, kinds = {}, {}
    counter = CountTorchCalls() if call.count_torch_calls else contextlib.nullcontext()
    try:
        with isolated(call.target):
            module = build_module(call.module) if call.module is not None else None
            if module is None:
                _, owner, name = resolve(call.target)
                function = getattr(owner, name)
            else:
                function = getattr(module, call.target.split(".")[-1])
            args = list(call.args)
            for index in call.grad_of:
                args[index] = args[index].detach().clone().requires_grad_(True)
            gradients = torch.enable_grad() if call.grad_of else torch.no_grad()
            with gradients, counter:
                output = function(*args, **call.kwargs)
            if call.grad_of:
                (output * call.grad_weights).sum().backward()
                for index in call.grad_of:
                    if args[index].grad is not None:
                        tensors[f"grad.{index}"] = args[index].grad.detach()
        flatten("output", output, tensors, kinds)
        for name in call.read:
            flatten(f"read.{name}", getattr(module, name, None), tensors, kinds)
        meta = {"status": "ok", "kinds": kinds}
        if call.count_torch_calls:
            meta["torch_calls"] = counter.calls
        return Outcome(meta, tensors)
    except Exception as error:  # the student's code may raise anything: it is reported, not re-raised
        file, line = where_raised(error)
        return Outcome({"status": "error", "error": type(error).__name__,
                        "not_implemented": isinstance(error, NotImplementedError),
                        "given_scan": isinstance(error, GivenScanUsed), "file": file, "line": line}, {}, error)


# --- the sandbox's side of the regrade: calls in on stdin, tensors out on fd 3 ------------------------------
#
# Both directions are frames: an 8-byte little-endian length, then that many bytes. The input is a JSON frame
# (the calls, tensors named by reference) and a safetensors frame (the tensors). The output is, per call, a
# JSON frame {"event": "start", "i": i}, then {"event": "result", "i": i, "meta": {...}} and a safetensors
# frame of what it gave; finally {"event": "finished"}. Complex tensors travel as two real ones.


def write_frame(fd: int, payload: bytes):
    data = struct.pack("<Q", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


def read_frame(stream) -> bytes:
    size = struct.unpack("<Q", stream.read(8))[0]
    return stream.read(size)


def to_real(tensors: dict) -> dict:
    real = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if tensor.is_complex():
            real[f"{name}::re"], real[f"{name}::im"] = tensor.real.contiguous(), tensor.imag.contiguous()
        else:
            real[name] = tensor.contiguous().clone()
    return real


def from_real(tensors: dict) -> dict:
    joined = {}
    for name, tensor in tensors.items():
        if name.endswith("::re"):
            joined[name[:-4]] = torch.complex(tensor, tensors[name[:-4] + "::im"])
        elif not name.endswith("::im"):
            joined[name] = tensor
    return joined


def decode_value(value, tensors: dict):
    if isinstance(value, dict) and "tensor" in value:
        return tensors[value["tensor"]]
    if isinstance(value, list):
        return [decode_value(item, tensors) for item in value]
    return value


def decode_call(spec: dict, tensors: dict) -> Call:
    module = None
    if spec["module"] is not None:
        m = spec["module"]
        module = ModuleSpec(m["path"], m["kwargs"], {k: tensors[v] for k, v in m["state"].items()}, m["dtype"],
                            m["attributes"])
    return Call(spec["target"], module, decode_value(spec["args"], tensors), decode_value(spec["kwargs"], tensors),
                tuple(spec["read"]), tensors[spec["grad_weights"]] if spec["grad_weights"] else None,
                tuple(spec["grad_of"]), spec["count_torch_calls"])


def serve(input_stream, output_fd: int) -> int:
    """The sandbox's main loop: read every call, run each, send what it gave. Returns the exit status."""
    from safetensors.torch import load, save

    header = json.loads(read_frame(input_stream))
    tensors = from_real(load(read_frame(input_stream)))
    for index, spec in enumerate(header["calls"]):
        write_frame(output_fd, json.dumps({"event": "start", "i": index}).encode())
        outcome = execute(decode_call(spec, tensors))
        write_frame(output_fd, json.dumps({"event": "result", "i": index, "meta": outcome.meta}).encode())
        write_frame(output_fd, save(to_real(outcome.tensors)) if outcome.tensors else b"")
    write_frame(output_fd, json.dumps({"event": "finished"}).encode())
    return 0


def sandbox_main() -> int:
    """Entry point inside the sandbox: the limits the kernel cannot set from outside, then `serve`."""
    import resource

    settings = json.loads(os.environ.pop("PIGLATIN_PROBE", "{}"))
    for name, value in settings.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    torch.set_num_threads(1)
    return serve(sys.stdin.buffer, 3)

