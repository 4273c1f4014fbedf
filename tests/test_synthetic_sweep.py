"""The synthetic tasks' sweep (bench/synthetic.py) and its table (analysis/synthetic.py): the order runs are
taken in, learning rates chosen on validation only, and the committed results docs/selectivity.md quotes."""

import json
from pathlib import Path

import pytest

from analysis.synthetic import DEFAULT_RESULTS, choose, drawn_curves, merge, models_in_order, table
from analysis.synthetic import main as table_main
from bench.synthetic import ROWS, Row, jobs_for, prepare_runs_dir, read_curves, with_time_limit
from bench.synthetic import main as sweep_main
from training.config import build_config

REPO = Path(__file__).resolve().parents[1]


def fake_run(row, model, lr, seed, val_acc, test_acc, val_loss=1.0):
    metrics = {"val_acc": val_acc, "val_seq_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc,
               "test_seq_acc": test_acc, "params": 100, "best_epoch": 0, "device": "cpu"}
    return {"name": f"{row}-{model}-lr{lr:g}-seed{seed}", "row": row, "model": model, "lr": lr, "seed": seed,
            "epochs_planned": 1, "metrics": metrics, "curves": {"val_acc": [val_acc]}}


def test_sweep_takes_every_cells_first_seed_before_any_second_seed():
    jobs = jobs_for({"recall": ROWS["recall"]})
    seeds = [job["seed"] for job in jobs]
    assert seeds == sorted(seeds)
    assert len(jobs) == len(ROWS["recall"].models) * len(ROWS["recall"].lrs) * len(ROWS["recall"].seeds)


def test_sweep_runs_variants_after_the_tuned_cells():
    jobs = jobs_for({"copying": ROWS["copying"]})
    variants = [index for index, job in enumerate(jobs) if job["model"].startswith("hybrid_")]
    assert min(variants) > max(index for index, job in enumerate(jobs) if not job["model"].startswith("hybrid_"))


def test_every_sweep_job_names_a_shipped_config_that_parses():
    for job in jobs_for(ROWS):
        config = job["argv"][job["argv"].index("--config") + 1]
        assert (REPO / config).is_file(), config
        build_config(REPO / config)


def test_seed_filter_keeps_only_those_seeds():
    jobs = jobs_for({"copying": Row("exps/args_selective_copying_{model}.txt", "cpu", "copying")}, seeds=(2,))
    assert {job["seed"] for job in jobs} == {2} and len(jobs) == 4 * 3


def test_learning_rate_is_chosen_on_validation_never_on_test():
    runs = [fake_run("recall", "mamba", 1e-3, seed, val_acc=0.9, test_acc=1.0) for seed in (0, 1)]
    runs += [fake_run("recall", "mamba", 2e-3, seed, val_acc=0.95, test_acc=0.5) for seed in (0, 1)]
    chosen = choose({"runs": runs})
    assert chosen[("recall", "mamba")]["lr"] == 2e-3


def test_validation_tie_is_broken_by_the_lower_validation_loss():
    runs = [fake_run("copying", "hybrid", 1e-3, 0, 1.0, 1.0, val_loss=0.2),
            fake_run("copying", "hybrid", 2e-3, 0, 1.0, 0.9, val_loss=0.1)]
    assert choose({"runs": runs})[("copying", "hybrid")]["lr"] == 2e-3


def test_table_reports_mean_and_range_over_seeds():
    runs = [fake_run("recall", "lstm", 1e-3, seed, 0.5, test) for seed, test in enumerate((0.2, 0.4, 0.9))]
    line = next(line for line in table({"runs": runs}, choose({"runs": runs})).splitlines() if "lstm" in line)
    assert "0.500 (0.200-0.900)" in line and "| 3 |" in line


def time_limited(run, epochs_done, curve):
    run["metrics"].update(stopped_by_time=True, epochs=epochs_done)
    run["curves"]["val_acc"] = curve
    run["epochs_planned"] = 50
    return run


def test_table_says_how_many_epochs_a_time_limit_left_of_the_planned():
    runs = [time_limited(fake_run("copying_mad", "mamba", 2e-3, seed, 0.9, 0.9), done, [0.5] * done)
            for seed, done in enumerate((10, 11))]
    line = next(line for line in table({"runs": runs}, choose({"runs": runs})).splitlines() if "mamba" in line)
    assert "10/11 of 50" in line


def test_time_limited_curves_are_drawn_only_as_far_as_every_seed_got():
    runs = [time_limited(fake_run("copying_mad", "mamba", 2e-3, 0, 0.9, 0.9), 3, [0.1, 0.2, 0.3]),
            time_limited(fake_run("copying_mad", "mamba", 2e-3, 1, 0.9, 0.9), 2, [0.1, 0.4])]
    assert drawn_curves(runs) == [[0.1, 0.2], [0.1, 0.4]]


def test_curves_of_runs_that_stopped_once_perfect_are_held_at_their_last_value():
    runs = [fake_run("recall", "mamba", 2e-3, 0, 1.0, 1.0), fake_run("recall", "mamba", 2e-3, 1, 1.0, 1.0)]
    runs[0]["curves"]["val_acc"], runs[1]["curves"]["val_acc"] = [0.5, 1.0], [0.2, 0.6, 1.0]
    assert drawn_curves(runs) == [[0.5, 1.0, 1.0], [0.2, 0.6, 1.0]]


