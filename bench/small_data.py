"""Why Mamba learns Pig Latin worse than the Transformer from the small set: many runs side by side, each
recording which validation words it gets right after every epoch (docs/mamba-small-data.md).

    python -m bench.small_data --plan screen --cpu-jobs 8 --gpu-jobs 8 --deadline 480 --out results/
    python -m bench.small_data --plan screen --only "mamba lr 6e-3" --seeds 0 --cpu-jobs 1 --out results/
    python -m bench.small_data --plan final --seeds 0 1 2 --cpu-jobs 2 --out results/   # the two-core machine

Each run is its own process, trained by training/run.py's `train` from a config in exps/ plus the setting's
options, on one CPU thread or on the GPU (a plan says which; without a GPU every run takes the CPU). Two
things are added to a Pig-Latin run:

- `WordLog` writes, after every epoch, which validation words the teacher-forced pass gets right (for a
  causal decoder, exactly the words greedy decoding gets right) to word_log.jsonl in the run directory;
- at the end, words.json holds the best checkpoint's greedy translations of the validation words and the
  training words it gets wrong.

A setting may swap our Mamba blocks for mambapy's (an independent implementation, in requirements-optional.txt):
`mambapy` puts mambapy's residual blocks inside our embedding, dropout, final norm and output layer;
`mambapy_lm` also initialises every weight as mambapy's language model does (`mambapy_lm_initialisation`).
A setting may also add a loss for copying the source (`use_copy_loss`). Synthetic-task settings (a
selective-copying config) train as main.py trains them. Everything the runs leave gathers into
small_data_<plan>.json in --out (a run stopped by --deadline with the epochs it finished, and each run's
CPU time), which `python -m analysis.small_data` turns into tables and figures.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
SMALL_MAMBA = "exps/args_piglatin_small_mamba.txt"
SMALL_TRANSFORMER = "exps/args_piglatin_small_transformer.txt"
COPYING_MAMBA = "exps/args_selective_copying_mamba.txt"


@dataclass(frozen=True)
class Setting:
    """One configuration to train with several seeds: a config file, options over it, whose blocks, where."""

    name: str
    config: str
    options: tuple = ()
    implementation: str = "ours"  # or "mambapy", "mambapy_lm"
    device: str = "cpu"  # "gpu": on the GPU when there is one; "laptop": on the CPU, run on the two-core machine
    seeds: tuple = ()  # only these of the seeds asked for (empty: all of them)
    copy_loss: bool = False  # with layout twice: also learn to copy the source (`use_copy_loss`)


TINY = ("--hidden_size", "16", "--state_size", "4", "--epochs", "1", "--num_encoder_layers", "1",
        "--num_decoder_layers", "1")

# Every Mamba setting of the two screens is the config as it was then, with lr 3e-3 (OLD_LR), plus the change
# its name says. The screens ran on one H100 machine (16 Xeon cores): GPU settings 8 to 9 at a time sharing
# the GPU, CPU settings one thread each beside them; "laptop" settings on the two-core machine itself.
OLD_LR = ("--lr", "3e-3")

PLANS = {
    "screen": [
        # The selective-copying runs take longest: first in the GPU's queue.
        Setting("copying mamba default", COPYING_MAMBA, seeds=(0,), device="gpu"),
        Setting("copying mamba dt 0.01-1", COPYING_MAMBA, ("--dt_min", "0.01", "--dt_max", "1.0"), seeds=(0,),
                device="gpu"),
        Setting("mamba old default (lr 3e-3)", SMALL_MAMBA, OLD_LR, device="gpu"),
        Setting("mamba dt 0.01-1", SMALL_MAMBA, OLD_LR + ("--dt_min", "0.01", "--dt_max", "1.0"), device="gpu"),
        Setting("mamba reversed source", SMALL_MAMBA, OLD_LR + ("--layout", "reversed"), device="gpu"),
        Setting("mamba source twice", SMALL_MAMBA, OLD_LR + ("--layout", "twice"), device="gpu"),
        Setting("mamba mambapy blocks", SMALL_MAMBA, OLD_LR, implementation="mambapy", device="gpu"),
        Setting("mamba mambapy LM init", SMALL_MAMBA, OLD_LR, implementation="mambapy_lm", device="gpu"),
        Setting("mamba no weight decay", SMALL_MAMBA, OLD_LR + ("--weight_decay", "0"), device="gpu"),
        Setting("mamba lr 6e-3", SMALL_MAMBA, ("--lr", "6e-3"), device="gpu"),
        Setting("mamba dropout 0", SMALL_MAMBA, OLD_LR + ("--dropout", "0"), device="gpu"),
        Setting("mamba old default (lr 3e-3) on the CPU", SMALL_MAMBA, OLD_LR, seeds=(0,)),
        Setting("transformer default", SMALL_TRANSFORMER, seeds=(0,)),
        Setting("transformer lr 5e-3", SMALL_TRANSFORMER, ("--lr", "5e-3")),
        Setting("transformer dropout 0", SMALL_TRANSFORMER, ("--dropout", "0")),
    ],
    "screen2": [
        Setting("copying mamba dt 0.01-1", COPYING_MAMBA, ("--dt_min", "0.01", "--dt_max", "1.0"), seeds=(1, 2),
                device="gpu"),
        Setting("copying mamba mambapy LM init", COPYING_MAMBA, implementation="mambapy_lm", seeds=(0,),
                device="gpu"),
        Setting("mamba lr 6e-3 64 epochs", SMALL_MAMBA, ("--lr", "6e-3", "--epochs", "64"), device="gpu"),
        Setting("mamba lr 6e-3", SMALL_MAMBA, ("--lr", "6e-3"), device="gpu"),
        Setting("mamba lr 6e-3 dropout 0.35", SMALL_MAMBA, ("--lr", "6e-3", "--dropout", "0.35"), device="gpu"),
        # The third seed of the first screen's baselines, which its deadline stopped.
        Setting("mamba old default (lr 3e-3)", SMALL_MAMBA, OLD_LR, seeds=(2,), device="gpu"),
        Setting("mamba mambapy blocks", SMALL_MAMBA, OLD_LR, implementation="mambapy", seeds=(2,), device="gpu"),
        Setting("transformer dropout 0.2", SMALL_TRANSFORMER, ("--dropout", "0.2")),
        Setting("transformer lr 5e-3 dropout 0.2", SMALL_TRANSFORMER, ("--lr", "5e-3", "--dropout", "0.2")),
        Setting("mamba twice copy loss", SMALL_MAMBA, OLD_LR + ("--layout", "twice"), copy_loss=True, seeds=(0,),
                device="laptop"),
        Setting("transformer default on the two-core machine", SMALL_TRANSFORMER, seeds=(0,), device="laptop"),
    ],
    # The final default (lr 6e-3), on one thread of the two-core machine itself.
    "final": [
        Setting("mamba default (lr 6e-3)", SMALL_MAMBA, device="laptop"),
    ],
    # Seconds, not minutes: every kind of run once, for the tests and a first look on a new machine.
    "smoke": [
        Setting("mamba", SMALL_MAMBA, TINY + ("--layout", "twice"), device="gpu"),
        Setting("mamba mambapy blocks", SMALL_MAMBA, TINY, implementation="mambapy"),
        Setting("mamba mambapy LM", SMALL_MAMBA, TINY, implementation="mambapy_lm"),
        Setting("transformer", SMALL_TRANSFORMER, TINY + ("--num_heads", "2")),
        Setting("copying mamba", COPYING_MAMBA, ("--hidden_size", "8", "--epochs", "1", "--num_train", "64",
                                                 "--num_val", "16", "--num_test", "16")),
    ],
}


def run_name(setting: Setting, seed: int) -> str:
    return f"{setting.name.replace(' ', '_')}-seed{seed}"


# ---------------------------------------------------------------------------------------------------------
# One run (the child process)
# ---------------------------------------------------------------------------------------------------------


def word_log_callback(path: Path):
    """A Lightning callback that appends {"epoch", "right"} to `path` after every validation epoch: `right`
    maps each validation word to whether the teacher-forced pass gets every character of it right."""
    import lightning as L
    import torch

    from data.vocab import VOCAB
    from models.decoding import with_eos, with_sos

    class WordLog(L.Callback):
        def on_validation_epoch_start(self, trainer, pl_module):
            self.right = {}

        @torch.no_grad()
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            source, target = batch  # the weights validation sees: the average, with --ema_decay
            logits = pl_module.model(source, with_sos(target))
            right = (logits.argmax(dim=-1) == with_eos(target)).all(dim=1)
            for word, ok in zip(source.tolist(), right.tolist()):
                self.right[VOCAB.decode(word)] = ok

        def on_validation_epoch_end(self, trainer, pl_module):
            with path.open("a") as file:
                file.write(json.dumps({"epoch": trainer.current_epoch, "right": self.right}) + "\n")

    return WordLog()


def final_words(run_dir: Path, datamodule) -> dict:
    """The best checkpoint's greedy translations of the validation words, and the training words that its
    teacher-forced pass gets wrong (the fit to the training set)."""
    import torch

    from data.vocab import VOCAB
    from models.decoding import decoding_batches, eval_mode, greedy_decode, model_budget, word_results
    from training.piglatin import Seq2SeqModule

    module = Seq2SeqModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", map_location="cpu")
    model = module.model
    predictions = {}
    with eval_mode(model), torch.no_grad():
        for source, _ in decoding_batches(datamodule.val_pairs):
            tokens = greedy_decode(model, source, model_budget(model, source.shape[1]))
            for english, ids in zip(source.tolist(), tokens.tolist()):
                predictions[VOCAB.decode(english)] = VOCAB.decode(ids)
    train_order = [english for source, _ in decoding_batches(datamodule.train_pairs)
                   for english in map(VOCAB.decode, source.tolist())]
    _, forced = word_results(model, datamodule.train_pairs)
    train_wrong = sorted(word for word, ok in zip(train_order, forced.tolist()) if not ok)
    return {"val": {english: [expected, predictions[english]] for english, expected in datamodule.val_pairs},
            "train_words": len(datamodule.train_pairs), "train_wrong": train_wrong}


def mambapy_lm_initialisation(model, num_layers: int):
    """What mambapy's language model (`mambapy.lm.LM`, whose module needs mamba_ssm to import) does to its
    weights: every Linear and the embedding N(0, 0.02²), every Linear's bias 0, out_proj N(0, (0.02/√(2L))²).
    The zeroed biases include dt_proj's, so Δ starts near softplus(0) ≈ 0.69 instead of log-uniform in
    [dt_min, dt_max]."""
    import math

    import torch
    from torch import nn

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    for name, parameter in model.named_parameters():
        if name.endswith("mixer.out_proj.weight"):
            torch.nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * num_layers))


def use_mambapy(implementation: str):
    """Builds Mamba, in this process, as our model around mambapy's residual blocks: with our initialisation
    of the rest (`mambapy`) or mambapy's language-model one throughout (`mambapy_lm`). Pig Latin's
    build_model and the synthetic tasks' TOKEN_MODELS entry are swapped for builders that do so."""
    from mambapy.mamba import MambaConfig, ResidualBlock

    from models.mamba import MambaSeq2Seq
    from training import module, synthetic

    class MambapySeq2Seq(MambaSeq2Seq):
        """Our seq2seq layout around mambapy. Not a MambaSeq2Seq to models/decoding.py, whose steps run our
        blocks: greedy decoding reruns the sequence for every character instead (training/module.py)."""

    def with_mambapy_blocks(mamba, config):
        """Our `Mamba` (embedding, dropout, final norm, output layer) with mambapy's blocks inside."""
        mambapy_config = MambaConfig(d_model=config.hidden_size, n_layers=config.num_layers,
                                     d_state=config.state_size, expand_factor=config.expand,
                                     d_conv=config.conv_kernel, dt_min=config.dt_min, dt_max=config.dt_max)
        mamba.layers = type(mamba.layers)(ResidualBlock(mambapy_config) for _ in range(config.num_layers))
        if implementation == "mambapy_lm":
            mambapy_lm_initialisation(mamba, config.num_layers)
        return mamba

    build_model, token_model = module.build_model, synthetic.TOKEN_MODELS["mamba"]

    def build(config):
        model = build_model(config)
        if config.model == "mamba":
            model.__class__ = MambapySeq2Seq
            with_mambapy_blocks(model.mamba, config)
        return model

    module.build_model = build
    synthetic.TOKEN_MODELS["mamba"] = lambda config, vocab, length: with_mambapy_blocks(
        token_model(config, vocab, length), config)


