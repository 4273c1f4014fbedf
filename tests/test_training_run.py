"""Real, short training runs on a tiny dataset: what a run leaves behind, and that training really trains.

Every run here is 3 epochs of a 16-wide model on 120 words (about a second each); runs are shared
between the tests that read them.
"""

import contextlib
import csv
import dataclasses
import io
import json
from pathlib import Path

import lightning as L
import pytest
import torch

import main
from training.config import OPTIONS, build_config
from data.vocab import VOCAB
from models.decoding import greedy_decode, with_eos, with_sos
from training.piglatin import Seq2SeqModule, decoding_disagreement, train

EPOCHS = 3

# Training needs the finished models: on the student template these tests skip, naming the first stub.
pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.needs_solution]


def tiny_config(data: Path, out_dir: Path, **options):
    """A 3-epoch run of a 16-wide model on the tiny dataset, written under out_dir."""
    settings = {
        "data": data, "val_fraction": 0.25, "hidden_size": 16, "num_heads": 2, "epochs": EPOCHS,
        "out_dir": out_dir, "run_name": "tiny", "accelerator": "cpu", "num_samples": 5, **options,
    }
    return build_config(None, [f"--{name}={value}" for name, value in settings.items()])


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def read_log(run_dir: Path) -> list[dict]:
    """The rows of logs/metrics.csv, as Lightning's CSV logger wrote them."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def logged_epochs(rows: list[dict], column: str) -> list[int]:
    """The epochs for which `column` was logged, in file order (an epoch logged twice appears twice)."""
    return [int(row["epoch"]) for row in rows if row.get(column) and row["epoch"]]


def per_epoch(rows: list[dict], column: str) -> dict[int, float]:
    return {int(row["epoch"]): float(row[column]) for row in rows if row.get(column) and row["epoch"]}


def initial_model(config: dict, seed: int) -> torch.nn.Module:
    """The model as `train` initialises it for `seed`, before any step."""
    L.seed_everything(seed, verbose=False)
    return Seq2SeqModule({**config, "seed": seed}).model


# --- shared runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, single_torch_thread):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def transformer_run(runs_dir, tiny_data_file) -> Path:
    return train(tiny_config(tiny_data_file, runs_dir), quiet=True)


@pytest.fixture(scope="module")
def mamba_run(runs_dir, tiny_data_file) -> Path:
    return train(tiny_config(tiny_data_file, runs_dir, model="mamba", run_name="tiny_mamba"), quiet=True)


@pytest.fixture(scope="module")
def same_seed_rerun(runs_dir, tiny_data_file, transformer_run) -> Path:
    return train(tiny_config(tiny_data_file, runs_dir, run_name="tiny_again"), quiet=True)


@pytest.fixture(scope="module")
def same_name_other_seed(runs_dir, tiny_data_file, transformer_run):
    """A seed-1 run under the same run_name as `transformer_run`, and that run's files just before it."""
    files = ["config.json", "metrics.json", "samples.txt", "checkpoints/best.ckpt", "logs/metrics.csv"]
    before = {name: (transformer_run / name).read_bytes() for name in files}
    second = train(tiny_config(tiny_data_file, runs_dir, seed=1), quiet=True)
    return second, before


