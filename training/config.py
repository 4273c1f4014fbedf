"""Run configuration: every option, its type, default and help, and strict parsing of config files.

A config file is plain text, one option per line, `name value` (or `name = value`, or `--name value`);
`#` starts a comment. The command line overrides the file: `--hidden_size 32`. Unknown names, values of
the wrong type and missing files are refused with one line that says what to fix.
"""

import dataclasses
import datetime
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPOSITORY = Path(__file__).resolve().parent.parent


# The state-space family (models/family.py MODELS, listed here so that reading a config imports no torch).
FAMILY_MODELS = ["s4", "s4_low_rank", "s4d_real", "s4d_inv", "s4d_lin", "s6", "mamba_s4", "mamba_s4_low_rank",
                 "mamba_s4d_real", "mamba_s4d_inv", "mamba_s4d_lin", "mamba_s6", "gated_mlp"]


class ConfigError(Exception):
    """A mistake in a config file or on the command line; main.py prints it as one line."""


def _option(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Config:
    # what to train on
    model: str = _option("transformer", "which model to train (lstm and gru are baselines; the state-space "
                         "family is models/family.py; hybrid is for the synthetic tasks)",
                         ["transformer", "mamba", "lstm", "gru"] + FAMILY_MODELS + ["hybrid"])
    data: str = _option("data/pig_latin_small.txt", "dataset file: one 'english piglatin' pair per line")
    val_fraction: float = _option(0.2, "share of the pairs held out for validation")
    seed: int = _option(0, "seeds the split, the initialisation and the batch order")

    # optimisation
    epochs: int = _option(60, "passes over the training set")
    batch_size: int = _option(64, "words per batch (batches group words of equal lengths)")
    optimizer: str = _option("adamw", "optimizer", ["adamw", "adam", "sgd"])
    lr: float = _option(3e-3, "peak learning rate")
    weight_decay: float = _option(0.01, "decoupled weight decay (adamw) or L2 penalty (adam, sgd)")
    scheduler: str = _option("cosine", "learning-rate schedule after warm-up", ["cosine", "constant"])
    warmup_epochs: float = _option(1.0, "epochs of linear warm-up from 0 to lr")
    grad_clip: float = _option(1.0, "clip the gradient norm to this (0 turns clipping off)")
    dropout: float = _option(0.0, "dropout probability")
    ema_decay: float = _option(0.0, "validate and keep an exponential moving average of the weights, updated "
                                    "every step with this decay, e.g. 0.998 (0 turns it off)")

    # Transformer (Q1)
    hidden_size: int = _option(64, "hidden size H (Transformer, LSTM, GRU) or D (Mamba)")
    num_heads: int = _option(4, "attention heads")
    num_encoder_layers: int = _option(2, "Transformer (or LSTM/GRU) encoder layers")
    num_decoder_layers: int = _option(2, "Transformer (or LSTM/GRU) decoder layers")
    positional: str = _option("sinusoidal", "positional encoding", ["sinusoidal", "learned"])
    max_length: int = _option(64, "longest sequence the position tables (and low-rank S4's kernel, the gated "
                              "MLP's mixing matrix) cover")

    # Mamba (Q2)
    num_layers: int = _option(2, "Mamba residual blocks (synthetic tasks: the layers of any model but the hybrid)")
    state_size: int = _option(16, "state size N per channel")
    expand: int = _option(2, "expansion E = expand * D")
    conv_kernel: int = _option(4, "width of the causal depthwise convolution")
    scan: str = _option("pair_scan", "how the recurrence is computed (pair_scan: the fast exact one)",
                        ["sscan", "pscan", "pair_scan"])
    discretization: str = _option("zoh", "continuous -> discrete rule", ["zoh", "zoh_exact", "bilinear"])
    alpha: float = _option(0.5, "bilinear discretisation: 1 forward Euler, 0 backward Euler, 0.5 Tustin")
    A_init: str = _option("s4d_real", "initial A", ["s4d_real", "s4d_lin", "constant"])
    dt_min: float = _option(1e-3, "smallest initial step size Δ")
    dt_max: float = _option(1e-1, "largest initial step size Δ")
    layout: str = _option("source", "what Mamba reads before SOS: [source, EOS], the source reversed, or the "
                          "source twice [source, EOS, source, EOS]", ["source", "reversed", "twice"])

    # synthetic tasks (data/synthetic.py, models/hybrid.py; README: Bonus question: why selectivity matters)
    task: str = _option("piglatin", "what to learn: Pig Latin, or a synthetic task of the MAD suite",
                        ["piglatin", "selective_copying", "incontext_recall"])
    vocab_size: int = _option(16, "synthetic tasks: vocabulary size (special tokens included)")
    seq_len: int = _option(0, "synthetic tasks: tokens per sequence (0: MAD's, 256 for copying, 128 for recall)")
    num_tokens: int = _option(16, "selective copying: data tokens to copy")
    num_train: int = _option(12800, "synthetic tasks: training examples")
    num_val: int = _option(1280, "synthetic tasks: validation examples (choose checkpoints and learning rates)")
    num_test: int = _option(1280, "synthetic tasks: test examples (read once, at the end)")
    data_seed: int = _option(0, "synthetic tasks: seeds the examples (seed seeds the model and the batch order)")
    hybrid_blocks: int = _option(1, "hybrid: blocks, each of Mamba layers and Transformer layers")
    attention_layers: int = _option(1, "hybrid: Transformer layers per block")
    mamba_layers: int = _option(1, "hybrid: Mamba layers per block")
    hybrid_join: str = _option("res", "hybrid: what joins a block to its input: nothing, a residual, or a gated "
                               "residual", ["null", "res", "gated_res"])
    hybrid_order: str = _option("mamba_first", "hybrid: which kind of layer comes first in a block",
                                ["mamba_first", "attention_first"])

    # where and how to run
    accelerator: str = _option("auto", "'auto' uses a GPU when there is one", ["auto", "cpu", "gpu"])
    threads: int = _option(0, "CPU threads for torch; 0: $OMP_NUM_THREADS if set, else 1, which never "
                              "oversubscribes a shared machine")
    max_minutes: float = _option(0.0, "stop training after this many minutes, at the end of a step, and evaluate "
                                      "the best checkpoint so far as usual (0: no limit; epochs still bounds it)")
    out_dir: str = _option("runs", "folder that holds run directories")
    run_name: Optional[str] = _option(None, "run directory name (default: the config file's name)")
    num_samples: int = _option(20, "validation words whose translations are saved with the run")

    def __post_init__(self):
        """Refuses values no run could use, whichever way the config was made (file, command line, resume)."""
        self._check_types()
        ranges = [
            ("val_fraction", 0 < self.val_fraction < 1, "between 0 and 1 (exclusive)"),
            ("dropout", 0 <= self.dropout < 1, "at least 0 and below 1"),
            ("ema_decay", 0 <= self.ema_decay < 1, "at least 0 and below 1 (0 turns it off)"),
            ("alpha", 0 <= self.alpha <= 1, "between 0 and 1"),
            ("dt_min", 0 < self.dt_min <= self.dt_max, "positive and at most dt_max"),
            ("lr", self.lr > 0, "positive"),
            ("seed", 0 <= self.seed < 2**32, "between 0 and 2**32 - 1"),
            ("data_seed", 0 <= self.data_seed < 2**32, "between 0 and 2**32 - 1"),
            ("weight_decay", self.weight_decay >= 0, "at least 0"),
            ("grad_clip", self.grad_clip >= 0, "at least 0 (0 turns clipping off)"),
            ("warmup_epochs", self.warmup_epochs >= 0, "at least 0"),
            ("num_samples", self.num_samples >= 0, "at least 0"),
            ("threads", self.threads >= 0, "at least 0 (0 picks for you)"),
            ("max_minutes", 0 <= self.max_minutes <= 10**7, "between 0 (no limit) and 10**7"),
            ("threads", self.threads <= 4096, "at most 4096"),
            ("max_length", self.max_length <= 2**16, "at most 65536"),
            ("run_name", self.run_name is None or (self.run_name not in ("", ".", "..") and not any(
                separator in self.run_name for separator in "/\\")), "a folder name (no '/', not empty)"),
        ] + [(name, getattr(self, name) >= 1, "at least 1") for name in (
            "epochs", "batch_size", "hidden_size", "num_heads", "num_encoder_layers", "num_decoder_layers",
            "max_length", "num_layers", "state_size", "expand", "conv_kernel")]
        ranges += [(name, getattr(self, name) >= 0, "at least 0") for name in (
            "seq_len", "num_tokens", "attention_layers", "mamba_layers")]
        ranges += [(name, getattr(self, name) >= 1, "at least 1") for name in (
            "num_train", "num_val", "num_test", "hybrid_blocks")]
        for name, ok, wanted in ranges:
            if not ok:
                raise ConfigError(f"{name} must be {wanted}, got {getattr(self, name)}")
        attends = self.model == "transformer" or (self.model == "hybrid" and self.attention_layers)
        if attends and self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        self._check_family()
        self._check_task()

    def _check_types(self):
        """Each option of its own type (a hand-edited config.json may say "10" for 10); an int for a float is
        taken as that float."""
        for name, option in OPTIONS.items():
            value, kind = getattr(self, name), option.type
            if kind == Optional[str]:
                ok = value is None or isinstance(value, str)
            elif kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
                ok = True
            else:
                ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
            if kind is float and ok and not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {value}")
            if not ok:
                raise ConfigError(f"{name} must be {getattr(kind, '__name__', 'str')}, got {value!r}")
            if option.metadata["choices"] and value not in option.metadata["choices"]:
                raise ConfigError(f"{name} must be one of {', '.join(option.metadata['choices'])}; got {value!r}")

    def _check_family(self):
        """Refuses what a state-space family member cannot build, and options it would silently ignore."""
        if self.model not in FAMILY_MODELS:
            return
        pairs = self.model.endswith(("s4_low_rank", "s4d_lin", "s4d_inv"))  # complex A: conjugate pairs
        if pairs and self.state_size % 2:
            raise ConfigError(f"model {self.model} keeps its states in conjugate pairs: state_size must be even, "
                              f"got {self.state_size}")
        for name in ("discretization", "alpha", "A_init", "layout"):
            if getattr(self, name) != OPTION_DEFAULTS[name]:
                always = {"A_init": "its own initial A", "layout": "[source, EOS, SOS, target]"}
                raise ConfigError(f"--{name} applies to --model mamba only; model {self.model} always uses "
                                  f"{always.get(name, 'zero-order hold')}")

    def _check_task(self):
        """Refuses a hybrid on Pig Latin, an empty hybrid, and task settings no example can meet."""
        if self.task == "piglatin":
            if self.model == "hybrid":
                raise ConfigError("model hybrid is for the synthetic tasks: add --task selective_copying or "
                                  "--task incontext_recall")
            return
        if self.model == "hybrid" and self.attention_layers + self.mamba_layers == 0:
            raise ConfigError("a hybrid needs layers: set attention_layers or mamba_layers to at least 1")
        from data.synthetic import DEFAULT_SEQ_LEN, TaskSettingError, check_settings

        try:
            check_settings(self.task, self.vocab_size, self.seq_len or DEFAULT_SEQ_LEN[self.task], self.num_tokens)
        except TaskSettingError as error:
            raise ConfigError(str(error)) from None


OPTIONS = {f.name: f for f in dataclasses.fields(Config)}
OPTION_DEFAULTS = {name: option.default for name, option in OPTIONS.items()}


def time_limit(config: Config):
    """`max_minutes` as Lightning's `max_time` (None: no limit). Where the limit stops a run depends on the
    machine's speed, so a time-limited run is only as reproducible as its number of epochs: metrics.json says
    whether the limit stopped it. Lightning keeps the time spent in last.ckpt, so a resumed run's limit
    counts the training before it too."""
    return datetime.timedelta(minutes=config.max_minutes) if config.max_minutes else None


def cpu_threads(config: Config) -> int:
    """The torch CPU threads a run uses: `threads`, or for 0, $OMP_NUM_THREADS if set, else 1.

    One thread is the default because these models are small: a second thread gains little on an idle
    machine (Mamba, see README: Training) and, on a machine whose cores are busy, every parallel operation
    waits for the thread that is not running (one epoch: 43 s with two threads, 6 s with one).
    """
    if config.threads:
        return config.threads
    from_environment = os.environ.get("OMP_NUM_THREADS", "")
    return int(from_environment) if from_environment.isdigit() and int(from_environment) > 0 else 1


def locate(path) -> Path:
    """`path` if it exists; otherwise, for a relative path, the repository's file of that name if there is
    one (so that `python ../main.py --config ../exps/<name>.txt` finds the config's data from any folder);
    otherwise `path` unchanged, for the caller to report missing."""
    path = Path(path)
    if path.exists() or path.is_absolute() or not (REPOSITORY / path).exists():
        return path
    return REPOSITORY / path


def _parse_value(name: str, text: str):
    """Converts `text` to option `name`'s type, or raises ConfigError."""
    option = OPTIONS[name]
    choices = option.metadata["choices"]
    if option.type == Optional[str]:
        return None if text.lower() == "none" else text
    try:
        value = option.type(text)
    except ValueError:
        raise ConfigError(f"{name} must be {option.type.__name__}, got {text!r}") from None
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {text!r}")
    return value


def unknown_option_message(name: str) -> str:
    """'unknown option foo (did you mean bar?)' with the closest valid names."""
    close = difflib.get_close_matches(name, OPTIONS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else " (see `python main.py --help`)"
    return f"unknown option {name!r}{hint}"


def read_config_file(path) -> dict:
    """Reads a config file into {name: value}; raises ConfigError naming the file and line."""
    path = locate(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (the shipped ones are in exps/)")
    values = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read as text ({type(error).__name__})") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, value = (line.replace("=", " ", 1).split(maxsplit=1) + [""])[:2]
        name = name.removeprefix("--")
        where = f"{path}:{number}"
        if name not in OPTIONS:
            raise ConfigError(f"{where}: {unknown_option_message(name)}")
        if not value:
            raise ConfigError(f"{where}: option {name!r} has no value")
        try:
            values[name] = _parse_value(name, value)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return values


def parse_overrides(tokens: list) -> dict:
    """Parses `--name value` pairs from the command line."""
    values = {}
    tokens = list(tokens)
    while tokens:
        token = tokens.pop(0)
        name, equals, value = token.removeprefix("--").partition("=")
        if not token.startswith("--"):
            raise ConfigError(f"expected an option like --hidden_size 32, got {token!r}")
        if name not in OPTIONS:
            raise ConfigError(unknown_option_message(name))
        if not equals:
            if not tokens:
                raise ConfigError(f"option --{name} needs a value")
            value = tokens.pop(0)
        values[name] = _parse_value(name, value)
    return values


def build_config(config_path=None, overrides=None) -> Config:
    """The defaults, updated by the config file, updated by command-line overrides."""
    values = read_config_file(config_path) if config_path else {}
    values.update(parse_overrides(overrides or []))
    config = Config(**values)
    if config.run_name is None:
        config.run_name = Path(config_path).stem if config_path else config.model
    return config


def describe_options() -> str:
    """Help text: one line per option with its default (once: a help text may say it in its own words)."""
    lines = []
    for name, option in OPTIONS.items():
        choices = option.metadata["choices"]
        extra = f" [{'|'.join(choices)}]" if choices else ""
        default = "" if "(default:" in option.metadata["help"] else f" (default: {option.default})"
        lines.append(f"  --{name:<20} {option.metadata['help']}{extra}{default}")
    return "\n".join(lines)
