"""Reads a Pig-Latin data file, checks it, splits it and serves batches to Lightning.

A data file has one pair per line, "english piglatin", for example "shopping oppingshay".
Batches are tuples (src (B, S), tgt (B, T)) of int64 character ids (see data/vocab.py) with no
SOS, EOS or padding: the models add SOS/EOS, and batching by length makes padding unnecessary.
"""

from pathlib import Path
import random
import re

import lightning as L
import torch
from torch.utils.data import DataLoader, SequentialSampler

from data.batching import EncodedPairs, EpochShuffleSampler, LengthBucketBatchSampler, stack_pairs
from data.errors import DataFormatError, no_such_data_file
from data.vocab import VOCAB

_WORD = re.compile(r"[a-z-]+")


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The (english, piglatin) pairs of a data file in file order, after checking every line.

    Raises DataFormatError for a missing, empty or non-UTF-8 file, or a line that is not two words
    of a-z and '-' separated by whitespace, or that repeats an earlier English word.
    """
    path = Path(path)
    if not path.is_file():
        raise no_such_data_file(path)
    pairs = []
    first_line_of: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                problem = _line_problem(line, first_line_of)
                if problem:
                    raise DataFormatError(f"{path}:{line_number}: {problem}")
                source, target = line.split()
                first_line_of[source] = line_number
                pairs.append((source, target))
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({error.reason})") from None
    if not pairs:
        raise DataFormatError(f"{path}: the file has no pairs")
    return pairs


def _line_problem(line: str, first_line_of: dict[str, int]) -> str | None:
    """What is wrong with one line of a data file, in words, or None if it is a valid pair."""
    fields = line.split()
    if not fields:
        return "empty line (each line must be 'english piglatin')"
    if len(fields) != 2:
        return f"expected 2 words 'english piglatin', found {len(fields)}: {line.strip()[:60]!r}"
    for word in fields:
        if not _WORD.fullmatch(word):
            bad = next(character for character in word if not _WORD.fullmatch(character))
            return f"{word!r} has {bad!r}; words may use only lowercase letters a-z and '-'"
    if fields[0] in first_line_of:
        return f"{fields[0]!r} already appeared on line {first_line_of[fields[0]]}; each English word must appear once"
    return None


def split_pairs(
    pairs: list[tuple[str, str]], val_fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, val): a seeded shuffle of the sorted pairs, the first round(n * val_fraction) for val.

    Sorting first makes the split depend only on the file's content and the seed, not on the
    line order or PYTHONHASHSEED. Both lists come back sorted.
    """
    shuffled = sorted(pairs)
    random.Random(f"split:{seed}").shuffle(shuffled)
    val_size = round(len(shuffled) * val_fraction)
    return sorted(shuffled[val_size:]), sorted(shuffled[:val_size])


def encode_pairs(pairs: list[tuple[str, str]]) -> EncodedPairs:
    """Every pair as (source (S,), target (T,)) int64 id tensors, encoded once."""
    sources = [torch.tensor(VOCAB.encode(source), dtype=torch.long) for source, _ in pairs]
    targets = [torch.tensor(VOCAB.encode(target), dtype=torch.long) for _, target in pairs]
    return EncodedPairs(sources, targets)


class PigLatinDataModule(L.LightningDataModule):
    """English -> Pig Latin pairs from one data file, split into train and val by a seeded shuffle.

    After `setup()`: `train_pairs` / `val_pairs` (lists of (english, piglatin)) and
    `max_source_length` / `max_target_length` over the whole file, for the models' position tables.
    Batches are (src (B, S), tgt (B, T)) int64 character ids, all words in a batch of one length.
    Training batches are reshuffled every epoch from (seed, epoch); validation batches never change.
    """

    def __init__(
        self,
        data_path: str | Path,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.data_path = Path(data_path)
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        # 0 is fastest here: the data are a few thousand tiny tensors already in memory.
        self.num_workers = num_workers
        self.vocab = VOCAB
        self.train_pairs: list[tuple[str, str]] = []
        self.val_pairs: list[tuple[str, str]] = []
        self.max_source_length = 0
        self.max_target_length = 0
        self._train_set: EncodedPairs | None = None
        self._val_set: EncodedPairs | None = None

    def setup(self, stage: str | None = None) -> None:
        # Lightning calls setup once per stage (fit, validate, ...); the file is read only once.
        if self._train_set is not None:
            return
        pairs = read_pairs(self.data_path)
        self.max_source_length = max(len(source) for source, _ in pairs)
        self.max_target_length = max(len(target) for _, target in pairs)
        self.train_pairs, self.val_pairs = split_pairs(pairs, self.val_fraction, self.seed)
        self._train_set = encode_pairs(self.train_pairs)
        self._val_set = encode_pairs(self.val_pairs)

    def train_dataloader(self) -> DataLoader:
        train_set = self._require_setup(self._train_set)
        sampler = EpochShuffleSampler(len(train_set), self.seed)
        return self._loader(train_set, LengthBucketBatchSampler(sampler, train_set.lengths, self.batch_size))

    def val_dataloader(self) -> DataLoader:
        val_set = self._require_setup(self._val_set)
        sampler = SequentialSampler(range(len(val_set)))
        return self._loader(val_set, LengthBucketBatchSampler(sampler, val_set.lengths, self.batch_size))

    def _loader(self, dataset: EncodedPairs, batch_sampler: LengthBucketBatchSampler) -> DataLoader:
        return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=stack_pairs, num_workers=self.num_workers)

    def _require_setup(self, dataset: EncodedPairs | None) -> EncodedPairs:
        if dataset is None:
            raise RuntimeError("PigLatinDataModule: call setup() before asking for a dataloader")
        return dataset
