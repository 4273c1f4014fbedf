"""Runs your code the way a graded test asks, and nothing else: the probe.

A graded test describes each call of your code as a `Call` (autograde/wire.py): which function (the
*target*), on which module (built from the given `__init__`, then loaded with the test's own parameters),
with which inputs, in training or eval mode, and what to bring back (the output, an attribute such as
`attention_weights`, gradients, how many torch operations ran). `execute` makes that call and returns an
`Outcome`.

While the target runs, every *other* function you write is replaced by a stand-in that computes the
trusted answer, so a test of the encoder layer measures your encoder layer, not your attention: a mistake
in one function costs points only in the tests that run that function. Stand-ins pass gradients too: a
test of the encoder layer's gradient runs your encoder layer's backward and the stand-in's exact one.
Where a stand-in's answer comes from is `BACKEND`'s business (`request` and `backward`):

- under pytest in your process, from autograde/standins.py, right here;
- in the course staff's regrade, from the grader, outside the sandbox your code runs in: the sandbox holds
  no oracle at all, and the grader answers only for the functions the running test's target calls
  (`CALLEES`). The calls arrive one at a time on standard input, and what they gave leaves as tensors
  (`serve`); the comparison with the expected values happens outside.
"""

import ast
import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback
import types

import torch
from torch.overrides import TorchFunctionMode

from autograde import wire
from autograde.dropout import FixedDropout

SPY_SCAN = "graded_scan"  # a scan the tests register in SCANS: the loop, with its states scaled by SPY_SCALE
SPY_SCALE = 1.5
MODEL_MODULES = ("transformer", "mamba")  # the model files students write, as modules of models/

# Every function students write ("module:qualified name"), and the ones each calls in the reference. A
# rewrite may reach further down (a decoder that builds its own mask or its own sinusoidal table, a block that
# calls selective_scan itself): while a target runs, every student function below it (`CALLEES`, the closure)
# is answered by a stand-in. In the regrade the grader refuses any other.
CALLS = {
    "transformer:causal_mask": (),
    "transformer:sinusoidal_positional_encoding": (),
    "transformer:MultiHeadAttention.split_heads": (),
    "transformer:MultiHeadAttention.merge_heads": (),
    "transformer:MultiHeadAttention.forward": ("transformer:causal_mask", "transformer:MultiHeadAttention.split_heads",
                                               "transformer:MultiHeadAttention.merge_heads"),
    "transformer:EncoderLayer.forward": ("transformer:MultiHeadAttention.forward",),
    "transformer:DecoderLayer.forward": ("transformer:MultiHeadAttention.forward",),
    "transformer:TransformerEncoder.forward": ("transformer:EncoderLayer.forward",
                                               "transformer:sinusoidal_positional_encoding"),
    "transformer:TransformerDecoder.forward": ("transformer:DecoderLayer.forward",
                                               "transformer:sinusoidal_positional_encoding"),
    "mamba:discretize_bilinear": (),
    "mamba:pscan": (),
    "mamba:MambaBlock.forward": ("mamba:MambaBlock.ssm",),
    "mamba:MambaBlock.ssm": ("mamba:MambaBlock.selective_scan",),
    "mamba:MambaBlock.selective_scan": ("mamba:discretize_bilinear", "mamba:pscan", SPY_SCAN),
    "mamba:ResidualBlock.forward": ("mamba:MambaBlock.forward",),
}


# How many arguments each takes in the reference (least, most), a method's besides self: a stand-in is
# sent these, and a rewrite's own extra parameters with defaults stay with the rewrite.
ARGUMENTS = {"transformer:causal_mask": (2, 2), "transformer:sinusoidal_positional_encoding": (2, 2),
             "transformer:MultiHeadAttention.split_heads": (1, 1), "transformer:MultiHeadAttention.merge_heads": (1, 1),
             "transformer:MultiHeadAttention.forward": (3, 3), "transformer:EncoderLayer.forward": (1, 1),
             "transformer:DecoderLayer.forward": (2, 2), "transformer:TransformerEncoder.forward": (1, 1),
             "transformer:TransformerDecoder.forward": (2, 2), "mamba:discretize_bilinear": (3, 4),
             "mamba:pscan": (2, 2), SPY_SCAN: (2, 2), "mamba:MambaBlock.forward": (1, 1),
             "mamba:MambaBlock.ssm": (1, 1), "mamba:MambaBlock.selective_scan": (6, 6),
             "mamba:ResidualBlock.forward": (1, 1)}


