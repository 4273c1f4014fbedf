"""Pig Latin on a CPU: training throughput and greedy decoding latency of each small default config.

Training: real batches of the small dataset in the order training sees them, each step a forward pass,
the loss, backward, gradient clipping and an AdamW step, as training/module.py does; words per second
over the timed steps (after three warm-up steps). Decoding: validation words one at a time (batch 1),
each decoded greedily for as many steps as its Pig Latin has characters plus EOS, which is what a trained
model does (an untrained one would run to the step limit); milliseconds per word, two ways: step by step
(models/decoding.py: Mamba carries its state, the Transformer its keys and values), and by rerunning the
whole sequence for every new character, as greedy decoding did before (and still does for LSTM and GRU).
"""

import time

import torch

from bench.measure import markdown_table, mean_std
from bench.models import mean_and_std, model_variants
from data.datamodule import PigLatinDataModule
from data.vocab import VOCAB
from training.config import build_config
from models.decoding import FullRerun, eval_mode, start_decoding
from training.piglatin import Seq2SeqModule


def training_steps(module: Seq2SeqModule, batches: list, warmup: int) -> list[float]:
    """Seconds per training step over `batches`, the first `warmup` steps not kept."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=module.config.lr, weight_decay=module.config.weight_decay)
    times = []
    for step, batch in enumerate(batches):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        module.loss(batch).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), module.config.grad_clip)
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def decoding_times(module: Seq2SeqModule, pairs: list, start=start_decoding) -> list[float]:
    """Seconds to decode each (english, piglatin) pair's word on its own, greedily, with the decoder that
    `start(model, source)` makes."""
    times = []
    with eval_mode(module.model):
        for english, piglatin in pairs:
            source = torch.tensor([VOCAB.encode(english)])
            begin = time.perf_counter()
            decoder, token = start(module.model, source), torch.tensor([VOCAB.SOS])
            for _ in range(len(piglatin) + 1):
                token = decoder.step(token).argmax(dim=-1)
            times.append(time.perf_counter() - begin)
    return times


MAMBA = "exps/args_piglatin_small_mamba.txt"
# The bilinear rule beside the zero-order hold: with the initial Δ (every Ā > 0), and with Δ large enough that
# many Ā < 0, as happens in training, where the log-space scans see a complex log Ā.
BILINEAR_VARIANTS = {
    "mamba (bilinear)": (MAMBA, ["--discretization", "bilinear"]),
    "mamba (bilinear, Ā < 0)": (MAMBA, ["--discretization", "bilinear", "--dt_min", "0.3", "--dt_max", "1.0"]),
}


def run(train_steps: int, decode_words: int, quick: bool, log=print) -> list[dict]:
    """One row per model variant: `train_steps` timed training steps, `decode_words` words decoded."""
    rows = []
    for name, (config_file, options) in {**model_variants(), **BILINEAR_VARIANTS}.items():
        if quick:
            options = options + ["--hidden_size", "16", "--num_heads", "2", "--state_size", "4"]
        config = build_config(config_file, options)
        torch.manual_seed(config.seed)
        module = Seq2SeqModule(vars(config)).train()
        data = PigLatinDataModule(config.data, config.batch_size, config.val_fraction, config.seed)
        data.setup("fit")
        batches = []
        while len(batches) < train_steps + 3:
            batches += list(data.train_dataloader())
        batches = batches[:train_steps + 3]
        steps = training_steps(module, batches, warmup=3)
        words = sum(len(source) for source, _ in batches[3:])
        decode = decoding_times(module, data.val_pairs[:decode_words])
        rerun = decoding_times(module, data.val_pairs[:decode_words], start=FullRerun)
        rows.append({"model": name, "config": config_file, "params": sum(p.numel() for p in module.parameters()),
                     "words_per_second": words / sum(steps), "step": mean_and_std(steps),
                     "decode": mean_and_std(decode), "rerun": mean_and_std(rerun),
                     "batch": config.batch_size})
        log(f"piglatin {name}: {rows[-1]['words_per_second']:.0f} words/s training, "
            f"{rows[-1]['decode'][0] * 1e3:.2f} ms per word decoding ({rows[-1]['rerun'][0] * 1e3:.2f} rerunning)")
    return rows


def report(rows: list[dict], header: str) -> str:
    columns = ["model", "config", "params", "training (words/s)", "training step (ms)", "decoding (ms/word)",
               "decoding by rerunning (ms/word)"]
    cells = [[row["model"], f"`{row['config']}`", f"{row['params']:,}", f"{row['words_per_second']:,.0f}",
              mean_std(*row["step"]), mean_std(*row["decode"]), mean_std(*row["rerun"])] for row in rows]
    notes = ("Training: words per second over real batches of the small dataset (batch size from the config; "
             "forward, backward, clipping, AdamW). Training step: mean ± std per batch. Decoding: greedy, one "
             "word at a time, mean ± std per word over validation words; step by step (the Transformer reuses "
             "its keys and values, Mamba carries its state; LSTM and GRU rerun their decoder), and by rerunning "
             "the whole sequence for every new character.")
    return f"{header}\n\n{markdown_table(columns, cells, 'llrrrrr')}\n\n{notes}\n"


def plot(rows: list[dict], path):
    """Training throughput and decoding latency per model, two bar charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["model"] for row in rows]
    figure, (training, decoding) = plt.subplots(1, 2, figsize=(10, 4))
    colours = [f"C{i}" for i in range(len(rows))]
    training.bar(names, [row["words_per_second"] for row in rows], color=colours)
    training.set(ylabel="words per second", title="Training throughput (CPU)")
    places = range(len(rows))
    decoding.bar([place - 0.2 for place in places], [row["rerun"][0] * 1e3 for row in rows], width=0.4,
                 color="lightgrey", label="rerunning the sequence")
    decoding.bar([place + 0.2 for place in places], [row["decode"][0] * 1e3 for row in rows], width=0.4,
                 color=colours, label="step by step")
    decoding.set_xticks(list(places), names)
    decoding.legend(fontsize=8)
    decoding.set(ylabel="ms per word", title="Greedy decoding, one word at a time (CPU)")
    for axis in (training, decoding):
        axis.tick_params(axis="x", labelrotation=45, labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
