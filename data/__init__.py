"""The data layer: the Pig-Latin rule, the vocabulary, the data files and their Lightning DataModule.

The DataModule lives in `data.datamodule` and is not imported here, so that the rule, the vocabulary
and `python -m data.build_datasets` work without loading Lightning.
"""

from data.pig_latin import part_to_pig_latin, to_pig_latin
from data.vocab import VOCAB, Vocab

__all__ = ["VOCAB", "Vocab", "part_to_pig_latin", "to_pig_latin"]
