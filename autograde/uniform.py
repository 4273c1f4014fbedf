"""One check for every function you write: `check(case, function)`.

For a function declared in autograde/functions.py it states, against the function's oracle:

- its values for every setting at the base sizes, and for each variant (one size or setting changed:
  a batch of one, other lengths, rectangular shapes, another head count, float32 as well as float64);
- its promises: the output's type, dtype and shape;
- the gradient with respect to every floating input and every parameter, for every setting;
- each row of a batch alone, which must give that row of the batch;
- a second call after all the others, with new inputs and parameters (for a module, on the same module
  at other sizes): nothing may be kept from one call to the next;
- training mode with dropout 0, which must give what eval mode gives; and with dropout where the docstring
  places it, the exact values (masks drawn as autograde/dropout.py draws them);
- for a causal function, that changing later positions of its inputs leaves earlier outputs as they were.

Everything is drawn from the case (the test's name, and in the regrade its secret), so the same battery
runs in your process and in the sandbox, with the same verdicts.
"""

from dataclasses import dataclass

import torch

from autograde.functions import DROPOUT, VOCAB_SIZE, Function
from autograde.harness import Case, ModuleHandle, Result, compare


@dataclass
class Run:
    """One call at one point: what was asked and what it must give."""

    point: dict
    handle: ModuleHandle
    draw: object
    result: Result
    expected: tuple  # the returned tensors, then the attributes read (fn.read)


def _outputs(value) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value,)


def _where(fn: Function, point: dict, **more) -> dict:
    """What a check's message and the diagnoses know of its inputs: the function, the length, and more."""
    where = {key: point[key] for key in ("length",) if key in point}
    return {"function": fn.name, **where, **more}


def _call(case: Case, fn: Function, point: dict, training: bool = False, args: list = None, handle=None,
          draw=None, **options) -> Run:
    if draw is None:
        draw = fn.draw(case, point)
    if handle is None and fn.module is not None:
        handle = case.module(fn.module, dtype=point.get("dtype", "float64"), **draw.module)
    args = list(draw.args) if args is None else args
    target = handle if handle is not None else fn.target
    result = case.call(target, *args, method=fn.method, attributes=draw.attributes, read=fn.read, training=training,
                       dropout_seed=point["seed"], **draw.kwargs, **options)
    return Run(point, handle, draw, result, ())


def measured(case: Case, fn: Function, point: dict, facet: str, where: dict, dropout=None, **call) -> Run:
    """One call of the student's function at `point` (options as _call's), its values checked against the
    oracle's on the same inputs and parameters; `dropout` (rate, seed) for the oracle's masks."""
    run = _call(case, fn, point, **call)
    args = call.get("args") or list(run.draw.args)
    run.expected = _outputs(fn.oracle(run.handle, args, run.point, dropout))
    expect_values(case, fn, run, args, facet, where)
    return run


def _returned(fn: Function, result: Result) -> list:
    return [result.output] if fn.returns == 1 else [result.item(i) for i in range(fn.returns)]


CONTEXT = {"row": ", the last row of the batch alone", "repeat": ", the first call's sizes again with new inputs",
           "train": ", in training mode with dropout 0", "dropout": f", in training mode with dropout {DROPOUT}"}


def expect_values(case: Case, fn: Function, run: Run, args: list, facet: str, where: dict):
    """The returned tensors (and the attributes read) against run.expected, with the promises."""
    point = run.point
    atol, rtol = fn.tolerance_at(point)
    what = fn.call_in_words(point, CONTEXT.get(facet, ""))
    alternatives = fn.alternatives(run.handle, args, point) if fn.alternatives and facet in ("value", "variant") else {}
    if fn.returns > 1:
        output = run.result.output
        case.expect_fact(lambda kind, device: None if kind == "tuple" and output.parts() == fn.returns else
                         f"should be a tuple of {fn.returns} tensors (its docstring promises one), got " +
                         (f"a {kind} of {output.parts()}" if kind in ("tuple", "list") else kind or "one tensor"),
                         output, what=what, facet="promise", where=where)
    for index, (value, expected) in enumerate(zip(_returned(fn, run.result), run.expected)):
        part = "" if fn.returns == 1 else f", element {index} of the tuple"
        case.expect(lambda got, want: None if got.dtype == want.dtype else
                    f"should be {want.dtype} (its docstring promises {fn.dtype_promise}), got {got.dtype}",
                    value, expected, what=f"{what}{part}", facet="promise", where=where)
        labelled = {label if fn.returns == 1 else f"{label} in element {index}": (
            cause, tensors if fn.returns == 1 else tensors[index]) for label, (cause, tensors) in alternatives.items()}
        case.expect_close(value, expected, atol=atol, rtol=rtol, what=f"{what}{part}", facet=facet, where=where,
                          alternatives=labelled)
    for name, expected in zip(fn.read, run.expected[fn.returns:]):
        case.expect_close(run.result.read(name), expected, atol=atol, rtol=rtol, what=f"{what}: self.{name}",
                          facet=facet, where=where)