@pytest.fixture(scope="module")
def resumed_run(runs_dir, tiny_data_file):
    """Two epochs, then `python main.py --resume <run> --epochs 3`: (run directory, exit status)."""
    run_dir = train(tiny_config(tiny_data_file, runs_dir, epochs=2, run_name="resumable"), quiet=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main.main(["--resume", str(run_dir), "--epochs", str(EPOCHS)])
    return run_dir, status


# --- what a run leaves behind ----------------------------------------------------------------------------


def test_run_directory_holds_config_checkpoints_logs_samples_and_metrics(transformer_run):
    expected = ["config.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv",
                "samples.txt", "metrics.json"]
    missing = [name for name in expected if not (transformer_run / name).is_file()]
    if not list((transformer_run / "tensorboard").glob("events.out.tfevents.*")):
        missing.append("tensorboard/events.out.tfevents.*")
    assert missing == [], f"the run directory {transformer_run} lacks {missing}"


def test_metrics_json_reports_scores_size_epochs_and_time(transformer_run):
    metrics = read_metrics(transformer_run)
    expected_types = {"val_loss": float, "val_word_acc": float, "params": int, "epochs": int, "train_seconds": float}
    wrong = {name: metrics.get(name) for name, kind in expected_types.items() if type(metrics.get(name)) is not kind}
    assert wrong == {}, f"metrics.json should hold {expected_types}; these are missing or mistyped: {wrong}"
    assert metrics["epochs"] == EPOCHS, f"metrics.json should say {EPOCHS} epochs, says {metrics['epochs']}"
    assert 0 <= metrics["val_word_acc"] <= 1, f"val_word_acc is a share, got {metrics['val_word_acc']}"
    assert metrics["params"] > 0 and metrics["train_seconds"] > 0, f"params and train_seconds should be > 0: {metrics}"


def test_config_json_records_every_resolved_option(transformer_run, tiny_data_file):
    saved = json.loads((transformer_run / "config.json").read_text())
    expected = dataclasses.asdict(tiny_config(tiny_data_file, transformer_run.parent))
    assert sorted(saved) == sorted(OPTIONS), (
        f"config.json should hold every option, no more, no fewer; these differ: {set(saved) ^ set(OPTIONS)}"
    )
    different = {name: (saved[name], expected[name]) for name in expected if saved[name] != expected[name]}
    assert different == {}, f"config.json should record the options the run used; (saved, used): {different}"


def test_samples_file_lists_num_samples_validation_words(transformer_run):
    lines = (transformer_run / "samples.txt").read_text().splitlines()
    assert len(lines) == 1 + 5, f"samples.txt should hold a header and num_samples=5 words, got {len(lines)} lines"


def test_metrics_csv_has_one_validation_row_per_trained_epoch(transformer_run):
    epochs = logged_epochs(read_log(transformer_run), "val_loss")
    assert epochs == list(range(EPOCHS)), (
        f"logs/metrics.csv should hold val_loss for epochs {list(range(EPOCHS))}, once each (it is what "
        f"students plot); it holds epochs {epochs}"
    )


def test_last_checkpoint_holds_the_final_epoch(transformer_run):
    checkpoint = torch.load(transformer_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == EPOCHS - 1, (
        f"last.ckpt is what --resume continues from, so it should hold the final epoch {EPOCHS - 1}; "
        f"it holds epoch {checkpoint['epoch']} (global step {checkpoint['global_step']})"
    )


# --- training trains -------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["transformer_run", "mamba_run"])
def test_training_loss_falls(run, request):
    losses = per_epoch(read_log(request.getfixturevalue(run)), "train_loss")
    first, last = losses.get(0), losses.get(EPOCHS - 1)
    assert first is not None and last is not None, f"metrics.csv should log train_loss every epoch, got {losses}"
    assert last < first, f"train_loss should fall from epoch 0 to epoch {EPOCHS - 1}; per epoch: {losses}"


def test_learning_rate_scheduler_changes_the_rate_across_epochs(transformer_run):
    rows = read_log(transformer_run)
    column = next((name for name in rows[0] if name.startswith("lr-")), None)
    assert column is not None, f"metrics.csv should log the learning rate (an 'lr-*' column); columns: {list(rows[0])}"
    rates = [float(row[column]) for row in rows if row[column]]
    assert len(rates) >= EPOCHS, f"the learning rate should be logged every epoch, got {rates}"
    assert len(set(rates)) > 1, f"warm-up and cosine decay should change the learning rate; it stayed at {rates}"


@pytest.mark.parametrize("run", ["transformer_run", "mamba_run"])
def test_a_fresh_model_with_the_runs_seed_is_where_training_started(run, request):
    run_dir = request.getfixturevalue(run)
    config = json.loads((run_dir / "config.json").read_text())
    trained = Seq2SeqModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", map_location="cpu").model
    own = dict(initial_model(config, config["seed"]).named_parameters())
    other = dict(initial_model(config, config["seed"] + 1).named_parameters())
    farther = [name for name, value in trained.named_parameters()
               if not torch.equal(own[name], other[name])  # randomly initialised
               and (value - own[name]).norm() >= (value - other[name]).norm()]
    assert farther == [], (
        f"after a short run, these weights should still be nearest their own seed's initialisation: {farther}"
    )


@pytest.mark.parametrize("run", ["transformer_run", "mamba_run"])
def test_every_parameter_is_trained(run, request):
    run_dir = request.getfixturevalue(run)
    config = json.loads((run_dir / "config.json").read_text())
    initial = dict(initial_model(config, config["seed"]).named_parameters())
    trained = Seq2SeqModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", map_location="cpu").model
    untouched = [name for name, value in trained.named_parameters() if torch.equal(value, initial[name])]
    assert untouched == [], (
        f"every parameter should move in training, embeddings and output layer too; unchanged: {untouched}"
    )


def test_same_seed_gives_identical_metrics(transformer_run, same_seed_rerun):
    first, second = read_metrics(transformer_run), read_metrics(same_seed_rerun)
    for name in ("val_loss", "val_word_acc"):
        assert first[name] == second[name], (
            f"two runs with seed 0 should agree on {name}: {first[name]} vs {second[name]}"
        )
    curves = [per_epoch(read_log(run), "train_loss") for run in (transformer_run, same_seed_rerun)]
    assert curves[0] == curves[1], f"two runs with seed 0 should have the same train_loss curve: {curves}"


def test_different_seed_gives_different_metrics(transformer_run, same_name_other_seed):
    seed_0, seed_1 = read_metrics(transformer_run), read_metrics(same_name_other_seed[0])
    assert seed_0["val_loss"] != seed_1["val_loss"], (
        f"seeds 0 and 1 should initialise, split and shuffle differently, yet both give val_loss {seed_0['val_loss']}"
    )


def test_second_run_with_the_same_name_gets_a_new_directory(transformer_run, same_name_other_seed):
    second, _ = same_name_other_seed
    expected = transformer_run.parent / f"{transformer_run.name}-2"
    assert second == expected, f"a second run named {transformer_run.name!r} should go to {expected}, went to {second}"


def test_second_run_with_the_same_name_leaves_the_first_untouched(transformer_run, same_name_other_seed):
    _, before = same_name_other_seed
    changed = [name for name, content in before.items() if (transformer_run / name).read_bytes() != content]
    assert changed == [], f"a second run with the same name must not touch the first run's files; changed: {changed}"


# --- resuming ---------------------------------------------------------------------------------------------


def test_resume_continues_to_the_requested_number_of_epochs(resumed_run):
    run_dir, status = resumed_run
    assert status == 0, f"main.py --resume should exit 0, got {status}"
    epochs = read_metrics(run_dir)["epochs"]
    assert epochs == EPOCHS, (
        f"after resuming a 2-epoch run with --epochs {EPOCHS}, metrics.json should say {EPOCHS} epochs, says {epochs}"
    )


def test_resume_trains_the_missing_epoch(resumed_run):
    run_dir, _ = resumed_run
    epochs = logged_epochs(read_log(run_dir), "train_loss")
    assert EPOCHS - 1 in epochs, (
        f"the resumed run should train epoch {EPOCHS - 1}; metrics.csv has train_loss for epochs {epochs}"
    )


def test_resumed_log_holds_every_epoch_once(resumed_run):
    run_dir, _ = resumed_run
    epochs = logged_epochs(read_log(run_dir), "train_loss")
    assert epochs == list(range(EPOCHS)), (
        f"after a 2-epoch run resumed to {EPOCHS}, metrics.csv should hold train_loss for epochs "
        f"{list(range(EPOCHS))} once each (nothing lost, nothing trained twice); it holds {epochs}"
    )


# --- translating with the result -------------------------------------------------------------------------


def test_resuming_a_finished_run_is_refused_and_keeps_its_history(transformer_run, capsys):
    history = (transformer_run / "logs" / "metrics.csv").read_bytes()
    status = main.main(["--resume", str(transformer_run)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and f"has trained {EPOCHS} epochs" in err and "--epochs" in err, err
    assert (transformer_run / "logs" / "metrics.csv").read_bytes() == history


class StopAt(L.Callback):
    """Ctrl-C at the start of epoch `epoch`'s first training step."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("epochs_done", [0, 1])
def test_a_run_stopped_by_ctrl_c_leaves_a_run_to_resume_or_nothing(runs_dir, tiny_data_file, epochs_done, capsys):
    """Stopped in its first epoch, a run leaves no folder the notebooks would take for a run; later, its
    folder keeps the finished epochs and says how to go on."""
    config = tiny_config(tiny_data_file, runs_dir, run_name=f"stopped_after_{epochs_done}")
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(config, callbacks=(StopAt(epochs_done),))
    err = capsys.readouterr().err
    run_dir = runs_dir / config.run_name
    if epochs_done == 0:
        assert not run_dir.exists() and f"{run_dir} removed" in err
    else:
        assert (run_dir / "checkpoints" / "last.ckpt").is_file() and f"--resume {run_dir}" in err


def test_runs_started_together_under_one_name_get_a_folder_each(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from training.run import claim_run_dir

    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: claim_run_dir(str(tmp_path), "race"), range(16)))
    assert len(set(claimed)) == 16 and {path.name for path in claimed} == {"race", *(f"race-{n}" for n in range(2, 17))}


def test_time_limit_ends_training_early_and_the_best_checkpoint_is_still_scored(runs_dir, tiny_data_file):
    run_dir = train(tiny_config(tiny_data_file, runs_dir, epochs=500, max_minutes=0.0005, run_name="limited"),
                    quiet=True)
    metrics = read_metrics(run_dir)
    assert metrics["stopped_by_time"] is True and metrics["epochs"] < 500
    assert 0 <= metrics["val_word_acc"] <= 1


def test_a_run_the_time_limit_did_not_stop_says_so(transformer_run):
    assert read_metrics(transformer_run)["stopped_by_time"] is False


def test_translate_prints_one_line_with_one_translation_per_word(transformer_run, capsys):
    words = ["the", "quick", "brown", "fox"]
    status = main.main(["translate", "--checkpoint", str(transformer_run), " ".join(words)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert status == 0, f"translate should exit 0, got {status}"
    assert len(lines) == 1, f"translate should print one line on stdout, got {len(lines)}: {out!r}"
    assert len(lines[0].split()) == len(words), f"{len(words)} words in, {len(words)} out expected; got {lines[0]!r}"


# --- the per-epoch word accuracy is greedy decoding's ----------------------------------------------------


def right_prefix_lengths(module: Seq2SeqModule, pairs: list) -> tuple[list, list]:
    """For each word, how many leading tokens of target + EOS are right: (by greedy decoding, by the
    teacher-forced pass that the per-epoch accuracy reads)."""
    greedy, forced = [], []
    module.model.eval()
    with torch.no_grad():
        for english, piglatin in pairs:
            source = torch.tensor([VOCAB.encode(english)])
            expected = with_eos(torch.tensor([VOCAB.encode(piglatin)]))[0]
            decoded = greedy_decode(module.model, source, len(expected))[0]
            forced_argmax = module.model(source, with_sos(expected[None, :-1]))[0].argmax(dim=-1)
            for guesses, lengths in ((decoded, greedy), (forced_argmax, forced)):
                wrong = (guesses[: len(expected)] != expected[: len(guesses)]).nonzero()
                lengths.append(int(wrong[0]) if len(wrong) else min(len(guesses), len(expected)))
    return greedy, forced


@pytest.mark.parametrize("model", ["transformer", "mamba"])
def test_teacher_forced_argmax_is_right_exactly_as_far_as_greedy_decoding(model, runs_dir, tiny_data_file):
    run_dir = train(tiny_config(tiny_data_file, runs_dir, model=model, run_name=f"longer_{model}", epochs=15,
                                lr=1e-2), quiet=True)
    module = Seq2SeqModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", map_location="cpu")
    pairs = [tuple(line.split()) for line in tiny_data_file.read_text().splitlines()]
    greedy, forced = right_prefix_lengths(module, pairs)
    assert max(greedy) >= 2, "the test needs a model that gets some characters right"
    assert greedy == forced


def test_a_decoder_that_sees_the_future_is_reported(runs_dir, tiny_data_file, monkeypatch, capsys):
    monkeypatch.setattr("models.transformer.causal_mask",
                        lambda query_length, key_length, device=None: torch.ones(query_length, key_length, dtype=torch.bool, device=device))
    train(tiny_config(tiny_data_file, runs_dir, run_name="peeking", epochs=20, lr=1e-2), quiet=True)
    assert "does the decoder see future tokens" in capsys.readouterr().err


def peeking(forward):
    """A MambaBlock.forward that reads, at every position, the input of the position after it."""
    def forward_one_ahead(self, x):
        return forward(self, torch.cat([x[:, 1:], x[:, -1:]], dim=1))
    return forward_one_ahead


def test_a_mamba_forward_that_differs_from_step_by_step_decoding_is_reported(runs_dir, tiny_data_file, monkeypatch,
                                                                            capsys):
    from models.mamba import MambaBlock

    monkeypatch.setattr(MambaBlock, "forward", peeking(MambaBlock.forward))
    train(tiny_config(tiny_data_file, runs_dir, model="mamba", run_name="peeking_mamba", epochs=20, lr=1e-2),
          quiet=True)
    err = capsys.readouterr().err
    assert "does the model see future tokens" in err and "Q2.3 Mamba block" in err, err


def test_agreeing_decoding_and_teacher_forcing_give_no_warning():
    right = torch.tensor([True, False, True, True] * 100)
    flipped_one = right.clone()
    flipped_one[0] = False  # a near-tie: rounding may flip a word
    assert decoding_disagreement("mamba", right, right) is None
    assert decoding_disagreement("mamba", right, flipped_one) is None


def test_decoding_and_teacher_forcing_that_disagree_on_many_words_give_a_warning():
    decoded = torch.tensor([True, False] * 200)
    forced = torch.ones(400, dtype=torch.bool)
    warning = decoding_disagreement("transformer", decoded, forced)
    assert warning is not None and "disagree on 200 of 400 words" in warning and "Q1.1" in warning, warning


def test_translating_a_word_longer_than_the_position_table_is_refused(transformer_run, capsys):
    status = main.main(["translate", "--checkpoint", str(transformer_run), "a" * 65])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "at most 64 characters" in err, err


# --- the averaged weights (--ema_decay) and the memory handed back ---------------------------------------


@pytest.fixture(scope="module")
def averaged_run(runs_dir, tiny_data_file):
    return train(tiny_config(tiny_data_file, runs_dir, epochs=2, run_name="averaged", ema_decay=0.9, lr=1e-2),
                 quiet=True)


def test_a_checkpoint_holds_the_averaged_weights_and_loads_them(averaged_run):
    checkpoint = torch.load(averaged_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    name = "model.encoder.embedding.weight"
    assert not torch.equal(averaged[name], current[name]), "the average should lag behind the trained weights"
    module = Seq2SeqModule.load_from_checkpoint(averaged_run / "checkpoints" / "last.ckpt", map_location="cpu")
    assert torch.equal(module.model.encoder.embedding.weight, averaged[name]), "a loaded run uses the average"


def test_a_run_with_averaged_weights_resumes_with_the_threads_it_is_given(averaged_run, capsys):
    status = main.main(["--resume", str(averaged_run), "--epochs", "3", "--threads", "2"])
    assert status == 0, capsys.readouterr().err
    metrics = read_metrics(averaged_run)
    assert metrics["epochs"] == 3 and metrics["threads"] == 2


def test_a_time_limit_given_on_resume_stops_the_resumed_run(runs_dir, tiny_data_file, capsys):
    run_dir = train(tiny_config(tiny_data_file, runs_dir, epochs=1, run_name="limited_on_resume"), quiet=True)
    assert read_metrics(run_dir)["stopped_by_time"] is False
    status = main.main(["--resume", str(run_dir), "--epochs", "500", "--max_minutes", "0.0005"])
    assert status == 0, capsys.readouterr().err
    metrics = read_metrics(run_dir)
    assert metrics["stopped_by_time"] is True and 1 <= metrics["epochs"] < 500


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a GPU where there is none, and this machine has one")
def test_asking_for_a_gpu_on_a_machine_without_one_is_refused_before_anything_is_written(tmp_path, tiny_data_file,
                                                                                         capsys):
    status = main.main([f"--data={tiny_data_file}", "--accelerator", "gpu", "--out_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "finds no GPU" in err
    assert not any(tmp_path.iterdir())


def test_freed_memory_is_handed_back_after_every_epoch(runs_dir, tiny_data_file, monkeypatch):
    from training import run

    trims = []
    monkeypatch.setattr(run.ReturnFreedMemory, "__init__",
                        lambda self: (L.Callback.__init__(self), setattr(self, "trim", trims.append))[0])
    train(tiny_config(tiny_data_file, runs_dir, epochs=2, run_name="trimmed"), quiet=True)
    assert trims == [0, 0], f"malloc_trim(0) once per epoch expected, got calls {trims}"
