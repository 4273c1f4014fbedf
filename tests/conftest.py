"""Fixtures shared by the tests that train models or run main.py: a tiny dataset, one torch thread."""

import pytest
import torch

from data.pig_latin import to_pig_latin

# 8 onsets x 5 vowels x 3 codas = 120 distinct words that reach every branch of the rule:
# vowel-initial ("an"), single consonants ("bin"), clusters ("strump") and "qu" ("quack").
ONSETS = ["", "b", "ch", "d", "fl", "m", "str", "qu"]
VOWELS = "aeiou"
CODAS = ["n", "ck", "mp"]


def tiny_words() -> list[str]:
    """The 120 words of the tiny dataset, in a fixed order."""
    return [onset + vowel + coda for onset in ONSETS for vowel in VOWELS for coda in CODAS]


@pytest.fixture(scope="session")
def tiny_data_file(tmp_path_factory):
    """A data file of 120 'english piglatin' pairs: a training run on it takes about a second."""
    path = tmp_path_factory.mktemp("data") / "tiny_pairs.txt"
    path.write_text("".join(f"{word} {to_pig_latin(word)}\n" for word in tiny_words()))
    return path


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny models train fastest on one thread: on a busy CPU, a second thread only waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
