"""Every function you write, as the graded tests see it: how its inputs are drawn, its oracle, its
tolerance, and what it promises (its output's type, dtype and shape; whether gradients pass; whether it
has dropout; whether it is causal).

One declaration per function, read by one check (autograde/uniform.py), so that every function is judged
the same way: on its values over several shapes and settings, its gradients, training mode, a second call
with other sizes, each batch row alone, and its promises. Sizes are named (`batch`, `length`, `hidden`,
...); `sizes` are the base point, `variants` change one size or setting each, and `settings` are the
configurations whose values and gradients are checked at the base sizes.
"""

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from autograde import oracles, wire
from autograde.oracles import sub
from autograde.probe import SPY_SCALE, SPY_SCAN

VOCAB_SIZE = 29
DROPOUT = 0.5  # every module with dropout gets this much: in eval mode it must be off
FLOAT64 = (1e-9, 1e-7)  # (atol, rtol): float64 rounding is ~1e-16
FLOAT32 = (1e-5, 1e-4)  # float32 outputs of a few layers: differences of ~1e-7 are rounding
SCAN = (1e-6, 1e-5)  # a scan that takes its logarithms in complex64 even for float64 inputs is right too
# Past ~700 steps the cumulative decay a*_t leaves what exp() can hold; a log-space scan in complex64 then
# loses ~|a*| × 6e-8 of relative precision: still right, and nothing like an overflow's inf or nan.
LONG_SCAN = (1e-4, 1e-3)


@dataclass(frozen=True)
class Draw:
    """What one call needs: the module's constructor options (None for a plain function), the arguments,
    attributes set on the module after loading, and keyword arguments."""

    module: dict = None
    args: list = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Function:
    """One function students write, for the uniform check (autograde/uniform.py)."""

    target: str  # "transformer:MultiHeadAttention.forward"
    draw: object  # (case, point) -> Draw
    oracle: object  # (handle or None, args, point, dropout=None) -> the expected output (tensor or tuple)
    sizes: dict  # the base point: sizes, settings and "dtype"
    variants: tuple = ()  # each changes one entry of the base point
    settings: tuple = ({},)  # configurations checked with values and gradients at the base sizes
    describe: object = None  # (point) -> the inputs in words, for messages
    module: str = None  # "transformer:MultiHeadAttention" when the target is a method
    method: str = "forward"
    tolerance: object = None  # (point) -> (atol, rtol); default FLOAT64 / FLOAT32 by dtype
    grads: tuple = ()  # the arguments gradients must reach (by index)
    params: bool = False  # gradients must reach the module's parameters
    dropout: bool = False  # the module has dropout, where its docstring places it (checked in training mode)
    training: bool = False  # a module with code that may branch on self.training (train mode is checked)
    causal: tuple = ()  # arguments whose later positions (axis 1) must not change earlier outputs
    length: str = "length"  # the point's entry that sizes that axis ("queries" for attention)
    batched: tuple = ()  # arguments with a batch axis 0 (each row alone must give its row of the batch)
    read: tuple = ()  # module attributes the README promises after a call
    returns: int = 1  # how many tensors it returns (2: a tuple)
    alternatives: object = None  # (handle, args, point) -> {label: (cause, tensor)}
    again: dict = None  # for a module: other input sizes it is called with again, the same instance (uniform.py)
    names: tuple = ("x",)  # the arguments' names, for messages
    dtype_promise: str = "the dtype of its input"  # what the docstring says of the output's dtype

    @property
    def name(self) -> str:
        return self.target.split(":", 1)[1]

    def call_in_words(self, point: dict, context: str = "") -> str:
        """`causal_mask(5, 8)`, or `MultiHeadAttention.forward with self-attention, 4 heads, ...`, and what
        the check changed (training mode, a row alone...)."""
        described = self.describe(point)
        words = described if described.startswith(self.name.split(".")[-1]) else f"{self.name} with {described}"
        return f"{words}{context}"

    def tolerance_at(self, point: dict) -> tuple:
        if self.tolerance is not None:
            return self.tolerance(point)
        return FLOAT64 if point.get("dtype", "float64") == "float64" else FLOAT32


def dtype_of(point: dict) -> torch.dtype:
    return wire.DTYPES[point.get("dtype", "float64")]


