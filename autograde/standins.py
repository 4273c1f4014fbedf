"""The stand-ins' answers: what the other functions you write would give, computed by the oracles.

While a graded call runs one function of yours (its *target*), the functions it calls are answered here
(autograde/probe.py sends each request), and so are their gradients: a request that autograd needs keeps
its inputs, and the backward pass asks for the exact vector-Jacobian product of the trusted function.

One `Server` serves one call. It answers only for the functions the call's target calls
(`probe.CALLEES`), and checks every request before an oracle sees it: names, the types and ranges of
the module's attributes, argument counts, the size of every tensor and of the work the oracle would do.
Under pytest it runs in your process (`LocalBackend`); in the regrade it runs in the grader, outside the
sandbox, where every request comes from student code and the limits keep the grader's memory and time
bounded whatever a submission asks.
"""

import math

import torch

from autograde import oracles
from autograde.probe import ARGUMENTS, CALLEES, SPY_SCALE, SPY_SCAN

# What one request may ask: the graded tests' own calls stay far below these (their largest stand-in
# tensors have a few thousand values); an oracle's intermediates then stay a few MB.
TENSOR_LIMIT = 1 << 16  # values in any one tensor
REQUEST_LIMIT = 1 << 18  # values in all the tensors of a request
WORK_LIMIT = 1 << 20  # values in the oracle's largest intermediate (an attention's B·h·T·S, a scan's B·L·E·N)
SIZE_LIMIT = 4096  # an integer argument (a mask's length, a table's size)
LENGTH_LIMIT = 4096  # a sequence's length (axis 1): the oracles' scans loop over it
REQUESTS_PER_CALL = 256
KEPT_PER_CALL = 64  # requests whose inputs are kept for the backward pass

CONFIG = {"num_heads": int, "causal": bool, "num_layers": int, "dt_rank": int, "state_size": int,
          "expanded_size": int, "conv_kernel": int, "discretization": str, "alpha": float, "scale": float,
          "dropout": float, "training": bool}
INT_LIMITS = {"num_heads": 64, "num_layers": 64, "dt_rank": 256, "state_size": 256, "expanded_size": 4096,
              "conv_kernel": 64}
class Refused(Exception):
    """A request the server will not answer (the student's call then fails)."""


def clean_config(config) -> dict:
    """A request's module attributes, of the expected types and ranges (anything else refused)."""
    if not isinstance(config, dict):
        raise Refused("config")
    clean = {}
    for key, value in config.items():
        kind = CONFIG.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Refused(key)
        if kind is int and not 1 <= value <= INT_LIMITS[key]:
            raise Refused(key)
        if key == "discretization" and value not in ("zoh", "zoh_exact", "bilinear"):
            raise Refused(key)
        if kind is float and not (math.isfinite(value) and -1e3 < value < 1e3):
            raise Refused(key)
        if key == "dropout" and not 0 <= value < 1:
            raise Refused(key)
        clean[key] = value
    return clean


def work(name: str, params: dict, config: dict, args: list) -> int:
    """The values in the largest intermediate the oracle would make for this request, from the shapes it
    was given (never from what the request says of them)."""
    tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
    largest = max((t.numel() for t in [*tensors, *params.values()]), default=1)
    if name in ("transformer:causal_mask", "transformer:sinusoidal_positional_encoding"):
        sizes = [int(arg) for arg in args if isinstance(arg, int)]
        return math.prod(sizes) if len(sizes) == 2 else WORK_LIMIT + 1
    if name in ("mamba:discretize_bilinear", "mamba:MambaBlock.selective_scan"):  # Ā, B̄ are (B, L, E, N)
        delta, A = (args[0], args[1]) if name == "mamba:discretize_bilinear" else (args[1], args[2])
        if not (isinstance(delta, torch.Tensor) and isinstance(A, torch.Tensor) and delta.dim() >= 1):
            return WORK_LIMIT + 1
        return max(largest, math.prod(delta.shape[:-1]) * A.numel())
    if name.startswith(("mamba:MambaBlock", "mamba:ResidualBlock")):  # (B, L, E, N) again, N from A_log
        A_log = next((value for key, value in params.items() if key.endswith("A_log")), None)
        x = args[0] if args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 1 else None
        if A_log is None or x is None:
            return WORK_LIMIT + 1
        return max(largest * 2, math.prod(x.shape[:-1]) * A_log.numel())
    if name.startswith("transformer:") and not name.endswith(("split_heads", "merge_heads")):
        shapes = [t.shape for t in tensors if t.dim() >= 2]
        batch = max((shape[0] for shape in shapes), default=0)
        length = max((shape[1] for shape in shapes), default=0)
        return max(largest * 4, batch * config.get("num_heads", 1) * length * length)  # the MLP is 4H wide
    return largest


