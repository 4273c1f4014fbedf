"""What a student types (config files, command-line options, main.py) and the one-line errors that come back.

A mistake by the person running the command ends with one line on stderr, `main.py: error: ...`, that says
what is wrong and what to do, and exit status 2. An unfinished stub ends with one line naming the function,
its file and the README section that explains it, and exit status 1. Tracebacks are for bugs.
"""

import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import main
import models.mamba
import models.transformer
from training.config import OPTIONS, ConfigError, build_config, read_config_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIGS = sorted((REPO / "exps").glob("*.txt"))
TINY_MODEL = ["--hidden_size", "16", "--num_heads", "2", "--epochs", "1", "--accelerator", "cpu"]

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def write_config(directory: Path, text: str, name: str = "experiment.txt") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def run_main(argv: list, capsys) -> tuple[int, str, str]:
    """main.main(argv) in this process: (exit status, stdout, stderr)."""
    status = main.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *mentions: str, expected_status: int = 2, prefix="main.py: error:"):
    """One line on stderr starting with `prefix`, naming every one of `mentions`, and the exit status."""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith(prefix), f"the error line should start with {prefix!r}; got: {line}"
    for mention in mentions:
        assert mention in line, f"the error line should mention {mention!r}; got: {line}"
    assert status == expected_status, f"exit status should be {expected_status}, got {status} (stderr: {line})"


# --- config files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "hidden_size 32",
        "hidden_size = 32",
        "hidden_size=32",
        "--hidden_size 32",
        "--hidden_size=32",
        "   hidden_size    32   ",
        "hidden_size 32  # a trailing comment",
        "hidden_size\t32",
    ],
    ids=repr,
)
def test_config_file_line_forms_all_set_the_option(tmp_path, line):
    path = write_config(tmp_path, line + "\n")
    try:
        values = read_config_file(path)
    except ConfigError as error:
        pytest.fail(f"the line {line!r} should set hidden_size to 32, but it was refused: {error}")
    assert values == {"hidden_size": 32}, f"the line {line!r} should give {{'hidden_size': 32}}, got {values}"


def test_config_file_skips_comments_and_blank_lines(tmp_path):
    path = write_config(tmp_path, "# my experiment\n\nmodel mamba\n   # an indented comment\n\n\nhidden_size 32\n")
    values = read_config_file(path)
    assert values == {"model": "mamba", "hidden_size": 32}, (
        f"comments and blank lines should be skipped, leaving model and hidden_size; got {values}"
    )


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_parses(path):
    try:
        build_config(path)
    except ConfigError as error:
        pytest.fail(f"{path.name} should parse, but: {error}")


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_names_a_data_file_that_exists(path):
    data = REPO / build_config(path).data
    assert data.is_file(), f"{path.name} trains on {data}, which does not exist"


def test_run_name_defaults_to_the_config_file_name(tmp_path):
    config = build_config(write_config(tmp_path, "hidden_size 32\n", name="my_experiment.txt"))
    assert config.run_name == "my_experiment", f"run_name should default to 'my_experiment', got {config.run_name!r}"


def test_command_line_overrides_beat_the_config_file(tmp_path):
    path = write_config(tmp_path, "hidden_size 64\nlr 0.003\n")
    config = build_config(path, ["--hidden_size", "32"])
    assert config.hidden_size == 32, f"--hidden_size 32 should override the file's 64, got {config.hidden_size}"
    assert config.lr == 0.003, f"lr is not overridden, so it should keep the file's 0.003, got {config.lr}"


@pytest.mark.parametrize(
    "option, text, expected",
    [
        ("hidden_size", "32", 32),
        ("epochs", "7", 7),
        ("lr", "3e-3", 0.003),
        ("lr", "1", 1.0),
        ("dropout", "0.1", 0.1),
        ("data", "data/pig_latin_large.txt", "data/pig_latin_large.txt"),
        ("run_name", "my_run", "my_run"),
    ],
)
def test_values_are_converted_to_the_option_type(option, text, expected):
    value = getattr(build_config(None, [f"--{option}", text]), option)
    assert value == expected and type(value) is type(expected), (
        f"--{option} {text} should give {expected!r} ({type(expected).__name__}), "
        f"got {value!r} ({type(value).__name__})"
    )


