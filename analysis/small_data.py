"""Tables and figures of docs/mamba-small-data.md from the results files bench/small_data.py writes.

    python -m analysis.small_data results/small_data_screen.json results/small_data_screen2.json --out assets/

writes `small_data_table.md` (every setting: seeds, mean validation word accuracy and range, training-set
errors, epochs, seconds per epoch, where it ran) and four figures: `small_data_errors.png` (where the
errors are: by word length, by clause of the rule, by kind), `small_data_dynamics.png` (how they move as
training goes on), `small_data_settings.png` (every setting's accuracy, seed by seed) and
`small_data_copying.png` (selective copying, validation accuracy per epoch). A setting that ran in
several files gathers all its seeds; a run its deadline stopped counts with the epochs it finished, and
the table says so.
"""

import argparse
import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

from analysis.piglatin_errors import CLAUSES, ERROR_KINDS, LENGTH_LABELS, by_clause, by_length, kinds_of

# The runs the error figures compare (3 seeds each): Mamba before and after the change of learning rate,
# and the Transformer at lr 5e-3, the setting of its with three seeds and word logs (within a seed's noise of
# its default, lr 3e-3: docs/mamba-small-data.md).
ERROR_GROUPS = ("mamba old default (lr 3e-3)", "mamba lr 6e-3", "transformer lr 5e-3")
DYNAMICS_GROUPS = ("mamba old default (lr 3e-3)", "transformer lr 5e-3")


def load_runs(paths: list) -> list:
    """The runs of every results file (.json, or .json.gz as assets/ keeps them), each with the file's
    machine line as `machine`."""
    runs = []
    for path in map(Path, paths):
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        report = json.loads(text)
        runs += [{**run, "machine": report["machine"]} for run in report["runs"]]
    return runs


def planned_epochs(run: dict) -> int:
    """The epochs the run's config and options ask for."""
    from training.config import REPOSITORY, build_config

    return build_config(REPOSITORY / run["config"], run["options"].split()).epochs


def curve(run: dict) -> list:
    """Validation accuracy per epoch: word accuracy (Pig Latin) or per scored position (synthetic tasks)."""
    return run["curves"].get("val_word_acc", run["curves"].get("val_acc", []))


def complete(run: dict) -> bool:
    """Did the run train to its end: finished, stopped early by a perfect validation score (synthetic tasks),
    or at least through all its epochs before it ended? A run its deadline cut short does not count."""
    values = curve(run)
    perfect = "val_acc" in run["curves"] and bool(values) and values[-1] == 1.0  # a synthetic run stops there
    return "metrics" in run or perfect or len(values) >= planned_epochs(run)


def final_accuracy(run: dict):
    """Pig Latin: validation word accuracy by greedy decoding of the best checkpoint (metrics.json), or for a
    run that ended before decoding, the best epoch's teacher-forced accuracy (the same for a causal decoder).
    Synthetic tasks: the best epoch's validation accuracy per scored position. None if there is none."""
    metrics = run.get("metrics", {})
    if "val_word_acc" in metrics:
        return metrics["val_word_acc"]
    values = [value for value in curve(run) if value is not None]
    return max(values) if values else None


def by_setting(runs: list) -> dict:
    """{setting: [its complete runs]}, in the order settings first appear, seeds in order. A seed that ran
    twice (a rerun in a later file) counts once, as its last run."""
    settings = defaultdict(dict)
    for run in runs:
        if complete(run) and final_accuracy(run) is not None:
            settings[run["setting"]][run["seed"]] = run
    return {name: [group[seed] for seed in sorted(group)] for name, group in settings.items()}


def summary_rows(runs: list) -> list:
    """One row per setting: [setting, seeds, mean (range), per seed, training words wrong, epochs, s/epoch,
    CPU minutes of the whole run (where recorded), device and processor]."""
    rows = []
    for name, group in by_setting(runs).items():
        accuracy = [final_accuracy(run) for run in group]
        unevaluated = [run for run in group if run["status"] != "finished"]
        epochs = sorted({len(curve(run)) for run in group})
        train_wrong = [len(run["words"]["train_wrong"]) for run in group if "words" in run]
        per_epoch = [run["metrics"]["seconds_per_epoch"] for run in group if "metrics" in run]
        cpu = [run["cpu_seconds"] / 60 for run in group if "cpu_seconds" in run]
        rows.append([
            name, " ".join(str(run["seed"]) for run in group),
            f"{sum(accuracy) / len(accuracy):.4f} ({min(accuracy):.4f}–{max(accuracy):.4f})",
            " / ".join(f"{value:.4f}" for value in accuracy),
            " / ".join(map(str, train_wrong)) if train_wrong else "",
            "–".join(map(str, (epochs[0], epochs[-1]) if len(epochs) > 1 else epochs))
            + (f" ({len(unevaluated)} without the final evaluation)" if unevaluated else ""),
            f"{sum(per_epoch) / len(per_epoch):.1f}" if per_epoch else "",
            f"{min(cpu):.1f}–{max(cpu):.1f}" if cpu else "",
            ", ".join(sorted({f"{run['device']}, {processor(run['machine'])}" for run in group})),
        ])
    return rows


