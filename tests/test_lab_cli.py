"""The lab's commands (bench/, analysis/) answer bad input with one error line and status 2 (after argparse's
usage line, where argparse answers), never a traceback, and write nothing where they were told not to."""

import importlib

import pytest


def a_file(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("mine\n")
    return path


def an_empty_object(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    return path


CASES = [
    ("bench.__main__", ["--threads", "-1"], "--threads"),
    ("bench.__main__", ["--sections", "piglatin", "--train-steps", "0"], "--train-steps"),
    ("bench.__main__", ["--sections", "piglatin", "--decode-words", "0"], "--decode-words"),
    ("bench.__main__", ["--sections", "scans", "--out", "{file}"], "cannot write into"),
    ("bench.sweep", ["--replot", "{file}"], "not the CSV of a sweep"),
    ("bench.sweep", ["--collect", "{tmp}"], "no run directories of a sweep"),
    ("bench.sweep", ["--out", "{file}", "--collect", "{tmp}"], "cannot write into"),
    ("bench.synthetic", ["--rows", "copying", "--runs-dir", "{file}"], "cannot use --runs-dir"),
    ("bench.train_targets", ["--parallel", "0"], "--parallel"),
    ("analysis.small_data", ["{file}"], "not a results file"),
    ("analysis.small_data", ["{empty}"], "not a results file"),
]


@pytest.mark.parametrize("module, argv, mention", CASES, ids=lambda case: case if isinstance(case, str) else None)
def test_bad_input_is_one_line_and_status_2(module, argv, mention, tmp_path, capsys):
    places = {"file": a_file(tmp_path), "empty": an_empty_object(tmp_path), "tmp": tmp_path}
    main = importlib.import_module(module).main
    try:
        status = main([arg.format(**places) for arg in argv])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    message = status if isinstance(status, str) else err.strip().splitlines()[-1]  # SystemExit("...") prints it
    assert status not in (0, None) and "Traceback" not in err, err
    assert "error:" in message and mention in message, message
    assert places["file"].read_text() == "mine\n"


def test_train_targets_keeps_its_table_when_every_run_fails(tmp_path, capsys):
    from bench import train_targets

    table = a_file(tmp_path)
    status = train_targets.main(["--configs", "exps/args_piglatin_small_transformer.txt", "--out", str(table),
                                 "--", "--epochs", "-1"])
    assert status == 1 and table.read_text() == "mine\n"
    assert "left as it was" in capsys.readouterr().err