CHOICES = [(name, choice) for name, option in OPTIONS.items() for choice in option.metadata["choices"] or []]
# Choices that only make sense with another option: the hybrid exists for the synthetic tasks only.
NEEDS = {("model", "hybrid"): ["--task", "selective_copying"]}


@pytest.mark.parametrize("option, choice", CHOICES)
def test_every_listed_choice_is_accepted(option, choice):
    value = getattr(build_config(None, [f"--{option}", choice, *NEEDS.get((option, choice), [])]), option)
    assert value == choice, f"--{option} {choice} should set {option} to {choice!r}, got {value!r}"


@pytest.mark.parametrize("option", sorted({name for name, _ in CHOICES}))
def test_a_value_outside_the_choices_is_refused_with_the_choices_listed(option):
    with pytest.raises(ConfigError) as refused:
        build_config(None, [f"--{option}", "not-a-choice"])
    for choice in OPTIONS[option].metadata["choices"]:
        assert choice in str(refused.value), f"the error should list the valid choice {choice!r}; got: {refused.value}"


# --- one-line errors from main.py ------------------------------------------------------------------------


def test_unknown_option_in_a_config_file_names_file_line_and_closest_option(tmp_path, capsys):
    path = write_config(tmp_path, "# my experiment\nmodel transformer\nhiden_size 32\n")
    status, _, err = run_main(["--config", path], capsys)
    assert_one_line_error(status, err, f"{path}:3", "hiden_size", "hidden_size")


def test_unknown_option_on_the_command_line_suggests_the_closest_option(capsys):
    status, _, err = run_main(["--hiden_size", "32"], capsys)
    assert_one_line_error(status, err, "hiden_size", "hidden_size")


def test_a_word_where_an_int_belongs_is_refused(capsys):
    status, _, err = run_main(["--hidden_size", "abc"], capsys)
    assert_one_line_error(status, err, "hidden_size", "int", "'abc'")


def test_a_model_that_does_not_exist_is_refused_with_the_choices(capsys):
    status, _, err = run_main(["--model", "xlstm"], capsys)
    assert_one_line_error(status, err, "xlstm", "transformer", "mamba", "lstm", "gru")


def test_a_missing_config_file_is_refused(tmp_path, capsys):
    missing = tmp_path / "no_such_config.txt"
    status, _, err = run_main(["--config", missing], capsys)
    assert_one_line_error(status, err, str(missing), "not found")


def test_a_missing_data_file_is_refused(tmp_path, capsys):
    status, _, err = run_main(["--data", "nope.txt", "--out_dir", tmp_path, *TINY_MODEL], capsys)
    assert_one_line_error(status, err, "nope.txt")


def test_a_corrupted_data_file_is_refused_naming_the_bad_line(tmp_path, capsys):
    data = tmp_path / "pairs.txt"
    data.write_text("the ethay\nquick uickqay\nbrown own br\n")
    status, _, err = run_main(["--data", data, "--out_dir", tmp_path / "runs", *TINY_MODEL], capsys)
    assert_one_line_error(status, err, f"{data}:3")


def test_a_bad_data_file_is_refused_before_a_run_directory_is_made(tmp_path, capsys):
    data = tmp_path / "pairs.txt"
    data.write_text("the ethay\nthe ethay\n")
    runs = tmp_path / "runs"
    run_main(["--data", data, "--out_dir", runs, *TINY_MODEL], capsys)
    made = sorted(path.name for path in runs.glob("*"))
    assert made == [], f"a run that cannot start should leave {runs} empty, but it made {made}"


def test_resuming_a_directory_that_is_not_a_run_is_refused(tmp_path, capsys):
    not_a_run = tmp_path / "holiday_photos"
    not_a_run.mkdir()
    status, _, err = run_main(["--resume", not_a_run], capsys)
    assert_one_line_error(status, err, str(not_a_run))


