"""The committed data files: reproducible from the builder, the right size and shape, and correct."""

from collections import Counter
from pathlib import Path

import pytest

from data.build_datasets import EXCLUDED_WORDS, LARGE_FILE, SMALL_FILE, stale_files
from data.pig_latin import to_pig_latin

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ORIGINAL_SIZES = {SMALL_FILE: 3_198, LARGE_FILE: 22_402}  # the course's original data sets


def _read_lines(name: str) -> list[str]:
    return (DATA_DIR / name).read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def pairs() -> dict[str, list[tuple[str, str]]]:
    """Each file's lines split at the space; a line without exactly one space fails the format test."""
    return {name: [tuple(line.split(" ", 1)) for line in _read_lines(name)] for name in ORIGINAL_SIZES}


def test_committed_files_match_a_fresh_build():
    stale = stale_files(DATA_DIR)
    assert stale == [], f"{stale} differ from what `python -m data.build_datasets` builds; rerun it and commit"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_files_are_sorted_lines_of_two_words_with_a_final_newline(name):
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n"), f"{name} should end with exactly one newline"
    lines = text.splitlines()
    malformed = [line for line in lines if len(line.split(" ")) != 2]
    assert not malformed, f"{name}: lines should be 'english piglatin', found {malformed[:3]}"
    assert lines == sorted(lines), f"{name} should be sorted"


@pytest.mark.parametrize("name, original_size", ORIGINAL_SIZES.items())
def test_sizes_are_within_ten_percent_of_the_originals(pairs, name, original_size):
    size = len(pairs[name])
    assert abs(size - original_size) <= 0.1 * original_size, f"{name} has {size} pairs, expected {original_size} ± 10%"


def test_every_small_pair_is_in_the_large_set(pairs):
    missing = sorted(set(pairs[SMALL_FILE]) - set(pairs[LARGE_FILE]))
    assert not missing, f"{len(missing)} small pairs are not in the large set, e.g. {missing[:5]}"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_only_lowercase_letters_and_dashes_are_used(pairs, name):
    allowed = set("abcdefghijklmnopqrstuvwxyz-")
    bad = [pair for pair in pairs[name] if not set("".join(pair)) <= allowed]
    assert not bad, f"{name}: pairs with characters outside a-z and '-': {bad[:5]}"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_source_words_have_1_to_20_characters_and_targets_at_most_23(pairs, name):
    too_long = [(s, t) for s, t in pairs[name] if not (1 <= len(s) <= 20 and len(t) <= 23)]
    assert not too_long, f"{name}: pairs outside the length bounds: {too_long[:5]}"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_hyphenated_words_are_between_1_and_6_percent(pairs, name):
    share = sum("-" in source for source, _ in pairs[name]) / len(pairs[name])
    assert 0.01 <= share <= 0.06, f"{name}: {share:.1%} of the words are hyphenated, expected 1% to 6%"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_every_target_follows_the_pig_latin_rule(pairs, name):
    wrong = [(s, t, to_pig_latin(s)) for s, t in pairs[name] if to_pig_latin(s) != t]
    assert not wrong, f"{name}: (english, file's target, rule's target) disagree: {wrong[:5]}"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_no_english_word_appears_twice(pairs, name):
    counts = Counter(source for source, _ in pairs[name])
    repeated = sorted(source for source, count in counts.items() if count > 1)
    assert not repeated, f"{name}: English words listed more than once: {repeated[:5]}"


@pytest.mark.parametrize("name", ORIGINAL_SIZES)
def test_no_excluded_word_appears_alone_or_in_a_compound(pairs, name):
    found = sorted({part for english, _ in pairs[name] for part in english.split("-")} & EXCLUDED_WORDS)
    assert not found, f"{name} contains words the builder excludes: {found}"
