"""`python -m bench`: the scans, the models and Pig-Latin training side by side, as tables and plots.

    python -m bench                                  # everything, on the CPU and on a GPU if there is one
    python -m bench --sections scans --devices cuda  # only the scans, only on the GPU
    python -m bench --quick                          # a small, fast run, into a new temporary folder
    python -m bench --sections family                # the state-space family's table (models/family.py)

Writes bench_scans.md / .png, bench_models.md / .png, bench_piglatin.md / .png and bench_family.md / .png
into --out, each headed by the machine it ran on: assets/ by default, where the tables docs/ cites
live; with --quick, a new temporary folder, and never assets/ (its tiny sizes must not replace the
measured tables). Timings are only as good as the machine is quiet: run it on an idle one.
`python -m bench.train_targets` trains the default configs to the end instead.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import family, models, piglatin, scans
from bench.measure import machine_header, positive, writable_folder

SECTIONS = ("scans", "models", "piglatin", "family")
ASSETS = Path(__file__).resolve().parent.parent / "assets"  # where the measured tables docs/ cites live
SCAN_LENGTHS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
PIGLATIN_SCAN_LENGTHS = [12, 20, 32, 45]  # Mamba's [source, EOS, SOS, target], short to long words
# (B, E, N) per device for the long scans: what keeps a GPU busy would take a CPU minutes per call.
SCAN_SHAPES = {"cpu": (1, 64, 8), "cuda": (4, 128, 16)}
PIGLATIN_SCAN_SHAPE = (64, 256, 8)  # a training batch of the default Mamba: batch 64, E = 2 × 128, N = 8
MODEL_LENGTHS = [256, 512, 784]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                        help="default: cpu, and cuda when a GPU is present (scans and models; piglatin runs on cpu)")
    parser.add_argument("--scan-lengths", nargs="+", type=positive, default=SCAN_LENGTHS, metavar="L")
    parser.add_argument("--model-lengths", nargs="*", type=positive, default=MODEL_LENGTHS, metavar="L",
                        help="total tokens per sequence (source L/2, target L/2); Pig-Latin size is always added")
    parser.add_argument("--model-batch", type=positive, default=16, help="batch size at --model-lengths")
    parser.add_argument("--threads", type=positive, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timing per measurement")
    parser.add_argument("--train-steps", type=positive, default=30, help="timed training steps per Pig-Latin config")
    parser.add_argument("--decode-words", type=positive, default=50, help="words decoded one by one per config")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and short timings: checks that everything runs, measures little")
    parser.add_argument("--out", default=None,
                        help="folder for the tables and plots (default: assets/; with --quick, a new temporary one)")
    args = parser.parse_args(argv)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in args.devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no GPU is visible to torch")
    wanted = {"scans": args.scan_lengths, "models": True, "family": args.model_lengths}  # models adds Pig Latin's
    if any(section in args.sections and not wanted[section] for section in wanted):
        parser.error("a section needs lengths: --scan-lengths for scans, --model-lengths for family")
    if min(args.scan_lengths + args.model_lengths, default=2) < 2 or args.model_batch < 1 or args.min_run_time <= 0:
        parser.error("lengths must be at least 2, --model-batch at least 1, --min-run-time positive")
    if args.quick:
        if args.out is not None and Path(args.out).resolve() == ASSETS.resolve():
            parser.error("--quick measures too little to replace the tables in assets/: give another --out")
        args.out = args.out or tempfile.mkdtemp(prefix="bench-quick-")
        args.scan_lengths, args.model_lengths, args.model_batch = [16, 64], [32], 2
        args.min_run_time, args.train_steps, args.decode_words = 0.01, 2, 3
    args.out = args.out or str(ASSETS)
    return args


def log(message: str):
    print(message, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = writable_folder("python -m bench", args.out)
    started, written = time.perf_counter(), []
    header = machine_header("cuda" if "cuda" in args.devices else "cpu")

    if "scans" in args.sections:
        shapes = {"cpu": (1, 8, 4), "cuda": (1, 8, 4)} if args.quick else SCAN_SHAPES
        piglatin_shape = (2, 8, 4) if args.quick else PIGLATIN_SCAN_SHAPE
        piglatin_lengths = PIGLATIN_SCAN_LENGTHS[:2] if args.quick else PIGLATIN_SCAN_LENGTHS
        suites = [(device, shapes[device], args.scan_lengths) for device in args.devices]
        suites += [(device, piglatin_shape, piglatin_lengths) for device in args.devices]
        rows = scans.run(suites, args.min_run_time, log)
        (out / "bench_scans.md").write_text(scans.report(rows, f"# Scans\n\n{header}"))
        scans.plot(rows, out / "bench_scans.png")
        written += ["bench_scans.md", "bench_scans.png"]

    if "models" in args.sections:
        rows = models.run(args.devices, args.model_lengths, args.model_batch, args.min_run_time, args.quick, log)
        (out / "bench_models.md").write_text(models.report(rows, f"# Models\n\n{header}", args.model_batch))
        models.plot(rows, out / "bench_models.png")
        written += ["bench_models.md", "bench_models.png"]

    if "piglatin" in args.sections:
        rows = piglatin.run(args.train_steps, args.decode_words, args.quick, log)
        (out / "bench_piglatin.md").write_text(piglatin.report(rows, f"# Pig Latin\n\n{machine_header('cpu')}"))
        piglatin.plot(rows, out / "bench_piglatin.png")
        written += ["bench_piglatin.md", "bench_piglatin.png"]

    if "family" in args.sections:
        rows = family.run(args.devices, args.model_lengths, args.model_batch, args.min_run_time, args.quick, log)
        (out / "bench_family.md").write_text(family.report(rows, f"# The state-space family\n\n{header}"))
        family.plot(rows, out / "bench_family.png")
        written += ["bench_family.md", "bench_family.png"]

    log(f"wrote {', '.join(written)} into {out} "
        f"in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