def _below(name: str) -> tuple:
    """Every function `name` may reach through CALLS, in order of discovery."""
    found = []
    for callee in CALLS.get(name, ()):
        for reached in (callee, *_below(callee)):
            if reached not in found:
                found.append(reached)
    return tuple(found)


CALLEES = {name: _below(name) for name in CALLS}
# The given scans and their machinery, by module: while your pscan runs, they refuse (Q2.2 asks for a
# scan of your own).
GIVEN_SCANS = {"mamba": ("sscan", "pair_scan"),
               "pair_scan": ("pair_scan", "_PairScan", "_scan_forward", "_scan_backward")}
GIVEN_SCAN_NAMES = {name for names in GIVEN_SCANS.values() for name in names} | {"SCANS"}

BACKEND = None  # the stand-ins' answers: autograde/standins.py's LocalBackend, or `RemoteBackend` in the sandbox


class StandInRefused(Exception):
    """The grader would not answer a stand-in (not a function the running target calls, or too large)."""


def config_of(module) -> dict:
    """The attributes (given code sets them in __init__) that an oracle needs besides the parameters, and
    whether the module is in training mode with how much dropout."""
    kind = type(module).__name__
    config = {}
    if kind == "MultiHeadAttention":
        config = {"num_heads": module.num_heads, "causal": bool(module.causal)}
    elif kind in ("EncoderLayer", "DecoderLayer"):
        config = {"num_heads": module.self_attention.num_heads}
    elif kind in ("TransformerEncoder", "TransformerDecoder"):
        config = {"num_heads": module.layers[0].self_attention.num_heads if len(module.layers) else 1,
                  "num_layers": len(module.layers)}
    elif kind == "MambaBlock":
        config = {"dt_rank": module.dt_rank, "state_size": module.state_size, "expanded_size": module.expanded_size,
                  "conv_kernel": module.conv_kernel, "discretization": module.discretization, "alpha": module.alpha,
                  "scale": SPY_SCALE if module.scan == SPY_SCAN else 1.0}
    elif kind == "ResidualBlock":
        config = config_of(module.mixer)
    dropout = getattr(module, "dropout", None)
    if isinstance(dropout, torch.nn.Dropout):
        config["dropout"] = float(dropout.p)
    config["training"] = bool(module.training)
    return config


# --- stand-ins ---------------------------------------------------------------------------------------------------


def _floating(value) -> bool:
    return isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())


class _StandIn(torch.autograd.Function):
    """A stand-in's answer as one operation of autograd: its backward asks the backend for the exact
    vector-Jacobian product of the trusted function."""

    @staticmethod
    def forward(ctx, request, *inputs):
        request_id, value = BACKEND.request(*request, keep=True)
        ctx.request_id = request_id
        outputs = value if isinstance(value, tuple) else (value,)
        if request[0] == "transformer:MultiHeadAttention.forward":
            ctx.mark_non_differentiable(outputs[1])  # the attention weights are a reading, not an output
        return value

    @staticmethod
    def backward(ctx, *grad_outputs):
        return (None, *BACKEND.backward(ctx.request_id, list(grad_outputs)))


def _ask(name: str, params: dict, config: dict, args: list):
    """The backend's answer for `name` on these arguments (and a module's parameters), differentiable when
    any floating input needs a gradient."""
    grad_args = [i for i, arg in enumerate(args) if _floating(arg)]
    grad_params = [key for key, value in params.items() if _floating(value)]
    inputs = [args[i] for i in grad_args] + [params[key] for key in grad_params]
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in inputs):
        request = (name, {key: value.detach() for key, value in params.items()}, config,
                   [arg.detach() if isinstance(arg, torch.Tensor) else arg for arg in args], grad_args, grad_params)
        return _StandIn.apply(request, *inputs)
    with torch.no_grad():
        return BACKEND.request(name, {key: value.detach() for key, value in params.items()}, config,
                               [arg.detach() if isinstance(arg, torch.Tensor) else arg for arg in args], grad_args,
                               grad_params, keep=False)[1]


