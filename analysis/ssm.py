"""Inside a trained Mamba: the step size Δ along a word, what each character keeps in the state, and
how the parallel scan compares with the sequential one in error and time.

Mamba reads `[source, EOS, SOS, target]`. At each position t, Δ_t (B, L, E) sets how far the state
moves: a large Δ lets the new character in and the old state decay, a small Δ keeps the state. The
weight that the input at position s still has in the state at position t is the cumulative decay
Ā_{s+1} ⋯ Ā_t (per channel and state; we show its mean over both).
"""

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data.vocab import VOCAB
from models.mamba import log_of_decay, pscan, sscan
from models.decoding import decode_budget, eval_mode, greedy_decode


@dataclass
class Trace:
    """What each layer of a Mamba did on one word: Δ (L, E) and log |Ā| (L, E, N) at every position."""

    word: str
    translation: str
    tokens: list  # the L tokens read: source, <EOS>, <SOS>, translation
    delta: list  # one (L, E) tensor per layer
    log_decay: list  # one (L, E, N) tensor per layer: log |Ā_t|

    @property
    def sos_position(self) -> int:
        return len(self.word) + 1


def trace(model, word: str) -> Trace:
    """Translates `word` greedily and reruns the whole sequence, recording Δ of every layer.

    Δ is read with a forward hook on each block's `dt_proj` (Δ = softplus(dt_proj(δ)), README Q2.3), so
    nothing of the model changes.
    """
    source = torch.tensor([VOCAB.encode(word)])  # (1, S)
    blocks = [layer.mixer for layer in model.mamba.layers]
    captured = []
    hooks = [block.dt_proj.register_forward_hook(lambda module, inputs, output: captured.append(F.softplus(output)))
             for block in blocks]
    try:
        with eval_mode(model), torch.no_grad():
            translation = VOCAB.decode(greedy_decode(model, source, decode_budget(len(word)))[0])
            captured.clear()
            target = torch.tensor([[VOCAB.SOS, *VOCAB.encode(translation)]])
            model.decode(target, model.encode(source))
    finally:
        for hook in hooks:
            hook.remove()
    deltas, log_decays = [], []
    for block, delta in zip(blocks, captured):
        A = -torch.exp(block.A_log.detach())  # (E, N)
        no_input = torch.zeros(*delta.shape[:2], block.state_size)  # B̄ does not matter for the decay
        A_bar, _ = block.discretize(delta, A, no_input)
        log_decays.append(log_of_decay(delta, A, A_bar, block.discretization).real[0])  # (L, E, N)
        deltas.append(delta[0])
    tokens = [*word, "<EOS>", "<SOS>", *translation]
    return Trace(word, translation, tokens, deltas, log_decays)


def kept_weight(log_decay: torch.Tensor, until: int) -> torch.Tensor:
    """(L, E, N) log |Ā| -> (until + 1,) mean over channels and states of |Ā_{s+1} ⋯ Ā_until| for s ≤ until:
    how much of the input at position s is left in the state at position `until`."""
    later = log_decay[: until + 1].flip(0).cumsum(0).flip(0)  # row s: Σ_{k=s}^{until} log|Ā_k|
    after_s = torch.cat([later[1:], torch.zeros_like(later[:1])])  # row s: Σ_{k=s+1}^{until}
    return after_s.exp().mean(dim=(1, 2))


def plot_traces(traces: list):
    """Per word (one row): mean Δ along the sequence for each layer, and the weight each character
    keeps in the state when the translation begins (at <SOS>), on a log scale."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(traces), 2, figsize=(12, 3 * len(traces)), squeeze=False)
    for t, (delta_axis, kept_axis) in zip(traces, axes):
        for layer, delta in enumerate(t.delta):
            delta_axis.plot(delta.mean(dim=1).numpy(), marker="o", label=f"layer {layer}")
        delta_axis.set_xticks(range(len(t.tokens)), [token.strip("<>") for token in t.tokens], fontsize=7)
        delta_axis.axvline(t.sos_position, color="grey", lw=0.5)
        delta_axis.set(ylabel="mean Δ over channels", title=f"Δ along {t.word} → {t.translation}")
        delta_axis.legend(fontsize=7)
        positions = range(t.sos_position + 1)
        for layer, log_decay in enumerate(t.log_decay):
            kept_axis.plot(positions, kept_weight(log_decay, t.sos_position).numpy(), marker="o", label=f"layer {layer}")
        kept_axis.set_xticks(positions, [token.strip("<>") for token in t.tokens[: t.sos_position + 1]], fontsize=7)
        kept_axis.set(yscale="log", ylabel="weight left at <SOS>", title="what each character keeps in the state")
        kept_axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def mamba_like_scan_inputs(length: int, channels: int = 32, state_size: int = 16, seed: int = 0):
    """log a = ΔA and b = ΔB·x of shape (1, length, channels, state_size), as a fresh Mamba layer makes them:
    Δ log-uniform in [1e-3, 1e-1], A from S4D-Real, B and x standard normal."""
    generator = torch.Generator().manual_seed(seed)
    delta = torch.exp(torch.empty(1, length, channels, 1).uniform_(-6.9, -2.3, generator=generator))
    A = -torch.arange(1, state_size + 1, dtype=torch.float32)
    B = torch.randn(1, length, 1, state_size, generator=generator)
    x = torch.randn(1, length, channels, 1, generator=generator)
    return delta * A, delta * B * x


def median_seconds(function, *arguments, repeats: int = 5) -> float:
    function(*arguments)  # warm-up: the first call pays for allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*arguments)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def compare_scans(lengths=(2, 8, 32, 128, 512, 2048), repeats: int = 5) -> list:
    """For each length: the largest error of pscan against sscan (absolute, and relative to the largest
    |h|) and the median time of each, on Mamba-like inputs. One dict per length."""
    rows = []
    for length in lengths:
        log_a, b = mamba_like_scan_inputs(length)
        with torch.no_grad():
            reference, parallel = sscan(log_a, b), pscan(log_a, b)
            error = (parallel - reference).abs().max().item()
            rows.append({"length": length, "max_abs_error": error,
                         "max_rel_error": error / reference.abs().max().item(),
                         "sscan_ms": 1e3 * median_seconds(sscan, log_a, b, repeats=repeats),
                         "pscan_ms": 1e3 * median_seconds(pscan, log_a, b, repeats=repeats)})
    return rows


def plot_scan_comparison(rows: list):
    """Error (left) and time (right) against sequence length, log-log."""
    import matplotlib.pyplot as plt

    lengths = [row["length"] for row in rows]
    figure, (error_axis, time_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    error_axis.loglog(lengths, [row["max_rel_error"] for row in rows], marker="o")
    error_axis.set(xlabel="sequence length L", ylabel="max |pscan − sscan| / max |h|", title="error of the parallel scan")
    time_axis.loglog(lengths, [row["sscan_ms"] for row in rows], marker="o", label="sscan (loop)")
    time_axis.loglog(lengths, [row["pscan_ms"] for row in rows], marker="o", label="pscan (log space)")
    time_axis.set(xlabel="sequence length L", ylabel="milliseconds (median)", title="time on this machine")
    time_axis.legend()
    for axis in (error_axis, time_axis):
        axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure
