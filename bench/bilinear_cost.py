"""Where the bilinear rule's extra training time goes, against the zero-order hold (docs/mamba-small-data.md).

    python -m bench.bilinear_cost                # the small Mamba config, 30 steps a round, 3 rounds
    python -m bench.bilinear_cost --steps 10 --rounds 1

Trains the small Mamba config's model on real batches of the small set (forward, loss, backward, AdamW) with
each rule, and with each rule again while `log_of_decay` computes no logarithm (it hands the given scans
Ā alone, which is all they read): the second pair bounds what any speed-up of the given helpers could win,
since what is left is the rule itself, your `discretize_bilinear` and its gradient. One thread; the rounds
interleave the variants, so that a machine's load falls on all of them alike. Times are process CPU time
(what a busy machine does not inflate by its waiting); the minimum over rounds is reported, with each
variant's ratio to the zero-order hold.
"""

import argparse
import contextlib
import dataclasses
import sys
import time

import torch

from bench.measure import machine_header
from data.datamodule import PigLatinDataModule
from models import mamba
from training.config import REPOSITORY, build_config
from training.piglatin import Seq2SeqModule

CONFIG = REPOSITORY / "exps" / "args_piglatin_small_mamba.txt"


def decay_only(delta, A, A_bar, discretization):
    """A stand-in for `log_of_decay` that takes no logarithm: NaN where the log would be, Ā as `.decay`."""
    log_a = A_bar.new_full((), float("nan")).expand(A_bar.shape)
    log_a.decay = A_bar
    return log_a


@contextlib.contextmanager
def log_of_decay_replaced(replacement):
    original = mamba.log_of_decay
    mamba.log_of_decay = replacement or original
    try:
        yield
    finally:
        mamba.log_of_decay = original


VARIANTS = {  # name: (options, log_of_decay replacement or None)
    "zoh": ([], None),
    "bilinear": (["--discretization", "bilinear"], None),
    "zoh, no log": ([], decay_only),
    "bilinear, no log": (["--discretization", "bilinear"], decay_only),
}


def step_seconds(steps: int, rounds: int) -> dict:
    """{variant: [CPU seconds of `steps` training steps, per round]}."""
    datamodule = PigLatinDataModule(REPOSITORY / "data" / "pig_latin_small.txt", 64, 0.2, 0)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())[:steps]
    trained = {}
    for name, (options, _) in VARIANTS.items():
        torch.manual_seed(0)
        module = Seq2SeqModule(dataclasses.asdict(build_config(CONFIG, options + ["--scan", "pair_scan"])))
        trained[name] = module, torch.optim.AdamW(module.parameters(), lr=1e-3, fused=True)

    def train(name: str, batches: list):
        module, optimizer = trained[name]
        with log_of_decay_replaced(VARIANTS[name][1]):
            for batch in batches:
                optimizer.zero_grad(set_to_none=True)
                module.loss(batch).backward()
                optimizer.step()

    for name in VARIANTS:  # warm-up
        train(name, batches[:3])
    times = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name in VARIANTS:
            started = time.process_time()
            train(name, batches)
            times[name].append(time.process_time() - started)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bilinear_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="training steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    torch.set_num_threads(1)
    times = step_seconds(args.steps, args.rounds)
    zoh = min(times["zoh"])
    print(machine_header("cpu"))
    print(f"{args.steps} training steps of the small Mamba config, CPU seconds, minimum of {args.rounds} rounds")
    for name, values in times.items():
        print(f"{name:<18} {min(values):7.2f} s   {min(values) / zoh:.2f}x zoh   rounds: "
              + " ".join(f"{value:.2f}" for value in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
