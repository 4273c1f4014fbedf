"""The synthetic tasks' table and figure, from the sweep's results file (bench/synthetic.py).

    python -m analysis.synthetic                                   # the committed results -> table + figure
    python -m analysis.synthetic runs/synthetic_sweep/synthetic_results.json --out /tmp/figures

Several results files (sweeps that completed each other) are read as one: a run that appears twice (the
same name, so the same config, lr and seed) counts once, from the first file.

For each row and model, the learning rate is chosen on the validation split: the best mean val_acc over
seeds (ties: the better val_seq_acc, then the lower val_loss). The test split is only reported, for that
learning rate: mean and range (min-max) over the seeds. Prints the Markdown table and writes
synthetic_tasks.png (validation curves at the chosen learning rates, and test accuracy) and synthetic_table.md.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from bench.synthetic import MODELS, ROWS


def row_order(cells) -> list:
    """The rows these (row, model) cells have: bench.synthetic's in its order, then any other."""
    present = {row for row, _ in cells}
    return [row for row in ROWS if row in present] + sorted(present - set(ROWS))


def row_title(row: str) -> str:
    return ROWS[row].title if row in ROWS else row


# What the report we start from measured (test accuracy; one seed, lr 5e-4, no search, test-set checkpoint).
REPORT = {("copying", "transformer"): "0.950", ("copying", "mamba"): "1.000", ("copying", "hybrid"): "0.980-0.998",
          ("recall", "transformer"): "0.757", ("recall", "mamba"): "1.000", ("recall", "hybrid"): "0.968"}


def selection_key(runs: list) -> tuple:
    """Higher is better: mean val_acc, then mean val_seq_acc, then lower mean val_loss."""
    mean = lambda name: statistics.fmean(run["metrics"][name] for run in runs)
    return (round(mean("val_acc"), 6), round(mean("val_seq_acc"), 6), -mean("val_loss"))


def choose(results: dict) -> dict:
    """{(row, model): {'lr', 'runs' (at that lr), 'by_lr': {lr: runs}}}, the lr chosen on validation."""
    grouped = defaultdict(lambda: defaultdict(list))
    for run in results["runs"]:
        grouped[(run["row"], run["model"])][run["lr"]].append(run)
    chosen = {}
    for cell, by_lr in grouped.items():
        lr = max(by_lr, key=lambda rate: selection_key(by_lr[rate]))
        chosen[cell] = {"lr": lr, "runs": sorted(by_lr[lr], key=lambda run: run["seed"]), "by_lr": dict(by_lr)}
    return chosen


def spread(values: list) -> str:
    """'0.950 (0.940-0.960)', or the value alone for one run."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def models_in_order(chosen: dict) -> list:
    """bench.synthetic's models, each followed by the rows' variants of it, then any other (a model added to
    training/synthetic.TOKEN_MODELS)."""
    order = []
    for model in MODELS:
        order += [model] + [label for row in ROWS.values() for label, (base, _) in row.extra.items()
                            if base == model and label not in order]
    return order + sorted({model for _, model in chosen} - set(order))


def table(results: dict, chosen: dict) -> str:
    """The Markdown table: one line per row and model."""
    lines = ["| setting | model | params | lr (of grid) | seeds | epochs (best) | test acc | test seq acc | "
             "val acc | report |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in row_order(chosen):
        for model in models_in_order(chosen):
            cell = chosen.get((row, model))
            if cell is None:
                continue
            runs = cell["runs"]
            metric = lambda name: [run["metrics"][name] for run in runs]
            grid = "/".join(f"{rate:g}" for rate in sorted(cell["by_lr"]))
            best = "/".join(str(run["metrics"]["best_epoch"] + 1) for run in runs)
            epochs = str(runs[0]["epochs_planned"])
            if any(run["metrics"].get("stopped_by_time") for run in runs):  # max_minutes ended them first
                epochs = "/".join(str(run["metrics"]["epochs"]) for run in runs) + f" of {epochs}"
            lines.append(
                f"| {row} | {model} | {runs[0]['metrics']['params']:,} | {cell['lr']:g} ({grid}) | {len(runs)} | "
                f"{epochs} ({best}) | {spread(metric('test_acc'))} | {spread(metric('test_seq_acc'))} | "
                f"{spread(metric('val_acc'))} | {REPORT.get((row, model), '')} |")
    return "\n".join(lines)


DEFAULT_RESULTS = ["assets/synthetic_results.json", "assets/synthetic_results_recall_seed2.json",
                   "assets/synthetic_results_copying_mad.json", "assets/synthetic_results_recall_mad.json"]


def merge(parts: list) -> dict:
    """One results dict from several sweeps' files: runs by name (first wins), what none of them finished."""
    runs, seen = [], set()
    for part in parts:
        for run in part["runs"]:
            if run["name"] not in seen:
                seen.add(run["name"])
                runs.append(run)
    unfinished = sorted({name for part in parts for name in part["unfinished"]} - seen)
    machines = []
    for part in parts:
        machine = part["machine"]
        machines.append(f"{machine['cpu']} ({machine['cores']} cores), GPU {machine['gpu'] or 'none'}, torch "
                        f"{machine['torch']}, {len(part['workers'])} workers for {part['deadline_seconds']:.0f} s")
    return {"runs": runs, "unfinished": unfinished, "machines": machines}


