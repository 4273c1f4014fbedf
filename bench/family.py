"""The state-space family side by side, as the report we start from tabulated it: one training step (forward
+ backward) and one inference step (forward, no gradients, eval mode) at L = 256, 512, 784, with parameters,
forward FLOPs, peak memory and gradient norm; the S4 family (models/family.py) next to the Transformer, the
LSTM and the GRU, each its small default config (exps/args_piglatin_small_<model>.txt).

A sequence of length L is what bench/models.py makes: a source of L/2 random characters and a target of L/2;
the causal models read them as one sequence [source, EOS, SOS, target] of L + 2.
"""

import torch

from bench.measure import markdown_table, megabytes, mean_std, time_call
from bench.models import loss_of, measure
from training.config import build_config
from training.module import build_model

# (row name as the report has it, config name)
ROWS = [("S4", "s4"), ("S4D Real", "s4d_real"), ("S4D Inv", "s4d_inv"), ("S4D Lin", "s4d_lin"),
        ("S4 Low Rank", "s4_low_rank"), ("S6", "s6"), ("Mamba S4", "mamba_s4"), ("Mamba S4D Real", "mamba_s4d_real"),
        ("Mamba S4D Inv", "mamba_s4d_inv"), ("Mamba S4D Lin", "mamba_s4d_lin"), ("Mamba S4 Low Rank", "mamba_s4_low_rank"),
        ("Mamba S6", "mamba_s6"), ("Gated MLP", "gated_mlp"), ("Transformer", "transformer"), ("LSTM", "lstm"),
        ("GRU", "gru")]
LTI = ["S4", "S4D Real", "S4D Inv", "S4D Lin", "S4 Low Rank"]


def make_model(config_name: str, length: int, device: str, quick: bool):
    """The small default config, its position tables and kernels long enough for L, seeded, training mode."""
    options = ["--max_length", str(max(64, length + 4))]
    if quick:
        options += ["--hidden_size", "16", "--num_heads", "2", "--state_size", "4"]
    config = build_config(f"exps/args_piglatin_small_{config_name}.txt", options)
    torch.manual_seed(0)
    return build_model(config).to(device).train()


def inference_time(model, source, target, min_run_time: float) -> tuple[float, float]:
    """(mean, std) seconds of one forward pass with the loss, eval mode, no gradients."""
    def forward():
        with torch.no_grad():
            loss_of(model, source, target)

    model.eval()
    try:
        return time_call(forward, min_run_time)
    finally:
        model.train()


