"""The 29-token character vocabulary every Pig-Latin model reads and writes.

    id:     0    1 .. 26    27       28
    token:  '-'  'a' .. 'z' '<SOS>'  '<EOS>'

Data batches hold character ids only; the models add SOS and EOS themselves.
"""

from collections.abc import Iterable
import string

TOKENS = ("-", *string.ascii_lowercase, "<SOS>", "<EOS>")


class Vocab:
    """Maps characters to ids and back: `encode("pig") == [16, 9, 7]`, `decode([16, 9, 7, 28]) == "pig"`."""

    SOS = TOKENS.index("<SOS>")  # 27, start of sequence: the decoder's first input
    EOS = TOKENS.index("<EOS>")  # 28, end of sequence: the last token a model should produce

    def __init__(self) -> None:
        # Printable names for every id, for plots and bertviz: tokens[i] is the name of id i.
        self.tokens: list[str] = list(TOKENS)
        self._id_of_character = {token: i for i, token in enumerate(TOKENS) if len(token) == 1}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, word: str) -> list[int]:
        """Character ids of `word`, without SOS/EOS: a word of length L gives L ids in 0..26."""
        ids = []
        for position, character in enumerate(word):
            if character not in self._id_of_character:
                raise ValueError(
                    f"cannot encode {word!r}: character {character!r} at position {position} is not in the "
                    "vocabulary (lowercase letters a-z and '-')"
                )
            ids.append(self._id_of_character[character])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The word spelled by `ids` (a list, or a 1-D tensor of length L): SOS is skipped, the first EOS ends it."""
        characters = []
        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < len(self.tokens):
                raise ValueError(f"cannot decode id {token_id}: vocabulary ids run from 0 to {len(self.tokens) - 1}")
            if token_id == self.EOS:
                break
            if token_id != self.SOS:
                characters.append(self.tokens[token_id])
        return "".join(characters)


VOCAB = Vocab()
