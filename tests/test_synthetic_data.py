"""The synthetic tasks' generators (data/synthetic.py): the examples are what the task says, and seeded."""

import numpy as np
import pytest

from data.synthetic import (IGNORE, TaskSettingError, check_settings, incontext_recall, make_splits,
                            model_length, selective_copying)

V, K = 16, 5
BLANK, COPY = V - 2, V - 1


def copying(n=200, seq_len=20, seed=0):
    return selective_copying(n, V, seq_len, K, np.random.default_rng(seed))


def recall(n=200, seq_len=32, seed=0):
    return incontext_recall(n, V, seq_len, np.random.default_rng(seed))


def test_copying_scores_exactly_the_last_k_positions():
    examples = copying()
    scored = examples.targets != IGNORE
    assert scored[:, -K:].all() and not scored[:, :-K].any()


def test_copying_targets_are_the_data_tokens_in_order():
    examples = copying()
    for tokens, targets in zip(examples.inputs, examples.targets):
        data = tokens[:-K - 1][tokens[:-K - 1] != BLANK]  # what precedes the copy token, blanks dropped
        assert list(data) == list(targets[-K:])


def test_copying_layout_is_data_and_blanks_then_copy_token_then_blanks():
    examples = copying(seq_len=20)
    assert (examples.inputs[:, 20 - K - 1] == COPY).all()
    assert (examples.inputs[:, -K:] == BLANK).all()
    before = examples.inputs[:, :20 - K - 1]
    assert ((before < BLANK) | (before == BLANK)).all()
    assert ((before != BLANK).sum(axis=1) == K).all()  # exactly k data tokens, never a copy token early


def test_copying_puts_data_tokens_at_every_position_sometimes():
    # mad-lab never puts a blank after the last data token; ours places the k tokens uniformly.
    before = copying(n=2000).inputs[:, :20 - K - 1]
    assert (before != BLANK).any(axis=0).all()
    assert (before[:, -1] == BLANK).any()


def test_copying_trains_on_the_scored_positions_only():
    examples = copying()
    np.testing.assert_array_equal(examples.train_targets, examples.targets)


def test_recall_keys_and_values_alternate_from_the_two_halves_of_the_vocabulary():
    examples = recall()
    sequence = np.concatenate([examples.inputs, examples.train_targets[:, -1:]], axis=1)  # all seq_len tokens
    assert (sequence[:, 0::2] < V // 2).all() and (sequence[:, 1::2] >= V // 2).all()


def test_recall_value_of_a_key_is_the_same_throughout_a_sequence():
    sequence = np.concatenate([recall().inputs, recall().train_targets[:, -1:]], axis=1)
    for row in sequence:
        value_of = {}
        for key, value in zip(row[0::2], row[1::2]):
            assert value_of.setdefault(key, value) == value


def test_recall_maps_differ_between_sequences():
    sequence = np.concatenate([recall().inputs, recall().train_targets[:, -1:]], axis=1)
    maps = {tuple(sorted(dict(zip(row[0::2], row[1::2])).items())) for row in sequence}
    assert len(maps) > 150  # of 200 sequences; 8 keys with 8 values each leave room for few repeats


def test_recall_scores_a_value_exactly_when_its_key_appeared_before():
    examples = recall()
    sequence = np.concatenate([examples.inputs, examples.train_targets[:, -1:]], axis=1)
    for row, targets in zip(sequence, examples.targets):
        for position in range(1, len(row)):  # targets[position - 1] predicts row[position]
            is_value = position % 2 == 1
            key_seen = is_value and row[position - 1] in row[0:position - 1:2]
            expected = row[position] if key_seen else IGNORE
            assert targets[position - 1] == expected


def test_recall_last_token_is_always_a_scored_query():
    examples = recall()
    assert (examples.targets[:, -1] != IGNORE).all()


def test_recall_trains_on_every_next_token():
    examples = recall()
    np.testing.assert_array_equal(examples.train_targets[:, :-1], examples.inputs[:, 1:])


def test_model_reads_one_position_less_than_recall_length():
    assert recall(seq_len=32).inputs.shape[1] == model_length("incontext_recall", 32) == 31
    assert copying(seq_len=20).inputs.shape[1] == model_length("selective_copying", 20) == 20


@pytest.mark.parametrize("task", ["selective_copying", "incontext_recall"])
def test_same_data_seed_gives_the_same_splits(task):
    first = make_splits(task, V, 32, K, 50, 20, 20, data_seed=3)
    second = make_splits(task, V, 32, K, 50, 20, 20, data_seed=3)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first[name].inputs, second[name].inputs)
        np.testing.assert_array_equal(first[name].targets, second[name].targets)


@pytest.mark.parametrize("task", ["selective_copying", "incontext_recall"])
def test_other_data_seed_gives_other_examples(task):
    first = make_splits(task, V, 32, K, 50, 20, 20, data_seed=3)
    second = make_splits(task, V, 32, K, 50, 20, 20, data_seed=4)
    assert not np.array_equal(first["test"].inputs, second["test"].inputs)


def test_test_split_does_not_depend_on_the_training_set_size():
    small = make_splits("selective_copying", V, 20, K, 10, 20, 30, data_seed=0)
    large = make_splits("selective_copying", V, 20, K, 500, 20, 30, data_seed=0)
    np.testing.assert_array_equal(small["test"].inputs, large["test"].inputs)


@pytest.mark.parametrize("task, seq_len, num_tokens", [("selective_copying", 20, 5), ("incontext_recall", 64, 0)])
def test_splits_do_not_share_sequences_at_the_reports_settings(task, seq_len, num_tokens):
    splits = make_splits(task, V, seq_len, num_tokens, 4000, 200, 200, data_seed=0)
    seen = {row.tobytes() for row in splits["train"].inputs}
    assert not any(row.tobytes() in seen for name in ("val", "test") for row in splits[name].inputs)


@pytest.mark.parametrize("task, vocab_size, seq_len, num_tokens, message", [
    ("selective_copying", 16, 11, 5, "5 tokens to copy do not fit in seq_len=11"),
    ("selective_copying", 2, 20, 5, "vocab_size of at least 3"),
    ("selective_copying", 16, 20, 0, "num_tokens"),
    ("incontext_recall", 16, 31, 0, "even seq_len"),
    ("incontext_recall", 16, 2, 0, "even seq_len of at least 4"),
    ("incontext_recall", 1, 32, 0, "vocab_size of at least 2"),
])
def test_impossible_settings_are_refused_with_what_to_change(task, vocab_size, seq_len, num_tokens, message):
    with pytest.raises(TaskSettingError, match=message):
        check_settings(task, vocab_size, seq_len, num_tokens)


def test_smallest_copying_length_that_fits_is_accepted():
    examples = selective_copying(10, V, 2 * K + 2, K, np.random.default_rng(0))
    assert examples.inputs.shape == (10, 2 * K + 2)