def _function(name: str):
    """A stand-in for a module-level function: its positional arguments go to the backend."""
    def stand_in(*args, **kwargs):
        if name == "transformer:causal_mask":  # its optional `device` may come by name
            args = list(args[:2])
        return _ask(name, {}, {}, list(args))
    return stand_in


def _method(name: str, keeps_weights: bool = False):
    """A stand-in for a method: the module's parameters (as they are, so that gradients reach them) and
    attributes go along with the arguments."""
    def stand_in(self, *args):
        params = dict(self.state_dict(keep_vars=True))
        answer = _ask(name, params, config_of(self), list(args))
        if keeps_weights:  # MultiHeadAttention.forward also leaves its weights for the notebooks
            output, weights = answer
            self.attention_weights = weights.detach()
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


# --- your files ----------------------------------------------------------------------------------------------


def student_module(short_name: str):
    """models.transformer or models.mamba (or another file of models/), imported on first use.
    models/__init__.py imports every model file, so when it fails (one file does not import) the package
    is set up without it: a syntax error in one file must not cost the other file's tests."""
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
    """The positional table while the probe builds a module: the grader's parameters, loaded at once, hold
    the true one (the harness builds its modules with `table`, the trusted function)."""
    return torch.zeros(max_length, hidden_size)


def _taking_keywords(stand_in, original, name: str):
    """The stand-in, called as the function it replaces may be (`self.self_attention(query=h, key=h, value=h)`,
    `layer(x, annotations=a)`): arguments bound to that function's own signature, then passed in order, as
    many as the reference takes (a parameter the rewrite added, with its default, is not the grader's)."""
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        return stand_in
    most = ARGUMENTS.get(name, (0, 1 << 8))[1] + ("." in name.split(":")[-1])  # and self, for a method

    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return stand_in(*bound.args[:most])

    return call


def _given_scan_refusals() -> list:
    """(module, owner, name, refusing stand-in) for every given scan a student's pscan could reach."""
    replacements = []
    for short, names in GIVEN_SCANS.items():
        try:
            module = student_module(short)
        except Exception:
            continue
        replacements += [(module, module, name, _Refusing(name)) for name in names if hasattr(module, name)]
    return replacements


@contextlib.contextmanager
def isolated(target: str, building: bool = False, table=_placeholder_table):
    """Every student function but `target` replaced by its stand-in; the spy scan registered; the given
    scans refusing while `target` is pscan. A file other than the target's that does not import is left
    alone (its functions are not needed); the target's own raises. `building`: a module is being built
    for a call, and its parameters will be loaded over whatever __init__ makes; `table` stands in for
    sinusoidal_positional_encoding meanwhile (inside the sandbox, where no oracle is, a placeholder)."""
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
            stand_in = table
        replacements.append((module, owner, attribute, _taking_keywords(stand_in, getattr(owner, attribute), name)))
    scans = None
    if "mamba" not in SKIPPED_MODULES:
        try:
            mamba = student_module("mamba")
        except Exception:
            if target_module == "mamba":
                raise
        else:
            if target == "mamba:pscan":
                replacements += _given_scan_refusals()
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


class DeviceSpy(TorchFunctionMode):
    """Notes whether a given device object reaches any torch function (`torch.ones(..., device=device)`,
    `.to(device)`): whether a function told where to make its result passed that on."""

    def __init__(self, device):
        super().__init__()
        self.device, self.reached = device, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(value is self.device for value in (*args, *kwargs.values())):
            self.reached = True
        return func(*args, **kwargs)


class CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


KEPT_MODULE = {}  # the module of the last call that named a `module_key`: a later call with that key reuses it


def build_module(spec: wire.ModuleSpec, training: bool = False, key: str = ""):
    """The call's module: built by the given __init__ and loaded with the test's parameters; or, for a
    `key` an earlier call used, that very module with the new parameters copied into it (as an optimizer
    step would), so that whatever the student's code kept on it from the earlier call shows."""
    if key and key in KEPT_MODULE:
        module = KEPT_MODULE[key]
    else:
        module_name, class_name = spec.path.split(":")
        cls = getattr(student_module(module_name), class_name)
        with isolated(f"{module_name}:{class_name}.__init__", building=True):
            torch.manual_seed(0)
            module = cls(**spec.kwargs).to(wire.DTYPES[spec.dtype])
        if key:
            KEPT_MODULE.clear()
            KEPT_MODULE[key] = module
    with torch.no_grad():
        module.load_state_dict(spec.state, strict=True)
    module.train(training)
    for name, value in spec.attributes.items():
        setattr(module, name, value)
    return module