def test_time_limit_reaches_every_runs_command_line_and_only_when_given():
    jobs = jobs_for({"recall_mad": ROWS["recall_mad"]})
    limited = with_time_limit(jobs, 8.5)
    assert all(spec["argv"][-2:] == ["--max_minutes", "8.5"] for spec in limited)
    assert with_time_limit(jobs, 0) == jobs and all("--max_minutes" not in spec["argv"] for spec in jobs)
    build_config(REPO / limited[0]["argv"][1], limited[0]["argv"][2:])


def test_merge_counts_a_repeated_run_once_and_drops_it_from_the_unfinished():
    machine = {"cpu": "x", "cores": 1, "gpu": None, "torch": "t"}
    first = {"runs": [fake_run("recall", "lstm", 1e-3, 0, 0.5, 0.5)], "unfinished": ["recall-lstm-lr0.001-seed1"],
             "machine": machine, "workers": ["cpu"], "deadline_seconds": 1}
    second = {"runs": [fake_run("recall", "lstm", 1e-3, 0, 0.1, 0.1), fake_run("recall", "lstm", 1e-3, 1, 0.5, 0.5)],
              "unfinished": [], "machine": machine, "workers": ["gpu"], "deadline_seconds": 1}
    merged = merge([first, second])
    assert len(merged["runs"]) == 2 and merged["unfinished"] == []
    assert merged["runs"][0]["metrics"]["val_acc"] == 0.5  # the first file's copy


def test_curves_are_read_per_epoch_from_the_run_log(tmp_path):
    log = tmp_path / "logs" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("epoch,lr-AdamW,step,train_loss,val_acc,val_loss,val_seq_acc\n,0.1,0,,,,\n0,,9,,0.5,1.0,0.0\n"
                   "0,,9,2.0,,,\n1,,19,,0.75,0.5,0.5\n1,,19,1.0,,,\n")
    curves = read_curves(tmp_path)
    assert curves == {"train_loss": [2.0, 1.0], "val_loss": [1.0, 0.5], "val_acc": [0.5, 0.75],
                      "val_seq_acc": [0.0, 0.5]}


@pytest.fixture(scope="module")
def committed():
    return merge([json.loads((REPO / path).read_text()) for path in DEFAULT_RESULTS])


def test_committed_results_table_matches_the_one_in_assets(committed):
    """assets/synthetic_table.md (quoted in docs/selectivity.md) is what the committed results give."""
    expected = table(committed, choose(committed))
    assert expected in (REPO / "assets" / "synthetic_table.md").read_text()


def test_the_synthetic_tasks_report_quotes_the_committed_table(committed):
    report = (REPO / "docs" / "selectivity.md").read_text()
    for line in table(committed, choose(committed)).splitlines()[2:]:
        assert line in report, f"docs/selectivity.md lacks the table line: {line}"


def test_a_runs_directory_refuses_a_job_of_the_same_name_with_other_settings(tmp_path):
    jobs = jobs_for({"recall_mad": ROWS["recall_mad"]}, seeds=(0,))
    prepare_runs_dir(tmp_path, jobs)
    with pytest.raises(ValueError, match="with other settings"):
        prepare_runs_dir(tmp_path, with_time_limit(jobs, 5))
    prepare_runs_dir(tmp_path, jobs)  # the same jobs again: fine


def test_a_claimed_job_without_metrics_is_run_again_and_a_finished_one_is_kept(tmp_path):
    jobs = jobs_for({"recall_mad": ROWS["recall_mad"]}, seeds=(0,))
    stopped, finished = jobs[0]["name"], jobs[1]["name"]
    for name in (stopped, finished):
        (tmp_path / "claims" / name).mkdir(parents=True)
        (tmp_path / name / "logs").mkdir(parents=True)
    (tmp_path / finished / "metrics.json").write_text("{}")
    workers_file = prepare_runs_dir(tmp_path, jobs)
    assert not (tmp_path / "claims" / stopped).exists() and not (tmp_path / stopped).exists()
    assert (tmp_path / "claims" / finished).is_dir() and (tmp_path / finished / "metrics.json").is_file()
    assert json.loads(workers_file.read_text()) == jobs


def test_a_sweep_with_no_runs_is_refused_in_one_line(tmp_path, capsys):
    assert sweep_main(["--rows", "recall_mad", "--seeds", "7", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "runs").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal of GPU workers without a GPU, and this machine has one")
def test_gpu_workers_without_a_gpu_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep_main(["--rows", "recall", "--gpu-workers", "1", "--cpu-workers", "0", "--runs-dir", str(tmp_path)])
    assert stopped.value.code == 2 and "need a GPU" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["not json", '{"a": 1}', "[1, 2]"])
def test_a_file_that_is_not_a_sweeps_results_is_refused_in_one_line_and_nothing_is_written(tmp_path, text, capsys):
    (tmp_path / "results.json").write_text(text)
    assert table_main([str(tmp_path / "results.json"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_results_without_a_finished_run_are_refused_before_anything_is_written(tmp_path, capsys):
    empty = {**json.loads((REPO / DEFAULT_RESULTS[0]).read_text()), "runs": []}
    (tmp_path / "results.json").write_text(json.dumps(empty))
    assert table_main([str(tmp_path / "results.json"), "--out", str(tmp_path / "out")]) == 2
    assert "no finished run" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_row_or_model_the_table_does_not_know_still_gets_its_lines():
    runs = [fake_run("copying_long", "retnet", 1e-3, 0, 0.5, 0.5), fake_run("copying", "hybrid_null", 1e-3, 0, 1, 1)]
    lines = table({"runs": runs}, choose({"runs": runs})).splitlines()[2:]
    assert [line.split(" | ")[:2] for line in lines] == [["| copying", "hybrid_null"], ["| copying_long", "retnet"]]
    assert models_in_order({})[:3] == ["transformer", "mamba", "hybrid"]
