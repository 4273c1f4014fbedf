"""Runs your code the way a graded test asks, and nothing else: the probe.

A graded test describes each call of your code as a `Call`: which function (the *target*), on which
module (built from the given `__init__`, then loaded with the test's own parameters), with which inputs,
and what to bring back (the output, an attribute such as `attention_weights`, gradients, how many torch
operations ran). `execute` makes that call and returns an `Outcome`.

While the target runs, every *other* function you write is replaced by a stand-in that computes the
trusted answer, so a test of the encoder layer measures your encoder layer, not your attention: a mistake
in one function costs points only in the tests that run that function. Where a stand-in's answer comes
from is `BACKEND`'s business:

- under pytest in your process, from autograde/oracles.py, right here;
- in the course staff's regrade, from the grader, outside the sandbox your code runs in: the sandbox holds
  no oracle at all, and the grader answers only for the functions the running test's target calls
  (`CALLEES`). The calls arrive one at a time on standard input, and what they gave leaves as tensors
  (`serve`); the comparison with the expected values happens outside.
"""

import contextlib
import importlib
import importlib.util
import json
import os
import struct
import sys
import traceback
import types
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

SPY_SCAN = "graded_scan"  # a scan the tests register in SCANS: the loop, with its states scaled by SPY_SCALE
SPY_SCALE = 1.5
STUDENT_FILES = ("transformer", "mamba")

# Every function students write ("module:qualified name"), and the ones each calls: while a target runs,
# those (and only those) are answered by stand-ins. In the regrade the grader refuses any other.
CALLEES = {
    "transformer:causal_mask": (),
    "transformer:sinusoidal_positional_encoding": (),
    "transformer:MultiHeadAttention.split_heads": (),
    "transformer:MultiHeadAttention.merge_heads": (),
    "transformer:MultiHeadAttention.forward": ("transformer:causal_mask", "transformer:MultiHeadAttention.split_heads",
                                               "transformer:MultiHeadAttention.merge_heads"),
    "transformer:EncoderLayer.forward": ("transformer:MultiHeadAttention.forward",),
    "transformer:DecoderLayer.forward": ("transformer:MultiHeadAttention.forward",),
    "transformer:TransformerEncoder.forward": ("transformer:EncoderLayer.forward",),
    "transformer:TransformerDecoder.forward": ("transformer:DecoderLayer.forward",),
    "mamba:discretize_bilinear": (),
    "mamba:pscan": (),
    "mamba:MambaBlock.forward": ("mamba:MambaBlock.ssm",),
    "mamba:MambaBlock.ssm": ("mamba:MambaBlock.selective_scan",),
    "mamba:MambaBlock.selective_scan": ("mamba:discretize_bilinear", "mamba:pscan", SPY_SCAN),
    "mamba:ResidualBlock.forward": ("mamba:MambaBlock.forward",),
}
# The given scans and their machinery: while your pscan runs, they refuse (Q2.2 asks for a scan of your own).
GIVEN_SCANS = ("sscan", "pair_scan", "_PairScan", "_scan_forward", "_scan_backward")

# name, params (a module's state dict, or None), config (a few attributes), args -> the trusted answer.
# Set by autograde/harness.py (oracles, in this process) or by `serve` (the grader, over the pipe).
BACKEND = None


class StandInRefused(Exception):
    """The grader would not answer a stand-in (not a function the running target calls)."""


def config_of(module) -> dict:
    """The attributes (given code sets them in __init__) that an oracle needs besides the parameters."""
    kind = type(module).__name__
    if kind == "MultiHeadAttention":
        return {"num_heads": module.num_heads, "causal": bool(module.causal)}
    if kind in ("EncoderLayer", "DecoderLayer"):
        return {"num_heads": module.self_attention.num_heads}
    if kind in ("TransformerEncoder", "TransformerDecoder"):
        return {"num_heads": module.layers[0].self_attention.num_heads if len(module.layers) else 1,
                "num_layers": len(module.layers)}
    if kind == "MambaBlock":
        return {"dt_rank": module.dt_rank, "state_size": module.state_size, "expanded_size": module.expanded_size,
                "conv_kernel": module.conv_kernel, "discretization": module.discretization, "alpha": module.alpha,
                "scale": SPY_SCALE if module.scan == SPY_SCAN else 1.0}
    if kind == "ResidualBlock":
        return config_of(module.mixer)
    return {}


def _params(module) -> dict:
    return {name: tensor.detach() for name, tensor in module.state_dict().items()}


def _function(name: str):
    """A stand-in for a module-level function: its positional arguments go to the backend."""
    def stand_in(*args, **kwargs):
        return BACKEND(name, None, {}, list(args))
    return stand_in


