"""The two sequence models students finish, `transformer.py` (Q1) and `mamba.py` (Q2), and the given
LSTM/GRU baselines in `rnn.py`."""

from models.family import FamilySeq2Seq
from models.mamba import MambaSeq2Seq
from models.rnn import RNNSeq2Seq
from models.transformer import TransformerSeq2Seq

__all__ = ["FamilySeq2Seq", "MambaSeq2Seq", "RNNSeq2Seq", "TransformerSeq2Seq"]
