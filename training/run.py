"""One training run, whatever its task: a run directory with logs, checkpoints, the resolved config, samples
and metrics. training/piglatin.py and training/synthetic.py each give it their module and data (`fit_run`)
and then score the best checkpoint their own way (`write_metrics`).

    runs/<run_name>/
        config.json            every option, as resolved from defaults, config file and command line
        checkpoints/best.ckpt  the epoch with the best validation score
        checkpoints/last.ckpt  the latest epoch, for --resume
        logs/metrics.csv       per-epoch losses, validation scores and learning rate (CSV logger)
        tensorboard/           the same for `tensorboard --logdir runs`
        samples.txt            the task's examples and the model's answers
        metrics.json           the task's scores, then params, epochs, train_seconds, device, ...
"""

import csv
import ctypes
import dataclasses
import io
import json
import logging
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint, ProgressBar, Timer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tqdm import tqdm

from training.config import Config, ConfigError, time_limit

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


def claim_run_dir(out_dir: str, run_name: str) -> Path:
    """Makes runs/<name>, or runs/<name>-2, -3, ... if taken, and returns it: a new run never writes into an
    old one, nor into one that another run started at the same moment claimed."""
    candidate, number = Path(out_dir) / run_name, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            if not Path(out_dir).is_dir():
                raise ConfigError(f"out_dir {out_dir} is a file, not a folder for runs") from None
            number += 1
            candidate = Path(out_dir) / f"{run_name}-{number}"
        except OSError as error:
            raise ConfigError(f"cannot make the run directory {candidate}: {error.strerror}") from None


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def resume_point(config: Config, resume_dir: Path = None) -> tuple[Path, Path, float]:
    """(run directory, checkpoint to continue from or None, training seconds spent before). A fresh run gets a
    new directory (None here: `fit_run` claims it); a resumed one must hold a readable last.ckpt with epochs
    left to train, or the run stops here with one line."""
    if resume_dir is None:
        return None, None, 0.0
    checkpoint_path = resume_dir / "checkpoints" / "last.ckpt"
    if not checkpoint_path.is_file():
        raise ConfigError(f"cannot resume: {checkpoint_path} not found")
    try:
        done = int(torch.load(checkpoint_path, map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception as error:  # truncated, foreign or not a checkpoint at all
        raise ConfigError(f"cannot resume: {checkpoint_path} is not a readable checkpoint "
                          f"({type(error).__name__})") from None
    if done >= config.epochs:
        # Lightning would train nothing and still start a new metrics.csv: the run's history would be lost.
        raise ConfigError(f"cannot resume: {resume_dir} has trained {done} epochs of epochs={config.epochs}; "
                          f"add --epochs N (more than {done}) to train it further")
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
    if history is not None and not log_file.is_file():
        log_file.write_text(history)  # nothing was trained: the history stays as it was
    elif history is not None:
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


@dataclasses.dataclass
class Fitted:
    """A finished training: where it went, its Trainer, its best checkpoint, and its seconds (resumes included)."""

    run_dir: Path
    trainer: L.Trainer
    best: ModelCheckpoint
    seconds: float


def fit_run(config: Config, module: L.LightningModule, resumed: tuple, monitor: str, quiet: bool = False,
            what: str = "", deterministic=True, callbacks: tuple = (), **data) -> Fitted:
    """What every run does once its module has passed `preflight`, Pig Latin's and the synthetic tasks': the
    run directory (`resumed`: what `resume_point` said), its config.json, the checkpoints (best by `monitor`),
    the logs, and `trainer.fit` on `data` (Lightning's `datamodule=`, or `train_dataloaders=` and
    `val_dataloaders=`); `callbacks` are added to the run's own."""
    # Lightning's INFO lines (which accelerators exist, tips) would bury the one line we print instead.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    run_dir, checkpoint_path, previous_seconds = resumed
    if run_dir is None:
        run_dir = claim_run_dir(config.out_dir, config.run_name)
    try:
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        best, last = best_and_last(run_dir, monitor)
        callbacks = [best, last, LearningRateMonitor(logging_interval="epoch"), ReturnFreedMemory(), *callbacks]
        if config.ema_decay:
            # Validation, and so the best checkpoint, see the averaged weights; last.ckpt keeps both for --resume.
            callbacks.append(AveragedWeights(decay=config.ema_decay))
        trainer = make_trainer(config, run_dir, callbacks, quiet, deterministic)
        if not quiet:
            print(f"training {config.model} ({count_parameters(module.model):,} parameters) {what}on "
                  f"{trainer.strategy.root_device} into {run_dir}", file=sys.stderr)
        seconds = previous_seconds + fit(trainer, module, run_dir, checkpoint_path, **data)
    except BaseException:  # an error, Ctrl-C (Lightning exits on it)
        if checkpoint_path is None and not (run_dir / "checkpoints" / "last.ckpt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing learned yet: no half-made run for the notebooks
            if not quiet:
                print(f"stopped before its first epoch ended: {run_dir} removed", file=sys.stderr)
        elif not quiet:
            print(f"stopped: {run_dir} keeps its last finished epoch; continue it with "
                  f"python main.py --resume {run_dir}", file=sys.stderr)
        raise
    return Fitted(run_dir, trainer, best, seconds)


def write_metrics(config: Config, fitted: Fitted, model: torch.nn.Module, scores: dict):
    """metrics.json: the run's scores, then what every run says of itself (run_facts)."""
    metrics = {**scores, **run_facts(config, fitted.trainer, fitted.best, model, fitted.seconds)}
    (fitted.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def preflight(module: L.LightningModule, batches):
    """One forward and backward pass of `module.loss` on the first of `batches`, before anything is written
    or printed, so an unfinished stub or a shape error stops the run at once, leaving no half-made run
    directory."""
    with torch.random.fork_rng():  # leaves the seeded random state exactly as it was
        module.loss(next(iter(batches))).backward()
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