def use_copy_loss():
    """Trains Mamba with the `twice` layout to also predict the second reading of the source from the first:
    an auxiliary copy task on every word, added to the loss in training only (validation scores the target)."""
    import torch
    import torch.nn.functional as F

    from models.decoding import with_eos, with_sos
    from training.piglatin import Seq2SeqModule

    def loss_and_logits(self, batch):
        source, target = batch
        prefix = self.model.encode(source)  # [source, EOS, source, EOS]
        logits = self.model.mamba(torch.cat([prefix, with_sos(target)], dim=1))  # (B, P+T+1, V)
        target_logits = logits[:, prefix.shape[1]:]
        loss = F.cross_entropy(target_logits.flatten(0, 1), with_eos(target).flatten())
        if self.training:
            S = source.shape[1]  # positions S ... 2S read [EOS, source] and predict [source, EOS]
            loss = loss + F.cross_entropy(logits[:, S:2 * S + 1].flatten(0, 1), prefix[:, S + 1:].flatten())
        return loss, target_logits

    Seq2SeqModule._loss_and_logits = loss_and_logits


def train_one(setting: Setting, seed: int, device: str, out_dir: Path) -> Path:
    """Trains one setting with one seed in this process; returns its run directory."""
    from training.config import build_config

    options = [*setting.options, "--seed", str(seed), "--threads", "1", "--accelerator", device,
               "--out_dir", str(out_dir), "--run_name", run_name(setting, seed)]
    config = build_config(REPOSITORY / setting.config, options)
    if config.task == "piglatin":
        config.num_samples = 0  # words.json has every validation word's translation
    if setting.implementation != "ours":
        use_mambapy(setting.implementation)  # in this child process only
    if setting.copy_loss:
        use_copy_loss()
    if config.task != "piglatin":
        from training.synthetic import train

        return train(config, quiet=True)

    from data.datamodule import PigLatinDataModule
    from training.config import locate
    from training.piglatin import train

    run_dir = Path(out_dir) / config.run_name  # where train() puts it, as it is not taken
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists already: give --out a fresh folder")
    run_dir = train(config, quiet=True, callbacks=[word_log_callback(run_dir / "word_log.jsonl")])
    datamodule = PigLatinDataModule(locate(config.data), config.batch_size, config.val_fraction, config.seed)
    datamodule.setup("fit")
    (run_dir / "words.json").write_text(json.dumps(final_words(run_dir, datamodule)) + "\n")
    # The whole process's CPU time: with one thread, what its wall time would be on an idle machine.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    (run_dir / "cpu.json").write_text(json.dumps({"cpu_seconds": usage.ru_utime + usage.ru_stime}) + "\n")
    return run_dir


