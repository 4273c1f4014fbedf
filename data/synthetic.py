"""Two synthetic tasks that show what selectivity is for: selective copying and in-context recall.

Both come from the MAD suite (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures";
the reference code is athms/mad-lab). Everything is generated here from a seed: nothing is downloaded,
and the same seed gives the same examples on every machine.

Glossary (shapes use these letters everywhere in this file):
    n  examples          L  sequence length the model reads
    V  vocabulary size   k  tokens to copy (selective copying)

An example is a pair of int64 rows, `inputs` (L,) and `targets` (L,): the model reads `inputs` causally and
at position t predicts `targets[t]`. Positions that are not scored hold IGNORE, which the loss and the
accuracy skip. Recall also has `train_targets`: see `incontext_recall`.

Selective copying, vocabulary V: tokens 0 ... V-3 are data, V-2 is the blank, V-1 the copy token.

    inputs   3 _ _ 7 _ 1 _ _ 4 _ 9 _ C _ _ _ _ _       (k = 5 data tokens among blanks, then C, then k blanks)
    targets  . . . . . . . . . . . . . 3 7 1 4 9       (the data tokens in order, at the last k positions)

In-context (associative) recall, multi-query, vocabulary V: keys are 0 ... V/2-1, values V/2 ... V-1; each
sequence draws its own key -> value map. The sequence is key-value pairs; whenever a key comes back, the
value that follows is determined by the context, and those positions are scored:

    sequence a x b y a x c z b y                       (a->x, b->y, c->z in this sequence only)
    inputs   a x b y a x c z b                         (the sequence without its last token)
    targets  . . . . . x . . . y                       (a value whose key appeared before; shifted by one)

Differences from mad-lab, on purpose: mad-lab scatters the copying blanks with NumPy's unseeded global
generator (so its data is not reproducible) and inserts them only before data tokens, so the last data
token always sits right before the copy token; here one seeded generator places the k data tokens at k
distinct positions chosen uniformly. mad-lab's accuracy averages over classes (torchmetrics' default,
`macro`); ours is the share of scored positions that are right.
"""

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # a target that is not scored: torch's cross_entropy skips it by default

TASKS = ("selective_copying", "incontext_recall")

# MAD's defaults, used when a config leaves seq_len at 0.
DEFAULT_SEQ_LEN = {"selective_copying": 256, "incontext_recall": 128}


class TaskSettingError(ValueError):
    """Settings no example can satisfy (more tokens to copy than fit, ...); the message is one line."""


@dataclass
class Examples:
    """n examples of one task: `inputs`, `targets` and `train_targets`, each (n, L) int64.

    `train_targets` is what the training loss reads; `targets` (the scored positions) is what accuracy reads.
    """

    inputs: np.ndarray
    targets: np.ndarray
    train_targets: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


def check_settings(task: str, vocab_size: int, seq_len: int, num_tokens: int = 0):
    """Raises TaskSettingError, with one line that says what to change, for settings no example can meet."""
    if task not in TASKS:
        raise TaskSettingError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if task == "selective_copying":
        if vocab_size < 3:
            raise TaskSettingError(f"selective copying needs vocab_size of at least 3 (data tokens, blank, copy "
                                   f"token), got {vocab_size}")
        if num_tokens < 1:
            raise TaskSettingError(f"num_tokens (tokens to copy) must be at least 1, got {num_tokens}")
        if seq_len <= 2 * num_tokens + 1:
            raise TaskSettingError(
                f"{num_tokens} tokens to copy do not fit in seq_len={seq_len}: the data, the copy token and "
                f"the {num_tokens} answer positions need seq_len > 2 * num_tokens + 1 = {2 * num_tokens + 1}")
    else:
        if vocab_size < 2:
            raise TaskSettingError(f"in-context recall needs vocab_size of at least 2 (keys and values), got {vocab_size}")
        if seq_len < 4 or seq_len % 2:
            raise TaskSettingError(f"in-context recall needs an even seq_len of at least 4 (key-value pairs, the "
                                   f"last one a query), got {seq_len}")


