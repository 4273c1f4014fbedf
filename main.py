"""Train and use the Pig-Latin models.

    python main.py --config exps/args_piglatin_small_transformer.txt          train
    python main.py --config exps/args_piglatin_small_mamba.txt --lr 1e-3      train, overriding an option
    python main.py --config exps/args_selective_copying_mamba.txt             a synthetic task (README: Bonus question)
    python main.py --resume runs/args_piglatin_small_transformer              continue an interrupted run
    python main.py translate --checkpoint runs/<run> "the quick brown fox"    translate with a trained model
    python main.py --help                                                     every option
"""

import inspect
import json
import os
import re
import sys
import warnings
from pathlib import Path

if sys.version_info < (3, 11):  # before anything that needs it: one line, not a traceback from deep inside
    sys.exit(f"main.py: error: Python 3.11 or newer is needed; this is Python {sys.version.split()[0]} "
             "(make the virtual environment with a newer python3)")

USAGE = __doc__.split("\n", 2)[2].rstrip()


# What --resume may change: the rest would no longer match the checkpoint or the run it continues.
RESUMABLE_OPTIONS = {"epochs", "accelerator", "num_samples", "threads", "max_minutes"}


class UsageError(Exception):
    """Bad input from the person running the command: printed as one line, exit status 2."""


def unimplemented_message(error: NotImplementedError) -> str:
    """Which function is still a stub, and which README section explains it."""
    innermost = error.__traceback__
    if innermost is None:
        return f"not implemented yet: {error}"
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    code = innermost.tb_frame.f_code
    name = code.co_qualname
    where = Path(code.co_filename).resolve()
    if where.is_relative_to(Path(__file__).resolve().parent):
        where = where.relative_to(Path(__file__).resolve().parent)
    section = readme_section(innermost.tb_frame.f_globals, name)
    hint = f"; README section '{section}' explains it" if section else ""
    return f"{name} in {where} is not implemented yet: write it{hint}"


def readme_section(namespace: dict, qualname: str):
    """The `README: <section>` line of the function's docstring, if it has one."""
    obj = namespace.get(qualname.split(".")[0])
    for part in qualname.split(".")[1:]:
        obj = getattr(obj, part, None)
    match = re.search(r"README: (.+)", inspect.getdoc(obj) or "") if obj is not None else None
    return match.group(1).strip() if match else None


def parse_train_args(argv: list):
    """Splits --config / --resume from the option overrides."""
    config_path = resume = None
    rest = []
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        name, equals, value = token.partition("=")
        if name in ("--config", "--resume"):
            if not equals:
                if not tokens:
                    raise UsageError(f"{name} needs a path")
                value = tokens.pop(0)
            if name == "--config":
                config_path = value
            else:
                resume = value
        else:
            rest.append(token)
    return config_path, resume, rest


def use_threads(count: int):
    """Sets torch's CPU threads: through the environment if torch is not loaded yet, so that every thread
    pool torch starts has that size; with torch.set_num_threads if it is (main.main called from Python)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)


def trainer_for(config):
    """The train function for the config's task: Pig Latin's, or the synthetic tasks' (training/synthetic.py)."""
    if config.task == "piglatin":
        from training.piglatin import train
    else:
        from training.synthetic import train
    return train


def run_train(argv: list) -> int:
    # Only the light config module until the config is known to be good: a mistyped option or a missing
    # file is answered at once, before torch and Lightning load (seconds).
    from data.errors import no_such_data_file
    from training.config import OPTIONS, Config, build_config, cpu_threads, locate, parse_overrides

    config_path, resume, overrides = parse_train_args(argv)
    run_dir = None
    if resume:
        run_dir = Path(resume)
        saved = run_dir / "config.json"
        if config_path:
            raise UsageError("--resume continues a run with its own config.json: leave out --config")
        if not saved.is_file():
            raise UsageError(f"cannot resume {run_dir}: no config.json there (is it a run directory?)")
        try:
            values = json.loads(saved.read_text())
        except json.JSONDecodeError as error:
            raise UsageError(f"cannot resume {run_dir}: {saved} is not valid JSON ({error.msg}, line {error.lineno})")
        if not isinstance(values, dict):
            raise UsageError(f"cannot resume {run_dir}: {saved} is not a run's config (an object of options)")
        unknown = values.keys() - OPTIONS.keys()
        if unknown:
            raise UsageError(f"cannot resume {run_dir}: {saved} has options this version does not know: "
                             f"{', '.join(sorted(unknown))}")
        changes = parse_overrides(overrides)
        for name in changes.keys() - RESUMABLE_OPTIONS:
            raise UsageError(f"--{name} cannot change when resuming (only {', '.join(sorted(RESUMABLE_OPTIONS))} can); "
                             "start a new run instead")
        values.update(changes)
        config = Config(**values)
    else:
        if config_path is None and not overrides:
            raise UsageError("say what to train: --config exps/<name>.txt (see python main.py --help)")
        config = build_config(config_path, overrides)
    if config.task == "piglatin" and not locate(config.data).is_file():  # said now, before Lightning loads
        raise no_such_data_file(config.data)
    use_threads(cpu_threads(config))
    run_dir = trainer_for(config)(config, resume_dir=run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"run directory: {run_dir}")
    if config.task != "piglatin":
        from training.synthetic import summary_line

        print(summary_line(metrics))
        return 0
    print(f"val_word_acc {metrics['val_word_acc']:.4f}  val_loss {metrics['val_loss']:.4f}  "
          f"params {metrics['params']:,}  {metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s")
    return 0