def _value(name: str, params: dict, config: dict, args: list, seed: int):
    """The oracle's answer (a tensor, or a tuple of them)."""
    dropout = (config.get("dropout", 0.0), seed) if config.get("training") and config.get("dropout") else None
    if name == "transformer:causal_mask":
        return oracles.causal_mask(int(args[0]), int(args[1]))
    if name == "transformer:sinusoidal_positional_encoding":
        return oracles.sinusoidal_positional_encoding(int(args[0]), int(args[1]))
    if name == "mamba:discretize_bilinear":
        return oracles.discretize_bilinear(*args[:3], float(args[3]) if len(args) > 3 else 0.5)
    if name == "mamba:pscan":
        return oracles.scan(args[0], args[1])
    if name == SPY_SCAN:
        return SPY_SCALE * oracles.scan(args[0], args[1])
    if name == "transformer:MultiHeadAttention.split_heads":
        return oracles.split_heads(args[0], config["num_heads"])
    if name == "transformer:MultiHeadAttention.merge_heads":
        return oracles.merge_heads(args[0])
    if name == "transformer:MultiHeadAttention.forward":
        return oracles.attention(params, config, *args[:3], dropout=dropout)
    if name == "transformer:EncoderLayer.forward":
        return oracles.encoder_layer(params, config, args[0], dropout=dropout)
    if name == "transformer:DecoderLayer.forward":
        return oracles.decoder_layer(params, config, args[0], args[1], dropout=dropout)
    if name == "transformer:TransformerEncoder.forward":
        return oracles.encoder(params, config, args[0])
    if name == "transformer:TransformerDecoder.forward":
        return oracles.decoder(params, config, args[0], args[1])
    if name == "mamba:MambaBlock.forward":
        return oracles.mixer(params, config, args[0])
    if name == "mamba:MambaBlock.ssm":
        return oracles.ssm(params, config, args[0], config.get("scale", 1.0))
    if name == "mamba:MambaBlock.selective_scan":
        return oracles.selective_scan(*args[:6], config["discretization"], config["alpha"], config.get("scale", 1.0))
    if name == "mamba:ResidualBlock.forward":
        return oracles.residual_block(params, config, args[0])
    raise Refused(name)


def _check_tensors(tensors: list):
    if any(not isinstance(t, torch.Tensor) or t.numel() > TENSOR_LIMIT or t.dim() > 6 or
           (t.dim() >= 2 and t.shape[1] > LENGTH_LIMIT) for t in tensors) or \
            sum(t.numel() for t in tensors) > REQUEST_LIMIT:
        raise Refused("size")
    if any(t.dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128, torch.int64, torch.bool)
           for t in tensors):
        raise Refused("dtype")


