"""Trains each default config from scratch and tabulates accuracy, wall time and peak memory.

    python -m bench.train_targets                        # the four default configs
    python -m bench.train_targets --configs exps/args_piglatin_small_mamba.txt --out assets/x.md
    python -m bench.train_targets --configs exps/args_piglatin_small_s4*.txt --parallel 5   # 5 at once

With --parallel N, N runs go at once, each on one CPU thread (OMP_NUM_THREADS=1, --accelerator cpu): for a
machine with at least N idle cores.

Each run is its own `python main.py` process, so its peak resident memory is its own; times are the
whole process's wall clock (start-up, data, training, validation, writing the run). The table goes to
stdout and to `assets/train_targets.md`, headed by the machine it ran on.
"""

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_CONFIGS = [
    "exps/args_piglatin_small_transformer.txt",
    "exps/args_piglatin_small_mamba.txt",
    "exps/args_piglatin_large_transformer.txt",
    "exps/args_piglatin_large_mamba.txt",
]

# What the Pig-Latin issue asks of each default config on a 2-core CPU: (minutes, word accuracy).
TARGETS = {"small_transformer": (10, 0.98), "small_mamba": (10, 0.97),
           "large_transformer": (30, 0.99), "large_mamba": (30, 0.99)}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_header() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"Machine: {cpu_name()}, {os.cpu_count()} cores, GPU: {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def run_one(config: str, out_dir: Path, extra: list, one_thread: bool = False) -> dict:
    """Trains one config in a child process; returns its metrics.json plus the wall time."""
    started = time.perf_counter()
    command = [sys.executable, "main.py", "--config", config, "--out_dir", str(out_dir), *extra]
    environment = None
    if one_thread:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command += ["--accelerator", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{config} failed:\n{result.stderr[-2000:]}")
    run_dir = out_dir / Path(config).stem
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_seconds"] = wall  # peak_memory_mb is the child's own ru_maxrss, from metrics.json
    return metrics


def table(rows: list) -> str:
    lines = ["| config | params | epochs | val word acc | val loss | wall time | peak memory | target |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for config, metrics in rows:
        key = Path(config).stem.removeprefix("args_piglatin_")
        minutes, accuracy = TARGETS.get(key, (None, None))
        met = ""
        if minutes is not None:
            ok = metrics["val_word_acc"] >= accuracy and metrics["wall_seconds"] <= 60 * minutes
            met = f"≥ {accuracy} in ≤ {minutes} min: {'met' if ok else 'MISSED'}"
        lines.append(
            f"| `{Path(config).name}` | {metrics['params']:,} | {metrics['epochs']} | {metrics['val_word_acc']:.5f} | "
            f"{metrics['val_loss']:.4f} | {metrics['wall_seconds'] / 60:.1f} min | "
            f"{metrics['peak_memory_mb']:.0f} MB | {met} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--out", default="assets/train_targets.md", help="where to write the Markdown table")
    parser.add_argument("--keep-runs", default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once, one CPU thread each (default 1: "
                        "one run at a time with torch's threads)")
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

    def train(config: str):
        """(config, metrics), or None after printing why the run failed: the other runs still count."""
        print(f"training {config} ...", file=sys.stderr, flush=True)
        try:
            row = (config, run_one(config, out_dir, extra, one_thread=args.parallel > 1))
        except SystemExit as failure:
            print(failure, file=sys.stderr, flush=True)
            return None
        print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
        return row

    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(args.keep_runs or scratch)
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            finished = list(pool.map(train, args.configs))
    rows = [row for row in finished if row is not None]
    report = f"{machine_header()}\n\n{table(rows)}\n"
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    return 0 if len(rows) == len(finished) else 1


if __name__ == "__main__":
    sys.exit(main())