def values(case: Case, fn: Function, point: dict, facet: str, where: dict, module_key: str = "") -> Run:
    run = measured(case, fn, point, facet, where, module_key=module_key)
    if point.get("device"):  # a function told its device must make its result there (on a GPU, say)
        case.expect(lambda used: None if used else "the device it was given reached no torch function: the result "
                    "must be made on `device` (a run on a GPU would fail)", run.result.device_used,
                    what=fn.call_in_words(point), facet="promise", where=where)
    return run


def gradients(case: Case, fn: Function, run: Run, where: dict):
    """The gradient of Σ output · w (w drawn) with respect to every floating input and every parameter."""
    args = list(run.draw.args)
    grad_of = tuple(i for i in fn.grads if isinstance(args[i], torch.Tensor) and not args[i].is_complex())
    if not grad_of and not fn.params:
        return
    weights = [case.randn(*tensor.shape, dtype=tensor.dtype) for tensor in run.expected[:fn.returns]]
    result = case.call(run.handle if run.handle is not None else fn.target, *args, method=fn.method,
                       attributes=run.draw.attributes, grad_of=grad_of, grad_params=fn.params,
                       grad_weights=weights if fn.returns > 1 else weights[0],  # one tensor promised: a tensor
                       dropout_seed=run.point["seed"], **run.draw.kwargs)
    inputs = {i: args[i].detach().clone().requires_grad_(True) for i in grad_of}
    leaves = dict(inputs)
    handle = run.handle
    if fn.params:
        params = {name: tensor.detach().clone().requires_grad_(name in handle.parameters)
                  for name, tensor in handle.params.items()}
        handle = ModuleHandle(handle.path, handle.kwargs, handle.dtype, params, handle.config, handle.parameters)
        leaves.update({name: params[name] for name in handle.parameters})
    with torch.enable_grad():
        outputs = _outputs(fn.oracle(handle, [inputs.get(i, arg) for i, arg in enumerate(args)], run.point))
        loss = sum((output * weight).sum() for output, weight in zip(outputs[:fn.returns], weights))
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    expected = {key: torch.zeros_like(leaf) if grad is None else grad
                for (key, leaf), grad in zip(leaves.items(), grads)}
    atol, rtol = fn.tolerance_at(run.point)

    def tolerance(grad: torch.Tensor) -> tuple:
        """A gradient sums many terms, rounded in another order than the oracle's: its tolerance is relative
        to its largest value as well as to each value."""
        largest = float(grad.abs().max()) if grad.numel() else 0.0
        return max(atol * 10, rtol * 10 * largest), rtol * 10

    what = fn.call_in_words(run.point)
    for i in grad_of:
        value = result.grad(i)
        value.like = expected[i]
        grad_atol, grad_rtol = tolerance(expected[i])
        case.expect_close(value, expected[i], atol=grad_atol, rtol=grad_rtol, facet="gradient", where=where,
                          what=f"{what}: the gradient with respect to {fn.names[i]}")
    names = [name for name in expected if isinstance(name, str)]
    if names:
        parts = []
        for name in names:
            value = result.grad_param(name)
            value.like = expected[name]
            parts.append(value)

        def all_parameters(*got):
            for name, grad in zip(names, got):
                grad_atol, grad_rtol = tolerance(expected[name])
                message = compare(grad, expected[name], atol=grad_atol, rtol=grad_rtol, hidden=case.hidden,
                                  what=f"the gradient with respect to {name}")
                if message is not None:
                    return message
            return None

        case.expect(all_parameters, *parts, what=f"{what}: the parameters' gradients", facet="gradient", where=where)


