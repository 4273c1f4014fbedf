"""analysis.piglatin_errors: which clause of the rule a word exercises, and what went wrong in a wrong answer."""

import pytest

from analysis.piglatin_errors import (CLAUSES, ERROR_KINDS, by_clause, by_length, clause_of, error_kind, kinds_of,
                                      length_bin)
from data.pig_latin import to_pig_latin


@pytest.mark.parametrize("word, clause", [
    ("impress", "vowel-initial"), ("team", "one consonant"), ("shopping", "consonant cluster"),
    ("strengthening", "consonant cluster"), ("yet", "y"), ("fly", "y"), ("rhythm", "y"), ("quite", "qu"),
    ("square", "qu"), ("mr", "no vowel"), ("good-for-nothing", "hyphenated"), ("in-basket", "hyphenated"),
])
def test_each_word_falls_in_the_clause_of_the_rule_that_translates_it(word, clause):
    assert clause_of(word) == clause


def test_the_clauses_follow_where_the_rule_splits_the_word():
    # A clause with moved consonants moves as many as the rule does: one for "one consonant", more for a cluster.
    for word in ["team", "shopping", "strengthening", "dog", "brown", "christmas"]:
        moved = len(to_pig_latin(word)) - 2 - len(word.lstrip("bcdfghjklmnpqrstvwxz"))
        assert clause_of(word) == ("one consonant" if moved == 1 else "consonant cluster"), word


@pytest.mark.parametrize("length, label", [(1, "1–3"), (3, "1–3"), (4, "4"), (8, "8"), (9, "9–10"),
                                           (10, "9–10"), (11, "11–20"), (20, "11–20")])
def test_length_bins_cover_every_length_a_word_can_have(length, label):
    assert length_bin("a" * length) == label


def test_a_word_longer_than_the_data_allows_is_refused():
    with pytest.raises(ValueError, match="longer than the longest bin"):
        length_bin("a" * 21)


@pytest.mark.parametrize("english, predicted, kind", [
    ("across", "acrossway", None),
    ("across", "acrosssway", "copy: length"),          # a letter repeated
    ("column", "olumcay", "copy: length"),             # a letter dropped
    ("broadband", "oadbrandbay", "copy: letters"),     # as long, letters wrong
    ("team", "eamtway", "suffix"),                     # the rotation right, the other suffix
    ("strengthening", "ngtheningstreay", "split"),     # rotated at the wrong place
    ("hop-skip", "ophay-ispkay", "copy: letters"),     # the first wrong part decides
    ("hop-skip", "ophay-ipkay", "copy: length"),
    ("in-basket", "inbasketway", "copy: length"),      # the dash lost
])
def test_error_kind_says_what_went_wrong_in_the_first_wrong_part(english, predicted, kind):
    assert error_kind(english, to_pig_latin(english), predicted) == kind


def test_rates_by_clause_and_length_count_every_word_once():
    words = ["team", "shopping", "yet", "impress", "good-for-nothing", "mr", "quite"]
    wrong = {"shopping", "good-for-nothing"}
    clauses = by_clause(words, wrong)
    assert list(clauses) == [clause for clause in CLAUSES if clause in clauses]  # in the rule's order
    assert sum(total for _, total in clauses.values()) == len(words)
    assert clauses["consonant cluster"] == (1, 1) and clauses["hyphenated"] == (1, 1) and clauses["y"] == (0, 1)
    lengths = by_length(words, wrong)
    assert sum(errors for errors, _ in lengths.values()) == 2
    assert lengths["1–3"] == (0, 2) and lengths["11–20"] == (1, 1)


def test_kinds_of_counts_only_wrong_answers():
    triples = [(word, to_pig_latin(word), answer) for word, answer in
               [("team", "eamtay"), ("across", "acrosssway"), ("team", "eamtway"), ("column", "olumcay")]]
    assert kinds_of(triples) == {kind: {"copy: length": 2, "suffix": 1}.get(kind, 0) for kind in ERROR_KINDS}
