"""The messages between a graded test and your code, and how they travel: one format, both ends.

A graded test describes each call of your code as a `Call` (which function, on which module, with which
inputs, what to bring back) and gets an `Outcome` (tensors by name, and a few facts). Under pytest both
stay in your process. In the course staff's regrade they cross a pipe between the grader and a sandbox:

    frame     an 8-byte little-endian length, then that many bytes
    message   a frame of JSON, followed (where it says so) by a frame of tensors in safetensors format;
              complex tensors travel as two real ones, "name::re" and "name::im"

    grader -> sandbox (standard input)
        {"skip": [files]}                            first: student files the sandbox must not import
        {"type": "call", ...} + tensors              one call at a time, sent when the last one has answered
        {"type": "stand-in", "ok", "value"} + tensors   the answer to each stand-in request
        {"type": "end"}
    sandbox -> grader (a pipe of its own)
        {"event": "import" | "imported", "module", "meta"}   per student file
        {"event": "stand-in", "name", "config", "args", "params", "keep"} + tensors
        {"event": "stand-in-backward", "request", "grads"} + tensors
        {"event": "result", "meta"} + tensors         when a call ends
        {"event": "finished"}

Nothing here trusts what it reads: the grader checks every name, type and size before it uses a value.
"""

import json
import os
import struct
from dataclasses import dataclass, field

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}
EVENTS_WITH_TENSORS = ("result", "stand-in", "stand-in-backward")


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
    """One call of a function students write (the *target*) and what to bring back from it."""

    target: str  # "module:qualified name", e.g. "mamba:pscan" or "transformer:MultiHeadAttention.forward"
    module: ModuleSpec = None  # None: the target is a plain function
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    read: tuple = ()  # module attributes to bring back after the call (e.g. "attention_weights")
    grad_weights: list = None  # bring back the gradient of Σ output_i · grad_weights[i] ...
    grad_of: tuple = ()  # ... with respect to these arguments (by index) ...
    grad_params: bool = False  # ... and to every parameter of the module
    count_torch_calls: bool = False
    training: bool = False  # the module in training mode (module.train()), else eval mode
    dropout_seed: int = 0  # dropout's masks are drawn from this (autograde/dropout.py)
    module_key: str = ""  # calls with the same key share one module (probe.build_module)


@dataclass
class Outcome:
    """What a call gave: `tensors` by name ("output", "output.0", "read.attention_weights", "grad.1",
    "grad.param.W_q.weight"), and `meta`: the status ("ok" or "error"), for errors the exception's type,
    whether it was a stub (NotImplementedError) and where in models/*.py it was raised; `kinds`, the type
    of any returned part that is not a tensor; `devices`, the device of any tensor not on the CPU."""

    meta: dict
    tensors: dict
    exception: BaseException = None  # in-process only: the sandbox never sends a message of its own


# --- frames ----------------------------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return struct.pack("<Q", len(payload)) + payload


def write_frame(fd: int, payload: bytes):
    data = frame(payload)
    while data:
        data = data[os.write(fd, data):]


class FrameTooLarge(Exception):
    """A frame longer than its reader allows."""


def read_frame(stream, limit: int = 1 << 62) -> bytes:
    """One frame's payload; EOFError when the stream ends first, FrameTooLarge past `limit` bytes."""
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the pipe closed")
    size = struct.unpack("<Q", header)[0]
    if size > limit:
        raise FrameTooLarge(f"a frame of {size} bytes (at most {limit})")
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the pipe closed inside a frame")
    return payload


def message(value: dict, tensors: dict = None) -> bytes:
    """A JSON frame, and a tensors frame when `tensors` is given (even empty)."""
    data = frame(json.dumps(value).encode())
    return data if tensors is None else data + frame(pack_tensors(tensors))


# --- tensors ---------------------------------------------------------------------------------------------------


def to_real(tensors: dict) -> dict:
    real = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if tensor.is_complex():
            real[f"{name}::re"] = tensor.real.contiguous().clone()
            real[f"{name}::im"] = tensor.imag.contiguous().clone()
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
    """Names every tensor of a message once ("t0", "t1", ...) so that values can refer to them in JSON."""

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
        if isinstance(value, torch.device):
            return {"device": str(value)}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {"dict": {str(key): self.value(item) for key, item in value.items()}}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"a message cannot carry a {type(value).__name__}")


def unpack_value(value, tensors: dict):
    """The value a Packer wrote; a reference to a tensor that is not there raises KeyError."""
    if isinstance(value, dict) and "tensor" in value:
        return tensors[value["tensor"]]
    if isinstance(value, dict) and "device" in value and value["device"] in ("cpu", "meta"):
        return torch.device(value["device"])
    if isinstance(value, dict) and "dict" in value:
        return {key: unpack_value(item, tensors) for key, item in value["dict"].items()}
    if isinstance(value, list):
        return [unpack_value(item, tensors) for item in value]
    return value


# --- calls ------------------------------------------------------------------------------------------------------


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
            "grad_weights": packer.value(call.grad_weights), "grad_of": list(call.grad_of),
            "grad_params": call.grad_params, "count_torch_calls": call.count_torch_calls,
            "training": call.training, "dropout_seed": call.dropout_seed, "module_key": call.module_key}
    return message(spec, packer.tensors)


def decode_call(spec: dict, tensors: dict) -> Call:
    module = None
    if spec["module"] is not None:
        m = spec["module"]
        module = ModuleSpec(m["path"], unpack_value(m["kwargs"], tensors),
                            {name: tensors[ref] for name, ref in m["state"].items()}, m["dtype"],
                            unpack_value(m["attributes"], tensors))
    return Call(spec["target"], module, unpack_value(spec["args"], tensors), unpack_value(spec["kwargs"], tensors),
                tuple(spec["read"]), unpack_value(spec["grad_weights"], tensors), tuple(spec["grad_of"]),
                spec["grad_params"], spec["count_torch_calls"], spec["training"], spec["dropout_seed"],
                str(spec.get("module_key", ""))[:200])
