"""The models side by side at one size each (the small default configs): parameters, forward FLOPs,
forward and backward time, peak memory and gradient norm, at long sequence lengths and at Pig-Latin size.

A sequence of length L is a source of L/2 random characters and a target of L/2 (the decoder reads SOS +
target): L tokens in all, as a report's "sequence length 784" means 784 inputs. Mamba reads them as
one sequence [source, EOS, SOS, target] of L + 2. Pig-Latin size is a training batch of typical words:
64 words, source 7 and target 9 characters (the large set's medians).
"""

import itertools
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.measure import markdown_table, megabytes, mean_std, peak_memory_bytes, synchronize
from models.mamba import SCANS
from training.config import build_config
from models.decoding import with_eos, with_sos
from training.module import build_model

PIGLATIN_SIZE = (64, 7, 9)  # batch, source length, target length


def model_variants() -> dict:
    """name -> (config file, extra options): every default model, and Mamba with each scan."""
    variants = {"transformer": ("exps/args_piglatin_small_transformer.txt", [])}
    # pscan's complex temporaries are the largest by far: measured last of the scans, so that the state
    # they leave the memory allocator in doesn't weigh on the others.
    for scan in sorted(SCANS, key=lambda scan: scan == "pscan"):
        variants[f"mamba ({scan})"] = ("exps/args_piglatin_small_mamba.txt", ["--scan", scan])
    variants["lstm"] = ("exps/args_piglatin_small_lstm.txt", [])
    variants["gru"] = ("exps/args_piglatin_small_gru.txt", [])
    return variants


def make_model(config_file: str, options: list, max_length: int, device: str, quick: bool):
    """The config's model (Transformer position tables long enough), seeded, in training mode."""
    if quick:
        options = options + ["--hidden_size", "16", "--num_heads", "2", "--state_size", "4"]
    config = build_config(config_file, options + ["--max_length", str(max_length)])
    torch.manual_seed(0)
    return build_model(config).to(device).train()


def loss_of(model, source, target) -> torch.Tensor:
    logits = model(source, with_sos(target))
    return F.cross_entropy(logits.flatten(0, 1), with_eos(target).flatten())


def timed_steps(model, source, target, min_run_time: float, device: str) -> tuple[list, list]:
    """Forward (with the loss) and backward times of repeated steps after two warm-up steps: at least three,
    and at least `min_run_time` seconds of them. The GPU is synchronised before each clock reading."""
    forward_times, backward_times = [], []
    for step in itertools.count():
        if step >= 2 + 3 and sum(forward_times) + sum(backward_times) >= min_run_time:
            return forward_times, backward_times
        model.zero_grad(set_to_none=True)
        synchronize(device)
        start = time.perf_counter()
        loss = loss_of(model, source, target)
        synchronize(device)
        middle = time.perf_counter()
        loss.backward()
        synchronize(device)
        if step >= 2:  # after the warm-up
            forward_times.append(middle - start)
            backward_times.append(time.perf_counter() - middle)


def mean_and_std(values: list) -> tuple[float, float]:
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), values.std().item() if len(values) > 1 else 0.0


def measure(model, source, target, min_run_time: float, device: str) -> dict:
    with FlopCounterMode(display=False) as flops:
        loss_of(model, source, target)
    model.zero_grad(set_to_none=True)
    loss_of(model, source, target).backward()
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    forward, backward = timed_steps(model, source, target, min_run_time, device)

    def step():
        model.zero_grad(set_to_none=True)
        loss_of(model, source, target).backward()

    return {"params": sum(p.numel() for p in model.parameters()), "flops": flops.get_total_flops(),
            "forward": mean_and_std(forward), "backward": mean_and_std(backward),
            "memory": peak_memory_bytes(step, device), "grad_norm": grad_norm.item()}


def run(devices: list, lengths: list, batch: int, min_run_time: float, quick: bool, log=print) -> list[dict]:
    """One row per (device, size, model)."""
    sizes = [(f"L = {length}", batch, length // 2, length - length // 2) for length in lengths]
    piglatin_batch = 4 if quick else PIGLATIN_SIZE[0]
    sizes.append(("Pig Latin", piglatin_batch, *PIGLATIN_SIZE[1:]))
    rows = []
    for device in devices:
        for size, batch_size, source_length, target_length in sizes:
            generator = torch.Generator().manual_seed(0)
            source = torch.randint(1, 27, (batch_size, source_length), generator=generator).to(device)
            target = torch.randint(1, 27, (batch_size, target_length), generator=generator).to(device)
            for name, (config_file, options) in model_variants().items():
                model = make_model(config_file, options, max(64, target_length + 2, source_length + 2), device, quick)
                row = {"device": device, "size": size, "batch": batch_size, "model": name,
                       **measure(model, source, target, min_run_time, device)}
                rows.append(row)
                log(f"models {device} {size} {name}: forward {mean_std(*row['forward'])} ms, "
                    f"backward {mean_std(*row['backward'])} ms")
    return rows


def report(rows: list[dict], header: str, batch: int) -> str:
    columns = ["device", "size", "model", "params", "forward MFLOPs", "forward (ms)", "backward (ms)",
               "peak memory (MB)", "grad norm"]
    cells = [[row["device"], f"{row['size']} (B = {row['batch']})", row["model"], f"{row['params']:,}",
              f"{row['flops'] / 1e6:,.1f}", mean_std(*row["forward"]), mean_std(*row["backward"]),
              megabytes(row["memory"]), f"{row['grad_norm']:.3f}"] for row in rows]
    notes = ("Each model is its small default config (exps/args_piglatin_small_*.txt), in training mode "
             "(dropout on), on random characters; the loss is the training loss. Forward includes the loss. "
             "Times: mean ± std over repeated steps after two warm-up steps (the GPU synchronised before each clock reading). FLOPs: "
             "torch.utils.flop_counter, which counts matrix products, convolutions and attention but no "
             "elementwise work: Mamba's scan and discretisation are not in it, nor the fused recurrences of "
             "nn.LSTM and nn.GRU (their counts are the attention and projections only, and vary with the "
             "backend). Peak memory: allocated during "
             "one forward+backward beyond the model and inputs (GPU: torch.cuda.max_memory_allocated; CPU: "
             "torch's allocations as torch.profiler records them). Grad norm: the L2 norm of all gradients "
             "after one backward, before clipping.")
    return f"{header}\n\n{markdown_table(columns, cells, 'lllrrrrrr')}\n\n{notes}\n"


def plot(rows: list[dict], path):
    """Forward+backward time per model, one group of bars per (device, size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((row["device"], row["size"]) for row in rows))
    names = list(dict.fromkeys(row["model"] for row in rows))
    figure, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups) + 1, 4), squeeze=False)
    for axis, (device, size) in zip(axes[0], groups):
        mine = {row["model"]: row for row in rows if (row["device"], row["size"]) == (device, size)}
        times = [(mine[name]["forward"][0] + mine[name]["backward"][0]) * 1e3 for name in names]
        axis.bar(range(len(names)), times, color=[f"C{i}" for i in range(len(names))])
        axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        axis.set(yscale="log", title=f"{device}, {size}", ylabel="forward+backward (ms)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