def flatten(prefix: str, value, tensors: dict, kinds: dict, devices: dict, depth: int = 0):
    """The parts of a returned value by name: "output" for a tensor, "output.0", "output.1" for a tuple.
    Tensors on the CPU travel as they are; a tensor elsewhere (the meta device) only by its device, dtype
    and shape; `kinds` names the type of every part that is not a tensor."""
    if isinstance(value, torch.Tensor):
        if value.device.type == "cpu":
            tensors[prefix] = value.detach()
        else:
            devices[prefix] = {"device": value.device.type, "dtype": str(value.dtype).removeprefix("torch."),
                               "shape": list(value.shape)}
    elif isinstance(value, (tuple, list)) and depth < 2 and len(value) <= 16:
        kinds[prefix] = type(value).__name__
        for index, item in enumerate(value):
            flatten(f"{prefix}.{index}", item, tensors, kinds, devices, depth + 1)
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


def _output_tensors(output) -> list:
    """The floating tensors of an output, in `flatten`'s order (the ones grad_weights pair with)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [item for item in output if isinstance(item, torch.Tensor)]
    return []


def _gradients(call: wire.Call, module, args: list, output, tensors: dict):
    """grad.<i> and grad.param.<name>: the gradient of Σ output_i · grad_weights[i]. An input no gradient
    reaches is left out (the judge reads it as zeros)."""
    if isinstance(call.grad_weights, list):
        weights, outputs = call.grad_weights, _output_tensors(output)
    else:  # one tensor promised: a tuple or anything else gives no gradient (and its value check says why)
        weights, outputs = [call.grad_weights], [output] if isinstance(output, torch.Tensor) else []
    parts = [(part, weight) for part, weight in zip(outputs, weights)
             if part.requires_grad and part.shape == weight.shape]
    inputs = [(f"grad.{index}", args[index]) for index in call.grad_of]
    if call.grad_params and module is not None:
        inputs += [(f"grad.param.{name}", parameter) for name, parameter in module.named_parameters()]
    if not parts or not inputs:
        return
    loss = sum((part * weight.to(part.dtype)).sum() for part, weight in parts)
    grads = torch.autograd.grad(loss, [tensor for _, tensor in inputs], allow_unused=True)
    for (name, _), grad in zip(inputs, grads):
        if grad is not None:
            tensors[name] = grad.detach()


def execute(call: wire.Call) -> wire.Outcome:
    """Runs one call of the student's code (in this process) and returns what it gave."""
    tensors, kinds, devices = {}, {}, {}
    counter = CountTorchCalls() if call.count_torch_calls else contextlib.nullcontext()
    given = next((value for value in call.kwargs.values() if isinstance(value, torch.device)), None)
    spy = DeviceSpy(given) if given is not None else contextlib.nullcontext()
    if hasattr(BACKEND, "start"):
        BACKEND.start(call)
    try:
        module = build_module(call.module, call.training, call.module_key) if call.module is not None else None
        with isolated(call.target):
            if module is None:
                _, owner, name = resolve(call.target)
                function = getattr(owner, name)
            else:
                function = getattr(module, call.target.split(".")[-1])
            # Copies: code that writes into its inputs must not change the test's own tensors.
            args = [arg.clone() if isinstance(arg, torch.Tensor) else arg for arg in call.args]
            for index in call.grad_of:
                args[index] = args[index].detach().requires_grad_(True)
            gradients = torch.enable_grad() if call.grad_of or call.grad_params else torch.no_grad()
            with gradients, FixedDropout(call.dropout_seed), counter, spy:
                output = function(*args, **call.kwargs)
            if call.grad_of or call.grad_params:
                _gradients(call, module, args, output, tensors)
        flatten("output", output, tensors, kinds, devices)
        for name in call.read:
            flatten(f"read.{name}", getattr(module, name, None), tensors, kinds, devices)
        meta = {"status": "ok", "kinds": kinds, "devices": devices}
        if call.count_torch_calls:
            meta["torch_calls"] = counter.calls
        if given is not None:
            meta["device_used"] = spy.reached
        return wire.Outcome(meta, tensors)
    except Exception as error:  # the student's code may raise anything: it is reported, not re-raised
        file, line = where_raised(error)
        return wire.Outcome({"status": "error", "error": type(error).__name__,
                             "not_implemented": isinstance(error, NotImplementedError),
                             "given_scan": isinstance(error, GivenScanUsed),
                             "stand_in_refused": isinstance(error, StandInRefused), "file": file, "line": line},
                            {}, error)