def _method(name: str, keeps_weights: bool = False):
    """A stand-in for a method: the module's parameters and attributes go along with the arguments."""
    def stand_in(self, *args):
        answer = BACKEND(name, _params(self), config_of(self), list(args))
        if keeps_weights:  # MultiHeadAttention.forward also leaves its weights for the notebooks
            output, softmax = answer
            self.attention_weights = softmax.detach()
            return output
        return answer
    return stand_in


STAND_INS = {name: (_function(name) if "." not in name.split(":")[1] else
                    _method(name, keeps_weights=name == "transformer:MultiHeadAttention.forward"))
             for name in CALLEES}


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


# --- your files ---------------------------------------------------------------------------------------------


def student_module(short_name: str):
    """models.transformer or models.mamba, imported on first use. models/__init__.py imports every model
    file, so when it fails (one file does not import) the package is set up without it: a syntax error in
    one file must not cost the other file's tests."""
    name = f"models.{short_name}"
    try:
        return importlib.import_module(name)
    except Exception:
        if sys.modules.get("models") is not None or name in sys.modules:
            raise
    spec = importlib.util.find_spec("models")  # a top-level package is found without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("no models package")
    package = types.ModuleType("models")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["models"] = package
    return importlib.import_module(name)


def module_file_text(short_name: str):
    """The text of models/<short_name>.py, found without importing (running) it; None if unreadable."""
    try:
        spec = importlib.util.find_spec("models")  # found, not run
        for folder in spec.submodule_search_locations:
            path = os.path.join(folder, f"{short_name}.py")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as file:
                    return file.read()
    except (ImportError, OSError, AttributeError, TypeError, UnicodeDecodeError):
        pass
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


def _placeholder_table(max_length: int, hidden_size: int) -> torch.Tensor:
    """The positional table while the probe builds a module: the test's own replaces it at once."""
    return torch.zeros(max_length, hidden_size)


@contextlib.contextmanager
def isolated(target: str, building: bool = False):
    """Every student function but `target` replaced by its stand-in; the spy scan registered; the given
    scans refusing while `target` is pscan. A file other than the target's that does not import is left
    alone (its functions are not needed); the target's own raises. `building`: a module is being built
    for a call, and its parameters will be loaded over whatever __init__ makes."""
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
        if building and name == "transformer:sinusoidal_positional_encoding":
            stand_in = _placeholder_table
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
        scans[SPY_SCAN] = _function(SPY_SCAN)
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
    with isolated(f"{module_name}:{class_name}.__init__", building=True):
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
        module = build_module(call.module) if call.module is not None else None
        with isolated(call.target):
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
                        "given_scan": isinstance(error, GivenScanUsed),
                        "stand_in_refused": isinstance(error, StandInRefused), "file": file, "line": line},
                       {}, error)


# --- the sandbox's side of the regrade ------------------------------------------------------------------------
#
# Frames both ways: an 8-byte little-endian length, then that many bytes; a frame of JSON is followed, where
# it says so, by a frame of tensors (safetensors; complex tensors travel as two real ones).
#   grader -> sandbox (standard input): {"skip": [...]}; then, one at a time, {"type": "call", ...} + tensors,
#       answered before the next is sent, and {"type": "stand-in", "ok": ...} + tensors for each request;
#       finally {"type": "end"}.
#   sandbox -> grader (a pipe): {"event": "import", "module"} and {"event": "imported", "module", "meta"} per
#       student file; {"event": "stand-in", "name", "config", "args"} + tensors while a call runs;
#       {"event": "result", "meta"} + tensors when it ends; {"event": "finished"}.
# The grader believes none of it beyond what the values themselves show.


def frame(payload: bytes) -> bytes:
    return struct.pack("<Q", len(payload)) + payload


def write_frame(fd: int, payload: bytes):
    data = frame(payload)
    while data:
        data = data[os.write(fd, data):]


def read_frame(stream) -> bytes:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the grader closed the pipe")
    return stream.read(struct.unpack("<Q", header)[0])


def to_real(tensors: dict) -> dict:
    real = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if tensor.is_complex():
            real[f"{name}::re"], real[f"{name}::im"] = tensor.real.contiguous().clone(), tensor.imag.contiguous().clone()
        else:
            real[name] = tensor.contiguous().clone()
    return real


def from_real(tensors: dict) -> dict:
    joined = {}
    for name, tensor in tensors.items():
        if name.endswith("::re") and name[:-4] + "::im" in tensors:
            joined[name[:-4]] = torch.complex(tensor, tensors[name[:-4] + "::im"])
        elif not name.endswith(("::re", "::im")):
            joined[name] = tensor
    return joined


