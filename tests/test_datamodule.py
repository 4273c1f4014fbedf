"""PigLatinDataModule: a reproducible split, padding-free batches, per-epoch shuffling, clear errors."""

from collections import Counter
from pathlib import Path
import random

import lightning as L
import pytest
import torch

from data.datamodule import DataFormatError, PigLatinDataModule, read_pairs
from data.vocab import VOCAB

SMALL_FILE = Path(__file__).resolve().parents[1] / "data" / "pig_latin_small.txt"


def _set_up(path=SMALL_FILE, **options) -> PigLatinDataModule:
    datamodule = PigLatinDataModule(path, **options)
    datamodule.setup("fit")
    return datamodule


def _decoded(batches) -> list[list[tuple[str, str]]]:
    """Batches as lists of (english, piglatin), to compare orders and contents by eye."""
    return [[(VOCAB.decode(s), VOCAB.decode(t)) for s, t in zip(src, tgt)] for src, tgt in batches]


def _epoch(datamodule: PigLatinDataModule, epoch: int) -> list[list[tuple[str, str]]]:
    loader = datamodule.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return _decoded(loader)


def test_vocabulary_orders_dash_letters_sos_eos():
    expected = ["-", *"abcdefghijklmnopqrstuvwxyz", "<SOS>", "<EOS>"]
    assert VOCAB.tokens == expected and len(VOCAB) == 29, f"vocabulary tokens are {VOCAB.tokens}"
    assert (VOCAB.SOS, VOCAB.EOS) == (27, 28), f"SOS, EOS ids are {VOCAB.SOS}, {VOCAB.EOS}, expected 27, 28"


def test_vocabulary_decode_skips_sos_and_stops_at_eos():
    ids = [VOCAB.SOS, *VOCAB.encode("ood-gay"), VOCAB.EOS, *VOCAB.encode("junk")]
    assert VOCAB.decode(torch.tensor(ids)) == "ood-gay", f"decode({ids}) gave {VOCAB.decode(ids)!r}"


def test_vocabulary_encode_names_the_bad_character():
    with pytest.raises(ValueError, match="'A' at position 1"):
        VOCAB.encode("pAg")


@pytest.fixture(scope="module")
def small() -> PigLatinDataModule:
    return _set_up(batch_size=64)


def test_split_is_the_same_on_every_run(small):
    again = _set_up()
    assert again.train_pairs == small.train_pairs and again.val_pairs == small.val_pairs, "same seed, different split"


def test_split_depends_on_the_seed(small):
    other = _set_up(seed=1)
    assert set(other.val_pairs) != set(small.val_pairs), "seeds 0 and 1 gave the same validation set"


def test_split_does_not_depend_on_the_line_order(small, tmp_path):
    lines = SMALL_FILE.read_text(encoding="utf-8").splitlines()
    random.Random(0).shuffle(lines)
    shuffled_file = tmp_path / "shuffled.txt"
    shuffled_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _set_up(shuffled_file).val_pairs == small.val_pairs, "reordering the file's lines changed the split"


def test_split_holds_out_the_val_fraction(small):
    total = len(small.train_pairs) + len(small.val_pairs)
    assert len(small.val_pairs) == round(0.2 * total), f"{len(small.val_pairs)} of {total} pairs held out, not 20%"


def test_train_and_val_partition_the_file(small):
    train, val = set(small.train_pairs), set(small.val_pairs)
    assert not train & val, f"pairs in both train and val: {sorted(train & val)[:5]}"
    assert train | val == set(read_pairs(SMALL_FILE)), "train + val should be exactly the file's pairs"


def test_max_lengths_cover_the_whole_file(small):
    pairs = read_pairs(SMALL_FILE)
    expected = (max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs))
    got = (small.max_source_length, small.max_target_length)
    assert got == expected, f"(max_source_length, max_target_length) should be {expected}, got {got}"