# ---------------------------------------------------------------------------------------------------------
# Many runs (the parent process) and what they leave
# ---------------------------------------------------------------------------------------------------------


def read_csv_log(run_dir: Path) -> dict:
    """{column: [value per epoch]} of the run's logs/metrics.csv, for the per-epoch columns it has."""
    from analysis.runs import logged_epochs

    by_epoch = logged_epochs(run_dir)
    columns = sorted({name for row in by_epoch.values() for name in row})
    return {name: [row.get(name) for row in by_epoch.values()] for name in columns}


def read_word_log(run_dir: Path) -> dict:
    """{"val_words": sorted validation words, "right_by_epoch": one '1'/'0' string per epoch}, or {}."""
    path = run_dir / "word_log.jsonl"
    if not path.is_file():
        return {}
    epochs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not epochs:
        return {}
    words = sorted(epochs[0]["right"])
    return {"val_words": words,
            "right_by_epoch": ["".join("1" if epoch["right"][word] else "0" for word in words) for epoch in epochs]}


def collect_run(setting: Setting, seed: int, device: str, run_dir: Path, status: str, seconds: float,
                error: str = "") -> dict:
    """Everything one run left, as one JSON-able row."""
    row = {"setting": setting.name, "config": setting.config, "options": " ".join(setting.options),
           "implementation": setting.implementation, "seed": seed, "device": device, "status": status,
           "wall_seconds": round(seconds, 1), "error": error}
    if (run_dir / "metrics.json").is_file():
        row["metrics"] = json.loads((run_dir / "metrics.json").read_text())
    row["curves"] = read_csv_log(run_dir)
    row.update(read_word_log(run_dir))
    if (run_dir / "words.json").is_file():
        row["words"] = json.loads((run_dir / "words.json").read_text())
    if (run_dir / "cpu.json").is_file():
        row["cpu_seconds"] = json.loads((run_dir / "cpu.json").read_text())["cpu_seconds"]
    return row


