"""The scan h_t = a_t h_{t−1} + b_t as one fused GPU kernel (given, optional; written in Triton).

`pair_scan` (models/pair_scan.py) hands its work to `fused_scan` when the tensors are float32 on a CUDA GPU and
Triton imports (it ships with CUDA builds of PyTorch); everywhere else, a CPU above all, `pair_scan` runs as
before and stays the reference this kernel is tested against (tests/test_fused_scan.py, on a GPU only).

Why a kernel: the scan is bound by memory traffic. The least it must move is a and b read and h written,
12 bytes per element forward, and g read, a and h read again, two gradients written backward, 20 bytes.
pair_scan's rounds of whole-tensor operations move each element several times over; this kernel moves it once.
Each program owns a block of channels of one sequence and walks along time in chunks: inside a chunk, a
parallel (associative) scan over the (a, b) pairs, (a₁, b₁) then (a₂, b₂) = (a₁a₂, a₂b₁ + b₂); between chunks,
the last h carried in registers. Backward is the same scan run from the end (see `_PairScan` in pair_scan.py):
dℓ/db_t = g_t + a_{t+1} dℓ/db_{t+1}, and dℓ/d(log a_t) = dℓ/db_t · h_{t−1} · a_t.

Shapes: log_a and b (B, L, ...) with the same shape; C is the product of the trailing dimensions.
"""

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install: pair_scan never calls this module there
    triton = None

# TRITON_INTERPRET=1 runs the kernels on the CPU through Triton's interpreter: a way to test them without a GPU.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def supports(log_a: torch.Tensor, b: torch.Tensor) -> bool:
    """Can the kernel run this scan? float32, real, on a CUDA GPU (or Triton's interpreter), equal shapes, not
    empty (a launch needs a block to run)."""
    return (triton is not None and (b.is_cuda or INTERPRETED) and b.dtype == torch.float32
            and log_a.dtype == torch.float32 and log_a.shape == b.shape and b.dim() >= 2 and b.numel() > 0)


if triton is not None:

    @triton.jit
    def _combine(a_first, b_first, a_then, b_then):
        """Two steps in one: h ↦ a_then (a_first h + b_first) + b_then."""
        return a_first * a_then, a_then * b_first + b_then

    @triton.jit
    def _scan_forward_kernel(log_a_ptr, b_ptr, h_ptr, length, channels,
                             BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        """h (B, L, C) for one sequence (program_id 1) and BLOCK_C channels (program_id 0), in time chunks."""
        columns = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        rows = tl.arange(0, BLOCK_T)
        sequence = tl.program_id(1).to(tl.int64) * length * channels
        carry = tl.zeros([BLOCK_C], dtype=tl.float32)  # h just before the chunk
        for start in range(0, length, BLOCK_T):
            t = start + rows
            offsets = sequence + t[:, None].to(tl.int64) * channels + columns[None, :]
            mask = (t[:, None] < length) & (columns[None, :] < channels)
            a = tl.exp(tl.load(log_a_ptr + offsets, mask=mask, other=0.0))
            b = tl.load(b_ptr + offsets, mask=mask, other=0.0)
            a_cumulative, b_cumulative = tl.associative_scan((a, b), 0, _combine)
            h = a_cumulative * carry[None, :] + b_cumulative
            tl.store(h_ptr + offsets, h, mask=mask)
            carry = tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, h, 0.0), axis=0)

    @triton.jit
    def _scan_backward_kernel(log_a_ptr, h_ptr, grad_h_ptr, grad_log_a_ptr, grad_b_ptr, length, channels,
                              BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        """The gradients, from the last chunk to the first; inside a chunk the rows run backwards in time,
        so that the same forward scan computes x_t = a_{t+1} x_{t+1} + g_t (x = dℓ/db)."""
        columns = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        rows = tl.arange(0, BLOCK_T)
        sequence = tl.program_id(1).to(tl.int64) * length * channels
        carry = tl.zeros([BLOCK_C], dtype=tl.float32)  # x just after the chunk
        chunks = tl.cdiv(length, BLOCK_T)
        for chunk in range(0, chunks):
            t = (chunks - 1 - chunk) * BLOCK_T + (BLOCK_T - 1 - rows)  # descending times
            here = (t[:, None] < length) & (columns[None, :] < channels)
            offsets = sequence + t[:, None].to(tl.int64) * channels + columns[None, :]
            following = here & (t[:, None] + 1 < length)
            log_a_next = tl.load(log_a_ptr + offsets + channels, mask=following, other=0.0)
            a_next = tl.where(following, tl.exp(log_a_next), 0.0)  # a_L does not exist: nothing follows the end
            g = tl.load(grad_h_ptr + offsets, mask=here, other=0.0)
            a_cumulative, g_cumulative = tl.associative_scan((a_next, g), 0, _combine)
            x = a_cumulative * carry[None, :] + g_cumulative
            tl.store(grad_b_ptr + offsets, x, mask=here)
            previous = here & (t[:, None] >= 1)
            h_previous = tl.load(h_ptr + offsets - channels, mask=previous, other=0.0)
            a = tl.exp(tl.load(log_a_ptr + offsets, mask=here, other=0.0))
            tl.store(grad_log_a_ptr + offsets, x * h_previous * a, mask=here)
            carry = tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, x, 0.0), axis=0)


