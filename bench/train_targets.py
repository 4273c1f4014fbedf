"""Trains each default config from scratch and tabulates accuracy, wall time and peak memory.

    python -m bench.train_targets                        # the four default configs, seed 0
    python -m bench.train_targets --seeds 0 1 2          # each with three seeds (three splits)
    python -m bench.train_targets --configs exps/args_piglatin_small_mamba.txt --out assets/x.md
    python -m bench.train_targets --configs exps/args_piglatin_small_s4*.txt --parallel 5   # 5 at once

With --parallel N, N runs go at once, each on one CPU thread (OMP_NUM_THREADS=1, --accelerator cpu): for a
machine with at least N idle cores.

Each run is its own `python main.py` process (one after another with main.py's default threads, unless
--parallel), so its peak resident memory is its own; "training" is the fit (metrics.json's train_seconds), "wall time" the
whole process (start-up, data, training, validation, decoding, writing the run). With several seeds a
config's target is judged on the mean accuracy and the slowest run. The table goes to stdout and to
`assets/train_targets.md`, headed by the machine and its load average before and after (busy cores: the
times are only as good as the machine was quiet).
"""

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.measure import machine_header, positive, run_directory

DEFAULT_CONFIGS = [
    "exps/args_piglatin_small_transformer.txt",
    "exps/args_piglatin_small_mamba.txt",
    "exps/args_piglatin_large_transformer.txt",
    "exps/args_piglatin_large_mamba.txt",
]

# What the Pig-Latin issues ask of each default config on a 2-core CPU: (minutes, mean word accuracy).
TARGETS = {"small_transformer": (5, 0.98), "small_mamba": (5, 0.97),
           "large_transformer": (15, 0.99), "large_mamba": (15, 0.99)}


def run_one(config: str, seed: int, out_dir: Path, extra: list, one_thread: bool = False) -> dict:
    """Trains one config with one seed in a child process; returns its metrics.json plus the wall time."""
    run_name = f"{Path(config).stem}-seed{seed}"
    started, cpu_before = time.perf_counter(), cpu_seconds_of_children()
    command = [sys.executable, "main.py", "--config", config, "--seed", str(seed), "--out_dir", str(out_dir),
               "--run_name", run_name, *extra]
    environment = None
    if one_thread:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command += ["--accelerator", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{config} failed:\n{result.stderr[-2000:]}")
    metrics = json.loads((run_directory(result.stdout) / "metrics.json").read_text())
    metrics["wall_seconds"] = wall  # peak_memory_mb is the child's own ru_maxrss, from metrics.json
    metrics["cpu_seconds"] = cpu_seconds_of_children() - cpu_before
    metrics["seed"] = seed
    return metrics


def cpu_seconds_of_children() -> float:
    """User + system CPU seconds of the finished child processes so far. With one thread a run's CPU time is
    about what its wall time would be on an idle machine; on a busy one, wall time also counts the waiting."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verdict(config: str, runs: list) -> str:
    """'≥ 0.97 in ≤ 5 min: met' for a config with a target, judged on the mean accuracy and the slowest run."""
    minutes, accuracy = TARGETS.get(Path(config).stem.removeprefix("args_piglatin_"), (None, None))
    if minutes is None:
        return ""
    mean = sum(run["val_word_acc"] for run in runs) / len(runs)
    wall, cpu = (max(run[key] for run in runs) / 60 for key in ("wall_seconds", "cpu_seconds"))
    target = f"≥ {accuracy} in ≤ {minutes} min"
    if mean < accuracy:
        return f"{target}: MISSED (accuracy)"
    if wall <= minutes:
        return f"{target}: met"
    if cpu <= minutes:  # the machine was busy: CPU time is what the run would take on an idle one
        return f"{target}: met in CPU time (wall time {wall:.1f} min on a busy machine)"
    return f"{target}: MISSED (time)"


def table(rows: list) -> str:
    """One line per run, then per config with several seeds a line of means (accuracy range in brackets)."""
    lines = ["| config | seed | params | epochs | val word acc | val loss | training | wall time | CPU time | peak memory "
             "| target |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    configs = list(dict.fromkeys(config for config, _ in rows))
    for config in configs:
        runs = [metrics for name, metrics in rows if name == config]
        for metrics in runs:
            lines.append(
                f"| `{Path(config).name}` | {metrics['seed']} | {metrics['params']:,} | {metrics['epochs']} | "
                f"{metrics['val_word_acc']:.5f} | {metrics['val_loss']:.4f} | {metrics['train_seconds'] / 60:.1f} min | "
                f"{metrics['wall_seconds'] / 60:.1f} min | {metrics['cpu_seconds'] / 60:.1f} min | "
                f"{metrics['peak_memory_mb']:.0f} MB | "
                f"{verdict(config, [metrics]) if len(runs) == 1 else ''} |")
        if len(runs) > 1:
            accuracy = [run["val_word_acc"] for run in runs]
            mean = lambda key: sum(run[key] for run in runs) / len(runs)  # noqa: E731
            lines.append(
                f"| `{Path(config).name}` | mean of {len(runs)} | | | **{mean('val_word_acc'):.5f}** "
                f"({min(accuracy):.5f} – {max(accuracy):.5f}) | {mean('val_loss'):.4f} | "
                f"{mean('train_seconds') / 60:.1f} min | {mean('wall_seconds') / 60:.1f} min | "
                f"{mean('cpu_seconds') / 60:.1f} min | "
                f"{max(run['peak_memory_mb'] for run in runs):.0f} MB (max) | {verdict(config, runs)} |")
    return "\n".join(lines)


def load() -> str:
    """The 1-minute load average and the cores: how busy the machine was."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--out", default="assets/train_targets.md", help="where to write the Markdown table")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds to train each config with")
    parser.add_argument("--keep-runs", default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--parallel", type=positive, default=1, help="runs at once, one CPU thread each (default 1: "
                        "one run at a time with main.py's default threads)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="options passed to every run, after --")
    args = parser.parse_args(argv)
    extra = [token for token in args.extra if token != "--"]
    # A typo in the fourth config should not surface after three runs of up to half an hour each.
    if missing := [config for config in args.configs if not Path(config).is_file()]:
        print(f"bench.train_targets: error: no such config file: {', '.join(missing)}", file=sys.stderr)
        return 2

    if args.parallel < 1:
        print("bench.train_targets: error: --parallel must be at least 1", file=sys.stderr)
        return 2

    def train(job):
        """(config, metrics), or None after printing why the run failed: the other runs still count."""
        config, seed = job
        print(f"training {config}, seed {seed} ...", file=sys.stderr, flush=True)
        try:
            row = (config, run_one(config, seed, out_dir, extra, one_thread=args.parallel > 1))
        except SystemExit as failure:
            print(failure, file=sys.stderr, flush=True)
            return None
        print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
        return row

    load_before = load()
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(args.keep_runs or scratch)
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            finished = list(pool.map(train, [(config, seed) for config in args.configs for seed in args.seeds]))
    rows = [row for row in finished if row is not None]
    if not rows:
        print(f"bench.train_targets: error: every run failed (their errors are above); {args.out} left as it was",
              file=sys.stderr)
        return 1
    report = f"{machine_header('cuda' if torch.cuda.is_available() else 'cpu')}; load average {load_before} before, {load()} after\n\n{table(rows)}\n"
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    return 0 if len(rows) == len(finished) else 1


if __name__ == "__main__":
    sys.exit(main())
