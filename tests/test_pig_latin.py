"""The Pig-Latin rule (data/pig_latin.py), checked against the handout's examples."""

import pytest

from data.pig_latin import part_to_pig_latin, to_pig_latin

HANDOUT_EXAMPLES = [
    ("impress", "impressway"),
    ("team", "eamtay"),
    ("shopping", "oppingshay"),
    ("strengthening", "engtheningstray"),
    ("yet", "yetay"),
    ("fly", "yflay"),
    ("quite", "itequay"),
    ("square", "aresquay"),
    ("mr", "mray"),
]


def _check(english: str, expected: str) -> None:
    got = to_pig_latin(english)
    assert got == expected, f"to_pig_latin({english!r}) should be {expected!r}, got {got!r}"


@pytest.mark.parametrize("english, expected", HANDOUT_EXAMPLES)
def test_handout_examples_translate_as_given(english, expected):
    _check(english, expected)


@pytest.mark.parametrize("english, expected", HANDOUT_EXAMPLES)
def test_part_helper_agrees_on_single_parts(english, expected):
    got = part_to_pig_latin(english)
    assert got == expected, f"part_to_pig_latin({english!r}) should be {expected!r}, got {got!r}"


@pytest.mark.parametrize("english, expected", [("apple", "appleway"), ("under", "underway"), ("a", "away")])
def test_words_starting_with_aeiou_get_way(english, expected):
    _check(english, expected)


@pytest.mark.parametrize("english, expected", [("yellow", "yelloway"), ("y", "yay")])
def test_leading_y_is_a_vowel_but_takes_ay_not_way(english, expected):
    _check(english, expected)


def test_y_inside_a_word_ends_the_leading_consonants():
    _check("rhythm", "ythmrhay")


@pytest.mark.parametrize("english, expected", [("squeeze", "eezesquay"), ("quiet", "ietquay"), ("qi", "iqay")])
def test_qu_moves_as_one_block(english, expected):
    _check(english, expected)


def test_qu_after_a_leading_vowel_stays_put():
    _check("equal", "equalway")


@pytest.mark.parametrize("english, expected", [("mr", "mray"), ("hmm", "hmmay"), ("b", "bay")])
def test_parts_without_vowels_get_ay(english, expected):
    _check(english, expected)


@pytest.mark.parametrize(
    "english, expected",
    [
        ("good-for-nothing", "oodgay-orfay-othingnay"),
        ("pleasure-grounds", "easureplay-oundsgray"),
        ("mr-smith", "mray-ithsmay"),
        ("x-ray", "xay-ayray"),
    ],
)
def test_hyphenated_words_translate_each_part_and_keep_the_dashes(english, expected):
    _check(english, expected)


def test_sentences_translate_word_by_word():
    _check("i went shopping", "iway entway oppingshay")


def test_sentences_come_back_with_single_spaces():
    _check("  i\twent \n shopping ", "iway entway oppingshay")


@pytest.mark.parametrize(
    "bad_text, mentioned",
    [
        ("Hello", "'H'"),
        ("don't", '"\'"'),
        ("abc1", "'1'"),
        ("café", "'é'"),
        ("good--bad", "dash"),
        ("-ing", "dash"),
        ("over-", "dash"),
        ("", "no words"),
        ("   ", "no words"),
    ],
)
def test_invalid_text_raises_a_value_error_that_says_why(bad_text, mentioned):
    with pytest.raises(ValueError) as error:
        to_pig_latin(bad_text)
    message = str(error.value)
    assert mentioned in message, f"the error for {bad_text!r} should mention {mentioned}, got: {message}"
    assert "\n" not in message, f"the error should be one line, got: {message!r}"


@pytest.mark.parametrize("bad_part", ["", "a-b", "Ab", "a b"])
def test_part_helper_rejects_anything_but_letters(bad_part):
    with pytest.raises(ValueError):
        part_to_pig_latin(bad_part)
