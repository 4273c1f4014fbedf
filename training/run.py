"""One training run: a run directory with logs, checkpoints, the resolved config, samples and metrics.

    runs/<run_name>/
        config.json          every option, as resolved from defaults, config file and command line
        checkpoints/best.ckpt  the epoch with the best validation word accuracy
        checkpoints/last.ckpt  the latest epoch, for --resume
        logs/metrics.csv     per-epoch train/val loss, val word accuracy, learning rate (CSV logger)
        tensorboard/         the same for `tensorboard --logdir runs`
        samples.txt          validation words, their reference and the model's translation
        metrics.json         val_loss, val_word_acc, params, epochs, train_seconds, ...
"""

import csv
import ctypes
import dataclasses
import io
import json
import logging
import resource
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint, ProgressBar, Timer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tqdm import tqdm

from data.datamodule import PigLatinDataModule
from training.config import Config, ConfigError, cpu_threads, locate, time_limit
from models.family import LENGTH_BOUND
from training.module import Seq2SeqModule, word_results

# Lightning 2.6 trips over a torch deprecation of its own making on every validation; not ours to fix.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


class EpochProgressBar(ProgressBar):
    """One bar over epochs with the latest losses and accuracy: epochs here take seconds, not minutes."""

    SHOWN = ("train_loss", "val_loss", "val_word_acc", "val_acc")  # val_acc: the synthetic tasks' accuracy

    def __init__(self):
        super().__init__()
        self.enabled = True
        self.bar = None

    def disable(self):
        self.enabled = False

    def enable(self):
        self.enabled = True

    def on_train_start(self, trainer, pl_module):
        self.bar = tqdm(total=trainer.max_epochs, initial=trainer.current_epoch, desc="training",
                        unit="epoch", disable=not self.enabled, dynamic_ncols=True, file=sys.stderr)

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        shown = {name: f"{metrics[name].item():.4f}" for name in self.SHOWN if name in metrics}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer, pl_module):
        self.bar.close()

    def on_exception(self, trainer, pl_module, exception):
        if self.bar is not None:
            self.bar.close()  # end the bar's line, so the error that follows gets a line of its own


class AveragedWeights(EMAWeightAveraging):
    """Lightning's exponential moving average of the weights, made safe for models that keep the last
    forward pass's tensors as attributes (attention maps, for the notebooks): the average is a deep copy of
    the model, and a tensor that is part of an autograd graph cannot be copied; a detached one can."""

    def setup(self, trainer, pl_module, stage):
        for module in pl_module.modules():
            for name, value in vars(module).items():
                if isinstance(value, torch.Tensor) and not value.is_leaf:
                    setattr(module, name, value.detach())
        super().setup(trainer, pl_module, stage)


class ReturnFreedMemory(L.Callback):
    """Hands the memory freed during an epoch back to the system (glibc on Linux; elsewhere nothing).

    Batches change shape from step to step, so the tensors of one step rarely fit the holes the last one
    left: the C allocator keeps hundreds of MB that no tensor uses (the small Mamba after an epoch: 534 MB
    of heap holding 170 MB). `malloc_trim` returns those pages, so that between epochs (validation,
    checkpoints, the decoding at the end) the run holds 490 MB instead of 820. The peak within an epoch
    stays: trimming after every step would lower it to about 700 MB, but re-faulting the pages took 70%
    more time.
    """

    def __init__(self):
        super().__init__()
        try:
            self.trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: macOS, Windows, musl
            self.trim = None

    def on_train_epoch_end(self, trainer, pl_module):
        if self.trim is not None:
            self.trim(0)


