"""Run directories -> the writeup's figures and its table of final metrics.

    python -m analysis.figures runs/transformer_* runs/mamba_* --out assets/

writes, for each model among the runs, `curves_<model>.png`: training and validation loss (left) and
validation word accuracy (right) per epoch, one colour per run, the loss on the same scale in every
model's figure so that they compare at a glance; and `results.md`, a Markdown table of each run's final metrics (metrics.json).
A directory that is not a finished run is refused with one line, before anything is written.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from analysis.runs import logged_epochs

CURVES = ("train_loss", "val_loss", "val_word_acc")


class RunError(Exception):
    """A directory the figures cannot use: said in one line."""


@dataclass
class Run:
    """One finished run: where it is, its options, its final metrics and its per-epoch curves."""

    path: Path
    config: dict
    metrics: dict
    curves: dict  # column -> {epoch: value}

    @property
    def label(self) -> str:
        data = Path(self.config["data"]).stem.removeprefix("pig_latin_")
        return f"{data}, hidden {self.config['hidden_size']} ({self.path.name})"


def read_run(path) -> Run:
    """Reads config.json, metrics.json and logs/metrics.csv of a run directory; RunError if one is missing."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path} is not a directory (a run directory is what main.py writes under runs/)")
    needed = {name: path / name for name in ("config.json", "metrics.json", "logs/metrics.csv")}
    missing = [name for name, file in needed.items() if not file.is_file()]
    if missing and any((child / "config.json").is_file() for child in path.iterdir()):
        raise RunError(f"{path} is a folder of runs: name the runs themselves, e.g. {path}/transformer_*")
    if missing:
        raise RunError(f"{path} is not a finished run: {', '.join(missing)} missing "
                       f"(if training stopped early, continue it: python main.py --resume {path})")
    try:
        config = json.loads(needed["config.json"].read_text())
        metrics = json.loads(needed["metrics.json"].read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path}: a JSON file is damaged ({error.msg}, line {error.lineno})") from None
    epochs = logged_epochs(path)
    curves = {column: {epoch: row[column] for epoch, row in epochs.items() if column in row} for column in CURVES}
    empty = [column for column in CURVES if not curves[column]]
    if empty:
        raise RunError(f"{path}/logs/metrics.csv has no {', '.join(empty)} values (is it a log main.py wrote?)")
    return Run(path, config, metrics, curves)


def plot_curves(runs: list, loss_limits: tuple):
    """One model's runs on shared axes: losses (train dashed, validation solid), validation word accuracy."""
    import matplotlib.pyplot as plt

    epoch_limit = max(max(run.curves["val_loss"]) + 1 for run in runs)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for number, run in enumerate(sorted(runs, key=lambda run: run.label)):
        colour = f"C{number}"
        for column, style in (("train_loss", "--"), ("val_loss", "-")):
            epochs, values = zip(*sorted(run.curves[column].items()))
            loss_axis.plot([e + 1 for e in epochs], values, style, color=colour,
                           label=f"{run.label}, {'train' if column == 'train_loss' else 'validation'}")
        epochs, values = zip(*sorted(run.curves["val_word_acc"].items()))
        accuracy_axis.plot([e + 1 for e in epochs], values, color=colour, label=run.label)
    loss_axis.set(yscale="log", ylim=loss_limits, xlim=(1, epoch_limit), xlabel="epoch",
                  ylabel="cross-entropy per character", title="loss (train dashed, validation solid)")
    accuracy_axis.set(ylim=(0, 1), xlim=(1, epoch_limit), xlabel="epoch", ylabel="word accuracy",
                      title="validation word accuracy")
    loss_axis.legend(fontsize=6)
    accuracy_axis.legend(fontsize=7, loc="lower right")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(runs[0].config["model"].capitalize())
    figure.tight_layout()
    return figure


def results_table(runs: list) -> str:
    """A Markdown table, one row per run, of the final metrics that metrics.json holds."""
    lines = ["| model | run | data | hidden | params | epochs | best epoch | val loss | val word acc | "
             "train time | s / epoch | device |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for run in sorted(runs, key=lambda run: (run.config["model"], run.label)):
        metrics = run.metrics
        lines.append(
            f"| {run.config['model']} | `{run.path.name}` | {Path(run.config['data']).stem.removeprefix('pig_latin_')} "
            f"| {run.config['hidden_size']} | {metrics['params']:,} | {metrics['epochs']} "
            f"| {metrics.get('best_epoch', '–')} | {metrics['val_loss']:.4f} | {metrics['val_word_acc']:.4f} "
            f"| {metrics['train_seconds'] / 60:.1f} min | {metrics.get('seconds_per_epoch', float('nan')):.2f} "
            f"| {metrics.get('device', '–')} |")
    return "\n".join(lines) + "\n"


def read_markdown_table(text: str) -> list[dict]:
    """The rows of the first Markdown table in `text` (results_table's, or bench's), as {column: cell}."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return []
    columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(columns, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def write_figures(runs: list, out: Path) -> list:
    """curves_<model>.png for each model and results.md; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    losses = [value for run in runs for column in ("train_loss", "val_loss") for value in run.curves[column].values()]
    loss_limits = (max(min(losses), 1e-5) / 1.5, max(losses) * 1.5)
    written = []
    for model in sorted({run.config["model"] for run in runs}):
        figure = plot_curves([run for run in runs if run.config["model"] == model], loss_limits)
        path = out / f"curves_{model}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    table = out / "results.md"
    table.write_text(results_table(runs))
    return written + [table]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (runs/<name>)")
    parser.add_argument("--out", default="assets", help="folder for the figures and results.md")
    args = parser.parse_args(argv)
    try:
        runs = [read_run(path) for path in args.runs]
    except RunError as error:
        print(f"analysis.figures: error: {error}", file=sys.stderr)
        return 2
    from bench.measure import writable_folder

    for path in write_figures(runs, writable_folder("python -m analysis.figures", args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