def row_alone(case: Case, fn: Function, run: Run):
    """The last row of the batch on its own must give the last row of the batch's result."""
    args = [arg[-1:] if i in fn.batched else arg for i, arg in enumerate(run.draw.args)]
    measured(case, fn, run.point, "row", _where(fn, run.point, setting=0, row="alone"), args=args, handle=run.handle,
             draw=run.draw)


def repeated(case: Case, fn: Function, run: Run, module_key: str):
    """A second call after every other, with inputs and parameters drawn afresh: for a function, at the first
    call's sizes; for a module, on the very module of the first call (its new parameters copied in, as an
    optimizer step would) at other sizes. A result kept from an earlier call — a cache keyed on sizes or on
    part of the arguments, a length or a tensor kept on the module — shows."""
    point = {**run.point, **(fn.again or {})}
    measured(case, fn, point, "repeat", _where(fn, point, again=True), module_key=module_key if fn.module else "")


def training_mode(case: Case, fn: Function, point: dict):
    """Training mode with dropout 0 must give what eval mode gives."""
    point = {**point, "dropout": 0.0}
    measured(case, fn, point, "train", _where(fn, point, training=True), training=True)


def with_dropout(case: Case, fn: Function, point: dict):
    """Training mode with dropout where the docstring places it: its masks drawn from the call's seed
    (autograde/dropout.py), so that correct code gives the oracle's numbers exactly."""
    point = {**point, "dropout": DROPOUT}
    measured(case, fn, point, "dropout", _where(fn, point, dropout=DROPOUT), dropout=(DROPOUT, point["seed"]),
             training=True)


def causality(case: Case, fn: Function, run: Run):
    """Changing the later positions of the inputs must leave the earlier outputs as they were."""
    args, keep = list(run.draw.args), run.point[fn.length] // 2
    for i in fn.causal:
        changed = args[i].clone()
        if changed.dtype == torch.int64:
            changed[:, keep:] = (changed[:, keep:] + 1) % VOCAB_SIZE
        elif changed.is_complex():
            changed[:, keep:] = changed[:, keep:] * 0.5
        else:
            changed[:, keep:] = changed[:, keep:] + case.randn(*changed[:, keep:].shape, dtype=changed.dtype)
        args[i] = changed
    # The two calls side by side, after every other: whatever an earlier call left behind affects both alike.
    before = _call(case, fn, run.point, handle=run.handle, draw=run.draw)
    later = _call(case, fn, run.point, args=args, handle=run.handle, draw=run.draw)
    atol, rtol = fn.tolerance_at(run.point)
    shape = run.expected[0].shape

    def unchanged(before, after):
        if before.shape != shape or after.shape != shape:
            return None  # the value checks say what is wrong with the shapes
        return compare(after[:, :keep], before[:, :keep], atol=atol, rtol=rtol, hidden=case.hidden,
                       what=f"outputs at positions 0-{keep - 1} after changing the inputs from position {keep} on "
                            f"(they should not change)")

    case.expect(unchanged, before.result.output, later.result.output, what=fn.call_in_words(run.point),
                facet="causal", where=_where(fn, run.point, causal=True), cause="causal")


def check(case: Case, fn: Function, settings: tuple = None, sizes: dict = None, variants: tuple = None):
    """The whole battery for `fn` (see the module docstring); `settings`, `sizes` and `variants` replace the
    declaration's (a test of one setting, a hidden test's secret sizes)."""
    settings = fn.settings if settings is None else settings
    variants = fn.variants if variants is None else variants
    base = {**fn.sizes, **(sizes or {}), "seed": int(case.randint(0, 2 ** 31 - 1, (1,)))}
    module_key = f"{case.name}/{fn.name}/{base['seed']}"
    first = None
    for index, setting in enumerate(settings):
        point = {**base, **setting}
        run = values(case, fn, point, "value", _where(fn, point, setting=index), module_key if index == 0 else "")
        first = first or run
        gradients(case, fn, run, _where(fn, point, setting=index))
    for change in variants:
        point = {**first.point, **change}
        values(case, fn, point, "variant", _where(fn, point, **change))
    if fn.batched and first.point.get("batch", 1) > 1:
        row_alone(case, fn, first)
    repeated(case, fn, first, module_key)
    if fn.training:
        training_mode(case, fn, first.point)
    if fn.dropout:
        with_dropout(case, fn, first.point)
    if fn.causal and first.point[fn.length] >= 2:
        causality(case, fn, first)

