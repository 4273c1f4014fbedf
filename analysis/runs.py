"""Which trained runs the notebooks read, where their figures go, and loading them with one-line errors.

Each notebook reads the run that a README command makes (`runs/<run_name>`, or the newest `runs/<run_name>-N`
when it was trained again): the Transformer is the one the Quickstart trains. An environment variable points a notebook elsewhere (the tests point them at tiny
runs they train themselves):

    PIGLATIN_TRANSFORMER_RUN          the Transformer of the attention and embedding notebooks
    PIGLATIN_LEARNED_POSITIONS_RUN    a Transformer trained with `--positional learned`
    PIGLATIN_MAMBA_RUN                the Mamba of the embedding and state-space notebooks
    PIGLATIN_ASSETS                   where notebooks write figures and HTML (default: assets/)
"""

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class MissingRun(Exception):
    """A run the analysis needs is not there (or is the wrong model): says which command makes it."""

    def _render_traceback_(self):
        """What Jupyter shows instead of a traceback: the one line that says what to do."""
        return [f"MissingRun: {self}"]


@dataclass(frozen=True)
class RunSpec:
    """A run a notebook needs: the variable that overrides its place, the default place, how to make it."""

    variable: str
    default: str
    model: str
    command: str

    def path(self) -> Path:
        """The variable's run, else the newest trained run of the default name: main.py puts a second run of
        a name in <name>-2, then -3, ... (it never overwrites), so a retrained model is the highest number."""
        chosen = os.environ.get(self.variable)
        if chosen:
            return Path(chosen) if Path(chosen).is_absolute() else ROOT / chosen
        default = ROOT / self.default
        numbered = re.compile(re.escape(default.name) + r"-(\d+)")
        retrained = sorted(((int(match[1]), path) for path in default.parent.glob(f"{default.name}-*")
                            if (match := numbered.fullmatch(path.name))), reverse=True)
        return next((path for _, path in retrained if (path / "checkpoints" / "best.ckpt").is_file()), default)


# The Quickstart's training line, word for word (tests/test_readme.py checks it).
TRANSFORMER = RunSpec("PIGLATIN_TRANSFORMER_RUN", "runs/transformer_small_h64", "transformer",
                      "python main.py --config exps/args_piglatin_small_transformer.txt --run_name transformer_small_h64")
LEARNED_POSITIONS = RunSpec(
    "PIGLATIN_LEARNED_POSITIONS_RUN", "runs/transformer_small_learned", "transformer",
    "python main.py --config exps/args_piglatin_small_transformer.txt --positional learned "
    "--run_name transformer_small_learned")
MAMBA = RunSpec("PIGLATIN_MAMBA_RUN", "runs/mamba_small_h64", "mamba",
                "python main.py --config exps/args_piglatin_small_mamba.txt --hidden_size 64 --run_name mamba_small_h64")


def logged_epochs(run_dir: Path) -> dict:
    """A run's logs/metrics.csv by epoch, {epoch: {column: value}}: the rows without an epoch (the learning-rate
    monitor's) left out, an epoch's training and validation rows joined. {} for a run without a log."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        return {}
    epochs = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            if row.get("epoch"):
                epochs.setdefault(int(row["epoch"]), {}).update(
                    {name: float(value) for name, value in row.items() if value and name not in ("epoch", "step")})
    return dict(sorted(epochs.items()))


def load_run(spec: RunSpec):
    """The trained model of `spec`'s run (best checkpoint, evaluation mode) and its config.

    Raises MissingRun, in one line, when there is no run there or it holds the other model.
    """
    from main import UsageError, load_checkpoint

    run_dir = spec.path()
    shown = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise MissingRun(f"no trained {spec.model} in {shown}: make it with `{spec.command}` "
                         f"(or set {spec.variable} to a run directory)")
    try:
        module = load_checkpoint(str(run_dir))
    except UsageError as error:
        raise MissingRun(str(error)) from None
    if module.config.model != spec.model:
        raise MissingRun(f"{shown} holds a {module.config.model}, this needs a {spec.model}: "
                         f"make one with `{spec.command}` (or set {spec.variable})")
    if run_dir.name != Path(spec.default).name and not os.environ.get(spec.variable):
        print(f"reading {shown}, the newest run named {Path(spec.default).name}")
    return module.model.eval(), module.config


def trained(spec: RunSpec):
    """For a notebook: `load_run(spec)`, or None after printing the one line that says how to make the run.

    Raised, a MissingRun would stop the notebook in Jupyter with that line, but `jupyter nbconvert
    --execute` would bury it under a page of its own traceback: printed, it is the cell's only output,
    and the cells that need the run skip.
    """
    try:
        return load_run(spec)
    except MissingRun as missing:
        print(missing)
        return None


def trained_models(**specs: RunSpec) -> dict:
    """name -> model for each run of `specs` that is there; one printed line for each that is not."""
    found = {name: trained(spec) for name, spec in specs.items()}
    return {name: run[0] for name, run in found.items() if run is not None}


def assets_dir() -> Path:
    """Where notebooks save what the writeup shows; created if missing."""
    path = Path(os.environ.get("PIGLATIN_ASSETS") or ROOT / "assets")
    path.mkdir(parents=True, exist_ok=True)
    return path
