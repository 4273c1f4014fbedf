"""Training on the synthetic tasks (data/synthetic.py): `python main.py --config exps/args_selective_copying_mamba.txt`.

The run directory is laid out as for every run (training/run.py), with these files:

    runs/<run_name>/
        config.json            every option, as resolved
        checkpoints/best.ckpt  the epoch with the best validation accuracy (the first such epoch)
        checkpoints/last.ckpt  the latest epoch, for --resume
        logs/metrics.csv       per epoch: train_loss, val_loss, val_acc, val_seq_acc, learning rate
        samples.txt            test examples: the scored targets and the model's answers
        metrics.json           val_acc, val_seq_acc, val_loss and the same for test, params, epochs, time

val_acc is the share of scored positions predicted right; val_seq_acc the share of sequences with every
scored position right. The checkpoint is chosen on the validation split; the test split is read once, at
the end, from that checkpoint. Training stops early once every scored validation position is right: no
later epoch could then be chosen (a later one must be strictly better), so this saves time and changes no
reported number.

To add a model, add a builder to TOKEN_MODELS: a function (config, vocab_size, length) -> nn.Module that
maps token ids (B, L) to logits (B, L, V) with position t seeing tokens 0 ... t only.
"""

import dataclasses
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from data.synthetic import DEFAULT_SEQ_LEN, IGNORE, TaskSettingError, make_splits, model_length
from models.decoding import eval_mode
from models.family import FamilySeq2Seq
from models.hybrid import RecurrentTokenModel, causal_transformer, hybrid
from models.mamba import Mamba
from training.config import FAMILY_MODELS, Config, ConfigError
from training.module import TrainingModule, family_options, mamba_options
from training.run import check_accelerator, fit_run, preflight, resume_point, write_metrics

EVAL_BATCH_SIZE = 256


TOKEN_MODELS = {
    "transformer": lambda config, vocab, length: causal_transformer(
        vocab, hidden_size=config.hidden_size, num_heads=config.num_heads, num_layers=config.num_layers,
        max_length=length, dropout=config.dropout, positional=config.positional),
    "mamba": lambda config, vocab, length: Mamba(
        vocab, hidden_size=config.hidden_size, num_layers=config.num_layers, dropout=config.dropout,
        **mamba_options(config)),
    "hybrid": lambda config, vocab, length: hybrid(
        vocab, hidden_size=config.hidden_size, num_heads=config.num_heads, blocks=config.hybrid_blocks,
        attention_layers=config.attention_layers, mamba_layers=config.mamba_layers, join=config.hybrid_join,
        order=config.hybrid_order, max_length=length, dropout=config.dropout, positional=config.positional,
        **mamba_options(config)),
    "lstm": lambda config, vocab, length: RecurrentTokenModel(
        vocab, "lstm", hidden_size=config.hidden_size, num_layers=config.num_layers, dropout=config.dropout),
    "gru": lambda config, vocab, length: RecurrentTokenModel(
        vocab, "gru", hidden_size=config.hidden_size, num_layers=config.num_layers, dropout=config.dropout),
}


class FamilyLanguageModel(nn.Module):
    """A state-space family model (models/family.py) read as a plain causal language model."""

    def __init__(self, family_model: FamilySeq2Seq):
        super().__init__()
        self.family_model = family_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, V)."""
        return self.family_model.language_model(tokens)


def family_builder(name: str):
    """The TOKEN_MODELS entry of one family member: its kernels and tables sized for the task's length."""
    return lambda config, vocab, length: FamilyLanguageModel(FamilySeq2Seq(
        name, vocab, 0, max_length=length, **family_options(config)))


# S4, S4D, S6, Mamba with an LTI mixer (mamba_s4d_real: Mamba without selectivity), the gated MLP.
TOKEN_MODELS.update({name: family_builder(name) for name in FAMILY_MODELS})


def seq_len(config: Config) -> int:
    """The task's sequence length: the config's, or MAD's default when it says 0."""
    return config.seq_len or DEFAULT_SEQ_LEN[config.task]


def build_token_model(config: Config) -> nn.Module:
    """The model a config asks for, sized for its task: token ids (B, L) -> logits (B, L, V)."""
    if config.model not in TOKEN_MODELS:
        raise ConfigError(f"model {config.model} has no synthetic-task version; choose one of "
                          f"{', '.join(TOKEN_MODELS)}")
    return TOKEN_MODELS[config.model](config, config.vocab_size, model_length(config.task, seq_len(config)))


def make_task_splits(config: Config) -> dict:
    """{'train', 'val', 'test'}: Examples of the config's task, from `data_seed`."""
    try:
        return make_splits(config.task, config.vocab_size, seq_len(config), config.num_tokens, config.num_train,
                           config.num_val, config.num_test, config.data_seed)
    except TaskSettingError as error:
        raise ConfigError(str(error)) from None


def as_dataset(examples) -> TensorDataset:
    """(inputs, targets, train_targets), each (n, L) int64."""
    return TensorDataset(*(torch.from_numpy(array) for array in
                           (examples.inputs, examples.targets, examples.train_targets)))