def run(devices: list, lengths: list, batch: int, min_run_time: float, quick: bool, log=print) -> list[dict]:
    """One row per (device, L, model)."""
    rows = []
    for device in devices:
        for length in lengths:
            generator = torch.Generator().manual_seed(0)
            source = torch.randint(1, 27, (batch, length // 2), generator=generator).to(device)
            target = torch.randint(1, 27, (batch, length - length // 2), generator=generator).to(device)
            for name, config_name in ROWS:
                model = make_model(config_name, length, device, quick)
                row = {"device": device, "L": length, "batch": batch, "model": name,
                       **measure(model, source, target, min_run_time, device),
                       "inference": inference_time(model, source, target, min_run_time)}
                row["train"] = row["forward"][0] + row["backward"][0]
                rows.append(row)
                log(f"family {device} L={length} {name}: training step {row['train'] * 1e3:.2f} ms, "
                    f"inference {row['inference'][0] * 1e3:.2f} ms, {megabytes(row['memory'])} MB")
                del model
    return rows


def ratio_lines(rows: list[dict]) -> list[str]:
    """The issue's targets as ratios of training-step times in this run, per device and L."""
    lines = []
    for device, length in dict.fromkeys((row["device"], row["L"]) for row in rows):
        at = {row["model"]: row["train"] for row in rows if (row["device"], row["L"]) == (device, length)}
        if "S4D Real" not in at:
            continue
        lti = ", ".join(f"{name} {at[name] / at['S4D Real']:.2f}×" for name in LTI if name in at)
        selective = [f"S6 {at['S6'] / at['S4D Real']:.2f}× S4D Real's" if "S6" in at else "",
                     f"Mamba S6 {at['Mamba S6'] / at['Mamba S4D Real']:.2f}× Mamba S4D Real's"
                     if {"Mamba S6", "Mamba S4D Real"} <= at.keys() else ""]
        lines.append(f"- {device}, L = {length}: LTI training step / S4D Real's: {lti} (target ≤ 2×); "
                     f"{'; '.join(filter(None, selective))} (target ≤ 3×).")
    return lines


def memory_lines(rows: list[dict]) -> list[str]:
    """Peak memory at the longest L over the shortest, next to the ratio of the lengths (linear = equal)."""
    lines = []
    for device in dict.fromkeys(row["device"] for row in rows):
        mine = [row for row in rows if row["device"] == device]
        shortest, longest = min(row["L"] for row in mine), max(row["L"] for row in mine)
        if shortest == longest:
            continue
        memory = {(row["model"], row["L"]): row["memory"] for row in mine}
        ratios = [f"{name} {memory[name, longest] / max(memory[name, shortest], 1):.2f}"
                  for name, _ in ROWS if (name, shortest) in memory and (name, longest) in memory]
        lines.append(f"- {device}: peak memory at L = {longest} over L = {shortest} (L grew "
                     f"{longest / shortest:.2f}×): " + ", ".join(ratios) + ".")
    return lines


def report(rows: list[dict], header: str) -> str:
    lengths = sorted(dict.fromkeys(row["L"] for row in rows))
    times, details = [], []
    for device in dict.fromkeys(row["device"] for row in rows):
        for name, _ in ROWS:
            mine = {row["L"]: row for row in rows if (row["device"], row["model"]) == (device, name)}
            if not mine:
                continue
            first = mine[lengths[0]] if lengths[0] in mine else next(iter(mine.values()))
            times.append([device, name, f"{first['params']:,}"]
                         + [f"{mine[L]['train'] * 1e3:.2f}" if L in mine else "" for L in lengths]
                         + [mean_std(*mine[L]["inference"]) if L in mine else "" for L in lengths])
            details += [[device, name, L, f"{row['flops'] / 1e6:,.1f}", mean_std(*row["forward"]),
                         mean_std(*row["backward"]), megabytes(row["memory"]), f"{row['grad_norm']:.3f}"]
                        for L, row in sorted(mine.items())]
    batch = rows[0]["batch"] if rows else 0
    time_columns = (["device", "model", "params"] + [f"training step, L = {L} (ms)" for L in lengths]
                    + [f"inference, L = {L} (ms)" for L in lengths])
    detail_columns = ["device", "model", "L", "forward MFLOPs", "forward (ms)", "backward (ms)", "peak memory (MB)",
                      "grad norm"]
    notes = (f"Batch {batch}; each model its small default config, in training mode for the training step "
             "(forward with the loss, then backward; the mean of each) and in eval mode without gradients for "
             "inference (mean ± std). FLOPs: torch.utils.flop_counter (matrix products, convolutions, attention; "
             "no FFTs, scans or other elementwise work). Peak memory: allocated during one forward+backward "
             "beyond the model and inputs. Grad norm: L2 norm of all gradients after one backward.")
    return "\n\n".join([header, markdown_table(time_columns, times, "ll" + "r" * (len(time_columns) - 2)),
                        *ratio_lines(rows), *memory_lines(rows),
                        markdown_table(detail_columns, details, "llrrrrrr"), notes]) + "\n"


def plot(rows: list[dict], path):
    """Training step, inference and peak memory against L, one line per model, one row of panels per device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(dict.fromkeys(row["device"] for row in rows))
    figure, axes = plt.subplots(len(devices), 3, figsize=(15, 4.5 * len(devices)), squeeze=False)
    for panels, device in zip(axes, devices):
        for index, (name, _) in enumerate(ROWS):
            mine = sorted((row for row in rows if (row["device"], row["model"]) == (device, name)), key=lambda r: r["L"])
            if not mine:
                continue
            style = dict(marker="o", color=f"C{index % 10}", linestyle="-" if index < 10 else "--", label=name)
            lengths = [row["L"] for row in mine]
            panels[0].plot(lengths, [row["train"] * 1e3 for row in mine], **style)
            panels[1].plot(lengths, [row["inference"][0] * 1e3 for row in mine], **style)
            panels[2].plot(lengths, [row["memory"] / 2 ** 20 for row in mine], **style)
        for axis, title in zip(panels, ["training step (ms)", "inference (ms)", "peak memory, training step (MB)"]):
            axis.set(xscale="log", yscale="log", xlabel="sequence length L", title=f"{device}: {title}")
        panels[2].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