def fresh_run_dir(out_dir: str, run_name: str) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... if taken: a new run never overwrites an old one."""
    candidate, number = Path(out_dir) / run_name, 1
    while candidate.exists():
        number += 1
        candidate = Path(out_dir) / f"{run_name}-{number}"
    return candidate


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def resume_point(config: Config, resume_dir: Path = None) -> tuple[Path, Path, float]:
    """(run directory, checkpoint to continue from or None, training seconds spent before). A fresh run gets a
    new directory; a resumed one must hold a readable last.ckpt, or the run stops here with one line."""
    if resume_dir is None:
        return fresh_run_dir(config.out_dir, config.run_name), None, 0.0
    checkpoint_path = resume_dir / "checkpoints" / "last.ckpt"
    if not checkpoint_path.is_file():
        raise ConfigError(f"cannot resume: {checkpoint_path} not found")
    try:
        torch.load(checkpoint_path, map_location="cpu", weights_only=False)["global_step"]
    except Exception as error:  # truncated, foreign or not a checkpoint at all
        raise ConfigError(f"cannot resume: {checkpoint_path} is not a readable checkpoint "
                          f"({type(error).__name__})") from None
    try:
        previous = json.loads((resume_dir / "metrics.json").read_text())["train_seconds"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        previous = 0.0  # only the reported time suffers; the run itself is intact
    return resume_dir, checkpoint_path, previous


def best_and_last(run_dir: Path, monitor: str) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """checkpoints/best.ckpt (the epoch with the highest `monitor`) and checkpoints/last.ckpt (for --resume)."""
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
                           enable_version_counter=False)
    # Not save_last=True: Lightning 2.6 then writes last.ckpt only when best.ckpt improves.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False)
    return best, last


def make_trainer(config: Config, run_dir: Path, callbacks: list, quiet: bool, deterministic=True) -> L.Trainer:
    """The Trainer of a run: its epochs and time limit, CSV and TensorBoard logs in the run directory."""
    return L.Trainer(
        max_epochs=config.epochs,
        max_time=time_limit(config),
        accelerator=config.accelerator,
        devices=1,
        gradient_clip_val=config.grad_clip or None,
        deterministic=deterministic,
        logger=[CSVLogger(run_dir, name="", version="logs"),
                TensorBoardLogger(run_dir, name="", version="tensorboard")],
        callbacks=callbacks + ([] if quiet else [EpochProgressBar()]),
        enable_progress_bar=not quiet,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )


def fit(trainer: L.Trainer, module: L.LightningModule, run_dir: Path, checkpoint_path: Path, **data) -> float:
    """trainer.fit, continuing from checkpoint_path if given; returns the seconds it took. The CSV logger
    deletes an existing metrics.csv when it starts: a resumed run's earlier epochs are put back."""
    log_file = run_dir / "logs" / "metrics.csv"
    history = log_file.read_text() if checkpoint_path is not None and log_file.is_file() else None
    started = time.perf_counter()
    with warnings.catch_warnings():
        # On resume Lightning warns that it will delete the old logs and checkpoints; we keep what matters.
        warnings.filterwarnings("ignore", message=".*exists and is not empty")
        trainer.fit(module, ckpt_path=checkpoint_path, **data)
    seconds = time.perf_counter() - started
    if history is not None:
        resumed_at = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["global_step"]
        prepend_history(log_file, history, resumed_at)
    return seconds


def stopped_by_time(trainer: L.Trainer) -> bool:
    """Did the time limit (`max_minutes`, Lightning's Timer) end training before its epochs ran out?"""
    timer = next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)
    return timer is not None and trainer.current_epoch < trainer.max_epochs and timer.time_remaining() <= 0


def check_accelerator(config: Config):
    """`--accelerator gpu` on a machine without one: one line, before the run directory exists."""
    if config.accelerator == "gpu" and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        raise ConfigError("accelerator=gpu, but torch finds no GPU here (use --accelerator auto or cpu)")


