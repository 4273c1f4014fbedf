"""The Pig-Latin rule: the one implementation the data files, the tests and the demos share.

Each word is translated independently, and within a word each part between dashes:

- a part that starts with a, e, i, o or u gets "way":        impress -> impressway
- otherwise the consonants before the first vowel move to the end, then "ay":
                                                             team -> eamtay, strengthening -> engtheningstray
  y counts as a vowel at every position, the first included: yet -> yetay, fly -> yflay
- "qu" moves as one block, so its u is not taken for a vowel: quite -> itequay, square -> aresquay
- a part with no vowel moves nothing and gets "ay":          mr -> mray

    >>> to_pig_latin("i went shopping")
    'iway entway oppingshay'
    >>> to_pig_latin("good-for-nothing")
    'oodgay-orfay-othingnay'
"""

import re

# Only these five earn "way"; a leading y is a vowel for where the split falls but still takes "ay".
WAY_VOWELS = "aeiou"
SPLIT_VOWELS = "aeiouy"

_PART = re.compile(r"[a-z]+")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def part_to_pig_latin(part: str) -> str:
    """Translates one dash-free part of a word: "shopping" -> "oppingshay"."""
    if not _PART.fullmatch(part):
        raise ValueError(f"a Pig-Latin part must be one or more lowercase letters a-z, got {part!r}")
    if part[0] in WAY_VOWELS:
        return part + "way"
    split = 0
    while split < len(part) and part[split] not in SPLIT_VOWELS:
        split += 2 if part.startswith("qu", split) else 1
    # With no vowel the loop runs to the end, and moving the whole part leaves it as it was.
    return part[split:] + part[:split] + "ay"


def to_pig_latin(text: str) -> str:
    """Translates whitespace-separated words, each part between dashes on its own.

    "pleasure-grounds" -> "easureplay-oundsgray"; words come back joined by single spaces.
    Raises ValueError for anything but lowercase words of a-z joined by single dashes.
    """
    words = text.split()
    if not words:
        raise ValueError("to_pig_latin got no words to translate (the text is empty or only whitespace)")
    for word in words:
        _check_word(word)
    return " ".join("-".join(part_to_pig_latin(part) for part in word.split("-")) for word in words)


def _check_word(word: str) -> None:
    """Raises a ValueError that says what is wrong with a word the rule cannot translate."""
    if _WORD.fullmatch(word):
        return
    for position, character in enumerate(word):
        if not ("a" <= character <= "z" or character == "-"):
            raise ValueError(
                f"cannot translate {word!r}: character {character!r} at position {position} is not "
                "a lowercase letter a-z or '-' (lowercase the text and drop punctuation first)"
            )
    raise ValueError(f"cannot translate {word!r}: dashes must join two non-empty parts, as in 'good-for-nothing'")
