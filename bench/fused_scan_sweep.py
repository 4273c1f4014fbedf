"""Tile sizes for the fused scan (models/fused_scan.py): times each kernel alone over a few (BLOCK_T, BLOCK_C,
warps) at one shape, on a CUDA GPU, and prints a table and the fastest of each. Speed only: every tile size
computes the same thing (tests/test_fused_scan.py).

    python -m bench.fused_scan_sweep                       # (B, L, E, N) = (4, 8192, 128, 16), float32
    python -m bench.fused_scan_sweep --shape 64 45 256 8 --json best.json
"""

import argparse
import json
import sys

import torch

from bench.measure import machine_header, markdown_table
from bench.scans import copy_bandwidth, mamba_like_inputs
from models import fused_scan as fused

CANDIDATES = [(16, 32, 1), (32, 16, 1), (32, 32, 2), (32, 64, 4), (64, 16, 2), (64, 32, 2), (64, 32, 4),
              (64, 64, 4), (128, 16, 4), (128, 32, 4), (128, 32, 8), (256, 16, 8)]


def milliseconds(fn) -> float:
    """Median time of fn() over repeated runs, by CUDA events (triton.testing.do_bench)."""
    return fused.triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs=4, type=int, default=[4, 8192, 128, 16], metavar=("B", "L", "E", "N"))
    parser.add_argument("--json", default=None, help="write the fastest tiles here, as models/fused_scan.BLOCKS reads")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or fused.triton is None:
        print("bench.fused_scan_sweep: error: needs a CUDA GPU and Triton", file=sys.stderr)
        return 2
    batch, length, expanded, state = args.shape
    log_a, b = mamba_like_inputs(batch, length, expanded, state, "cuda")
    h, grad, grad_log_a, grad_b = (torch.empty_like(b) for _ in range(4))
    grad.normal_()
    channels = expanded * state
    rows, best = [], {}
    for blocks in CANDIDATES:
        times = {
            "forward": milliseconds(lambda: fused._launch(fused._scan_forward_kernel, "forward", [log_a, b, h],
                                                          batch, length, channels, blocks)),
            "backward": milliseconds(lambda: fused._launch(fused._scan_backward_kernel, "backward",
                                                           [log_a, h, grad, grad_log_a, grad_b],
                                                           batch, length, channels, blocks)),
        }
        rows.append([str(blocks), f"{times['forward']:.3f}", f"{times['backward']:.3f}"])
        for which, time in times.items():
            if which not in best or time < best[which][0]:
                best[which] = (time, blocks)
    floor = 32 * log_a.numel() / copy_bandwidth("cuda") * 1e3
    print(f"{machine_header('cuda')}\n\nshape (B, L, E, N) = {tuple(args.shape)}, float32\n")
    print(markdown_table(["(BLOCK_T, BLOCK_C, warps)", "forward (ms)", "backward (ms)"], rows))
    total = best["forward"][0] + best["backward"][0]
    print(f"\nfastest: forward {best['forward'][1]} {best['forward'][0]:.3f} ms, backward {best['backward'][1]} "
          f"{best['backward'][0]:.3f} ms; together {total:.3f} ms = {total / floor:.2f}× the floor of {floor:.3f} ms")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({which: list(blocks) for which, (_, blocks) in best.items()}, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