def selective_copying(n: int, vocab_size: int, seq_len: int, num_tokens: int, rng: np.random.Generator) -> Examples:
    """n selective-copying examples of length L = seq_len (see the module docstring).

    The first seq_len - k - 1 positions hold the k data tokens (drawn with replacement, at k distinct random
    positions, in order) and blanks; then the copy token; then k blanks, where the data tokens are the targets.
    """
    check_settings("selective_copying", vocab_size, seq_len, num_tokens)
    k, blank, copy = num_tokens, vocab_size - 2, vocab_size - 1
    data_length = seq_len - k - 1  # positions before the copy token
    data = rng.integers(0, vocab_size - 2, size=(n, k))  # (n, k)
    # k distinct positions per row, uniformly: the k smallest of data_length random keys, in position order.
    positions = np.sort(np.argsort(rng.random((n, data_length)), axis=1)[:, :k], axis=1)  # (n, k)
    inputs = np.full((n, seq_len), blank, dtype=np.int64)
    np.put_along_axis(inputs, positions, data, axis=1)
    inputs[:, data_length] = copy
    targets = np.full((n, seq_len), IGNORE, dtype=np.int64)
    targets[:, seq_len - k:] = data
    return Examples(inputs, targets, targets)


def incontext_recall(n: int, vocab_size: int, seq_len: int, rng: np.random.Generator) -> Examples:
    """n multi-query recall examples: seq_len tokens of key-value pairs, read as L = seq_len - 1 inputs.

    Each sequence draws a key -> value map (values with replacement); the pairs' keys are uniform, except the
    last, a query: a key drawn from those already shown, so every sequence ends with a scored value.
    `targets` scores every value whose key appeared in an earlier pair. As in mad-lab, training reads every
    next token (`train_targets`): keys and first values are unpredictable, so the training loss stays above 0.
    """
    check_settings("incontext_recall", vocab_size, seq_len)
    num_keys, pairs = vocab_size // 2, seq_len // 2
    value_of = rng.integers(num_keys, vocab_size, size=(n, num_keys))  # (n, keys): this sequence's map
    keys = rng.integers(0, num_keys, size=(n, pairs))  # (n, pairs)
    shown = np.zeros((n, num_keys), dtype=bool)
    np.put_along_axis(shown, keys[:, :-1], True, axis=1)
    # The query: the shown key with the largest random score, i.e. a uniform choice among the shown keys.
    keys[:, -1] = np.argmax(np.where(shown, rng.random((n, num_keys)), -1.0), axis=1)
    values = np.take_along_axis(value_of, keys, axis=1)  # (n, pairs)
    sequence = np.stack([keys, values], axis=2).reshape(n, seq_len)  # k v k v ...
    repeated = np.zeros((n, pairs), dtype=bool)  # was this pair's key shown in an earlier pair?
    for pair in range(1, pairs):
        repeated[:, pair] = (keys[:, :pair] == keys[:, pair:pair + 1]).any(axis=1)
    scored = np.zeros((n, seq_len), dtype=bool)
    scored[:, 1::2] = repeated  # the value position of a repeated key
    targets = np.where(scored, sequence, IGNORE)[:, 1:]
    return Examples(sequence[:, :-1].copy(), targets, sequence[:, 1:].copy())


def model_length(task: str, seq_len: int) -> int:
    """How many positions the model reads: recall drops its last token (the answer to the final query)."""
    return seq_len - 1 if task == "incontext_recall" else seq_len


def make_splits(task: str, vocab_size: int, seq_len: int, num_tokens: int, num_train: int, num_val: int,
                num_test: int, data_seed: int) -> dict:
    """{'train': Examples, 'val': ..., 'test': ...} of the sizes asked for.

    Each split has its own generator, spawned from `data_seed`: a split's examples do not change when
    another split's size does, and the test split never depends on the training set's size.
    """
    check_settings(task, vocab_size, seq_len, num_tokens)
    streams = np.random.SeedSequence(data_seed).spawn(3)
    splits = {}
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    for (name, size), stream in zip(sizes.items(), streams):
        rng = np.random.default_rng(stream)
        if task == "selective_copying":
            splits[name] = selective_copying(size, vocab_size, seq_len, num_tokens, rng)
        else:
            splits[name] = incontext_recall(size, vocab_size, seq_len, rng)
    return splits
