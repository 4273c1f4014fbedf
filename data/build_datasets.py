"""Builds the two Pig-Latin data sets from word lists that ship inside installed packages.

    python -m data.build_datasets           # writes data/pig_latin_small.txt and data/pig_latin_large.txt
    python -m data.build_datasets --check   # rebuilds in memory; exit 1 if a committed file differs

Nothing is downloaded and no one else's data file is copied. The sources:

- wordsegment's `unigrams.txt`: Peter Norvig's counts of the 333,000 most frequent words of a
  trillion-word web corpus, the source of the course's original large set;
- wordsegment's `words.txt`: an English word list with inflected forms ("years", "using", "began")
  but no proper nouns or abbreviations; checking the frequent words against it drops web junk such
  as "pm", "dvd", "ebay", "html" and names such as "london", "david";
- english-words' GCIDE set: headwords of the GNU Collaborative International Dictionary of English,
  the source of hyphenated compounds ("mother-in-law", "out-of-date").

What goes in:

- single words: the most frequent words of `unigrams.txt` that are in `words.txt`; small takes the
  top 3,113, large the top 21,817, so every small word is also a large one;
- compounds: GCIDE headwords made of two or more such words joined by dashes, at most 20 characters
  with a Pig Latin of at most 23 (the originals' bounds); small samples 85 of those whose parts are
  all small words, large keeps those and samples 500 more whose parts are all large words.

That gives 3,198 and 22,402 pairs, the sizes of the course's originals, with a hyphenated share
near the original small set's 84 of 3,198. Every step sorts before it samples and samples with a
seeded `random.Random`, so the output is the same on every machine and Python hash seed.
"""

import argparse
from importlib import resources
from pathlib import Path
import random
import re
import sys

from english_words import get_english_words_set

from data.pig_latin import to_pig_latin

DATA_DIR = Path(__file__).resolve().parent
SMALL_FILE = "pig_latin_small.txt"
LARGE_FILE = "pig_latin_large.txt"

SMALL_SINGLE_WORDS = 3_113
LARGE_SINGLE_WORDS = 21_817
SMALL_COMPOUNDS = 85
LARGE_EXTRA_COMPOUNDS = 500
MAX_SOURCE_LENGTH = 20
MAX_TARGET_LENGTH = 23
SEED = 0

# Word lists in the Scrabble tradition have no one-letter words; English has exactly these two.
ONE_LETTER_WORDS = {"a", "i"}

# Frequent on the web, so they rank high in the unigram counts, but not what a class should find in its
# samples and plots: vulgarities, slurs and pornographic terms. Filtered before the top-N is taken.
EXCLUDED_WORDS = frozenset("""
    anal bitch bitches blowjob blowjobs boob boobs bullshit cock cocks cum cunt dildo dildos dyke fisting
    fuck fucked fucker fucking fucks gangbang horny porn porno pussy shit slut sluts tits titties tranny
    twat whore whores asshole
""".split())

# GCIDE capitalises every headword ("Mother-of-pearl"); a capital later on marks a proper noun ("Ural-Altaic").
_HEADWORD_COMPOUND = re.compile(r"[A-Za-z][a-z]*(?:-[a-z]+)+")
_PLAIN_WORD = re.compile(rf"[a-z]{{1,{MAX_SOURCE_LENGTH}}}")


def words_by_frequency() -> list[str]:
    """Norvig's unigrams, most frequent first (ties alphabetically), as shipped by wordsegment."""
    text = resources.files("wordsegment").joinpath("unigrams.txt").read_text(encoding="utf-8")
    counts = {}
    for line in text.splitlines():
        word, count = line.split("\t")
        counts[word] = int(count)
    return sorted(counts, key=lambda word: (-counts[word], word))


def dictionary_words() -> set[str]:
    """wordsegment's English word list (inflections included, no names), plus "a" and "i"."""
    text = resources.files("wordsegment").joinpath("words.txt").read_text(encoding="utf-8")
    return set(text.split()) | ONE_LETTER_WORDS


