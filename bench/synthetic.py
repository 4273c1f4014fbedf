"""The synthetic tasks' sweep: every model x learning rate x seed, many `main.py` runs at once.

    python -m bench.synthetic --rows copying --cpu-workers 2 --deadline 7200     # one row, on this machine
    python -m bench.synthetic --rows copying recall --cpu-workers 10 --gpu-workers 6 --deadline 290 \\
        --out $OUT/synthetic_results.json                                          # the small rows (device)
    python -m bench.synthetic --rows copying_mad --mad-workers 12 --cpu-workers 0 --no-variants \\
        --max-minutes 8.3 --deadline 580 --out $OUT/synthetic_results_copying_mad.json   # a MAD-size row

Each run is `main.main(["--config", <exps file>, "--lr", ..., "--seed", ..., ...])`, the same code path as
`python main.py`. Workers are separate processes, each running one run at a time with one CPU thread (CPU
workers) or on the GPU (GPU workers); they take jobs in priority order: the first seed of every cell first,
so that if the deadline comes, what is missing is later seeds, not whole cells. At the deadline unfinished
runs are stopped and listed as such. The results file holds, per finished run, its metrics.json, its
per-epoch curves and where it ran; `python -m analysis.synthetic` turns it into docs/selectivity.md's table and figure.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
MODELS = ("transformer", "mamba", "hybrid", "lstm")
LEARNING_RATES = (5e-4, 1e-3, 2e-3)
SEEDS = (0, 1, 2)


@dataclass
class Row:
    """One row of the table: a task at one setting, every model at the same number of epochs."""

    config: str  # exps file with {model} in it
    queue: str  # which workers take its jobs: cpu, gpu or mad
    title: str  # for the table and the figure
    epochs: int = 0  # 0: the config's
    lrs: tuple = LEARNING_RATES
    seeds: tuple = SEEDS
    models: tuple = MODELS
    extra: dict = field(default_factory=dict)  # label -> (model, overrides): variants without an lr search


ROWS = {
    # The report trained copying 50 epochs (its Transformer peaked at epoch 6); 10 is what the device budget
    # allows for 42 runs of batch 8 on one CPU thread each (docs/selectivity.md says so).
    "copying": Row("exps/args_selective_copying_{model}.txt", "cpu",
                   "Selective copying (report's setting: L 20, 5 tokens, 4,000 examples)", epochs=10, extra={
        "hybrid_null": ("hybrid", ["--hybrid_join", "null"]),
        "hybrid_gated_res": ("hybrid", ["--hybrid_join", "gated_res"])}),
    "recall": Row("exps/args_incontext_recall_{model}.txt", "gpu",
                  "In-context recall (report's setting: L 64, 4,096 examples)"),
    # MAD trains 200 epochs and searches 3 learning rates x 2 weight decays. What fits in the device time: 50
    # epochs (a run stops sooner once it is perfect on validation), 3 seeds, one rate: 2e-3, the one every model
    # chose in the small rows' search (docs/selectivity.md says so).
    "copying_mad": Row("exps/args_selective_copying_mad_{model}.txt", "mad",
                       "Selective copying (MAD's setting: L 256, 16 tokens, 12,800 examples)", epochs=50, lrs=(2e-3,)),
    "recall_mad": Row("exps/args_incontext_recall_mad_{model}.txt", "mad",
                      "In-context recall (MAD's setting: L 128, 12,800 examples)", epochs=15, lrs=(2e-3,)),
}
# Which queues each kind of worker reads, in order: a GPU worker with nothing left of its own helps the others.
QUEUES = {"cpu": ["cpu"], "gpu": ["gpu", "mad", "cpu"], "mad": ["mad", "gpu", "cpu"]}
# The variants' learning rate: the middle of the grid (they are an ablation, not a tuned row).
EXTRA_LR = 1e-3


def jobs_for(rows: dict, epochs_override: int = 0, seeds: tuple = SEEDS) -> list:
    """Every run of the sweep as a dict, in priority order: seed by seed, then the variants."""
    jobs = []
    for seed in seeds:
        for row_name, row in rows.items():
            if seed not in row.seeds:
                continue
            for model in row.models:
                jobs += [job(row_name, row, model, model, [], lr, seed, epochs_override) for lr in row.lrs]
    for seed in seeds:
        for row_name, row in rows.items():
            for label, (model, overrides) in row.extra.items():
                if seed in row.seeds:
                    jobs.append(job(row_name, row, label, model, overrides, EXTRA_LR, seed, epochs_override))
    return jobs


def job(row_name: str, row: Row, label: str, model: str, overrides: list, lr: float, seed: int,
        epochs_override: int) -> dict:
    epochs = epochs_override or row.epochs
    argv = ["--config", row.config.format(model=model), "--lr", str(lr), "--seed", str(seed), *overrides]
    argv += ["--epochs", str(epochs)] if epochs else []
    return {"name": f"{row_name}-{label}-lr{lr:g}-seed{seed}", "row": row_name, "model": label, "lr": lr,
            "seed": seed, "queue": row.queue, "argv": argv}


def with_time_limit(jobs: list, minutes: float) -> list:
    """The jobs with main.py's `--max_minutes` (0: unchanged): a run stops training by then and is still
    tested on its best checkpoint, where --deadline kills what is left and keeps nothing of it."""
    if not minutes:
        return jobs
    return [{**spec, "argv": spec["argv"] + ["--max_minutes", str(minutes)]} for spec in jobs]


def run_worker(kind: str, jobs_file: Path, runs_dir: Path) -> int:
    """Takes jobs this kind of worker may run, one at a time, until none is left. A job is claimed by
    creating its folder in runs_dir/claims (atomic: two workers never take the same job)."""
    import main  # after the environment is set (threads, visible GPUs): see start_worker

    jobs = json.loads(jobs_file.read_text())
    claims = runs_dir / "claims"
    accelerator = "cpu" if kind == "cpu" else "gpu"
    for queue in QUEUES[kind]:
        for spec in (j for j in jobs if j["queue"] == queue):
            try:
                (claims / spec["name"]).mkdir()
            except FileExistsError:
                continue
            started = time.time()
            argv = spec["argv"] + ["--out_dir", str(runs_dir), "--run_name", spec["name"], "--accelerator", accelerator]
            print(f"[{kind}] start {spec['name']}", flush=True)
            try:
                status = main.main(argv)
            except Exception as error:  # a bug in one run must not stop the worker's other runs
                print(f"[{kind}] {spec['name']} raised {type(error).__name__}: {error}", flush=True)
                status = 1
            print(f"[{kind}] done {spec['name']} status {status} in {time.time() - started:.0f} s", flush=True)
    return 0


def start_worker(kind: str, jobs_file: Path, runs_dir: Path, log: Path) -> subprocess.Popen:
    environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if kind == "cpu":
        environment["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker never touches the GPU
    command = [sys.executable, "-m", "bench.synthetic", "--worker", kind, "--jobs-file", str(jobs_file),
               "--runs-dir", str(runs_dir)]
    with log.open("w") as output:
        return subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def read_curves(run_dir: Path) -> dict:
    """logs/metrics.csv -> {column: [value per epoch]}: train_loss, val_loss, val_acc, val_seq_acc."""
    from analysis.runs import logged_epochs

    by_epoch = logged_epochs(run_dir)
    return {name: [row.get(name) for row in by_epoch.values()]
            for name in ("train_loss", "val_loss", "val_acc", "val_seq_acc")}


def collect(jobs: list, runs_dir: Path) -> tuple[list, list]:
    """(finished runs with their metrics and curves, names of jobs that did not finish)."""
    finished, unfinished = [], []
    for spec in jobs:
        run_dir = runs_dir / spec["name"]
        if not (run_dir / "metrics.json").is_file():
            unfinished.append(spec["name"])
            continue
        config = json.loads((run_dir / "config.json").read_text())
        finished.append({**{key: spec[key] for key in ("name", "row", "model", "lr", "seed")},
                         "task": config["task"], "epochs_planned": config["epochs"],
                         "metrics": json.loads((run_dir / "metrics.json").read_text()),
                         "curves": read_curves(run_dir)})
    return finished, unfinished


def machine() -> dict:
    import platform

    import torch

    from bench.measure import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run_sweep(args) -> int:
    rows = {name: ROWS[name] for name in args.rows}
    if args.no_variants:
        rows = {name: Row(**{**asdict(row), "extra": {}}) for name, row in rows.items()}
    jobs = with_time_limit(jobs_for(rows, args.epochs, tuple(args.seeds)), args.max_minutes)
    if not jobs:
        print("bench.synthetic: error: no runs: none of these rows has the seeds asked for", file=sys.stderr)
        return 2
    runs_dir = Path(args.runs_dir).resolve()
    try:
        jobs_file = prepare_runs_dir(runs_dir, jobs)
    except ValueError as error:
        print(f"bench.synthetic: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"bench.synthetic: error: cannot use --runs-dir {runs_dir}: {error.strerror}", file=sys.stderr)
        return 2
    kinds = ["mad"] * args.mad_workers + ["gpu"] * args.gpu_workers + ["cpu"] * args.cpu_workers
    started = time.time()
    workers = [start_worker(kind, jobs_file, runs_dir, runs_dir / f"worker{i}-{kind}.log")
               for i, kind in enumerate(kinds)]
    print(f"{len(jobs)} runs, {len(workers)} workers ({', '.join(kinds)}), deadline {args.deadline:.0f} s", flush=True)
    while any(worker.poll() is None for worker in workers) and time.time() - started < args.deadline:
        time.sleep(2)
    deadline_hit = False
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)  # its own session: the worker and nothing else
            worker.wait()
            deadline_hit = True
    wall = time.time() - started
    finished, unfinished = collect(jobs, runs_dir)
    failed = [spec["name"] for spec in jobs if (runs_dir / "claims" / spec["name"]).is_dir()
              and spec["name"] in unfinished]
    results = {"machine": machine(), "wall_seconds": round(wall, 1), "deadline_seconds": args.deadline,
               "workers": kinds, "rows": {name: asdict(row) for name, row in rows.items()}, "runs": finished,
               "unfinished": unfinished, "started_but_unfinished": failed,
               # what the stopped runs had logged: their validation curves so far (no test accuracy: that is
               # read once, at the end of a run)
               "partial_curves": {name: read_curves(runs_dir / name) for name in failed
                                  if (runs_dir / name / "logs" / "metrics.csv").is_file()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"{len(finished)} of {len(jobs)} runs finished in {wall:.0f} s ({len(failed)} started but stopped or "
          f"failed); results in {args.out}", flush=True)
    for name in failed:
        print(f"  not finished: {name}", flush=True)
    # Stopped by the deadline is what a deadline is for; a run that ended without its metrics failed.
    return 1 if failed and not deadline_hit else 0


def prepare_runs_dir(runs_dir: Path, jobs: list) -> Path:
    """The runs directory ready for `jobs`; returns the file its workers read. A directory reused by a sweep keeps
    its finished runs (a job of the same name is not run again), so a job of the same name must have the same
    command line: otherwise a ValueError. A job claimed but not finished (killed at a deadline, or failed)
    loses its claim and its partial run directory, so that it runs again."""
    record = runs_dir / "all_jobs.json"  # every job any sweep gave this directory
    known = {spec["name"]: spec for spec in json.loads(record.read_text())} if record.is_file() else {}
    for spec in jobs:
        if spec["name"] in known and known[spec["name"]]["argv"] != spec["argv"]:
            raise ValueError(f"{runs_dir} already holds {spec['name']} with other settings "
                             f"({' '.join(known[spec['name']]['argv'])}): give another --runs-dir")
    (runs_dir / "claims").mkdir(parents=True, exist_ok=True)
    for spec in jobs:
        if not (runs_dir / spec["name"] / "metrics.json").is_file():
            for stale in (runs_dir / "claims" / spec["name"], runs_dir / spec["name"]):
                shutil.rmtree(stale, ignore_errors=True)
    record.write_text(json.dumps(list({**known, **{spec["name"]: spec for spec in jobs}}.values()), indent=1))
    jobs_file = runs_dir / "jobs.json"  # this sweep's jobs: what its workers read
    jobs_file.write_text(json.dumps(jobs, indent=1))
    return jobs_file


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="which rows to run")
    parser.add_argument("--cpu-workers", type=int, default=2, help="processes on the CPU, one thread each")
    parser.add_argument("--gpu-workers", type=int, default=0, help="processes on the GPU for the small rows")
    parser.add_argument("--mad-workers", type=int, default=0, help="processes on the GPU for the MAD-size rows")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds; then unfinished runs are stopped")
    parser.add_argument("--max-minutes", type=float, default=0,
                        help="each run's training time limit (main.py's max_minutes; 0: none): unlike --deadline, "
                             "a run it stops is still tested, on its best checkpoint")
    parser.add_argument("--epochs", type=int, default=0, help="override every row's epochs (0: the rows')")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="only these of the rows' seeds")
    parser.add_argument("--no-variants", action="store_true", help="leave out the rows' variants (no lr search)")
    parser.add_argument("--runs-dir", default="runs/synthetic_sweep", help="where the runs' directories go")
    parser.add_argument("--out", default="runs/synthetic_sweep/synthetic_results.json", help="the results file")
    parser.add_argument("--worker", choices=list(QUEUES), help=argparse.SUPPRESS)
    parser.add_argument("--jobs-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.cpu_workers, args.gpu_workers, args.mad_workers, args.max_minutes) < 0 or args.deadline <= 0:
        parser.error("worker counts and --max-minutes must be at least 0, and --deadline positive")
    if not args.worker and args.cpu_workers + args.gpu_workers + args.mad_workers == 0:
        parser.error("no workers: give --cpu-workers, --gpu-workers or --mad-workers")
    if not args.worker and args.gpu_workers + args.mad_workers:
        import torch

        if not torch.cuda.is_available():
            parser.error("--gpu-workers and --mad-workers need a GPU, and torch sees none here")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return run_worker(args.worker, Path(args.jobs_file), Path(args.runs_dir))
    return run_sweep(args)


if __name__ == "__main__":
    sys.exit(main())
