"""Pig Latin: `python main.py --config exps/args_piglatin_small_transformer.txt`.

`Seq2SeqModule` trains a translation model (Transformer, Mamba, the LSTM and GRU baselines, the state-space
family) on `(source, target)` batches of character ids, shapes (B, S) and (B, T), with no SOS/EOS: the model
reads `[SOS] + target` and learns to predict `target + [EOS]`. `train` runs it (training/run.py), then
scores the best checkpoint by greedy decoding (models/decoding.py) and writes samples.txt and metrics.json:

    runs/<run_name>/
        config.json          every option, as resolved from defaults, config file and command line
        checkpoints/best.ckpt  the epoch with the best validation word accuracy
        checkpoints/last.ckpt  the latest epoch, for --resume
        logs/metrics.csv     per-epoch train/val loss, val word accuracy, learning rate (CSV logger)
        tensorboard/         the same for `tensorboard --logdir runs`
        samples.txt          validation words, their reference and the model's translation
        metrics.json         val_loss, val_word_acc, params, epochs, train_seconds, ...
"""

import dataclasses
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from data.datamodule import PigLatinDataModule
from data.vocab import VOCAB
from models.decoding import eval_mode, greedy_decode, model_budget, with_eos, with_sos, word_results
from models.family import LENGTH_BOUND
from training.config import Config, ConfigError, cpu_threads, locate
from training.module import TrainingModule, build_model
from training.run import check_accelerator, fit_run, preflight, resume_point, write_metrics


class Seq2SeqModule(TrainingModule):
    """Trains the translation model a config asks for (`build_model`); logs per-character loss and whole-word
    accuracy."""

    make_model = staticmethod(build_model)

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy per character of predicting target + EOS from SOS + target."""
        return self._loss_and_logits(batch)[0]

    def _loss_and_logits(self, batch):
        source, target = batch
        logits = self.model(source, with_sos(target))  # (B, T+1, V)
        return F.cross_entropy(logits.flatten(0, 1), with_eos(target).flatten()), logits

    def validation_step(self, batch, batch_idx):
        source, target = batch
        loss, logits = self._loss_and_logits(batch)
        # Greedy decoding reproduces a word exactly iff, fed the right prefix, the model's top choice is
        # right at every position: its prefix is then the right one all along. For a causal decoder that
        # is exactly what this teacher-forced pass computes, so it gives greedy decoding's word accuracy
        # at no extra cost. `train` decodes for real at the end and warns if the two disagree.
        right = (logits.argmax(dim=-1) == with_eos(target)).all(dim=1).float().mean()
        self.log("val_loss", loss, on_epoch=True, batch_size=source.shape[0], prog_bar=True)
        self.log("val_word_acc", right, on_epoch=True, batch_size=source.shape[0], prog_bar=True)

    def translate(self, words: list) -> list:
        """Greedy translations of lowercase words, each decoded on its own (any length mix)."""
        results = []
        with eval_mode(self.model):  # dropout off: the original starter forgot this
            for word in words:
                source = torch.tensor([VOCAB.encode(word)], device=self.device)
                tokens = greedy_decode(self.model, source, model_budget(self.model, len(word)))
                results.append(VOCAB.decode(tokens[0].tolist()))
        return results


def train(config: Config, resume_dir: Path = None, quiet: bool = False, callbacks: tuple = ()) -> Path:
    """Trains as `config` says and returns the run directory. `resume_dir` continues an earlier run;
    `callbacks` are Lightning callbacks added to the run's own (the analyses of bench/small_data.py)."""
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
    resumed = resume_point(config, resume_dir)
    module = Seq2SeqModule(dataclasses.asdict(config))
    preflight(module, datamodule.train_dataloader())
    fitted = fit_run(config, module, resumed, "val_word_acc", quiet, callbacks=callbacks, datamodule=datamodule)

    best_module = Seq2SeqModule.load_from_checkpoint(fitted.best.best_model_path, map_location="cpu")
    # A separate, logger-free Trainer: the training one would add a fake extra epoch to the logs.
    evaluator = L.Trainer(accelerator=config.accelerator, devices=1, logger=False, enable_progress_bar=False,
                          enable_model_summary=False, deterministic=True)
    scores = evaluator.validate(best_module, datamodule=datamodule, verbose=False)[0]
    write_samples(best_module, datamodule.val_pairs[: config.num_samples], fitted.run_dir / "samples.txt")
    decoded, teacher_forced = word_results(best_module.model, datamodule.val_pairs)
    if warning := decoding_disagreement(config.model, decoded, teacher_forced):
        print(warning, file=sys.stderr)
    write_metrics(config, fitted, best_module.model, {
        "val_loss": scores["val_loss"],
        "val_word_acc": decoded.float().mean().item(),
        "val_word_acc_teacher_forced": scores["val_word_acc"],
    })
    return fitted.run_dir


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


def write_samples(module: Seq2SeqModule, pairs: list, path: Path):
    """One line per word: english, the reference, the model's translation, and whether they agree."""
    predictions = module.translate([english for english, _ in pairs])
    lines = [f"{'english':<22}{'reference':<26}{'model':<26}ok"]
    for (english, reference), predicted in zip(pairs, predictions):
        lines.append(f"{english:<22}{reference:<26}{predicted:<26}{'yes' if predicted == reference else 'NO'}")
    path.write_text("\n".join(lines) + "\n")