def device_label(trainer: L.Trainer) -> str:
    """Where a run trained, for metrics.json: the GPU's name, or cpu (mps on a Mac)."""
    device = trainer.strategy.root_device
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def run_facts(config: Config, trainer: L.Trainer, best: ModelCheckpoint, model: torch.nn.Module,
              train_seconds: float) -> dict:
    """What metrics.json says of every run besides its scores: size, epochs, time, memory, where it ran."""
    return {
        "params": count_parameters(model),
        "epochs": trainer.current_epoch,
        "best_epoch": torch.load(best.best_model_path, map_location="cpu", weights_only=False)["epoch"],
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(1, trainer.current_epoch), 3),
        "stopped_by_time": stopped_by_time(trainer),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "device": device_label(trainer),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def train(config: Config, resume_dir: Path = None, quiet: bool = False, callbacks: tuple = ()) -> Path:
    """Trains as `config` says and returns the run directory. `resume_dir` continues an earlier run;
    `callbacks` are Lightning callbacks added to the run's own (the analyses of bench/small_data.py)."""
    # Lightning's INFO lines (which accelerators exist, tips) would bury the one line we print instead.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(cpu_threads(config))
    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = PigLatinDataModule(locate(config.data), config.batch_size, config.val_fraction, config.seed)
    datamodule.setup("fit")  # reads and checks the data now, before anything is written
    needed = max(datamodule.max_source_length, datamodule.max_target_length) + 2  # + SOS/EOS
    if config.model in LENGTH_BOUND:  # one sequence [source, EOS, SOS, target]; the Transformer's tables: one side
        needed = datamodule.max_source_length + datamodule.max_target_length + 2
    if config.model in ("transformer", *LENGTH_BOUND) and config.max_length < needed:
        raise ConfigError(f"max_length={config.max_length} is too short for {config.data} with model "
                          f"{config.model}: use at least {needed}")

    check_accelerator(config)
    run_dir, checkpoint_path, previous_seconds = resume_point(config, resume_dir)
    module = Seq2SeqModule(dataclasses.asdict(config))
    preflight(module, datamodule)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    best, last = best_and_last(run_dir, "val_word_acc")
    callbacks = [best, last, LearningRateMonitor(logging_interval="epoch"), ReturnFreedMemory(), *callbacks]
    if config.ema_decay:
        # Validation, and so the best checkpoint, see the averaged weights; last.ckpt keeps both for --resume.
        callbacks.append(AveragedWeights(decay=config.ema_decay))
    trainer = make_trainer(config, run_dir, callbacks, quiet)
    if not quiet:
        print(f"training {config.model} ({count_parameters(module.model):,} parameters) on "
              f"{trainer.strategy.root_device} into {run_dir}", file=sys.stderr)
    train_seconds = previous_seconds + fit(trainer, module, run_dir, checkpoint_path, datamodule=datamodule)

    best_module = Seq2SeqModule.load_from_checkpoint(best.best_model_path, map_location="cpu")
    # A separate, logger-free Trainer: the training one would add a fake extra epoch to the logs.
    evaluator = L.Trainer(accelerator=config.accelerator, devices=1, logger=False, enable_progress_bar=False,
                          enable_model_summary=False, deterministic=True)
    scores = evaluator.validate(best_module, datamodule=datamodule, verbose=False)[0]
    write_samples(best_module, datamodule.val_pairs[: config.num_samples], run_dir / "samples.txt")
    decoded, teacher_forced = word_results(best_module.model, datamodule.val_pairs)
    decoded_accuracy = decoded.float().mean().item()
    if warning := decoding_disagreement(config.model, decoded, teacher_forced):
        print(warning, file=sys.stderr)
    metrics = {
        "val_loss": scores["val_loss"],
        "val_word_acc": decoded_accuracy,
        "val_word_acc_teacher_forced": scores["val_word_acc"],
        **run_facts(config, trainer, best, best_module.model, train_seconds),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return run_dir


# Where to read when greedy decoding and the teacher-forced pass disagree: the code that can see the future.
CAUSALITY_SECTION = {"transformer": "Q1.1 Multi-head attention", "mamba": "Q2.3 Mamba block"}


def decoding_disagreement(model: str, decoded: torch.Tensor, teacher_forced: torch.Tensor):
    """A warning if greedy decoding and the teacher-forced pass disagree on more words than rounding
    explains (a near-tie can flip a word or two), else None. Both are (words,) bool, right or wrong.

    Decoding runs the given step-by-step code (models/decoding.py); the teacher-forced pass runs your
    `forward`. They disagree when `forward` sees future tokens, or computes something else than the steps.
    """
    words = len(decoded)
    differing = int((decoded != teacher_forced).sum())
    if differing <= max(1, 0.002 * words):
        return None
    section = CAUSALITY_SECTION.get(model)
    return (f"warning: greedy decoding gets {decoded.float().mean():.4f} of the validation words right, but the "
            f"teacher-forced pass (the per-epoch accuracy) says {teacher_forced.float().mean():.4f}; they "
            f"disagree on {differing} of {words} words: does the {'decoder' if model == 'transformer' else 'model'} "
            "see future tokens, or does its forward compute something else than step-by-step decoding "
            f"(models/decoding.py)?" + (f" (README: {section})" if section else ""))


def preflight(module: Seq2SeqModule, datamodule: PigLatinDataModule):
    """One forward and backward pass on one batch, before anything is written or printed, so an
    unfinished stub or a shape error stops the run at once, leaving no half-made run directory."""
    with torch.random.fork_rng():  # leaves the seeded random state exactly as it was
        module.loss(next(iter(datamodule.train_dataloader()))).backward()
    module.zero_grad(set_to_none=True)


def prepend_history(log_file: Path, history: str, resumed_at: int):
    """Puts the rows logged before `resumed_at` (the resumed checkpoint's step) back in front of the new ones."""
    old = [row for row in csv.DictReader(io.StringIO(history)) if int(row["step"]) < resumed_at]
    new = list(csv.DictReader(io.StringIO(log_file.read_text())))
    columns = list(dict.fromkeys([*(old[0] if old else {}), *(new[0] if new else {})]))
    with log_file.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(old + new)


def write_samples(module: Seq2SeqModule, pairs: list, path: Path):
    """One line per word: english, the reference, the model's translation, and whether they agree."""
    predictions = module.translate([english for english, _ in pairs])
    lines = [f"{'english':<22}{'reference':<26}{'model':<26}ok"]
    for (english, reference), predicted in zip(pairs, predictions):
        lines.append(f"{english:<22}{reference:<26}{predicted:<26}{'yes' if predicted == reference else 'NO'}")
    path.write_text("\n".join(lines) + "\n")
