"""The scans side by side: time, peak memory and error against a float64 loop, over sequence lengths.

Every scan gets the same float32 inputs, shaped like Mamba's (B, L, E, N): log a = ΔA with Δ log-uniform
in [1e-3, 1e-1] and A = −(1 ... N) (S4D-Real), b = Δ B u with normal B and u. The error is
max |h − h64| / max |h64|, where h64 is the sequential loop in float64 on the same inputs.

On a GPU the Mamba default `pair_scan` hands its work to the fused Triton kernel (models/fused_scan.py): the
rows here keep the two apart, `pair_scan` being its PyTorch path (the reference; what CPUs run) and
`fused_scan` the kernel. The floor is the time to move the bytes a scan cannot avoid, 12 per element forward
(read a and b, write h) and 20 backward (read g, a, h; write two gradients), at the copy bandwidth measured
in the same run.

mambapy's scan (`mambapy.pscan.pscan(A, X)`, Blelloch, both (B, L, D, N)) takes the decay a itself and
the same b: it gets exp(log a) and b, the inputs Mamba gives it (`mambapy.mamba`: pscan(deltaA, BX)).
"""

import torch

from bench.measure import markdown_table, megabytes, peak_memory_bytes, synchronize, time_call
from models import fused_scan as fused
from models.mamba import SCANS, sscan
from models.pair_scan import _PairScan

try:
    from mambapy.pscan import pscan as mambapy_pscan
except ImportError:  # an optional benchmark dependency (requirements-optional.txt)
    mambapy_pscan = None

NOT_INSTALLED = "not installed"
GPU_ONLY = "GPU only"


