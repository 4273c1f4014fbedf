"""`python -m bench --quick`: every table and plot is written, with the expected columns and sane values.

It checks what the benchmark reports, never how fast anything is (timings belong to the benchmark itself)."""

import math
from pathlib import Path

import pytest

from bench.__main__ import main
from analysis.figures import read_markdown_table

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.needs_solution]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory, single_torch_thread):
    out = tmp_path_factory.mktemp("bench")
    assert main(["--quick", "--devices", "cpu", "--out", str(out)]) == 0
    return out


def table(bench_dir, name) -> list[dict]:
    text = (bench_dir / name).read_text()
    assert text.splitlines()[2].startswith("Machine: "), f"{name} should name the machine under its title"
    rows = read_markdown_table(text)
    assert rows, f"{name} holds no table"
    return rows


def milliseconds(cell: str) -> float:
    """'1.23 ± 0.04' -> 1.23"""
    return float(cell.split("±")[0])


def test_every_table_and_plot_is_written(bench_dir):
    for stem in ("bench_scans", "bench_models", "bench_piglatin", "bench_family"):
        for suffix in (".md", ".png"):
            path = bench_dir / f"{stem}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, f"{path.name} missing or empty"


def test_scan_table_compares_every_scan_with_its_error_against_a_float64_loop(bench_dir):
    rows = table(bench_dir, "bench_scans.md")
    assert list(rows[0]) == ["device", "B×L×E×N", "L", "scan", "forward (ms)", "forward+backward (ms)",
                             "peak memory, fwd+bwd (MB)", "relative error"]
    assert {row["scan"] for row in rows} == {"sscan", "pscan", "pair_scan", "fused_scan", "mambapy"}
    measured = [row for row in rows if row["relative error"] not in ("not installed", "GPU only")]
    assert {row["scan"] for row in measured} >= {"sscan", "pscan", "pair_scan"}
    for row in measured:
        assert milliseconds(row["forward (ms)"]) > 0 and milliseconds(row["forward+backward (ms)"]) > 0, row
        assert float(row["peak memory, fwd+bwd (MB)"]) >= 0, row
        limit = 1e-5 if row["scan"] in ("pair_scan", "sscan") else 1e-3
        assert float(row["relative error"]) < limit, row


def test_model_table_reports_size_flops_times_memory_and_gradient_norm(bench_dir):
    rows = table(bench_dir, "bench_models.md")
    assert list(rows[0]) == ["device", "size", "model", "params", "forward MFLOPs", "forward (ms)", "backward (ms)",
                             "peak memory (MB)", "grad norm"]
    assert {row["model"] for row in rows} == {"transformer", "mamba (sscan)", "mamba (pscan)", "mamba (pair_scan)",
                                              "lstm", "gru"}
    assert any(row["size"].startswith("Pig Latin") for row in rows)
    for row in rows:
        assert int(row["params"].replace(",", "")) > 0 and float(row["forward MFLOPs"].replace(",", "")) > 0, row
        assert milliseconds(row["forward (ms)"]) > 0 and milliseconds(row["backward (ms)"]) > 0, row
        assert math.isfinite(float(row["grad norm"])) and float(row["grad norm"]) > 0, row
    by_model = {}
    for row in rows:  # the same model and inputs: each scan must give the same gradient
        if row["model"].startswith("mamba"):
            by_model.setdefault(row["size"], set()).add(round(float(row["grad norm"]), 2))
    assert all(len(norms) == 1 for norms in by_model.values()), by_model


def test_piglatin_table_reports_training_throughput_and_decoding_latency(bench_dir):
    rows = table(bench_dir, "bench_piglatin.md")
    assert list(rows[0]) == ["model", "config", "params", "training (words/s)", "training step (ms)",
                             "decoding (ms/word)", "decoding by rerunning (ms/word)"]
    assert len(rows) == 8
    for row in rows:
        assert float(row["training (words/s)"].replace(",", "")) > 0, row
        assert milliseconds(row["decoding (ms/word)"]) > 0, row
        assert milliseconds(row["decoding by rerunning (ms/word)"]) > 0, row


def test_train_targets_refuses_a_missing_config_before_training_anything(capsys):
    from bench.train_targets import main as train_targets

    assert train_targets(["--configs", "exps/args_piglatin_small_gru.txt", "exps/no_such_config.txt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such config file: exps/no_such_config.txt" in err
    assert "training" not in err


def test_quick_run_writes_into_a_new_temporary_folder_unless_told_where():
    from bench.__main__ import ASSETS, parse_args

    out = Path(parse_args(["--quick"]).out)
    try:
        assert out.is_dir() and not any(out.iterdir()) and out.resolve() != ASSETS.resolve()
    finally:
        out.rmdir()
    assert parse_args(["--quick", "--out", "elsewhere"]).out == "elsewhere"
    assert Path(parse_args([]).out) == ASSETS


def test_quick_run_refuses_to_overwrite_the_measured_tables_in_assets(capsys):
    from bench.__main__ import ASSETS

    before = {path.name: path.stat().st_mtime_ns for path in ASSETS.glob("bench_*")}
    with pytest.raises(SystemExit) as stopped:
        main(["--quick", "--out", str(ASSETS)])
    assert stopped.value.code == 2
    assert "--quick measures too little to replace the tables in assets/" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in ASSETS.glob("bench_*")} == before


def test_the_family_section_without_lengths_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--sections", "family", "--model-lengths", "--out", str(tmp_path)])
    assert stopped.value.code == 2 and "--model-lengths for family" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_family_table_has_every_row_of_the_report_with_training_and_inference_times(bench_dir):
    from bench.family import ROWS

    rows = table(bench_dir, "bench_family.md")[:len(ROWS)]  # the times; the details table follows
    assert [row["model"] for row in rows] == [name for name, _ in ROWS]
    from models.family import MODELS
    assert set(MODELS) <= {config for _, config in ROWS}, "every member of the family has a row"
    for row in rows:
        assert milliseconds(row["training step, L = 32 (ms)"]) > 0 and milliseconds(row["inference, L = 32 (ms)"]) > 0
    text = (bench_dir / "bench_family.md").read_text()
    assert "LTI training step / S4D Real's" in text and "Mamba S6" in text
