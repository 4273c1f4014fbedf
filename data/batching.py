"""Batches without padding: every batch holds words of one (source length, target length).

A word pair is two id tensors, source (S,) and target (T,). Pairs that share (S, T) stack into
(B, S) and (B, T) tensors directly, so no pad token, mask or truncation is ever needed.

Training order is reshuffled every epoch and is still reproducible: it is a pure function of
(seed, epoch). Lightning's fit loop tells the loader the epoch by calling `set_epoch` on
`dataloader.sampler` and on `dataloader.batch_sampler.sampler`, but not on the batch sampler itself
(see `_set_sampler_epoch` in lightning/fabric/utilities/data.py). So the batch sampler draws its
order from an inner sampler that holds the epoch, the same arrangement as torch's
`BatchSampler(DistributedSampler(...))`.
"""

from collections.abc import Iterator
import random

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class EncodedPairs(Dataset):
    """Word pairs encoded once, up front: item i is (source (S,), target (T,)), int64 character ids."""

    def __init__(self, sources: list[Tensor], targets: list[Tensor]) -> None:
        self.sources = sources
        self.targets = targets
        self.lengths = [(len(source), len(target)) for source, target in zip(sources, targets)]

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.sources[index], self.targets[index]


def stack_pairs(pairs: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Collates B pairs of equal lengths into (src (B, S), tgt (B, T))."""
    sources, targets = zip(*pairs)
    return torch.stack(sources), torch.stack(targets)


class EpochShuffleSampler(Sampler[int]):
    """Indices 0..size-1 in a new order every epoch; the order is a pure function of (seed, epoch)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        order = list(range(self.size))
        # `random` seeds from a string through SHA-512, so the order is the same under any PYTHONHASHSEED.
        random.Random(f"shuffle:{self.seed}:{self.epoch}").shuffle(order)
        return iter(order)


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Groups the indices drawn from `sampler` into batches whose items share one (S, T).

    Each batch fills in the order the sampler draws its items, and takes its place in the epoch
    where its first item was drawn. With a shuffling sampler both the contents of the batches and
    their order change every epoch, and each length's batches spread across the epoch rather than
    arriving together; with a sequential sampler the batches are the same every time.
    """

    def __init__(self, sampler: Sampler[int], lengths: list[tuple[int, int]], batch_size: int) -> None:
        self.sampler = sampler  # the name Lightning looks under to call set_epoch
        self.lengths = lengths
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch's order, for loops that drive the sampler without Lightning."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        items_per_length: dict[tuple[int, int], int] = {}
        for key in self.lengths:
            items_per_length[key] = items_per_length.get(key, 0) + 1
        return sum(-(-count // self.batch_size) for count in items_per_length.values())

    def __iter__(self) -> Iterator[list[int]]:
        filling: dict[tuple[int, int], list[int]] = {}
        batches: list[list[int]] = []
        for index in self.sampler:
            key = self.lengths[index]
            batch = filling.get(key)
            if batch is None or len(batch) == self.batch_size:
                batch = filling[key] = []
                batches.append(batch)
            batch.append(index)
        return iter(batches)