# (BLOCK_T, BLOCK_C, warps): the fastest of bench/fused_scan_sweep.py's candidates on an H200 at
# (B, L, E·N) = (4, 8192, 2048), for both kernels (forward 0.40 ms, backward 0.57 ms). Narrow blocks of
# channels give more programs to spread over the GPU; long chunks of time, fewer carries between chunks.
# Any tile size is correct; they differ in speed only.
BLOCKS = {"forward": (128, 16, 4), "backward": (128, 16, 4)}
INTERPRETER_BLOCKS = (8, 4, 1)  # small tiles keep the interpreter quick and reach the ragged-edge code


def _launch(kernel, which: str, tensors: list, batch: int, length: int, channels: int, blocks=None):
    block_t, block_c, warps = blocks or (INTERPRETER_BLOCKS if INTERPRETED else BLOCKS[which])
    grid = (triton.cdiv(channels, block_c), batch)
    options = {} if INTERPRETED else {"num_warps": warps}
    kernel[grid](*tensors, length, channels, BLOCK_T=block_t, BLOCK_C=block_c, **options)


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_a, b, blocks):
        batch, length = b.shape[:2]
        log_a, b = log_a.contiguous(), b.contiguous()
        h = torch.empty_like(b)
        _launch(_scan_forward_kernel, "forward", [log_a, b, h], batch, length, b[0, 0].numel(), blocks)
        ctx.save_for_backward(log_a, h)
        ctx.blocks = blocks
        return h

    @staticmethod
    def backward(ctx, grad_h):
        log_a, h = ctx.saved_tensors
        batch, length = h.shape[:2]
        grad_log_a, grad_b = torch.empty_like(h), torch.empty_like(h)
        _launch(_scan_backward_kernel, "backward", [log_a, h, grad_h.contiguous(), grad_log_a, grad_b],
                batch, length, h[0, 0].numel(), ctx.blocks)
        return grad_log_a, grad_b, None


def fused_scan(log_a: torch.Tensor, b: torch.Tensor, blocks: tuple = None) -> torch.Tensor:
    """h_t = exp(log_a_t) h_{t−1} + b_t along dim 1, h_{−1} = 0: log_a, b (B, L, ...) -> h (B, L, ...).

    Only where `supports(log_a, b)`; `blocks` = (BLOCK_T, BLOCK_C, warps) overrides the tuned tile sizes.
    """
    if not supports(log_a, b):
        raise ValueError("fused_scan needs Triton and float32 log_a and b of one shape on a CUDA GPU")
    return _FusedScan.apply(log_a, b, blocks)
