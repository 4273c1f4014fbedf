"""Many training runs side by side, one CPU thread each: how the defaults in exps/ were chosen.

    python -m bench.sweep --plan defaults --jobs 16                 # the sweep behind the shipped configs
    python -m bench.sweep --plan defaults --only mamba --jobs 4     # a part of it
    python -m bench.sweep --replot assets/sweep_defaults.csv        # redraw the table and figure

Each run is its own `python main.py` process with `--threads 1` (so N of them fit N cores without any
waiting on another), trained from scratch; seeds change the train/validation split as well as the
initialisation, so the mean over seeds is not tuned to one split. Writes sweep_<plan>.csv (one row per
run), sweep_<plan>.md (mean and range over seeds per setting) and sweep_<plan>.png (validation word
accuracy against training time and against epochs) into --out (assets/ by default), headed by the machine.
Times are per run on a machine that ran --jobs runs at once: compare them with each other, not with a
quiet laptop (docs/results.md is measured one run at a time).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from analysis.runs import logged_epochs
from bench.measure import machine_header, markdown_table, positive, run_directory, writable_folder

REPOSITORY = Path(__file__).resolve().parent.parent
SMALL_MAMBA = "exps/args_piglatin_small_mamba.txt"
SMALL_TRANSFORMER = "exps/args_piglatin_small_transformer.txt"

# name -> [(setting, config file, options)]; every setting runs once per seed. Epochs are chosen so that
# each run would take about five minutes on one thread of the two-core laptop the targets are set for.
MAMBA_COMMON = ["--batch_size", "64", "--lr", "3e-3", "--dropout", "0.2", "--weight_decay", "0.1"]
TRANSFORMER_COMMON = ["--hidden_size", "64", "--num_heads", "4", "--dropout", "0.1", "--weight_decay", "0.01"]
PLANS = {
    "defaults": [
        ("mamba h128 N8", SMALL_MAMBA, MAMBA_COMMON + ["--hidden_size", "128", "--state_size", "8",
                                                       "--epochs", "32"]),
        ("mamba h128 N4", SMALL_MAMBA, MAMBA_COMMON + ["--hidden_size", "128", "--state_size", "4",
                                                       "--epochs", "46"]),
        ("mamba h96 N8", SMALL_MAMBA, MAMBA_COMMON + ["--hidden_size", "96", "--state_size", "8", "--epochs", "40"]),
        ("mamba h64 N8 4 layers", SMALL_MAMBA, MAMBA_COMMON + ["--hidden_size", "64", "--state_size", "8",
                                                               "--num_layers", "4", "--epochs", "32"]),
        ("mamba h128 N8 lr 6e-3", SMALL_MAMBA, MAMBA_COMMON[:2] + ["--lr", "6e-3", "--dropout", "0.2",
                                                                   "--weight_decay", "0.1", "--hidden_size", "128",
                                                                   "--state_size", "8", "--epochs", "32"]),
        ("transformer bs64", SMALL_TRANSFORMER, TRANSFORMER_COMMON + ["--batch_size", "64", "--lr", "3e-3",
                                                                      "--epochs", "90"]),
        ("transformer bs128 lr 5e-3", SMALL_TRANSFORMER, TRANSFORMER_COMMON + ["--batch_size", "128", "--lr", "5e-3",
                                                                               "--epochs", "100"]),
    ],
}


def validation_accuracy(run_dir: Path) -> dict:
    """{epoch: val_word_acc} from the run's log."""
    return {epoch: row["val_word_acc"] for epoch, row in logged_epochs(run_dir).items() if "val_word_acc" in row}


def run_one(setting: str, config: str, options: list, seed: int, out_dir: Path, accelerator: str) -> dict:
    """Trains one setting with one seed in its own process; its metrics.json, per-epoch log and wall time."""
    name = f"{setting.replace(' ', '_').replace(',', '')}-seed{seed}"
    command = [sys.executable, "main.py", "--config", config, *options, "--seed", str(seed), "--threads", "1",
               "--accelerator", accelerator, "--num_samples", "0", "--out_dir", str(out_dir), "--run_name", name]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    row = {"setting": setting, "config": config, "options": " ".join(options), "seed": seed,
           "wall_seconds": round(wall, 1)}
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"{name} failed: {last}", file=sys.stderr, flush=True)
        return {**row, "failed": True}
    run_dir = run_directory(result.stdout, REPOSITORY)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = validation_accuracy(run_dir)
    row.update({key: metrics[key] for key in ("val_word_acc", "val_loss", "params", "epochs", "train_seconds",
                                             "seconds_per_epoch", "peak_memory_mb")})
    row["curve"] = " ".join(f"{accuracy[epoch]:.4f}" for epoch in sorted(accuracy))
    print(f"{name}: {row['val_word_acc']:.4f} in {row['train_seconds']:.0f} s ({wall:.0f} s wall)",
          file=sys.stderr, flush=True)
    return row