def mambapy_scan(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mambapy's Blelloch scan on our inputs: it wants a, not log a."""
    return mambapy_pscan(torch.exp(log_a), b)


def torch_pair_scan(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """pair_scan's PyTorch path, on any device (on a GPU, pair_scan itself would run the fused kernel)."""
    return _PairScan.apply(torch.exp(log_a), b)


def scans_to_compare(device: str = "cpu") -> dict:
    """name -> scan (None where the package is missing or the device cannot run it), ours first."""
    fused_here = fused.fused_scan if device == "cuda" and fused.triton is not None else None
    return {**SCANS, "pair_scan": torch_pair_scan, "fused_scan": fused_here,
            "mambapy": mambapy_scan if mambapy_pscan is not None else None}


def copy_bandwidth(device: str) -> float:
    """Bytes per second a device-to-device copy of 1 GiB moves (read + written), after a warm-up copy."""
    source = torch.empty(2 ** 28, device=device)
    target = torch.empty_like(source)
    seconds, _ = time_call(lambda: target.copy_(source), 0.2)
    return 2 * source.numel() * 4 / seconds


def mamba_like_inputs(batch: int, length: int, expanded: int, state: int, device: str, seed: int = 0):
    """log a and b (B, L, E, N), float32, as a Mamba layer makes them."""
    generator = torch.Generator().manual_seed(seed)
    delta = torch.exp(torch.empty(batch, length, expanded, 1).uniform_(-6.9078, -2.3026, generator=generator))
    A = -torch.arange(1, state + 1, dtype=torch.float32)
    B = torch.randn(batch, length, 1, state, generator=generator)
    u = torch.randn(batch, length, expanded, 1, generator=generator)
    return (delta * A).to(device), (delta * B * u).to(device)


def relative_error(h: torch.Tensor, reference: torch.Tensor) -> float:
    return ((h.double() - reference).abs().max() / reference.abs().max()).item()


def measure_scan(scan, log_a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor, min_run_time: float) -> dict:
    """Forward and forward+backward times (mean, std), peak memory of forward+backward, relative error."""
    log_a, b = log_a.clone().requires_grad_(), b.clone().requires_grad_()
    grad = torch.randn_like(b)
    device = b.device.type

    def forward():
        with torch.no_grad():
            scan(log_a, b)

    def forward_backward():
        log_a.grad = b.grad = None
        scan(log_a, b).backward(grad)

    with torch.no_grad():
        error = relative_error(scan(log_a, b), reference)
    synchronize(device)
    return {"forward": time_call(forward, min_run_time), "forward_backward": time_call(forward_backward, min_run_time),
            "memory": peak_memory_bytes(forward_backward, device), "error": error}


def run(suites: list, min_run_time: float, log=print) -> list[dict]:
    """One row per (suite, length, scan); a suite is (device, (B, E, N), lengths)."""
    rows = []
    bandwidths = {}
    for device, (batch, expanded, state), lengths in suites:
        if device == "cuda" and device not in bandwidths:
            bandwidths[device] = copy_bandwidth(device)
        for length in lengths:
            log_a, b = mamba_like_inputs(batch, length, expanded, state, device)
            with torch.no_grad():
                reference = sscan(log_a.double(), b.double())
            for name, scan in scans_to_compare(device).items():
                row = {"device": device, "shape": f"{batch}×L×{expanded}×{state}", "L": length, "scan": name,
                       "bandwidth": bandwidths.get(device), "elements": log_a.numel()}
                row.update(measure_scan(scan, log_a, b, reference, min_run_time) if scan else
                           {"missing": GPU_ONLY if name == "fused_scan" else NOT_INSTALLED})
                rows.append(row)
                log(f"scans {device} {row['shape']} L={length} {name}: " + (
                    f"{row['forward_backward'][0] * 1e3:.3f} ms forward+backward, error {row['error']:.1e}"
                    if scan else row["missing"]))
    return rows


def speedups(rows: list[dict]) -> list[str]:
    """Lines: at each suite's longest L, each scan's forward+backward time as a multiple of pair_scan's."""
    lines = []
    for device, shape in dict.fromkeys((row["device"], row["shape"]) for row in rows):
        longest = max(row["L"] for row in rows if (row["device"], row["shape"]) == (device, shape))
        at = {row["scan"]: row for row in rows
              if (row["device"], row["shape"], row["L"]) == (device, shape, longest) and "forward" in row}
        if "pair_scan" not in at:
            continue
        ours = at["pair_scan"]["forward_backward"][0]
        ratios = [f"{name} {at[name]['forward_backward'][0] / ours:.1f}×" for name in at if name != "pair_scan"]
        lines.append(f"- {device}, {shape}, L = {longest}: forward+backward time as a multiple of pair_scan's: "
                     + ", ".join(ratios) + ".")
        bandwidth = at["pair_scan"].get("bandwidth")
        if bandwidth:
            floor = 32 * at["pair_scan"]["elements"] / bandwidth
            multiples = ", ".join(f"{name} {at[name]['forward_backward'][0] / floor:.1f}×" for name in at)
            lines.append(f"- {device}, {shape}, L = {longest}: the memory-traffic floor of forward+backward is "
                         f"{floor * 1e3:.3f} ms (32 bytes per element at the {bandwidth / 1e12:.2f} TB/s a copy "
                         f"reached); each scan's time as a multiple of it: {multiples}.")
    return lines


def report(rows: list[dict], header: str) -> str:
    columns = ["device", "B×L×E×N", "L", "scan", "forward (ms)", "forward+backward (ms)",
               "peak memory, fwd+bwd (MB)", "relative error"]
    cells = []
    for row in rows:
        if "forward" not in row:
            cells.append([row["device"], row["shape"], row["L"], row["scan"]] + [row["missing"]] * 4)
            continue
        cells.append([row["device"], row["shape"], row["L"], row["scan"],
                      f"{row['forward'][0] * 1e3:.3f} ± {row['forward'][1] * 1e3:.3f}",
                      f"{row['forward_backward'][0] * 1e3:.3f} ± {row['forward_backward'][1] * 1e3:.3f}",
                      megabytes(row["memory"]), f"{row['error']:.1e}"])
    notes = ("Times: mean ± std over torch.utils.benchmark's blocks, after warm-up. Peak memory: allocated "
             "during one forward+backward beyond the inputs (GPU: torch.cuda.max_memory_allocated; CPU: torch's "
             "allocations as torch.profiler records them). Relative error: max |h − h64| / max |h64| against the "
             "sequential loop in float64; every scan runs in float32.")
    return "\n\n".join([header, markdown_table(columns, cells, "llrlrrrr"), notes, *speedups(rows)]) + "\n"


def plot(rows: list[dict], path):
    """Forward+backward time and error against L, one line per (device, scan), log–log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, errors) = plt.subplots(1, 2, figsize=(11, 4.2))
    for device, shape in dict.fromkeys((row["device"], row["shape"]) for row in rows):
        for scan in scans_to_compare(device):
            mine = [row for row in rows if (row["device"], row["shape"], row["scan"]) == (device, shape, scan)
                    and "forward" in row]
            if len(mine) < 2:
                continue
            style = "-" if device == "cuda" else "--"
            label = f"{scan} ({device}, {shape})"
            times.plot([r["L"] for r in mine], [r["forward_backward"][0] * 1e3 for r in mine], style, marker="o",
                       label=label)
            errors.plot([r["L"] for r in mine], [max(r["error"], 1e-12) for r in mine], style, marker="o",
                        label=label)
    times.set(xscale="log", yscale="log", xlabel="sequence length L", ylabel="forward+backward (ms)",
              title="Scan time")
    errors.set(xscale="log", yscale="log", xlabel="sequence length L", ylabel="max |h − h64| / max |h64|",
               title="Error against a float64 loop")
    errors.axhline(1e-5, color="grey", linewidth=0.8, linestyle=":")
    times.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