def processor(machine: str) -> str:
    """'AMD EPYC' from a results file's 'Machine: AMD EPYC (2 cores visible, ...); ...' line."""
    return machine.removeprefix("Machine: ").split(" (")[0]


def pooled_errors(group: list) -> dict:
    """Over a setting's finished runs: {'clause', 'length'}: {group: (wrong, total)}, and {'kinds': counts},
    from the best checkpoint's greedy translations of each run's validation words."""
    clause, length, kinds = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0]), defaultdict(int)
    for run in group:
        if "words" not in run:
            continue
        val = run["words"]["val"]
        wrong = {english for english, (expected, predicted) in val.items() if expected != predicted}
        for counts, rates in ((clause, by_clause(list(val), wrong)), (length, by_length(list(val), wrong))):
            for key, (errors, total) in rates.items():
                counts[key][0] += errors
                counts[key][1] += total
        for kind, count in kinds_of([(english, *pair) for english, pair in val.items()]).items():
            kinds[kind] += count
    return {"clause": {key: tuple(value) for key, value in clause.items()},
            "length": {key: tuple(value) for key, value in length.items()}, "kinds": dict(kinds)}


def error_curves(group: list, key: str) -> dict:
    """{group: [error rate per epoch]} pooled over the runs' per-epoch word logs; key 'length' or 'clause'."""
    grouping = by_length if key == "length" else by_clause
    epochs = min(len(run["right_by_epoch"]) for run in group)
    curves = defaultdict(lambda: [[0, 0] for _ in range(epochs)])
    for run in group:
        words = run["val_words"]
        for epoch, bits in enumerate(run["right_by_epoch"][:epochs]):
            wrong = {word for word, bit in zip(words, bits) if bit == "0"}
            for name, (errors, total) in grouping(words, wrong).items():
                curves[name][epoch][0] += errors
                curves[name][epoch][1] += total
    return {name: [errors / total for errors, total in values] for name, values in curves.items()}


def markdown(rows: list) -> str:
    from bench.measure import markdown_table

    columns = ["setting", "seeds", "val accuracy, mean (range)", "per seed", "training words wrong", "epochs",
               "s/epoch (wall)", "CPU minutes (whole run)", "where"]
    return markdown_table(columns, rows, "llrrrrrrl")


def pyplot():
    """matplotlib's pyplot, drawing into files only (no window, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path):
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot().close(figure)


def plot_errors(groups: dict, path: Path):
    """Error rate by word length and by clause, and the kinds of errors, for each named group of runs."""
    plt = pyplot()
    figure, (lengths, clauses, kinds) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [4, 4, 2.5]})
    width = 0.8 / len(groups)
    for number, (name, errors) in enumerate(groups.items()):
        for axis, key, order in ((lengths, "length", LENGTH_LABELS), (clauses, "clause", CLAUSES)):
            present = [label for label in order if label in errors[key]]
            rates = [errors[key][label][0] / errors[key][label][1] for label in present]
            axis.bar([order.index(label) + (number - (len(groups) - 1) / 2) * width for label in present], rates,
                     width, label=name, color=f"C{number}")
        total = sum(errors["kinds"].values()) or 1
        kinds.bar([k + (number - (len(groups) - 1) / 2) * width for k in range(len(ERROR_KINDS))],
                  [errors["kinds"].get(kind, 0) / total for kind in ERROR_KINDS], width, color=f"C{number}")
    for axis, order, title in ((lengths, LENGTH_LABELS, "by English word length"),
                               (clauses, CLAUSES, "by clause of the rule")):
        axis.set_xticks(range(len(order)), order, rotation=30 if len(order[0]) > 5 else 0, ha="right")
        axis.set(ylabel="validation words wrong (share)", title=title)
        axis.grid(axis="y", alpha=0.3)
    kinds.set_xticks(range(len(ERROR_KINDS)), ERROR_KINDS, rotation=30, ha="right")
    kinds.set(ylabel="share of the wrong words", title="what went wrong")
    kinds.grid(axis="y", alpha=0.3)
    lengths.legend(fontsize=8)
    save(figure, path)


def plot_dynamics(groups: dict, path: Path):
    """Per group (a row each): validation error per epoch by word length, and the training loss."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.2), squeeze=False)
    for axis, (name, group) in zip(axes[0], groups.items()):
        curves = error_curves(group, "length")
        for number, label in enumerate(label for label in LENGTH_LABELS if label in curves):
            axis.plot(range(1, len(curves[label]) + 1), curves[label], color=plt.cm.viridis(number / 7),
                      label=f"{label} letters")
        epochs = len(next(iter(curves.values())))
        loss = [min(run["curves"]["train_loss"][epoch] for run in group) for epoch in range(epochs)]
        twin = axis.twinx()
        twin.plot(range(1, len(loss) + 1), loss, color="black", linestyle="--", label="training loss (best seed)")
        twin.set(yscale="log", ylabel="training loss per character")
        axis.set(xlabel="epoch", ylabel="validation words wrong (share)", ylim=(0, 1),
                 title=f"{name} ({len(group)} seed{'s' * (len(group) > 1)} pooled)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper right")
        twin.legend(fontsize=7, loc="center right")
    save(figure, path)


