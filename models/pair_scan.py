"""The fast exact scan (given): h_t = a_t h_{t−1} + b_t over (a, b) pairs, without logarithms.

`pair_scan(log_a, b)` is what the Mamba configs run by default (models/mamba.py's SCANS). Consecutive
steps (a_t, b_t), (a_{t+1}, b_{t+1}) combine into one step, (a_{t+1} a_t, a_{t+1} b_t + b_{t+1}), which
halves the length; recursing takes log2 L rounds of a few whole-tensor operations. It is as accurate as
the sequential loop (`sscan`), which stays in models/mamba.py as its reference, and the parallel scan you
write (`pscan`) is checked against that loop, never against this file.
"""

import torch


def decay_of(log_a: torch.Tensor) -> torch.Tensor:
    """a from log_a, for the scans that work with a itself.

    A log_a made by `log_of_decay` carries the Ā it was taken of (`log_a.decay`): that one is used as it
    is, which is exact, real even where Ā < 0, and saves a pass through log and exp in both directions.
    Any other log_a is exponentiated (its real part, if it is complex).
    """
    decay = getattr(log_a, "decay", None)
    if decay is not None and decay.shape == log_a.shape:
        return decay
    return torch.exp(log_a).real if log_a.is_complex() else torch.exp(log_a)


# Looping over time moves the least memory but pays an operation's fixed cost (microseconds) at every step;
# the recursion pays it about ten times per halving of the length. So loop over short stretches (the
# recursion's last rounds too), and over any length when one step's B·E·N values are enough work to hide
# that cost. Measured on an H100 and 2 CPU cores with pair_scan both ways (docs/benchmarks.md).
LOOP_UP_TO_LENGTH = 16
LOOP_FROM_STEP_SIZE = {"cpu": 2 ** 14, "cuda": 2 ** 21}


def _scan_forward(links: torch.Tensor, values: torch.Tensor, out: torch.Tensor, loop: bool) -> None:
    """out_0 = v_0, out_t = links_{t−1} out_{t−1} + v_t, written into `out`; no autograd.

    links (B, L−1, ...): links_t joins positions t and t+1. values and out (B, L, ...).
    """
    length = values.shape[1]
    if loop or length <= LOOP_UP_TO_LENGTH:
        out[:, 0] = values[:, 0]
        steps = zip(values[:, 1:].unbind(1), links.unbind(1), out[:, :-1].unbind(1), out[:, 1:].unbind(1))
        for value, link, previous, current in steps:  # unbind: views made once, not per step
            torch.addcmul(value, link, previous, out=current)
        return
    pairs = length // 2
    # Steps 2i and 2i+1 in one: out_{2i+1} = (links_{2i} links_{2i−1}) out_{2i−1} + (links_{2i} v_{2i} + v_{2i+1}),
    # a recurrence of half the length over the odd positions.
    _scan_forward(links[:, 2:2 * pairs - 1:2] * links[:, 1:2 * pairs - 2:2],
                  torch.addcmul(values[:, 1:2 * pairs:2], links[:, 0:2 * pairs - 1:2], values[:, 0:2 * pairs:2]),
                  out[:, 1::2], loop)
    # Each even position is then one step on from the odd one before it.
    out[:, 0] = values[:, 0]
    torch.addcmul(values[:, 2::2], links[:, 1:length - 1:2], out[:, 1:length - 1:2], out=out[:, 2::2])


def _scan_backward(links: torch.Tensor, values: torch.Tensor, out: torch.Tensor, loop: bool) -> None:
    """The same recurrence run backwards in time: out_{L−1} = v_{L−1}, out_t = links_t out_{t+1} + v_t."""
    length = values.shape[1]
    if loop or length <= LOOP_UP_TO_LENGTH:
        out[:, -1] = values[:, -1]
        steps = zip(values[:, :-1].unbind(1), links.unbind(1), out[:, 1:].unbind(1), out[:, :-1].unbind(1))
        for value, link, following, current in reversed(list(steps)):
            torch.addcmul(value, link, following, out=current)
        return
    # Pairs end at the last position, so they start at r: out_k for k = r, r+2, ..., L−2 (a half-length
    # recurrence), then the positions between them, and position 0 if L is odd.
    r = length % 2
    _scan_backward(links[:, r:length - 3:2] * links[:, r + 1:length - 2:2],
                   torch.addcmul(values[:, r:length - 1:2], links[:, r:length - 1:2], values[:, r + 1::2]),
                   out[:, r:length - 1:2], loop)
    out[:, -1] = values[:, -1]
    torch.addcmul(values[:, 1 - r:length - 1:2], links[:, 1 - r:length - 1:2], out[:, 2 - r::2],
                  out=out[:, 1 - r:length - 1:2])


class _PairScan(torch.autograd.Function):
    """h_t = a_t h_{t−1} + b_t over (a, b) pairs; the backward pass is the same scan, backwards in time."""

    @staticmethod
    def forward(ctx, a, b):
        loop = b[:, 0].numel() >= LOOP_FROM_STEP_SIZE.get(b.device.type, LOOP_FROM_STEP_SIZE["cuda"])
        h = torch.empty_like(b)
        _scan_forward(a[:, 1:], b, h, loop)  # a_0 would multiply h_{−1} = 0
        ctx.save_for_backward(a, h)
        ctx.loop = loop
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        # h_t reaches the loss directly and through h_{t+1} = a_{t+1} h_t + ...: so
        # dℓ/db_t = dℓ/dh_t (total) = g_t + a_{t+1} dℓ/db_{t+1}, and dℓ/da_t = dℓ/db_t · h_{t−1}.
        grad_b = torch.empty_like(grad_h)
        _scan_backward(a[:, 1:], grad_h, grad_b, ctx.loop)
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.empty_like(a)
            grad_a[:, 0] = 0
            torch.mul(grad_b[:, 1:], h[:, :-1], out=grad_a[:, 1:])
        return grad_a, grad_b


def pair_scan(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The fast exact scan (Given): log_a and b (B, L, ...) -> h (B, L, ...), as accurate as the loop.

    No logarithms of values: the (a, b) pairs of consecutive steps combine into one step,
    (a_{t+1} a_t, a_{t+1} b_t + b_{t+1}), which halves the length; recursing takes log2 L rounds of a few
    whole-tensor operations, and each skipped position is one step on from the one before it. Short
    stretches, and any length where each step alone has enough values to keep the machine busy (a CPU at
    Pig-Latin sizes), run as one fused loop over time instead. Gradients: the same scan backwards in time.
    """
    if b.is_cuda:  # one fused Triton kernel where it can run (models/fused_scan.py); this code is its reference
        from models import fused_scan
        if fused_scan.supports(log_a, b):
            return fused_scan.fused_scan(log_a, b)
    return _PairScan.apply(decay_of(log_a), b)
