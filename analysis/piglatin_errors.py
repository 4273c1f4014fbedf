"""Where a model's Pig-Latin errors are: by the clause of the rule a word exercises, by its length, and
by what went wrong in it. Pure Python over (english, expected, predicted) strings; the rule is
data/pig_latin.py's, so the clauses here are the ones the data were made with.

    >>> clause_of("shopping"), clause_of("quite"), clause_of("good-for-nothing")
    ('consonant cluster', 'qu', 'hyphenated')
    >>> error_kind("across", "acrossway", "acrosssway")
    'copy: length'
"""

from collections import defaultdict

from data.pig_latin import SPLIT_VOWELS, WAY_VOWELS

# Each clause names the part of the rule a word needs; a word with dashes is "hyphenated" whatever its parts.
CLAUSES = ("vowel-initial", "one consonant", "consonant cluster", "qu", "y", "no vowel", "hyphenated")

# Source-length bins: short words, each common length on its own, long words.
LENGTH_BINS = ((1, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 10), (11, 20))


def part_clause(part: str) -> str:
    """The clause of the rule that translates one dash-free part (see data/pig_latin.py)."""
    if part[0] in WAY_VOWELS:
        return "vowel-initial"
    split = 0
    while split < len(part) and part[split] not in SPLIT_VOWELS:
        split += 2 if part.startswith("qu", split) else 1
    if "qu" in part[:split]:
        return "qu"
    if split == len(part):
        return "no vowel"
    if part[split] == "y":  # y is the first vowel: yet -> yetay, fly -> yflay
        return "y"
    return "one consonant" if split == 1 else "consonant cluster"


def clause_of(english: str) -> str:
    """The clause of a whole word: `hyphenated` if it has dashes, else its one part's clause."""
    return "hyphenated" if "-" in english else part_clause(english)


def length_bin(english: str) -> str:
    """'1–3', '4', ..., '11–20': the bin of LENGTH_BINS the word's length falls in."""
    for low, high in LENGTH_BINS:
        if low <= len(english) <= high:
            return str(low) if low == high else f"{low}–{high}"
    raise ValueError(f"{english!r} is longer than the longest bin ({LENGTH_BINS[-1][1]})")


LENGTH_LABELS = tuple(str(low) if low == high else f"{low}–{high}" for low, high in LENGTH_BINS)


def _part_error(english: str, expected: str, predicted: str) -> str:
    """What went wrong in one dash-free part whose translation is wrong."""
    suffix = expected[len(english):]
    other = "ay" if suffix == "way" else "way"
    if predicted.endswith(other) and predicted[:-len(other)] == expected[:-len(suffix)]:
        return "suffix"
    for split in range(len(english) + 1):
        body = english[split:] + english[:split]
        if body != expected[:len(english)] and predicted in (body + "ay", body + "way"):
            return "split"
    return "copy: length" if len(predicted) != len(expected) else "copy: letters"


ERROR_KINDS = ("split", "suffix", "copy: length", "copy: letters")


def error_kind(english: str, expected: str, predicted: str):
    """None if `predicted` is right, else what is wrong with it, in the first wrong part of the word:

    'split'         the word rotated at another place, with a Pig-Latin suffix (strengthening -> ngtheningstreay)
    'suffix'        the right rotation with the other suffix (eamtway for eamtay)
    'copy: length'  letters dropped or repeated (acrosssway for acrossway)
    'copy: letters' as long as the answer, but letters wrong or swapped
    A word whose parts or dashes went wrong as a whole counts as 'copy: length'.
    """
    if predicted == expected:
        return None
    parts, wanted, got = english.split("-"), expected.split("-"), predicted.split("-")
    if len(got) != len(parts):
        return "copy: length"
    for part, want, answer in zip(parts, wanted, got):
        if want != answer:
            return _part_error(part, want, answer)
    raise AssertionError("unreachable: the words differ, so one part does")


def error_rates(words: list, wrong: set, key) -> dict:
    """{group: (wrong words, words)} over `words` (English), grouped by `key(word)`."""
    counts = defaultdict(lambda: [0, 0])
    for word in words:
        group = counts[key(word)]
        group[0] += word in wrong
        group[1] += 1
    return {group: tuple(count) for group, count in counts.items()}


def by_clause(words: list, wrong: set) -> dict:
    """{clause: (wrong, total)} for every clause that occurs in `words`, in CLAUSES order."""
    rates = error_rates(words, wrong, clause_of)
    return {clause: rates[clause] for clause in CLAUSES if clause in rates}


def by_length(words: list, wrong: set) -> dict:
    """{length bin: (wrong, total)} for every bin that occurs in `words`, shortest first."""
    rates = error_rates(words, wrong, length_bin)
    return {label: rates[label] for label in LENGTH_LABELS if label in rates}


def kinds_of(pairs_and_predictions: list) -> dict:
    """{error kind: count} over (english, expected, predicted) triples, wrong ones only, in ERROR_KINDS order."""
    counts = dict.fromkeys(ERROR_KINDS, 0)
    for english, expected, predicted in pairs_and_predictions:
        kind = error_kind(english, expected, predicted)
        if kind is not None:
            counts[kind] += 1
    return counts

