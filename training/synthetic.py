"""Training on the synthetic tasks (data/synthetic.py): `python main.py --config exps/args_selective_copying_mamba.txt`.

The run directory is laid out as for Pig Latin (training/run.py):

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
import json
import logging
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import LearningRateMonitor
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from data.synthetic import DEFAULT_SEQ_LEN, IGNORE, TaskSettingError, make_splits, model_length
from models.family import FamilySeq2Seq
from models.hybrid import RecurrentTokenModel, causal_transformer, hybrid
from models.mamba import Mamba
from training.config import FAMILY_MODELS, Config, ConfigError
from training.module import Seq2SeqModule, eval_mode
from training.run import (AveragedWeights, best_and_last, check_accelerator, count_parameters, fit, make_trainer, resume_point,
                          run_facts)

warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

EVAL_BATCH_SIZE = 256


def mamba_options(config: Config) -> dict:
    """The MambaBlock options a config sets (the same as for Pig Latin)."""
    return dict(state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel,
                discretization=config.discretization, alpha=config.alpha, scan=config.scan, A_init=config.A_init,
                dt_min=config.dt_min, dt_max=config.dt_max)


TOKEN_MODELS = {
    "transformer": lambda config, vocab, length: causal_transformer(
        vocab, config.hidden_size, config.num_heads, config.num_layers, length, config.dropout, config.positional),
    "mamba": lambda config, vocab, length: Mamba(
        vocab, config.hidden_size, config.num_layers, config.dropout, **mamba_options(config)),
    "hybrid": lambda config, vocab, length: hybrid(
        vocab, config.hidden_size, config.num_heads, config.hybrid_blocks, config.attention_layers,
        config.mamba_layers, config.hybrid_join, config.hybrid_order, length, config.dropout, config.positional,
        **mamba_options(config)),
    "lstm": lambda config, vocab, length: RecurrentTokenModel(
        vocab, "lstm", config.hidden_size, config.num_layers, config.dropout),
    "gru": lambda config, vocab, length: RecurrentTokenModel(
        vocab, "gru", config.hidden_size, config.num_layers, config.dropout),
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
        name, vocab, 0, config.hidden_size, config.num_layers, config.dropout, config.state_size, config.expand,
        config.conv_kernel, length, config.scan, config.dt_min, config.dt_max))


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


class SyntheticModule(L.LightningModule):
    """Trains a token model on `train_targets` (cross-entropy, IGNORE skipped); validates on `targets`."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = Config(**config)
        self.model = build_token_model(self.config)
        self.totals = {}

    def training_step(self, batch, batch_idx):
        inputs, _, train_targets = batch
        logits = self.model(inputs)  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1), train_targets.flatten(), ignore_index=IGNORE)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=inputs.shape[0])
        return loss

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

    # The Pig-Latin module's optimizer and schedule (AdamW, warm-up, cosine), so both kinds of run train alike.
    configure_optimizers = Seq2SeqModule.configure_optimizers


def train(config: Config, resume_dir: Path = None, quiet: bool = False) -> Path:
    """Trains as `config` says and returns the run directory. `resume_dir` continues an earlier run."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    splits = make_task_splits(config)  # refuses impossible settings before anything is written
    check_accelerator(config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = SyntheticModule(dataclasses.asdict(config))
    order = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(as_dataset(splits["train"]), batch_size=config.batch_size, shuffle=True,
                              generator=order)
    val_loader = DataLoader(as_dataset(splits["val"]), batch_size=EVAL_BATCH_SIZE)
    with torch.random.fork_rng():  # one step first: a stub or shape error stops here, before any file
        inputs, _, train_targets = next(iter(train_loader))
        F.cross_entropy(module.model(inputs).flatten(0, 1), train_targets.flatten(), ignore_index=IGNORE).backward()
    module.zero_grad(set_to_none=True)

    run_dir, checkpoint_path, previous_seconds = resume_point(config, resume_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    best, last = best_and_last(run_dir, "val_acc")
    on_gpu = config.accelerator != "cpu" and torch.cuda.is_available()
    # On a GPU some kernels have no deterministic version; say so rather than stop the run.
    callbacks = [best, last, LearningRateMonitor(logging_interval="epoch")]
    if config.ema_decay:  # validation, and so the best checkpoint, see the averaged weights, as for Pig Latin
        callbacks.append(AveragedWeights(decay=config.ema_decay))
    trainer = make_trainer(config, run_dir, callbacks, quiet, deterministic="warn" if on_gpu else True)
    if not quiet:
        print(f"training {config.model} ({count_parameters(module.model):,} parameters) on {config.task} "
              f"(length {seq_len(config)}) on {trainer.strategy.root_device} into {run_dir}", file=sys.stderr)
    train_seconds = previous_seconds + fit(trainer, module, run_dir, checkpoint_path,
                                           train_dataloaders=train_loader, val_dataloaders=val_loader)

    best_module = SyntheticModule.load_from_checkpoint(best.best_model_path, map_location=trainer.strategy.root_device)
    val, test = evaluate(best_module.model, splits["val"]), evaluate(best_module.model, splits["test"])
    write_samples(best_module.model, splits["test"], run_dir / "samples.txt", config.num_samples)
    metrics = {
        **{f"val_{name}": value for name, value in val.items()},
        **{f"test_{name}": value for name, value in test.items()},
        **run_facts(config, trainer, best, best_module.model, train_seconds),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return run_dir


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