def machine_line(results: dict) -> str:
    devices = sorted({run["metrics"]["device"] for run in results["runs"]})
    return (f"Machines: {'; '.join(dict.fromkeys(results['machines']))}. Runs on: {', '.join(devices)}. "
            f"{len(results['runs'])} runs finished; not run or not finished in the time allowed: "
            f"{', '.join(results['unfinished']) or 'none'}.")


def drawn_curves(runs: list) -> list:
    """The seeds' validation curves made equally long for drawing. A run that stopped early because every
    validation position was right stays at its last value (1.0) to the end of the longest; runs that the time
    limit stopped are drawn only as far as every seed got: nothing is made up beyond what was measured."""
    curves = [run["curves"]["val_acc"] for run in runs]
    if any(run["metrics"].get("stopped_by_time") for run in runs):
        shortest = min(len(curve) for curve in curves)
        return [curve[:shortest] for curve in curves]
    longest = max(len(curve) for curve in curves)
    return [curve + [curve[-1]] * (longest - len(curve)) for curve in curves]


def figure(chosen: dict, path: Path):
    """Validation accuracy per epoch at each model's chosen lr (mean over seeds, min-max shaded), per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = row_order(chosen)
    figure, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    for axis, row in zip(axes[0], rows):
        for model in models_in_order(chosen):
            cell = chosen.get((row, model))
            if cell is None:
                continue
            padded = drawn_curves(cell["runs"])
            epochs = range(1, len(padded[0]) + 1)
            mean = [statistics.fmean(values) for values in zip(*padded)]
            line, = axis.plot(epochs, mean, label=f"{model} (lr {cell['lr']:g})")
            axis.fill_between(epochs, [min(v) for v in zip(*padded)], [max(v) for v in zip(*padded)],
                              color=line.get_color(), alpha=0.15)
        axis.set_title(row_title(row).replace(" (", "\n("), fontsize=9)
        axis.set_xlabel("epoch")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("validation accuracy (scored positions)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", default=DEFAULT_RESULTS, help="results files of bench.synthetic")
    parser.add_argument("--out", default="assets", help="folder for synthetic_tasks.png and synthetic_table.md")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for path in map(Path, args.results):
        if not path.is_file():
            print(f"analysis.synthetic: error: {path} not found (python -m bench.synthetic writes it)", file=sys.stderr)
            return 2
    try:
        results = merge([json.loads(Path(path).read_text()) for path in args.results])
        chosen = choose(results)
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSON, but not a sweep's results
        print(f"analysis.synthetic: error: {' '.join(args.results)}: not bench.synthetic results files "
              f"({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    if not results["runs"]:
        print("analysis.synthetic: error: these results hold no finished run: nothing to tabulate", file=sys.stderr)
        return 2
    text = machine_line(results) + "\n\n" + table(results, chosen) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthetic_table.md").write_text(text)
    figure(chosen, out / "synthetic_tasks.png")
    print(text)
    print(f"wrote {out / 'synthetic_table.md'} and {out / 'synthetic_tasks.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