@pytest.mark.parametrize("argv, mention", [
    (["--val_fraction", "1.5"], "val_fraction"),
    (["--batch_size", "0"], "batch_size"),
    (["--dropout", "1"], "dropout"),
    (["--hidden_size", "10", "--num_heads", "3"], "divisible"),
    (["--max_minutes", "inf"], "max_minutes"),
    (["--max_minutes", "1e300"], "max_minutes"),
    (["--lr", "nan"], "lr"),
    (["--threads", "99999999999999999999"], "threads"),
    (["--max_length", "100000000000"], "max_length"),
    (["--run_name", "a/b"], "run_name"),
    (["--run_name", "/tmp/elsewhere"], "run_name"),
    (["--run_name", ""], "run_name"),
], ids=["val_fraction", "batch_size", "dropout", "heads", "inf-minutes", "huge-minutes", "nan-lr", "huge-threads",
        "huge-max-length", "run-name-with-slash", "run-name-absolute", "run-name-empty"])
def test_a_value_no_run_could_use_is_refused(argv, mention, capsys):
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, mention)


def test_a_config_file_that_is_not_text_is_refused(capsys):
    status, _, err = run_main(["--config", sys.executable], capsys)
    assert_one_line_error(status, err, "cannot be read as text")


@pytest.mark.needs_solution  # the run reaches its folder once the model's first step has run
@pytest.mark.usefixtures("finished_models")
def test_a_file_where_the_runs_folder_belongs_is_refused_and_left_alone(tmp_path, tiny_data_file, capsys):
    runs = tmp_path / "notes.txt"
    runs.write_text("mine\n")
    status, _, err = run_main(["--data", tiny_data_file, "--out_dir", runs, *TINY_MODEL], capsys)
    assert_one_line_error(status, err, str(runs))
    assert runs.read_text() == "mine\n"


@pytest.mark.parametrize("edit, mention", [({"epochs": "10"}, "epochs must be int"),
                                           ({"optimizer": "adamax"}, "optimizer must be one of"),
                                           ({"lr": None}, "lr must be float")], ids=["text", "choice", "null"])
def test_resuming_a_run_whose_config_json_was_edited_wrongly_is_refused(tmp_path, edit, mention, capsys):
    run_dir = a_run_directory(tmp_path, json.dumps({"model": "transformer", **edit}))
    status, _, err = run_main(["--resume", run_dir], capsys)
    assert_one_line_error(status, err, mention)