class Server:
    """Answers the stand-in requests of one call: `request` (a value) and `backward` (its gradients)."""

    def __init__(self, target: str, dropout_seed: int = 0, state: dict = None):
        """`state`: the parameters the call's module was built with (name -> tensor): a request for one of
        its submodules must send parameters of exactly the shapes of one of them."""
        self.target, self.seed = target, dropout_seed
        self.shapes = {name: tuple(tensor.shape) for name, tensor in (state or {}).items()}
        self.answered, self.kept = 0, {}

    def known_parameters(self, params: dict) -> bool:
        """The names and shapes of the call's module, or of one of its submodules (after a prefix)."""
        if not params:
            return True
        first = next(iter(params))
        for name in self.shapes:
            if name.endswith(first) and (name == first or name[-len(first) - 1] == "."):
                prefix = name[:len(name) - len(first)]
                wanted = {key[len(prefix):]: shape for key, shape in self.shapes.items() if key.startswith(prefix)}
                if wanted == {key: tuple(value.shape) for key, value in params.items()}:
                    return True
        return False

    def request(self, name, params: dict, config, args, grad_args=(), grad_params=(), keep: bool = False):
        """(request id, the answer) for one stand-in call; Refused for anything out of bounds."""
        if not isinstance(name, str) or name not in CALLEES.get(self.target, ()):
            raise Refused("name")
        if self.answered >= REQUESTS_PER_CALL or (keep and len(self.kept) >= KEPT_PER_CALL):
            raise Refused("count")
        low, high = ARGUMENTS[name]
        if not isinstance(args, list) or not low <= len(args) <= high or not isinstance(params, dict):
            raise Refused("arguments")
        if any(isinstance(arg, bool) or not isinstance(arg, (torch.Tensor, int, float)) for arg in args) or any(
                isinstance(arg, int) and not 0 <= arg <= SIZE_LIMIT for arg in args):
            raise Refused("arguments")
        _check_tensors([*[arg for arg in args if isinstance(arg, torch.Tensor)], *params.values()])
        if not self.known_parameters(params):
            raise Refused("parameters")
        config = clean_config(config)
        if work(name, params, config, args) > WORK_LIMIT:
            raise Refused("work")
        grad_args, grad_params = list(grad_args), list(grad_params)
        if any(not isinstance(i, int) or not 0 <= i < len(args) or not isinstance(args[i], torch.Tensor)
               for i in grad_args) or any(key not in params for key in grad_params):
            raise Refused("gradients")
        with torch.no_grad():
            value = _value(name, params, config, args, self.seed)
        request_id = self.answered
        self.answered += 1
        if keep:
            self.kept[request_id] = (name, params, config, args, grad_args, grad_params)
        return request_id, value

    def backward(self, request_id, grad_outputs) -> list:
        """The gradient of Σ output_i · grad_outputs[i] with respect to each differentiable input of a kept
        request (its floating arguments, then its floating parameters), None where none reaches it."""
        if not isinstance(request_id, int) or request_id not in self.kept:
            raise Refused("request")
        name, params, config, args, grad_args, grad_params = self.kept.pop(request_id)
        if not isinstance(grad_outputs, list):
            raise Refused("gradients")
        args, params = list(args), dict(params)
        inputs = []
        for index in grad_args:
            args[index] = args[index].detach().clone().requires_grad_(True)
            inputs.append(args[index])
        for key in grad_params:
            params[key] = params[key].detach().clone().requires_grad_(True)
            inputs.append(params[key])
        with torch.enable_grad():
            value = _value(name, params, config, args, self.seed)
        outputs = list(value) if isinstance(value, tuple) else [value]
        pairs = []
        for output, grad in zip(outputs, grad_outputs):
            if grad is None or not output.requires_grad:
                continue
            if not isinstance(grad, torch.Tensor) or grad.shape != output.shape:
                raise Refused("gradients")
            pairs.append((output, grad.to(output.dtype)))
        if not pairs or not inputs:
            return [None] * len(inputs)
        grads = torch.autograd.grad([output for output, _ in pairs], inputs, [grad for _, grad in pairs],
                                    allow_unused=True)
        return [None if grad is None else grad.detach() for grad in grads]


class LocalBackend:
    """The stand-ins' answers in this process (pytest): a fresh `Server` for each call."""

    def __init__(self):
        self.server = None

    def start(self, call):
        self.server = Server(call.target, call.dropout_seed, call.module.state if call.module else None)

    def request(self, name, params, config, args, grad_args, grad_params, keep):
        from autograde.probe import StandInRefused

        try:
            with torch._C.DisableTorchFunction():  # the call's dropout masks and counters are the student's own
                return self.server.request(name, params, config, args, grad_args, grad_params, keep)
        except Refused:
            raise StandInRefused(f"the grader would not answer for {name}: the call asked it for more than a "
                                 f"graded test ever needs") from None

    def backward(self, request_id, grad_outputs):
        from autograde.probe import StandInRefused

        try:
            with torch._C.DisableTorchFunction():
                return self.server.backward(request_id, grad_outputs)
        except Refused:
            raise StandInRefused("the grader would not answer for a gradient: the call asked it for more than a "
                                 "graded test ever needs") from None