def plot_settings(runs: list, path: Path):
    """Every Pig-Latin setting's final validation word accuracy, one dot per seed and its mean."""
    plt = pyplot()
    groups = {name: group for name, group in by_setting(runs).items() if "val_word_acc" in group[0]["curves"]}
    names = sorted(groups, key=lambda name: (not name.startswith("transformer"),
                                             sum(map(final_accuracy, groups[name])) / len(groups[name])))
    figure, axis = plt.subplots(figsize=(8, 0.32 * len(names) + 1.2))
    for row, name in enumerate(names):
        accuracy = [final_accuracy(run) for run in groups[name]]
        colour = "C1" if name.startswith("transformer") else "C0"
        axis.scatter(accuracy, [row] * len(accuracy), color=colour, s=14, alpha=0.7)
        axis.scatter([sum(accuracy) / len(accuracy)], [row], color=colour, marker="|", s=200)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set(xlabel="validation word accuracy (dots: seeds; bar: mean)", title="Small set, each setting")
    axis.grid(axis="x", alpha=0.3)
    save(figure, path)


def plot_copying(runs: list, path: Path):
    """Selective copying: validation accuracy per epoch of each setting, one line per seed."""
    plt = pyplot()
    groups = {name: group for name, group in by_setting(runs).items() if "val_acc" in group[0]["curves"]}
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for number, (name, group) in enumerate(groups.items()):
        for seed, run in enumerate(group):
            curve = run["curves"]["val_acc"]
            axis.plot(range(1, len(curve) + 1), curve, color=f"C{number}", alpha=0.8,
                      label=name if seed == 0 else None)
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set(xlabel="epoch", ylabel="validation accuracy (scored positions)", ylim=(0, 1.02),
             title="Selective copying at the report's setting (L 20, 5 tokens, lr 5e-4, batch 8)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    save(figure, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.small_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="small_data_<plan>.json files of bench.small_data")
    parser.add_argument("--out", default="assets")
    args = parser.parse_args(argv)
    missing = [path for path in args.results if not Path(path).is_file()]
    if missing:
        parser.error(f"no such results file: {', '.join(missing)}")
    try:
        runs = load_runs(args.results)
    except (OSError, ValueError, KeyError, TypeError) as error:  # not JSON, not gzip, not bench.small_data's
        parser.error(f"not a results file of bench.small_data among {', '.join(args.results)} "
                     f"({type(error).__name__}: {error})")
    from bench.measure import writable_folder

    out = writable_folder("python -m analysis.small_data", args.out)
    machines = sorted({run["machine"] for run in runs})
    (out / "small_data_table.md").write_text("\n".join(machines) + "\n\n" + markdown(summary_rows(runs)) + "\n")
    settings = by_setting(runs)
    errors = {name: pooled_errors(settings[name]) for name in ERROR_GROUPS if name in settings}
    if errors:
        plot_errors(errors, out / "small_data_errors.png")
    dynamics = {name: [run for run in settings[name] if "right_by_epoch" in run]
                for name in DYNAMICS_GROUPS if name in settings}
    if dynamics:
        plot_dynamics(dynamics, out / "small_data_dynamics.png")
    plot_settings(runs, out / "small_data_settings.png")
    if any("val_acc" in run["curves"] for run in runs):
        plot_copying(runs, out / "small_data_copying.png")
    print(f"wrote {out}/small_data_table.md and the figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