COLUMNS = ["setting", "config", "options", "seed", "wall_seconds", "failed", "val_word_acc", "val_loss", "params",
           "epochs", "train_seconds", "seconds_per_epoch", "peak_memory_mb", "curve"]


def write_csv(rows: list, path: Path):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def collect(runs_dir: Path) -> list:
    """Rows from the run directories a sweep left, finished or not (a sweep stopped by a time limit):
    a run without metrics.json reports the epochs it finished and its last validation accuracy."""
    rows = []
    for log in sorted(runs_dir.glob("*/logs/metrics.csv")):
        run = log.parent.parent
        setting, _, seed = run.name.rpartition("-seed")
        if not seed.isdigit():
            continue  # not a run this sweep made (<setting>-seed<N>)
        setting = setting.replace("_", " ")
        config, options = next(((config, options) for name, config, options in PLANS["defaults"]
                                if name.replace(",", "") == setting), ("", []))
        accuracy = validation_accuracy(run)
        row = {"setting": setting, "config": config, "options": " ".join(options), "seed": int(seed)}
        if (run / "metrics.json").is_file():
            metrics = json.loads((run / "metrics.json").read_text())
            row.update({key: metrics[key] for key in ("val_word_acc", "val_loss", "params", "epochs", "train_seconds",
                                                     "seconds_per_epoch", "peak_memory_mb")})
        else:
            row.update({"failed": "stopped", "epochs": len(accuracy),
                        "val_word_acc": accuracy[max(accuracy)] if accuracy else 0.0})
        row["curve"] = " ".join(f"{accuracy[epoch]:.4f}" for epoch in sorted(accuracy))
        rows.append(row)
    return rows


def summary(rows: list) -> list:
    """One row per setting: mean, min and max over seeds of accuracy and time. A setting whose runs were
    stopped before their last epoch shows the accuracy they had reached, and says so."""
    settings = {}
    for row in rows:
        if row.get("failed") in (None, "", "stopped"):
            settings.setdefault(row["setting"], []).append(row)
    table = []
    for setting, runs in settings.items():
        accuracy = [float(run["val_word_acc"]) for run in runs]
        stopped = [run for run in runs if run.get("failed") == "stopped"]
        planned = next((option for option in zip(runs[0]["options"].split(), runs[0]["options"].split()[1:])
                        if option[0] == "--epochs"), ("", "?"))[1]
        epochs = (f"{min(int(run['epochs']) for run in runs)}–{max(int(run['epochs']) for run in runs)} of {planned}"
                  " (stopped)" if stopped else str(runs[0]["epochs"]))
        minutes = "" if stopped else f"{sum(float(run['train_seconds']) for run in runs) / len(runs) / 60:.1f}"
        memory = "" if stopped else f"{max(float(run['peak_memory_mb']) for run in runs):.0f}"
        table.append([setting, runs[0]["options"] or "(config as it is)", len(runs), epochs,
                      f"{sum(accuracy) / len(accuracy):.4f}", f"{min(accuracy):.4f} – {max(accuracy):.4f}",
                      minutes, memory])
    return table


def write_report(rows: list, path_stem: Path, header: str):
    columns = ["setting", "options", "seeds", "epochs", "val word acc (mean)", "range", "train minutes (mean)",
               "peak MB"]
    text = (f"# Sweep `{path_stem.name.removeprefix('sweep_')}`\n\n{header}\n\n"
            f"{markdown_table(columns, summary(rows), 'llrrrrrr')}\n")
    path_stem.with_suffix(".md").write_text(text)
    plot(rows, path_stem.with_suffix(".png"))


