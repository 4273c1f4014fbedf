"""The sequence models: the two students finish, `transformer.py` (Q1) and `mamba.py` (Q2), and the given
ones to compare them with: the LSTM and GRU baselines (`rnn.py`), the state-space family (`s4.py`,
`family.py`: S4, S4D, S6, Mamba with any of them as mixer, a gated MLP) and the synthetic tasks' token
models (`hybrid.py`). Step-by-step and greedy decoding for all of them: `decoding.py`."""

from models.family import FamilySeq2Seq
from models.mamba import MambaSeq2Seq
from models.rnn import RNNSeq2Seq
from models.transformer import TransformerSeq2Seq

__all__ = ["FamilySeq2Seq", "MambaSeq2Seq", "RNNSeq2Seq", "TransformerSeq2Seq"]