def trained_task(config_file: Path):
    """The task a run directory's config.json names (None: no readable config.json, so nothing to say)."""
    try:
        return json.loads(config_file.read_text()).get("task", "piglatin")
    except (OSError, ValueError, AttributeError):
        return None


def load_checkpoint(path: str):
    """A trained Seq2SeqModule from a .ckpt file or a run directory (its best checkpoint)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise UsageError(f"checkpoint {path} not found (train first: python main.py --config exps/<name>.txt)")
    task = trained_task(path.parent.parent / "config.json")
    if task not in (None, "piglatin"):
        raise UsageError(f"{path} was trained on {task}, not Pig Latin: translate reads Pig-Latin runs only "
                         f"(that run's test answers are in {path.parent.parent / 'samples.txt'})")
    from training.piglatin import Seq2SeqModule
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's remarks on a foreign file would break the one line
            return Seq2SeqModule.load_from_checkpoint(path, map_location="cpu")
    except (NotImplementedError, UsageError):
        raise
    except Exception as error:  # any unreadable or foreign file
        raise UsageError(f"{path} is not a readable checkpoint of this project ({type(error).__name__})") from None


def run_translate(argv: list) -> int:
    from data.pig_latin import to_pig_latin
    from training.config import Config, cpu_threads

    checkpoint, words = None, []
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if token == "--checkpoint" and tokens:
            checkpoint = tokens.pop(0)
        elif token.startswith("--checkpoint="):
            checkpoint = token.partition("=")[2]
        elif token.startswith("--"):
            raise UsageError(f"translate takes --checkpoint PATH and words, not {token}")
        else:
            words.extend(token.lower().split())
    if checkpoint is None or not words:
        raise UsageError('usage: python main.py translate --checkpoint runs/<run> "some words"')
    for word in words:
        if not re.fullmatch(r"[a-z]+(-[a-z]+)*", word):
            raise UsageError(f"cannot translate {word!r}: words are letters a-z, optionally joined by dashes")
    use_threads(cpu_threads(Config()))
    module = load_checkpoint(checkpoint)
    from models.decoding import model_budget
    longest = getattr(module.model, "max_length", None)  # the Transformer's position table; Mamba has none
    for word in words:
        if longest is not None and len(word) > longest:
            raise UsageError(f"cannot translate {word!r}: this model reads words of at most {longest} characters")
        if model_budget(module.model, len(word)) < len(to_pig_latin(word)) + 1:  # + EOS
            raise UsageError(f"cannot translate {word!r}: its translation does not fit in this model's tables "
                             "(train with a larger max_length)")
    translation = module.translate(words)
    print(" ".join(translation))
    expected = [to_pig_latin(word) for word in words]
    if translation != expected:
        print(f"(the rule gives: {' '.join(expected)})", file=sys.stderr)
    return 0


def main(argv: list) -> int:
    from data.errors import DataFormatError
    from training.config import ConfigError, describe_options

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\noptions (in a config file, write them without the dashes):\n" + describe_options())
        return 0 if argv else 2
    try:
        if argv[0] == "translate":
            return run_translate(argv[1:])
        return run_train(argv)
    except (UsageError, ConfigError, DataFormatError) as error:
        print(f"main.py: error: {error}", file=sys.stderr)
        return 2
    except NotImplementedError as error:
        print(f"main.py: {unimplemented_message(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