# --- the sandbox's side of the regrade (autograde/wire.py describes the messages) ----------------------------


class RemoteBackend:
    """The stand-ins' answers, asked of the grader: a request goes out on the events pipe, the answer comes
    on standard input."""

    def __init__(self, stream, output_fd: int):
        self.stream, self.output_fd = stream, output_fd

    def _exchange(self, request: dict, tensors: dict):
        wire.write_frame(self.output_fd, json.dumps(request).encode())
        wire.write_frame(self.output_fd, wire.pack_tensors(tensors))
        reply, values = json.loads(wire.read_frame(self.stream)), wire.unpack_tensors(wire.read_frame(self.stream))
        if not reply.get("ok"):
            raise StandInRefused(f"the grader would not answer for {request.get('name', 'a stand-in')}: the call "
                                 f"asked it for more than a graded test ever needs")
        return wire.unpack_value(reply["value"], values)

    def request(self, name, params, config, args, grad_args, grad_params, keep):
        """(the grader's number for this request, the answer)."""
        packer = wire.Packer()
        request = {"event": "stand-in", "name": name, "config": packer.value(config), "args": packer.value(args),
                   "params": {key: packer.ref(value) for key, value in params.items()},
                   "grad_args": list(grad_args), "grad_params": list(grad_params), "keep": keep}
        answer = self._exchange(request, packer.tensors)
        if not (isinstance(answer, list) and len(answer) == 2 and isinstance(answer[0], int)):
            raise StandInRefused(f"the grader's answer for {name} could not be read")
        request_id, value = answer
        return request_id, tuple(value) if isinstance(value, list) else value

    def backward(self, request_id: int, grad_outputs: list):
        packer = wire.Packer()
        request = {"event": "stand-in-backward", "request": request_id, "grads": packer.value(grad_outputs)}
        return self._exchange(request, packer.tensors)


def serve(stream, output_fd: int) -> int:
    """The sandbox's main loop: import the student's files, then run each call as it arrives and send
    what it gave. Returns the exit status."""
    global BACKEND
    header = json.loads(wire.read_frame(stream))
    SKIPPED_MODULES.update(header.get("skip", ()))
    BACKEND = RemoteBackend(stream, output_fd)
    for short_name in MODEL_MODULES:
        if short_name in SKIPPED_MODULES:
            continue
        wire.write_frame(output_fd, json.dumps({"event": "import", "module": short_name}).encode())
        meta = {"status": "ok"}
        try:
            student_module(short_name)
        except Exception as error:  # reported; the calls of this file will raise it again
            file, line = where_raised(error)
            meta = {"status": "error", "error": type(error).__name__, "file": file, "line": line}
        wire.write_frame(output_fd, json.dumps({"event": "imported", "module": short_name, "meta": meta}).encode())
    while True:
        spec = json.loads(wire.read_frame(stream))
        if spec.get("type") != "call":
            break
        outcome = execute(wire.decode_call(spec, wire.unpack_tensors(wire.read_frame(stream))))
        wire.write_frame(output_fd, json.dumps({"event": "result", "meta": outcome.meta}).encode())
        wire.write_frame(output_fd, wire.pack_tensors(outcome.tensors))
    wire.write_frame(output_fd, json.dumps({"event": "finished"}).encode())
    return 0


def sandbox_main() -> int:
    """Entry point inside the sandbox: the limits the kernel cannot set from outside, then `serve`."""
    import resource

    settings = json.loads(os.environ.pop("PIGLATIN_PROBE", "{}"))
    for name, value in settings.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, name), (value, value))
    torch.set_num_threads(1)
    return serve(sys.stdin.buffer, int(settings.get("events_fd", 3)))