def dictionary_compounds() -> list[str]:
    """Lowercased GCIDE headwords of two or more letter-only parts joined by dashes, sorted."""
    headwords = get_english_words_set(["gcide"])
    return sorted({word.lower() for word in headwords if _HEADWORD_COMPOUND.fullmatch(word)})


def frequent_single_words(ranking: list[str], dictionary: set[str], count: int) -> list[str]:
    """The `count` most frequent words of 1-20 lowercase letters that the dictionary knows, less EXCLUDED_WORDS."""
    words = [word for word in ranking
             if _PLAIN_WORD.fullmatch(word) and word in dictionary and word not in EXCLUDED_WORDS]
    return words[:count]


def compounds_of(known_words: set[str], compounds: list[str]) -> list[str]:
    """The compounds whose every part is a known word and which fit the length bounds, in input order."""
    return [
        compound
        for compound in compounds
        if len(compound) <= MAX_SOURCE_LENGTH
        and len(to_pig_latin(compound)) <= MAX_TARGET_LENGTH
        and all(part in known_words for part in compound.split("-"))
    ]


def build_datasets() -> dict[str, str]:
    """The text of both data files, keyed by file name: sorted lines "english piglatin\\n"."""
    ranking = words_by_frequency()
    dictionary = dictionary_words()
    compounds = dictionary_compounds()

    large_words = frequent_single_words(ranking, dictionary, LARGE_SINGLE_WORDS)
    small_words = large_words[:SMALL_SINGLE_WORDS]

    rng = random.Random(SEED)
    small_compounds = rng.sample(compounds_of(set(small_words), compounds), SMALL_COMPOUNDS)
    chosen = set(small_compounds)
    large_only = [compound for compound in compounds_of(set(large_words), compounds) if compound not in chosen]
    large_compounds = small_compounds + rng.sample(large_only, LARGE_EXTRA_COMPOUNDS)

    return {
        SMALL_FILE: format_pairs(small_words + small_compounds),
        LARGE_FILE: format_pairs(large_words + large_compounds),
    }


def format_pairs(words: list[str]) -> str:
    """One "english piglatin" line per word, sorted, with a final newline."""
    return "".join(f"{word} {to_pig_latin(word)}\n" for word in sorted(words))


def stale_files(data_dir: Path = DATA_DIR) -> list[str]:
    """Names of the data files in `data_dir` that are missing or differ from a fresh build."""
    stale = []
    for name, text in build_datasets().items():
        path = data_dir / name
        if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
            stale.append(name)
    return stale


def summary(name: str, text: str) -> str:
    """A few lines describing one built file: sizes, hyphenated share, longest words, examples."""
    pairs = [tuple(line.split(" ")) for line in text.splitlines()]
    hyphenated = [pair for pair in pairs if "-" in pair[0]]
    rng = random.Random(SEED)
    examples = sorted(rng.sample(pairs, 4) + rng.sample(hyphenated, 2))
    return "\n".join(
        [
            f"{name}: {len(pairs):,} pairs, {len(hyphenated)} hyphenated ({len(hyphenated) / len(pairs):.1%}), "
            f"longest source {max(len(s) for s, _ in pairs)}, longest target {max(len(t) for _, t in pairs)}",
            *(f"    {source} {target}" for source, target in examples),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.build_datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files instead of writing them")
    args = parser.parse_args(argv)

    if args.check:
        stale = stale_files()
        if stale:
            print(
                f"error: missing or different from a fresh build: {', '.join(stale)} (in {DATA_DIR}); "
                "run `python -m data.build_datasets` to regenerate",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {SMALL_FILE} and {LARGE_FILE} match a fresh build")
        return 0

    for name, text in build_datasets().items():
        # Write bytes so the files end lines with "\n" on every platform and --check compares like with like.
        (DATA_DIR / name).write_bytes(text.encode("utf-8"))
        print(summary(name, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
