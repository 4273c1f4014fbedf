"""Dropout with masks a graded test can foresee, so that training mode can be checked value for value.

While a graded call runs, every dropout your code asks for (`nn.Dropout`, `F.dropout`, `torch.dropout`,
and the `dropout_p` of `F.scaled_dot_product_attention`) draws its mask from the call's seed and the
tensor's shape instead of from torch's global generator. Dropout still does what it always does — in
training mode it zeroes each value with probability p and scales the rest by 1 / (1 − p); with
training=False it is the identity — so any correct code gives the same numbers, and the oracle
(autograde/oracles.py) applies the same masks where the README places dropout.
"""

import hashlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def keep_mask(shape, p: float, seed: int) -> torch.Tensor:
    """(shape) booleans, True where a value is kept: the same for the same shape, p and seed, anywhere."""
    digest = hashlib.sha256(f"{seed}/{p!r}/{tuple(shape)}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.rand(tuple(shape), generator=generator, dtype=torch.float64) >= p


def drop(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Dropout in training mode with the foreseeable mask."""
    if p <= 0:
        return x
    if p >= 1:
        return x * 0
    return x * keep_mask(x.shape, p, seed).to(x.device) / (1 - p)


def _argument(args, kwargs, index: int, name: str, default):
    return args[index] if len(args) > index else kwargs.get(name, default)


class FixedDropout(TorchFunctionMode):
    """Inside it, dropout draws its masks with `drop` (and everything else runs as usual)."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout or func is torch.dropout:
            x = _argument(args, kwargs, 0, "input", None)
            p = float(_argument(args, kwargs, 1, "p", 0.5))
            training = bool(_argument(args, kwargs, 2, "training" if func is F.dropout else "train", True))
            return drop(x, p, self.seed) if training else x
        if func is F.scaled_dot_product_attention and float(kwargs.get("dropout_p", 0.0) or 0.0) > 0:
            return _attention_with_dropout(*args, **kwargs, seed=self.seed)
        return func(*args, **kwargs)


def _attention_with_dropout(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                            enable_gqa=False, seed=0):
    """scaled_dot_product_attention as PyTorch defines it, its dropout drawn with `drop`."""
    T, S = query.shape[-2], key.shape[-2]
    scores = query @ key.transpose(-2, -1) * (query.shape[-1] ** -0.5 if scale is None else scale)
    if is_causal:
        attn_mask = torch.ones(T, S, dtype=torch.bool, device=query.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return drop(scores.softmax(dim=-1), dropout_p, seed) @ value