def pack_tensors(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save(to_real(tensors)) if tensors else b""


def unpack_tensors(blob: bytes) -> dict:
    from safetensors.torch import load

    return from_real(load(blob)) if blob else {}


class Packer:
    """Names every tensor of a message once ("t0", "t1", ...) so values can refer to them in JSON."""

    def __init__(self):
        self.tensors, self.names = {}, {}

    def ref(self, tensor: torch.Tensor) -> str:
        if id(tensor) not in self.names:
            self.names[id(tensor)] = f"t{len(self.names)}"
            self.tensors[self.names[id(tensor)]] = tensor
        return self.names[id(tensor)]

    def value(self, value):
        if isinstance(value, torch.Tensor):
            return {"tensor": self.ref(value)}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {"dict": {str(key): self.value(item) for key, item in value.items()}}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"a probe message cannot carry a {type(value).__name__}")


def unpack_value(value, tensors: dict):
    if isinstance(value, dict) and "tensor" in value:
        return tensors[value["tensor"]]
    if isinstance(value, dict) and "dict" in value:
        return {key: unpack_value(item, tensors) for key, item in value["dict"].items()}
    if isinstance(value, list):
        return [unpack_value(item, tensors) for item in value]
    return value


def encode_call(call: Call) -> bytes:
    """One call as the sandbox receives it: a JSON frame and a frame of its tensors."""
    packer = Packer()
    module = None
    if call.module is not None:
        module = {"path": call.module.path, "kwargs": packer.value(call.module.kwargs),
                  "state": {name: packer.ref(tensor) for name, tensor in call.module.state.items()},
                  "dtype": call.module.dtype, "attributes": packer.value(call.module.attributes)}
    spec = {"type": "call", "target": call.target, "module": module, "args": packer.value(call.args),
            "kwargs": packer.value(call.kwargs), "read": list(call.read),
            "grad_weights": packer.ref(call.grad_weights) if call.grad_weights is not None else None,
            "grad_of": list(call.grad_of), "count_torch_calls": call.count_torch_calls}
    return frame(json.dumps(spec).encode()) + frame(pack_tensors(packer.tensors))


def decode_call(spec: dict, tensors: dict) -> Call:
    module = None
    if spec["module"] is not None:
        m = spec["module"]
        module = ModuleSpec(m["path"], unpack_value(m["kwargs"], tensors),
                            {name: tensors[ref] for name, ref in m["state"].items()}, m["dtype"],
                            unpack_value(m["attributes"], tensors))
    return Call(spec["target"], module, unpack_value(spec["args"], tensors), unpack_value(spec["kwargs"], tensors),
                tuple(spec["read"]), tensors[spec["grad_weights"]] if spec["grad_weights"] else None,
                tuple(spec["grad_of"]), spec["count_torch_calls"])


def remote_backend(stream, output_fd: int):
    """A BACKEND that asks the grader: the request goes out on the pipe, the answer comes on stdin."""
    def ask(name, params, config, args):
        packer = Packer()
        request = {"event": "stand-in", "name": name, "config": packer.value(config), "args": packer.value(args),
                   "params": {key: packer.ref(value) for key, value in (params or {}).items()}}
        write_frame(output_fd, json.dumps(request).encode())
        write_frame(output_fd, pack_tensors(packer.tensors))
        reply, tensors = json.loads(read_frame(stream)), unpack_tensors(read_frame(stream))
        if not reply.get("ok"):
            raise StandInRefused(f"the grader did not answer for {name}")
        return unpack_value(reply["value"], tensors)
    return ask


def serve(stream, output_fd: int) -> int:
    """The sandbox's main loop: import the student's files, then run each call as it arrives and send
    what it gave. Returns the exit status."""
    global BACKEND
    header = json.loads(read_frame(stream))
    SKIPPED_MODULES.update(header.get("skip", ()))
    BACKEND = remote_backend(stream, output_fd)
    for short_name in STUDENT_FILES:
        if short_name in SKIPPED_MODULES:
            continue
        write_frame(output_fd, json.dumps({"event": "import", "module": short_name}).encode())
        meta = {"status": "ok"}
        try:
            student_module(short_name)
        except Exception as error:  # reported; the calls of this file will raise it again
            file, line = where_raised(error)
            meta = {"status": "error", "error": type(error).__name__, "file": file, "line": line}
        write_frame(output_fd, json.dumps({"event": "imported", "module": short_name, "meta": meta}).encode())
    while True:
        spec = json.loads(read_frame(stream))
        if spec.get("type") != "call":
            break
        outcome = execute(decode_call(spec, unpack_tensors(read_frame(stream))))
        write_frame(output_fd, json.dumps({"event": "result", "meta": outcome.meta}).encode())
        write_frame(output_fd, pack_tensors(outcome.tensors))
    write_frame(output_fd, json.dumps({"event": "finished"}).encode())
    return 0


def sandbox_main() -> int:
    """Entry point inside the sandbox: the limits the kernel cannot set from outside, then `serve`."""
    import resource

    settings = json.loads(os.environ.pop("PIGLATIN_PROBE", "{}"))
    for name, value in settings.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    torch.set_num_threads(1)
    return serve(sys.stdin.buffer, int(settings.get("events_fd", 3)))