def a_run_directory(tmp_path, config_text: str, checkpoint: bytes = b"") -> Path:
    """A directory that looks like a run: config.json and, if given, checkpoints/last.ckpt."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(config_text)
    if checkpoint:
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(checkpoint)
    return run_dir


def test_resuming_a_run_whose_config_json_is_corrupt_is_refused(tmp_path, capsys):
    run_dir = a_run_directory(tmp_path, '{"model": "transformer",')
    status, _, err = run_main(["--resume", run_dir], capsys)
    assert_one_line_error(status, err, "config.json", "not valid JSON")


@pytest.mark.parametrize("option", ["seed", "data_seed"])
def test_a_negative_seed_is_refused_in_one_line(option, capsys):
    status, _, err = run_main([f"--{option}", "-1"], capsys)
    assert_one_line_error(status, err, option, "between 0 and")


def test_resuming_a_run_whose_config_json_is_not_an_object_is_refused(tmp_path, capsys):
    run_dir = a_run_directory(tmp_path, "[1]")
    status, _, err = run_main(["--resume", run_dir], capsys)
    assert_one_line_error(status, err, "config.json", "not a run's config")


def test_resuming_a_run_whose_config_json_has_unknown_options_is_refused(tmp_path, capsys):
    run_dir = a_run_directory(tmp_path, json.dumps({"model": "transformer", "hiden_size": 32}))
    status, _, err = run_main(["--resume", run_dir], capsys)
    assert_one_line_error(status, err, "hiden_size")


def test_resuming_a_run_whose_last_checkpoint_is_corrupt_is_refused(tmp_path, capsys):
    run_dir = a_run_directory(tmp_path, json.dumps({"epochs": 3}), checkpoint=bytes(range(256)) * 4)
    status, _, err = run_main(["--resume", run_dir], capsys)
    assert_one_line_error(status, err, "last.ckpt", "not a readable checkpoint")


def test_translating_with_a_missing_checkpoint_is_refused(tmp_path, capsys):
    missing = tmp_path / "best.ckpt"
    status, _, err = run_main(["translate", "--checkpoint", missing, "hello"], capsys)
    assert_one_line_error(status, err, str(missing), "not found")


def test_translating_with_a_corrupted_checkpoint_is_refused(tmp_path, capsys):
    garbage = tmp_path / "best.ckpt"
    garbage.write_bytes(bytes(range(256)) * 4)
    status, _, err = run_main(["translate", "--checkpoint", garbage, "hello"], capsys)
    assert_one_line_error(status, err, str(garbage))


def test_translating_a_word_with_digits_is_refused(tmp_path, capsys):
    status, _, err = run_main(["translate", "--checkpoint", tmp_path / "best.ckpt", "h3llo"], capsys)
    assert_one_line_error(status, err, "'h3llo'")


def test_help_lists_every_option(capsys):
    status, out, _ = run_main(["--help"], capsys)
    missing = [name for name in OPTIONS if f"--{name}" not in out]
    assert missing == [], f"python main.py --help should list every option; it leaves out {missing}"
    assert status == 0, f"--help should exit with status 0, got {status}"


@pytest.mark.parametrize(
    "argv",
    [["--hidden_size", "abc"], ["translate", "--checkpoint", "{foreign}", "hello"]],
    ids=["bad-option-value", "foreign-pickle-as-checkpoint"],
)
def test_the_script_exits_with_status_2_and_one_line_without_traceback(tmp_path, argv):
    foreign = tmp_path / "best.ckpt"
    foreign.write_bytes(pickle.dumps({"weights": [0.5, 0.25]}))  # a pickle from some other program
    command = [sys.executable, "main.py", *(arg.format(foreign=foreign) for arg in argv)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, f"{' '.join(argv)} should not print a traceback:\n{result.stderr}"
    assert_one_line_error(result.returncode, result.stderr)


# --- unfinished stubs --------------------------------------------------------------------------------------


def make_stub(function, monkeypatch):
    """Turns `function` into an unfinished stub, as in the student template: its body only raises
    NotImplementedError, while its name, file, module and docstring stay the real ones."""

    def unfinished(*args, **kwargs):
        raise NotImplementedError

    real = function.__code__
    stub_code = unfinished.__code__.replace(
        co_name=real.co_name, co_qualname=real.co_qualname, co_filename=real.co_filename,
        co_firstlineno=real.co_firstlineno,
    )
    monkeypatch.setattr(function, "__code__", stub_code)


STUBS = [
    ("transformer", models.transformer.MultiHeadAttention.forward, "Q1.1 Multi-head attention"),
    ("transformer", models.transformer.sinusoidal_positional_encoding, "Q1.2 Encoder"),
    ("transformer", models.transformer.DecoderLayer.forward, "Q1.3 Decoder"),
    ("mamba", models.mamba.MambaBlock.selective_scan, "Q2.3 Mamba block"),
]


def send_lightning_logs_to_current_stderr(monkeypatch):
    """Lightning's console handler keeps the stderr of the moment lightning was imported; point it at the
    stderr capsys captures now, so that a test sees everything a person running main.py sees."""
    import lightning  # noqa: F401  (creates the handler)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                monkeypatch.setattr(handler, "stream", sys.stderr)


@pytest.mark.needs_solution
@pytest.mark.usefixtures("finished_models")  # the other functions must be written, so that this one is named
@pytest.mark.parametrize("model, function, section", STUBS, ids=[stub[1].__qualname__ for stub in STUBS])
def test_an_unfinished_stub_ends_the_run_with_one_line_naming_function_file_and_readme_section(
    model, function, section, tiny_data_file, tmp_path, monkeypatch, capsys
):
    make_stub(function, monkeypatch)
    send_lightning_logs_to_current_stderr(monkeypatch)
    argv = ["--model", model, "--data", tiny_data_file, "--out_dir", tmp_path, *TINY_MODEL]
    status, _, err = run_main(argv, capsys)
    assert "Traceback" not in err, f"an unfinished stub should not print a traceback:\n{err}"
    last_line = err.splitlines()[-1] if err.strip() else ""
    assert last_line.startswith("main.py: "), (
        f"stderr should end with main.py's one-line report, on a line of its own; its last line is {last_line!r}"
    )
    file = str(Path(function.__code__.co_filename).resolve().relative_to(REPO))
    for mention in (function.__qualname__, file, section):
        assert mention in last_line, f"the report should name {mention!r}; got: {last_line}"
    assert status == 1, f"an unfinished stub should exit with status 1, got {status}"
