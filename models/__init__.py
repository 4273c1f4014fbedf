"""The two sequence models students finish: `transformer.py` (Q1) and `mamba.py` (Q2)."""

from models.mamba import MambaSeq2Seq
from models.transformer import TransformerSeq2Seq

__all__ = ["MambaSeq2Seq", "TransformerSeq2Seq"]