def launch(setting: Setting, seed: int, device: str, plan: str, out: Path, deadline_at: float) -> dict:
    """Runs one (setting, seed) in a child process until it ends or the deadline passes; its row."""
    run_dir = out / f"runs_{plan}" / run_name(setting, seed)
    remaining = deadline_at - time.monotonic()
    if remaining < 30:
        return collect_run(setting, seed, device, run_dir, "not started", 0.0)
    command = [sys.executable, "-m", "bench.small_data", "--plan", plan, "--child", setting.name, "--seeds",
               str(seed), "--device", device, "--out", str(out)]
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True,
                                timeout=None if remaining == float("inf") else remaining,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        status, error = ("finished", "") if result.returncode == 0 else ("failed", result.stderr[-1500:])
    except subprocess.TimeoutExpired:
        status, error = "stopped", "the deadline passed"
    row = collect_run(setting, seed, device, run_dir, status, time.monotonic() - started, error)
    accuracy = row.get("metrics", {}).get("val_word_acc", row.get("metrics", {}).get("test_acc"))
    print(f"{run_name(setting, seed)} on {device}: {status}"
          + (f", {accuracy:.4f}" if accuracy is not None else "") + f" after {row['wall_seconds']:.0f} s",
          file=sys.stderr, flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.small_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", choices=sorted(PLANS), default="screen")
    parser.add_argument("--only", default="", help="run only the settings whose name contains this")
    parser.add_argument("--kind", nargs="+", choices=["cpu", "gpu", "laptop"], default=None,
                        help="run only the settings meant for these kinds of device (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cpu-jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="CPU runs at once, one thread each")
    parser.add_argument("--gpu-jobs", type=int, default=4, help="runs sharing the GPU at once")
    parser.add_argument("--deadline", type=float, default=float("inf"),
                        help="seconds after which unfinished runs are stopped (they keep their epochs)")
    parser.add_argument("--out", default="results", help="folder for runs_<plan>/ and small_data_<plan>.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one run, in the child process
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    settings = [setting for setting in PLANS[args.plan]
                if args.only in setting.name and (not args.kind or setting.device in args.kind)]
    if args.child is not None:
        setting = next((setting for setting in settings if setting.name == args.child), None)
        if setting is None:
            parser.error(f"plan {args.plan} has no setting {args.child!r}")
        train_one(setting, args.seeds[0], args.device, out / f"runs_{args.plan}")
        return 0
    if not settings:
        parser.error(f"no setting of plan {args.plan} has {args.only!r} in its name")
    if min(args.cpu_jobs, args.gpu_jobs) < 1:
        parser.error("--cpu-jobs and --gpu-jobs must be at least 1")
    if (out / f"runs_{args.plan}").exists():
        parser.error(f"{out / f'runs_{args.plan}'} exists already: give --out a fresh folder")

    import torch

    has_gpu = torch.cuda.is_available()
    jobs = [(setting, seed) for seed in args.seeds for setting in settings  # seed-major: first seeds first
            if not setting.seeds or seed in setting.seeds]
    on_gpu = [job for job in jobs if job[0].device == "gpu" and has_gpu]
    on_cpu = [job for job in jobs if job not in on_gpu]
    print(f"{len(on_cpu)} runs on the CPU ({args.cpu_jobs} at a time), {len(on_gpu)} on the GPU "
          f"({args.gpu_jobs} at a time)", file=sys.stderr, flush=True)
    deadline_at = time.monotonic() + args.deadline
    with ThreadPoolExecutor(args.cpu_jobs) as cpus, ThreadPoolExecutor(args.gpu_jobs) as gpus:
        futures = [cpus.submit(launch, setting, seed, "cpu", args.plan, out, deadline_at) for setting, seed in on_cpu]
        futures += [gpus.submit(launch, setting, seed, "gpu", args.plan, out, deadline_at) for setting, seed in on_gpu]
        rows = [future.result() for future in futures]

    from bench.measure import machine_header

    report = {"plan": args.plan, "machine": machine_header("cuda" if has_gpu else "cpu"),
              "cpu_jobs": args.cpu_jobs, "gpu_jobs": args.gpu_jobs if on_gpu else 0, "runs": rows}
    path = out / f"small_data_{args.plan}.json"
    path.write_text(json.dumps(report) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0 if all(row["status"] == "finished" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