def plot(rows: list, path: Path):
    """Left: final accuracy against training time, one point per run; right: accuracy per epoch (seed mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row.get("failed") in (None, "", "stopped")]
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    if all(row.get("failed") == "stopped" for row in rows):  # no run finished: nothing to put against time
        figure, curves = plt.subplots(figsize=(8, 4.5))
        final = None
    else:
        figure, (final, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    for number, setting in enumerate(settings):
        runs = [row for row in rows if row["setting"] == setting]
        colour = f"C{number % 10}"
        marker = "o" if "mamba" in setting else "s"
        finished = [run for run in runs if run.get("failed") != "stopped"]
        if final is not None:
            final.scatter([float(run["train_seconds"]) / 60 for run in finished],
                          [float(run["val_word_acc"]) for run in finished], color=colour, marker=marker)
        per_seed = [[float(value) for value in run["curve"].split()] for run in runs]
        length = min(len(curve) for curve in per_seed)
        mean = [sum(curve[epoch] for curve in per_seed) / len(per_seed) for epoch in range(length)]
        curves.plot(range(1, length + 1), mean, color=colour, linestyle="-" if "mamba" in setting else "--",
                    label=setting + (" (stopped)" if len(finished) < len(runs) else ""))
    if final is not None:
        final.set(xlabel="training minutes (one thread, runs side by side)", ylabel="validation word accuracy",
                  title="Final accuracy per run")
        final.grid(alpha=0.3)
    curves.set(xlabel="epoch", ylabel="validation word accuracy (teacher forced, seed mean)",
               title="Learning curves", ylim=(0.8, 1.0))
    curves.legend(fontsize=7, loc="lower right")
    curves.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", choices=sorted(PLANS), default="defaults")
    parser.add_argument("--only", default="", help="run only the settings whose name contains this")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=positive, default=max(1, (os.cpu_count() or 2) - 1),
                        help="runs at once, one thread each (default: one core fewer than there are)")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--out", default="assets", help="folder for sweep_<plan>.csv, .md and .png")
    parser.add_argument("--keep-runs", default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--replot", default=None, metavar="CSV", help="redraw from an earlier sweep's CSV")
    parser.add_argument("--collect", default=None, metavar="RUNS",
                        help="rebuild the CSV, table and figure from the run directories a sweep left in RUNS "
                             "(--keep-runs), also those a time limit stopped")
    parser.add_argument("--machine", default=None,
                        help="with --collect: the line that names the machine the runs trained on")
    return parser


def report_collected(parser, args, out: Path) -> int:
    """--collect: the CSV, table and figure of the run directories an earlier sweep kept."""
    rows = collect(Path(args.collect))
    if not rows:
        parser.error(f"--collect {args.collect}: no run directories of a sweep (<setting>-seed<N>) with logs there")
    stem = out / f"sweep_{args.plan}"
    write_csv(rows, stem.with_suffix(".csv"))
    write_report(rows, stem, args.machine or machine_header("cpu"))
    return 0


def replot(parser, args, out: Path) -> int:
    """--replot: the table and figure again, from an earlier sweep's CSV."""
    if not Path(args.replot).is_file():
        parser.error(f"--replot {args.replot}: no such file")
    with open(args.replot, newline="", errors="replace") as file:
        rows = list(csv.DictReader(file))
    if not rows or not {"setting", "seed", "val_word_acc"} <= set(rows[0]):
        parser.error(f"--replot {args.replot}: not the CSV of a sweep (sweep_<plan>.csv)")
    report = Path(args.replot).with_suffix(".md")
    header = report.read_text().split("\n\n")[1] if report.is_file() else "(machine not recorded)"
    write_report(rows, out / Path(args.replot).stem, header)
    return 0


def sweep(parser, args, out: Path) -> int:
    """The runs of the plan, `--jobs` at a time; their CSV, table and figure. Status 1 if a run failed."""
    work = [(setting, config, options, seed) for seed in args.seeds for setting, config, options in PLANS[args.plan]
            if args.only in setting]  # seed-major: stopped early, every setting still has its first seeds
    if not work:
        parser.error(f"no setting of plan {args.plan} has {args.only!r} in its name")
    print(f"{len(work)} runs, {args.jobs} at a time", file=sys.stderr, flush=True)
    stem = out / f"sweep_{args.plan}"
    lock = threading.Lock()
    partial = stem.with_suffix(".csv.partial")  # the CSV of a finished sweep replaces the old one only at the end
    with open(partial, "w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()

        def run_and_record(job):  # each row is written as its run ends: a sweep cut short keeps what finished
            row = run_one(*job, runs_dir, args.accelerator)
            with lock:
                writer.writerow(row)
                file.flush()
            return row

        with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(args.jobs) as pool:
            runs_dir = Path(args.keep_runs or scratch)
            rows = list(pool.map(run_and_record, work))
    partial.replace(stem.with_suffix(".csv"))
    header = (f"{machine_header('cpu')}; {args.jobs} runs at a time, one thread each; "
              f"seeds {' '.join(map(str, args.seeds))}")
    write_report(rows, stem, header)
    print(f"wrote {stem}.csv, .md and .png", file=sys.stderr)
    failed = [row for row in rows if row.get("failed")]
    if failed:
        print(f"{len(failed)} of {len(rows)} runs failed (their rows say so)", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    out = writable_folder("python -m bench.sweep", args.out)
    if args.collect:
        return report_collected(parser, args, out)
    if args.replot:
        return replot(parser, args, out)
    return sweep(parser, args, out)


if __name__ == "__main__":
    sys.exit(main())