def size(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


# --- Q1.1 multi-head attention -----------------------------------------------------------------------------


def mask_draw(case, point):
    """causal_mask(T, S), and with `device` given (the check sees whether it reaches a torch function)."""
    device = {"device": torch.device(point["device"])} if point.get("device") else {}
    return Draw(args=[point["queries"], point["keys"]], kwargs=device)


def mask_oracle(handle, args, point, dropout=None):
    return oracles.causal_mask(*args)


def mask_alternatives(handle, args, point):
    T, S = args
    expected = oracles.causal_mask(T, S)
    return {
        "a mask on the wrong side of the diagonal (each position sees the future, not the past)":
            ("mask-side", (torch.arange(S)[None, :] >= torch.arange(T)[:, None])),
        "a mask that hides each position from itself":
            ("mask-off-by-one", expected & ~torch.eye(T, S, dtype=torch.bool)),
        "a mask that lets each position see the next one":
            ("mask-off-by-one", torch.arange(S)[None, :] <= torch.arange(T)[:, None] + 1),
    }


CAUSAL_MASK = Function(
    "transformer:causal_mask", mask_draw, mask_oracle,
    sizes={"queries": 5, "keys": 5},
    variants=({"keys": 8}, {"queries": 8}, {"queries": 1, "keys": 1}, {"queries": 7, "keys": 7}, {"device": "cpu"}),
    describe=lambda p: f"causal_mask({p['queries']}, {p['keys']}" + (f", device={p['device']})" if p.get("device")
                                                                      else ")"),
    alternatives=mask_alternatives, names=("query_length", "key_length"),
    dtype_promise="a boolean mask")


def heads_draw(case, point):
    hidden, heads = point["hidden"], point["heads"]
    x = case.randn(point["batch"], point["length"], hidden, dtype=dtype_of(point))
    if point.get("split") is False:  # merge_heads takes the heads
        x = oracles.split_heads(x, heads)
    return Draw(module={"hidden_size": hidden, "num_heads": heads}, args=[x])


HEADS_SIZES = {"batch": 2, "length": 5, "hidden": 12, "heads": 3, "dtype": "float64"}
HEADS_VARIANTS = ({"batch": 1}, {"length": 1}, {"length": 7}, {"hidden": 8, "heads": 2}, {"heads": 4},
                  {"dtype": "float32"})


def heads_describe(point):
    return f"a ({point['batch']}, {point['length']}, {point['hidden']}) input, {point['heads']} heads, {point['dtype']}"


SPLIT_HEADS = Function(
    "transformer:MultiHeadAttention.split_heads", heads_draw,
    lambda handle, args, point, dropout=None: oracles.split_heads(args[0], point["heads"]),
    sizes=HEADS_SIZES, variants=HEADS_VARIANTS, describe=heads_describe, module="transformer:MultiHeadAttention",
    method="split_heads", grads=(0,), batched=(0,), tolerance=lambda p: (0.0, 0.0),
    alternatives=lambda handle, args, point: {"splitting the features as (d h) instead of (h d)": (
        "heads-order", args[0].reshape(*args[0].shape[:2], -1, point["heads"]).permute(0, 3, 1, 2))},
    again={"length": 7, "batch": 1})

MERGE_HEADS = Function(
    "transformer:MultiHeadAttention.merge_heads", heads_draw,
    lambda handle, args, point, dropout=None: oracles.merge_heads(args[0]),
    sizes={**HEADS_SIZES, "split": False}, variants=HEADS_VARIANTS, describe=heads_describe,
    module="transformer:MultiHeadAttention", method="merge_heads", grads=(0,), batched=(0,),
    tolerance=lambda p: (0.0, 0.0),
    alternatives=lambda handle, args, point: {"merging the features as (d h) instead of (h d)": (
        "heads-order", args[0].permute(0, 2, 3, 1).reshape(args[0].shape[0], args[0].shape[2], -1))},
    again={"length": 7, "batch": 1})


def attention_draw(case, point):
    dtype, hidden = dtype_of(point), point["hidden"]
    query = case.randn(point["batch"], point["queries"], hidden, dtype=dtype)
    if point.get("cross"):  # keys and values differ, so that projecting the values from the keys shows
        key = case.randn(point["batch"], point["keys"], hidden, dtype=dtype)
        value = case.randn(point["batch"], point["keys"], hidden, dtype=dtype)
    else:
        key = value = query
    return Draw(module={"hidden_size": hidden, "num_heads": point["heads"], "causal": point["causal"],
                        "dropout": point.get("dropout", DROPOUT)}, args=[query, key, value])


def attention_oracle(handle, args, point, dropout=None):
    return oracles.attention(handle.params, handle.config, *args, dropout=dropout)


def attention_alternatives(handle, args, point):
    params, config = handle.params, handle.config
    query, key, value = args
    hidden = query.shape[-1]
    out = {
        "scores not divided by √d": ("scale", oracles.attention(params, config, *args, scale=1.0)[0]),
        "scores divided by √H (the hidden size) instead of √d (the head size)":
            ("scale", oracles.attention(params, config, *args, scale=hidden ** -0.5)[0]),
        "values projected from the keys (W_v applied to `key`, not `value`)":
            ("wrong-input", oracles.attention(params, config, query, key, key)[0]),
        "no output projection W_o": ("missing-step", oracles.attention(
            {**params, "W_o.weight": torch.eye(hidden, dtype=query.dtype),
             "W_o.bias": torch.zeros(hidden, dtype=query.dtype)}, config, *args)[0]),
        "dropout applied in eval mode too": ("dropout", oracles.attention(
            params, config, *args, dropout=(point.get("dropout", DROPOUT), point.get("seed", 0)))[0]),
    }
    if config.get("causal"):
        T, S = query.shape[1], key.shape[1]
        out["a mask on the wrong side of the diagonal (each position sees the future, not the past)"] = (
            "mask-side", oracles.attention(params, config, *args, mask=oracles.causal_mask(S, T).T)[0])
        out["no mask at all"] = ("mask-missing", oracles.attention(params, {**config, "causal": False}, *args)[0])
    return out


def attention_describe(point):
    kind = ("causal self-attention" if point["causal"] else
            "cross-attention" if point.get("cross") else "self-attention")
    keys = f", {point['keys']} keys" if point.get("cross") else ""
    return (f"{kind}, {point['heads']} heads, a batch of {point['batch']}, {point['queries']} queries{keys}, "
            f"hidden size {point['hidden']}, {point['dtype']}")


ATTENTION = Function(
    "transformer:MultiHeadAttention.forward", attention_draw, attention_oracle,
    sizes={"batch": 3, "queries": 6, "keys": 6, "hidden": 16, "heads": 4, "causal": False, "dtype": "float64"},
    variants=({"batch": 1}, {"queries": 1, "keys": 1}, {"queries": 9, "keys": 9}, {"heads": 2}, {"heads": 1},
              {"dtype": "float32"}),
    settings=({"causal": False}, {"causal": False, "cross": True, "queries": 3, "keys": 7}),
    describe=attention_describe, module="transformer:MultiHeadAttention", grads=(0, 1, 2), params=True,
    dropout=True, training=True, batched=(0, 1, 2), read=("attention_weights",), names=("query", "key", "value"),
    alternatives=attention_alternatives,
    again={"queries": 9, "keys": 9, "batch": 2})


# --- Q1.2 encoder and Q1.3 decoder ----------------------------------------------------------------------------


def swapped(params: dict, first: str, second: str) -> dict:
    """The parameters with two submodules' exchanged (what using one norm in place of the other gives)."""
    a, b = sub(params, first), sub(params, second)
    out = dict(params)
    out.update({f"{first}.{k}": v for k, v in b.items()})
    out.update({f"{second}.{k}": v for k, v in a.items()})
    return out


def copied(params: dict, source: str, target: str) -> dict:
    """The parameters with `target`'s replaced by `source`'s (one module used for both)."""
    out = dict(params)
    out.update({f"{target}.{k}": v for k, v in sub(params, source).items()})
    return out


def constant(params: dict, name: str, value: float) -> dict:
    out = dict(params)
    out[name] = torch.full_like(params[name], value)
    return out


def plain_norm(params: dict, name: str) -> dict:
    """A LayerNorm with weight 1 and bias 0: what normalising by hand, without the module, gives."""
    return constant(constant(params, f"{name}.weight", 1.0), f"{name}.bias", 0.0)


def positions_draw(case, point):
    return Draw(args=[point["length"], point["hidden"]])


def positions_alternatives(handle, args, point):
    length, hidden = args
    position = torch.arange(length, dtype=torch.float64)[:, None]
    i = torch.arange(hidden // 2, dtype=torch.float64)[None, :]

    def table(first, second, exponent):
        angle = position / 10000 ** (exponent * i / hidden)
        return torch.stack([first(angle), second(angle)], dim=-1).reshape(length, hidden).float()

    return {"cos on the even columns and sin on the odd ones": ("sin-cos", table(torch.cos, torch.sin, 2)),
            "10000^(i/H) instead of 10000^(2i/H)": ("exponent", table(torch.sin, torch.cos, 1))}


POSITIONS = Function(
    "transformer:sinusoidal_positional_encoding", positions_draw,
    lambda handle, args, point, dropout=None: oracles.sinusoidal_positional_encoding(*args),
    sizes={"length": 50, "hidden": 16}, variants=({"hidden": 6}, {"length": 9}, {"length": 1, "hidden": 2},
                                                  {"length": 64, "hidden": 64}),
    describe=lambda p: f"sinusoidal_positional_encoding({p['length']}, {p['hidden']})",
    tolerance=lambda p: (1e-5, 1e-5), alternatives=positions_alternatives, names=("max_length", "hidden_size"),
    dtype_promise="a float32 table")


def layer_draw(case, point):
    dtype, hidden = dtype_of(point), point["hidden"]
    x = case.randn(point["batch"], point["length"], hidden, dtype=dtype)
    args = [x] if "source" not in point else [x, case.randn(point["batch"], point["source"], hidden, dtype=dtype)]
    return Draw(module={"hidden_size": hidden, "num_heads": point["heads"], "dropout": point.get("dropout", DROPOUT)},
                args=args)


def layer_describe(point):
    source = f" and annotations ({point['batch']}, {point['source']}, {point['hidden']})" if "source" in point else ""
    return (f"an input ({point['batch']}, {point['length']}, {point['hidden']}){source}, {point['heads']} heads, "
            f"{point['dtype']}")


LAYER_VARIANTS = ({"batch": 1}, {"length": 1}, {"length": 9}, {"heads": 4}, {"dtype": "float32"})

ENCODER_LAYER = Function(
    "transformer:EncoderLayer.forward", layer_draw,
    lambda handle, args, point, dropout=None: oracles.encoder_layer(handle.params, handle.config, args[0], dropout),
    sizes={"batch": 3, "length": 6, "hidden": 16, "heads": 2, "dtype": "float64"}, variants=LAYER_VARIANTS,
    describe=layer_describe, module="transformer:EncoderLayer", grads=(0,), params=True, dropout=True,
    training=True, batched=(0,),
    alternatives=lambda handle, args, point: {
        "the two LayerNorms exchanged": ("norms", oracles.encoder_layer(
            swapped(handle.params, "attention_norm", "feed_forward_norm"), handle.config, args[0])),
        "attention_norm used for both sublayers": ("norms", oracles.encoder_layer(
            copied(handle.params, "attention_norm", "feed_forward_norm"), handle.config, args[0])),
        "a normalisation without the LayerNorms' own weights": ("norms", oracles.encoder_layer(
            plain_norm(plain_norm(handle.params, "attention_norm"), "feed_forward_norm"), handle.config, args[0]))},
    again={"length": 9, "batch": 2})

DECODER_LAYER = Function(
    "transformer:DecoderLayer.forward", layer_draw,
    lambda handle, args, point, dropout=None: oracles.decoder_layer(handle.params, handle.config, *args, dropout),
    sizes={"batch": 3, "length": 5, "source": 7, "hidden": 16, "heads": 2, "dtype": "float64"},
    variants=(*LAYER_VARIANTS, {"source": 1}), describe=layer_describe, module="transformer:DecoderLayer",
    grads=(0, 1), params=True, dropout=True, training=True, causal=(0,), batched=(0, 1),
    names=("x", "annotations"),
    alternatives=lambda handle, args, point: {
        "self-attention through the cross_attention module (not causal)": ("wrong-module", oracles.decoder_layer(
            copied(handle.params, "cross_attention", "self_attention"), handle.config, *args)),
        "the self- and cross-attention norms exchanged": ("norms", oracles.decoder_layer(
            swapped(handle.params, "self_attention_norm", "cross_attention_norm"), handle.config, *args))},
    again={"length": 8, "source": 3})


def stack_draw(case, point):
    dtype, hidden, batch = dtype_of(point), point["hidden"], point["batch"]
    module = {"vocab_size": VOCAB_SIZE, "hidden_size": hidden, "num_heads": point["heads"],
              "num_layers": point["layers"], "dropout": point.get("dropout", DROPOUT),
              "positional": point["positional"]}
    tokens = case.randint(0, VOCAB_SIZE, (batch, point["length"]))
    if "source" not in point:
        return Draw(module=module, args=[tokens])
    return Draw(module=module, args=[tokens, case.randn(batch, point["source"], hidden, dtype=dtype)])


def stack_describe(point):
    source = f" and annotations ({point['batch']}, {point['source']}, {point['hidden']})" if "source" in point else ""
    return (f"{point['batch']}×{point['length']} tokens{source}, {point['layers']} layers, {point['heads']} heads, "
            f"hidden size {point['hidden']}, {point['positional']} positions, {point['dtype']}")


STACK_VARIANTS = ({"batch": 1}, {"length": 1}, {"length": 8}, {"layers": 3}, {"dtype": "float32"})
# Both kinds of positions are settings, values and gradients: a learned table is a parameter, a sinusoidal one not.
STACK_SETTINGS = ({"positional": "learned"}, {"positional": "sinusoidal"})

ENCODER = Function(
    "transformer:TransformerEncoder.forward", stack_draw,
    lambda handle, args, point, dropout=None: oracles.encoder(handle.params, handle.config, args[0], dropout),
    sizes={"batch": 3, "length": 5, "hidden": 16, "heads": 2, "layers": 2, "positional": "learned", "dtype": "float64"},
    variants=STACK_VARIANTS, settings=STACK_SETTINGS, describe=stack_describe, module="transformer:TransformerEncoder",
    params=True,
    dropout=True, training=True, batched=(0,), names=("source",),
    alternatives=lambda handle, args, point: {
        "no positions added": ("missing-step", oracles.encoder(constant(handle.params, "positions.table", 0.0),
                                                               handle.config, args[0])),
        "only the first layer": ("missing-step", oracles.encoder(handle.params, {**handle.config, "num_layers": 1},
                                                                 args[0]))},
    again={"length": 8, "batch": 2})

DECODER = Function(
    "transformer:TransformerDecoder.forward", stack_draw,
    lambda handle, args, point, dropout=None: oracles.decoder(handle.params, handle.config, *args, dropout),
    sizes={"batch": 3, "length": 6, "source": 4, "hidden": 16, "heads": 2, "layers": 2, "positional": "sinusoidal",
           "dtype": "float64"},
    variants=(*STACK_VARIANTS, {"source": 9}), settings=STACK_SETTINGS[::-1], describe=stack_describe, module="transformer:TransformerDecoder", grads=(1,), params=True, dropout=True,
    training=True, causal=(0,), batched=(0, 1), names=("target_in", "annotations"),
    alternatives=lambda handle, args, point: {
        "no positions added (the original starter code's bug)": ("missing-step", oracles.decoder(
            constant(handle.params, "positions.table", 0.0), handle.config, *args))},
    again={"length": 7, "source": 5})


# --- Q2.1 discretisation -----------------------------------------------------------------------------------


def ssm_inputs(case, batch, length, expanded, state, dtype):
    """Δ (B, L, E) > 0, a stable diagonal A (E, N) < 0, B (B, L, N)."""
    delta = F.softplus(case.randn(batch, length, expanded, dtype=dtype))
    A = -case.rand(expanded, state, dtype=dtype) * 4 - 0.1
    B = case.randn(batch, length, state, dtype=dtype)
    return delta, A, B


def bilinear_draw(case, point):
    delta, A, B = ssm_inputs(case, point["batch"], point["length"], point["expanded"], point["state"], dtype_of(point))
    return Draw(args=[delta, A, B, point["alpha"]])


def bilinear_alternatives(handle, args, point):
    delta, A, B, alpha = args
    swapped_A, swapped_B = oracles.discretize_bilinear(delta, A, B, 1 - alpha)
    zoh_A, zoh_B = oracles.discretize(delta, A, B, "zoh", alpha)
    return {"α and 1−α exchanged": ("alpha", (swapped_A, swapped_B)),
            "the zero-order hold (exp(ΔA), ΔB)": ("zoh", (zoh_A.to(delta.dtype), zoh_B.to(delta.dtype)))}


DISCRETIZE = Function(
    "mamba:discretize_bilinear", bilinear_draw,
    lambda handle, args, point, dropout=None: oracles.discretize_bilinear(*args),
    sizes={"batch": 2, "length": 5, "expanded": 3, "state": 4, "alpha": 0.5, "dtype": "float64"},
    variants=({"batch": 1}, {"length": 1}, {"length": 8}, {"expanded": 6}, {"state": 1}, {"dtype": "float32"}),
    settings=({"alpha": 0.5}, {"alpha": 0.25}, {"alpha": 0.8}, {"alpha": 1.0}, {"alpha": 0.0}),
    describe=lambda p: (f"Δ ({p['batch']}, {p['length']}, {p['expanded']}), A ({p['expanded']}, {p['state']}), "
                        f"B ({p['batch']}, {p['length']}, {p['state']}), α = {p['alpha']}, {p['dtype']}"),
    grads=(0, 1, 2), batched=(0, 2), returns=2, alternatives=bilinear_alternatives, names=("delta", "A", "B", "alpha"),
    dtype_promise="the dtype of delta")


# --- Q2.2 parallel scan ------------------------------------------------------------------------------------


def scan_draw(case, point):
    """log a (complex where a < 0) and b, shapes (B, L, E, N) or (B, L, *trailing), 0.01 <= |a| <= 0.99."""
    trailing = point.get("trailing", (point["expanded"], point["state"]))
    dtype, shape = dtype_of(point), (point["batch"], point["length"], *trailing)
    a = case.rand(*shape, dtype=dtype) * 0.98 + 0.01
    if point.get("negative_a"):
        a = a * torch.where(case.rand(*shape, dtype=dtype) < 0.3, -1.0, 1.0).to(dtype)
    b = case.randn(*shape, dtype=dtype)
    if point.get("negative_b"):
        b = -b.abs()
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    log_a = torch.log(a.to(complex_dtype)) if point.get("negative_a") else torch.log(a)
    return Draw(args=[log_a, b])


def scan_alternatives(handle, args, point):
    log_a, b = args
    out = {"a scan of |b| (the sign of b lost)": ("sign", oracles.scan(log_a, b.abs()))}
    if log_a.is_complex():
        out["a scan of |a| (the imaginary part of log a dropped)"] = ("sign", oracles.scan(log_a.real, b))
    return out


def scan_tolerance(point):
    if point.get("dtype") == "float32":
        return (1e-4, 1e-3)
    return LONG_SCAN if point["length"] > 700 else SCAN


def scan_describe(point):
    kind = ("every b_t < 0" if point.get("negative_b") else "some a_t < 0 (log a complex)" if point.get("negative_a")
            else "0 < a_t < 1")
    shape = (point["batch"], point["length"], *point.get("trailing", (point["expanded"], point["state"])))
    return f"log_a and b of shape {size(shape)}, {kind}, {point['dtype']}"


PSCAN = Function(
    "mamba:pscan", scan_draw, lambda handle, args, point, dropout=None: oracles.scan(*args),
    sizes={"batch": 2, "length": 7, "expanded": 3, "state": 4, "dtype": "float64"},
    variants=({"batch": 1}, {"length": 1}, {"length": 2}, {"length": 64}, {"length": 257},
              {"length": 1024, "batch": 1, "expanded": 2, "state": 3}, {"dtype": "float32", "length": 128},
              {"trailing": ()}, {"trailing": (5,)}, {"trailing": (2, 3, 2)}),
    settings=({}, {"negative_b": True, "length": 33}, {"negative_a": True, "length": 33}),
    describe=scan_describe, tolerance=scan_tolerance, grads=(0, 1), causal=(0, 1), batched=(0, 1),
    alternatives=scan_alternatives, names=("log_a", "b"), dtype_promise="the dtype of b")


# --- Q2.3 the Mamba block ----------------------------------------------------------------------------------


def block_module(point) -> dict:
    return {"hidden_size": point["hidden"], "state_size": point["state"], "expand": point.get("expand", 2),
            "conv_kernel": point.get("kernel", 4), "discretization": point.get("discretization", "zoh"),
            "alpha": point.get("alpha", 0.5)}


def block_describe(point):
    shape = f"({point['batch']}, {point['length']}, {point['hidden']})"
    return (f"an input {shape}, state size {point['state']}, expand {point.get('expand', 2)}, conv kernel "
            f"{point.get('kernel', 4)}, {point.get('discretization', 'zoh')}, {point['dtype']}")


def block_draw(case, point):
    x = case.randn(point["batch"], point["length"], point["hidden"], dtype=dtype_of(point))
    return Draw(module=block_module(point), args=[x])


BLOCK_VARIANTS = ({"batch": 1}, {"length": 1}, {"length": 13}, {"dtype": "float32"})

BLOCK = Function(
    "mamba:MambaBlock.forward", block_draw,
    lambda handle, args, point, dropout=None: oracles.mixer(handle.params, handle.config, args[0]),
    sizes={"batch": 2, "length": 9, "hidden": 8, "state": 4, "dtype": "float64"},
    variants=(*BLOCK_VARIANTS, {"discretization": "bilinear"}),
    describe=block_describe, module="mamba:MambaBlock", grads=(0,), params=True, training=True, causal=(0,),
    batched=(0,),
    alternatives=lambda handle, args, point: {
        "keeping the last L convolution outputs (each step then sees the next k−1)":
            ("causal", oracles.mixer(handle.params, handle.config, args[0], future=True)),
        "no SiLU after the convolution": ("missing-step", oracles.mixer(handle.params, handle.config, args[0],
                                                                             conv_silu=False)),
        "a gate of z instead of SiLU(z)": ("missing-step", oracles.mixer(handle.params, handle.config, args[0],
                                                                              gate_silu=False))},
    again={"length": 11, "batch": 1})


def ssm_draw(case, point):
    module = block_module(point)
    u = case.randn(point["batch"], point["length"], point["hidden"] * module["expand"], dtype=dtype_of(point))
    return Draw(module=module, args=[u])


def ssm_alternatives(handle, args, point):
    params, config = handle.params, handle.config
    N, R, E = config["state_size"], config["dt_rank"], config["expanded_size"]
    initial = torch.log(torch.arange(1, N + 1, dtype=params["A_log"].dtype)).repeat(E, 1)
    x_proj = params["x_proj.weight"]
    swapped_B_C = torch.cat([x_proj[:R], x_proj[R + N:], x_proj[R:R + N]])
    return {"A rebuilt from its initialisation instead of −exp(A_log)":
            ("A", oracles.ssm({**params, "A_log": initial}, config, args[0])),
            "B and C exchanged": ("B-C", oracles.ssm({**params, "x_proj.weight": swapped_B_C}, config, args[0]))}


SSM = Function(
    "mamba:MambaBlock.ssm", ssm_draw,
    lambda handle, args, point, dropout=None: oracles.ssm(handle.params, handle.config, args[0]),
    sizes={"batch": 2, "length": 7, "hidden": 8, "state": 4, "dtype": "float64"}, variants=BLOCK_VARIANTS,
    settings=({"discretization": "zoh"}, {"discretization": "bilinear"}, {"discretization": "zoh_exact"}),
    describe=block_describe, module="mamba:MambaBlock", method="ssm", grads=(0,), params=True, training=True,
    causal=(0,), batched=(0,), alternatives=ssm_alternatives,
    again={"length": 11, "batch": 1})


def selective_draw(case, point):
    module = block_module(point)
    dtype, batch, length = dtype_of(point), point["batch"], point["length"]
    E, N = point["hidden"] * module["expand"], point["state"]
    u, D = case.randn(batch, length, E, dtype=dtype), case.randn(E, dtype=dtype)
    delta, A, B = ssm_inputs(case, batch, length, E, N, dtype)
    delta = delta * point.get("delta_scale", 1.0)  # ΔA < −2 in places: the bilinear Ā turns negative
    C = case.randn(batch, length, N, dtype=dtype)
    return Draw(module=module, args=[u, delta, A, B, C, D], attributes={"scan": point.get("scan", "sscan")})


def selective_oracle(handle, args, point, dropout=None):
    scale = SPY_SCALE if point.get("scan") == SPY_SCAN else 1.0
    return oracles.selective_scan(*args, point.get("discretization", "zoh"), point.get("alpha", 0.5), scale)


def selective_alternatives(handle, args, point):
    u, delta, A, B, C, D = args
    discretization, alpha = point.get("discretization", "zoh"), point.get("alpha", 0.5)
    scale = SPY_SCALE if point.get("scan") == SPY_SCAN else 1.0
    out = {"no D u_t term": ("missing-step", oracles.selective_scan(u, delta, A, B, C, torch.zeros_like(D),
                                                                    discretization, alpha, scale))}
    if scale != 1.0:
        out["a scan called directly instead of SCANS[self.scan]"] = (
            "configured-scan", oracles.selective_scan(*args, discretization, alpha))
    if discretization != "zoh":
        out["always the zero-order hold, whatever the configuration"] = (
            "configured-discretisation", oracles.selective_scan(*args, "zoh", alpha, scale))
    return out


def selective_describe(point):
    return (f"u ({point['batch']}, {point['length']}, {point['hidden'] * point.get('expand', 2)}), state size "
            f"{point['state']}, {point.get('discretization', 'zoh')}"
            + (f" (α = {point.get('alpha', 0.5)})" if point.get("discretization") == "bilinear" else "")
            + (", Δ large enough for a negative Ā" if point.get("delta_scale", 1) > 1 else "")
            + (", self.scan set to a scan of the tests' own" if point.get("scan") == SPY_SCAN else "")
            + f", {point['dtype']}")


SELECTIVE_SCAN = Function(
    "mamba:MambaBlock.selective_scan", selective_draw, selective_oracle,
    sizes={"batch": 2, "length": 6, "hidden": 8, "state": 4, "dtype": "float64"},
    variants=({"batch": 1}, {"length": 1}, {"length": 11}, {"state": 2}, {"dtype": "float32"}),
    settings=({"discretization": "zoh"}, {"discretization": "zoh_exact"}, {"discretization": "bilinear", "alpha": 0.3}),
    describe=selective_describe, module="mamba:MambaBlock", method="selective_scan", grads=(0, 1, 2, 3, 4, 5),
    training=True, causal=(0, 1, 3, 4), batched=(0, 1, 3, 4), alternatives=selective_alternatives,
    names=("u", "delta", "A", "B", "C", "D"),
    tolerance=lambda p: SCAN if p.get("dtype", "float64") == "float64" else FLOAT32,
    again={"length": 9, "batch": 1})


def residual_draw(case, point):
    x = case.randn(point["batch"], point["length"], point["hidden"], dtype=dtype_of(point)) * 3 + 1
    module = block_module(point)
    return Draw(module={"hidden_size": module.pop("hidden_size"), **module}, args=[x])


RESIDUAL = Function(
    "mamba:ResidualBlock.forward", residual_draw,
    lambda handle, args, point, dropout=None: oracles.residual_block(handle.params, handle.config, args[0]),
    sizes={"batch": 2, "length": 5, "hidden": 8, "state": 4, "dtype": "float64"}, variants=BLOCK_VARIANTS,
    describe=block_describe, module="mamba:ResidualBlock", grads=(0,), params=True, training=True, causal=(0,),
    batched=(0,),
    alternatives=lambda handle, args, point: {
        "an RMS normalisation without the norm's weight": ("norms", oracles.residual_block(
            constant(handle.params, "norm.weight", 1.0), handle.config, args[0])),
        "no residual (mixer(norm(x)) alone)": ("missing-step", oracles.residual_block(
            handle.params, handle.config, args[0]) - args[0])},
    again={"length": 8, "batch": 1})

EVERY_FUNCTION = (CAUSAL_MASK, SPLIT_HEADS, MERGE_HEADS, ATTENTION, POSITIONS, ENCODER_LAYER, ENCODER, DECODER_LAYER,
                  DECODER, DISCRETIZE, PSCAN, BLOCK, SSM, SELECTIVE_SCAN, RESIDUAL)

# The same functions in the settings a test of their own checks.
CAUSAL_ATTENTION = replace(ATTENTION, sizes={**ATTENTION.sizes, "causal": True, "queries": 7, "keys": 7},
                           settings=({}, {"cross": True, "keys": 10}), causal=(0, 1, 2), length="queries")
CONFIGURED_SCAN = replace(SELECTIVE_SCAN, settings=(
    {"discretization": "zoh", "scan": SPY_SCAN, "length": 12},
    {"discretization": "bilinear", "scan": SPY_SCAN, "length": 12, "delta_scale": 6.0}))