def score(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """logits (B, L, V), targets (B, L) with IGNORE where unscored -> summed loss and counts, as floats.

    {'loss_sum', 'scored', 'right', 'sequences', 'sequences_right'}: sums, so batches add up exactly.
    """
    scored = targets != IGNORE  # (B, L)
    right = (logits.argmax(dim=-1) == targets) & scored
    loss_sum = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    return {"loss_sum": loss_sum.item(), "scored": scored.sum().item(), "right": right.sum().item(),
            "sequences": targets.shape[0], "sequences_right": (right == scored).all(dim=1).sum().item()}


def summarize(totals: dict) -> dict:
    """Totals of `score` -> {'loss', 'acc', 'seq_acc'}: per scored position, and per sequence."""
    return {"loss": totals["loss_sum"] / max(1, totals["scored"]), "acc": totals["right"] / max(1, totals["scored"]),
            "seq_acc": totals["sequences_right"] / max(1, totals["sequences"])}


@torch.no_grad()
def evaluate(model: nn.Module, examples, batch_size: int = EVAL_BATCH_SIZE) -> dict:
    """{'loss', 'acc', 'seq_acc'} of a model on Examples, in eval mode (no dropout)."""
    device = next(model.parameters()).device
    totals = {}
    with eval_mode(model):
        for inputs, targets, _ in DataLoader(as_dataset(examples), batch_size=batch_size):
            for name, value in score(model(inputs.to(device)), targets.to(device)).items():
                totals[name] = totals.get(name, 0) + value
    return summarize(totals)


class SyntheticModule(TrainingModule):
    """Trains a token model on `train_targets` (cross-entropy, IGNORE skipped); validates on `targets`."""

    make_model = staticmethod(build_token_model)

    def __init__(self, config: dict):
        super().__init__(config)
        self.totals = {}

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy over the positions `train_targets` scores."""
        inputs, _, train_targets = batch
        logits = self.model(inputs)  # (B, L, V)
        return F.cross_entropy(logits.flatten(0, 1), train_targets.flatten(), ignore_index=IGNORE)

    def on_validation_epoch_start(self):
        self.totals = {}

    def validation_step(self, batch, batch_idx):
        inputs, targets, _ = batch
        for name, value in score(self.model(inputs), targets).items():
            self.totals[name] = self.totals.get(name, 0) + value

    def on_validation_epoch_end(self):
        # Summed here, not averaged per batch: recall's batches hold different numbers of scored positions.
        summary = summarize(self.totals)
        for name, value in summary.items():
            self.log(f"val_{name}", float(value), prog_bar=name == "acc")
        if summary["acc"] == 1.0 and not self.trainer.sanity_checking:
            self.trainer.should_stop = True  # nothing later could be chosen (see the module docstring)


def train(config: Config, resume_dir: Path = None, quiet: bool = False) -> Path:
    """Trains as `config` says and returns the run directory. `resume_dir` continues an earlier run."""
    splits = make_task_splits(config)  # refuses impossible settings before anything is written
    check_accelerator(config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = SyntheticModule(dataclasses.asdict(config))
    order = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(as_dataset(splits["train"]), batch_size=config.batch_size, shuffle=True,
                              generator=order)
    val_loader = DataLoader(as_dataset(splits["val"]), batch_size=EVAL_BATCH_SIZE)
    preflight(module, train_loader)
    on_gpu = config.accelerator != "cpu" and torch.cuda.is_available()
    # On a GPU some kernels have no deterministic version; say so rather than stop the run.
    fitted = fit_run(config, module, resume_point(config, resume_dir), "val_acc", quiet,
                     what=f"on {config.task} (length {seq_len(config)}) ", deterministic="warn" if on_gpu else True,
                     train_dataloaders=train_loader, val_dataloaders=val_loader)

    best_module = SyntheticModule.load_from_checkpoint(fitted.best.best_model_path,
                                                       map_location=fitted.trainer.strategy.root_device)
    val, test = evaluate(best_module.model, splits["val"]), evaluate(best_module.model, splits["test"])
    write_samples(best_module.model, splits["test"], fitted.run_dir / "samples.txt", config.num_samples)
    write_metrics(config, fitted, best_module.model, {**{f"val_{name}": value for name, value in val.items()},
                                                      **{f"test_{name}": value for name, value in test.items()}})
    return fitted.run_dir


@torch.no_grad()
def write_samples(model: nn.Module, examples, path: Path, count: int = 10):
    """The first test examples: the input, then the scored targets and the model's answers (. = not scored)."""
    device = next(model.parameters()).device
    with eval_mode(model):
        guesses = model(torch.from_numpy(examples.inputs[:count]).to(device)).argmax(dim=-1).cpu().numpy()
    lines = []
    for row, (tokens, targets) in enumerate(zip(examples.inputs[:count], examples.targets[:count])):
        scored = targets != IGNORE
        right = bool(np.all(guesses[row][scored] == targets[scored]))
        lines += [f"example {row}: {'right' if right else 'WRONG'}",
                  "  input  " + " ".join(f"{t:>2}" for t in tokens),
                  "  target " + " ".join(f"{t:>2}" if s else " ." for t, s in zip(targets, scored)),
                  "  model  " + " ".join(f"{g:>2}" if s else " ." for g, s in zip(guesses[row], scored))]
    path.write_text("\n".join(lines) + "\n")


def summary_line(metrics: dict) -> str:
    """What main.py prints when a run ends."""
    return (f"val_acc {metrics['val_acc']:.4f}  val_seq_acc {metrics['val_seq_acc']:.4f}  "
            f"test_acc {metrics['test_acc']:.4f}  test_seq_acc {metrics['test_seq_acc']:.4f}  "
            f"params {metrics['params']:,}  {metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s")