@pytest.mark.parametrize("stage", ["train", "val"])
def test_batches_are_uniform_length_id_tensors_without_sos_or_eos(small, stage):
    loader = small.train_dataloader() if stage == "train" else small.val_dataloader()
    for src, tgt in loader:
        assert src.dtype == tgt.dtype == torch.long, f"batches should be int64, got {src.dtype}, {tgt.dtype}"
        shapes = f"{tuple(src.shape)}, {tuple(tgt.shape)}"
        assert src.dim() == tgt.dim() == 2, f"expected src (B, S) and tgt (B, T), got {shapes}"
        assert src.shape[0] == tgt.shape[0] <= 64, f"batch sizes {src.shape[0]}, {tgt.shape[0]} (limit 64)"
        assert int(torch.cat([src.flatten(), tgt.flatten()]).max()) < VOCAB.SOS, "batches must hold characters only"


@pytest.mark.parametrize("stage", ["train", "val"])
def test_each_pair_appears_exactly_once_per_epoch(small, stage):
    loader = small.train_dataloader() if stage == "train" else small.val_dataloader()
    seen = Counter(pair for batch in _decoded(loader) for pair in batch)
    expected = Counter(small.train_pairs if stage == "train" else small.val_pairs)
    assert seen == expected, f"{stage}: missing {list((expected - seen))[:3]}, extra {list((seen - expected))[:3]}"


def test_training_order_changes_between_epochs(small):
    first, second = _epoch(small, 0), _epoch(small, 1)
    assert first != second, "epochs 0 and 1 gave the same batches"
    first_lengths = [len(batch[0][0]) for batch in first]
    assert first_lengths != [len(batch[0][0]) for batch in second], "the order of the batches did not change"


def test_training_order_is_reproducible_for_each_epoch(small):
    assert _epoch(small, 3) == _epoch(_set_up(), 3), "epoch 3 gave different batches on a second run"


def test_validation_batches_are_the_same_every_time(small):
    assert _decoded(small.val_dataloader()) == _decoded(small.val_dataloader()), "validation batches changed"


@pytest.mark.filterwarnings("ignore")
def test_lightning_reshuffles_training_batches_every_epoch(tmp_path):
    # Lightning should call set_epoch on the batch sampler's inner sampler (see data/batching.py).
    subset = tmp_path / "subset.txt"
    subset.write_text("".join(SMALL_FILE.read_text(encoding="utf-8").splitlines(keepends=True)[::40]), encoding="utf-8")
    datamodule = _set_up(subset, batch_size=4)

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.batches: dict[int, list] = {}

        def training_step(self, batch, batch_index):
            self.batches.setdefault(self.current_epoch, []).extend(_decoded([batch]))
            return self.weight.sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )
    trainer.fit(recorder, datamodule=datamodule)
    for epoch in (0, 1):
        assert recorder.batches[epoch] == _epoch(datamodule, epoch), f"Lightning's epoch {epoch} used another order"


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("pig igpay extra", "expected 2 words"),
        ("pig", "expected 2 words"),
        ("", "empty line"),
        ("Pig igpay", "'P'"),
        ("pig1 ig1pay", "'1'"),
        ("team eamtay", "already appeared on line 1"),
    ],
)
def test_malformed_line_raises_one_line_error_with_file_and_line_number(tmp_path, bad_line, problem):
    data_file = tmp_path / "broken.txt"
    data_file.write_text(f"team eamtay\nshopping oppingshay\n{bad_line}\nyet yetay\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as error:
        _set_up(data_file)
    message = str(error.value)
    assert f"{data_file}:3:" in message, f"the error should name the file and line 3, got: {message}"
    assert problem in message, f"the error should say {problem!r}, got: {message}"
    assert "\n" not in message, f"the error should be one line, got: {message!r}"


def test_missing_file_error_names_the_path_and_the_rebuild_command(tmp_path):
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(DataFormatError) as error:
        _set_up(missing)
    message = str(error.value)
    assert str(missing) in message and "python -m data.build_datasets" in message, f"unhelpful error: {message}"
    assert "\n" not in message, f"the error should be one line, got: {message!r}"


def test_empty_file_raises_data_format_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no pairs"):
        _set_up(empty)
