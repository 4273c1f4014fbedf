"""The LightningModule that trains either model on Pig Latin, and greedy decoding.

Batches are `(source, target)` of character ids, shapes (B, S) and (B, T), with no SOS/EOS: the model
reads `[SOS] + target` and learns to predict `target + [EOS]`.
"""

import math
from collections import defaultdict
from contextlib import contextmanager

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from data.vocab import VOCAB
from models import FamilySeq2Seq, MambaSeq2Seq, RNNSeq2Seq, TransformerSeq2Seq
from models.decoding import stepper_for
from training.config import FAMILY_MODELS, Config


def build_model(config: Config) -> nn.Module:
    """The sequence model a config asks for."""
    if config.model == "transformer":
        return TransformerSeq2Seq(
            len(VOCAB), config.hidden_size, config.num_heads, config.num_encoder_layers,
            config.num_decoder_layers, config.dropout, config.max_length, config.positional,
        )
    if config.model in ("lstm", "gru"):
        return RNNSeq2Seq(len(VOCAB), config.model, config.hidden_size, config.num_encoder_layers,
                          config.num_decoder_layers, config.dropout)
    if config.model in FAMILY_MODELS:
        return FamilySeq2Seq(
            config.model, len(VOCAB), VOCAB.EOS, config.hidden_size, config.num_layers, config.dropout,
            config.state_size, config.expand, config.conv_kernel, config.max_length, config.scan, config.dt_min,
            config.dt_max,
        )
    return MambaSeq2Seq(
        len(VOCAB), VOCAB.EOS, config.hidden_size, config.num_layers, config.dropout, layout=config.layout,
        state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel,
        discretization=config.discretization, alpha=config.alpha, scan=config.scan, A_init=config.A_init,
        dt_min=config.dt_min, dt_max=config.dt_max,
    )


@contextmanager
def eval_mode(model: nn.Module):
    """Evaluation mode (no dropout) for the duration, then whatever mode the model was in before."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def with_sos(target: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T+1): the decoder's input, SOS followed by the target."""
    return torch.cat([torch.full_like(target[:, :1], VOCAB.SOS), target], dim=1)


def with_eos(target: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T+1): what the decoder must predict, the target followed by EOS."""
    return torch.cat([target, torch.full_like(target[:, :1], VOCAB.EOS)], dim=1)


class FullRerun:
    """Greedy decoding for a model without a step-by-step path (the LSTM and GRU baselines): every step
    reruns `decode` over everything written so far. Same interface as models/decoding.py's steppers."""

    def __init__(self, model: nn.Module, source: torch.Tensor):
        self.model = model
        self.state = model.encode(source)
        self.tokens = source[:, :0]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) -> logits (B, V) for the next position."""
        self.tokens = torch.cat([self.tokens, tokens[:, None]], dim=1)
        return self.model.decode(self.tokens, self.state)[:, -1]


def start_decoding(model: nn.Module, source: torch.Tensor):
    """The model's step-by-step decoder on `source` (B, S): constant time per character for the
    Transformer and Mamba (models/decoding.py), a rerun of the decoder per character otherwise."""
    return stepper_for(model, source) or FullRerun(model, source)


@torch.no_grad()
def greedy_decode(model: nn.Module, source: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """(B, S) -> (B, T'): the most likely next character, one at a time, until every word has emitted EOS.

    The whole batch decodes together; a finished word keeps producing tokens that `VOCAB.decode` ignores
    after its first EOS. The model must be in eval mode (see `eval_mode`).
    """
    decoder = start_decoding(model, source)
    next_token = torch.full_like(source[:, 0], VOCAB.SOS)  # (B,)
    generated = []
    finished = torch.zeros(source.shape[0], dtype=torch.bool, device=source.device)
    for _ in range(max_new_tokens):
        next_token = decoder.step(next_token).argmax(dim=-1)  # (B,)
        generated.append(next_token)
        finished |= next_token == VOCAB.EOS
        if finished.all():
            break
    return torch.stack(generated, dim=1) if generated else source[:, :0]


PAD = -1  # fills `expected` after a word's EOS when words of one batch have different lengths


@torch.no_grad()
def greedy_matches(model: nn.Module, source: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """(B, S), (B, T) -> (B,) bool: does greedy decoding produce exactly `expected` (target, EOS, then PAD)?

    The same answer as decoding every word in full and comparing, but cheaper: no word is decoded past
    its EOS, and decoding stops as soon as every word still being checked has gone wrong.
    """
    decoder = start_decoding(model, source)
    next_token = torch.full_like(source[:, 0], VOCAB.SOS)  # (B,)
    matches = torch.ones(source.shape[0], dtype=torch.bool, device=source.device)
    for step in range(expected.shape[1]):
        wanted = expected[:, step]  # (B,)
        if not (matches & (wanted != PAD)).any():
            break
        next_token = decoder.step(next_token).argmax(dim=-1)  # (B,)
        matches &= (next_token == wanted) | (wanted == PAD)
    return matches


def decoding_batches(pairs: list, max_batch_size: int = 512) -> list:
    """Words grouped by source length alone, as [(source (B, S), expected (B, T_max + 1))].

    Greedy decoding needs equal source lengths only, so these batches are fewer and larger than the
    training ones (which also share a target length): fewer decoder calls for the same words.
    """
    by_length = defaultdict(list)
    for english, piglatin in pairs:
        by_length[len(english)].append((english, piglatin))
    batches = []
    for length in sorted(by_length):
        group = by_length[length]
        for start in range(0, len(group), max_batch_size):
            chunk = group[start:start + max_batch_size]
            source = torch.tensor([VOCAB.encode(english) for english, _ in chunk])
            expected = torch.full((len(chunk), max(len(p) for _, p in chunk) + 1), PAD)
            for row, (_, piglatin) in enumerate(chunk):
                ids = VOCAB.encode(piglatin) + [VOCAB.EOS]
                expected[row, :len(ids)] = torch.tensor(ids)
            batches.append((source, expected))
    return batches


def word_results(model: nn.Module, pairs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoded, teacher_forced), each (len(pairs),) bool in the order of `decoding_batches(pairs)`: is each
    word right by greedy decoding (step by step), and by the teacher-forced `forward` pass that the
    per-epoch accuracy reads?

    For a causal model whose `forward` computes what its decoding steps compute, the two agree word for
    word (see Seq2SeqModule.validation_step); where they don't, one of the two is wrong.
    """
    device = next(model.parameters()).device
    decoded, forced = [], []
    with eval_mode(model), torch.no_grad():
        for source, expected in decoding_batches(pairs):
            source, expected = source.to(device), expected.to(device)
            decoded.append(greedy_matches(model, source, expected))
            # Shorter words are padded with EOS: a causal model's earlier positions never see the padding.
            # In training-sized chunks: a whole sequence of 512 words would hold Mamba's (B, L, E, N) at once.
            target_in = with_sos(expected[:, :-1].masked_fill(expected[:, :-1] == PAD, VOCAB.EOS))
            for rows in torch.arange(len(source), device=device).split(64):
                guesses = model(source[rows], target_in[rows]).argmax(dim=-1)  # (64, T_max + 1)
                forced.append(((guesses == expected[rows]) | (expected[rows] == PAD)).all(dim=1))
    return torch.cat(decoded).cpu(), torch.cat(forced).cpu()


def decode_budget(source_length: int, max_length: int = None) -> int:
    """How many characters to generate at most: Pig Latin adds at most 3 per dash-separated part."""
    budget = 2 * source_length + 4
    return budget if max_length is None else min(budget, max_length - 1)


def model_budget(model: nn.Module, source_length: int) -> int:
    """decode_budget within what the model's tables hold: the Transformer's target positions (`max_length`),
    or, for a family member that reads [source, EOS, SOS, target] as one sequence in a table of
    `joint_max_length`, what is left of it after the source, its EOS and SOS."""
    joint = getattr(model, "joint_max_length", None)
    if joint is not None:
        return min(decode_budget(source_length), joint - source_length - 1)
    return decode_budget(source_length, getattr(model, "max_length", None))



def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The optimizer's parameter groups: weight decay on weight matrices and embeddings only.

    Biases, norms' gains and Mamba's D (all 1-D) are left alone, and so is whatever a model marks
    `no_weight_decay`: Mamba's A_log, whose decay would pull every A towards −1 and undo the spread of decay
    rates S4D-Real starts from, and the state-space family's A and Δ (models/family.py), as the S4 papers train them.
    """
    decayed, kept = [], []
    for parameter in model.parameters():
        plain = parameter.ndim < 2 or getattr(parameter, "no_weight_decay", False)
        (kept if plain else decayed).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


class Seq2SeqModule(L.LightningModule):
    """Trains a `TransformerSeq2Seq`, `MambaSeq2Seq` or `RNNSeq2Seq`; logs per-character loss and whole-word accuracy."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = Config(**config)
        self.model = build_model(self.config)

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy per character of predicting target + EOS from SOS + target."""
        return self._loss_and_logits(batch)[0]

    def _loss_and_logits(self, batch):
        source, target = batch
        logits = self.model(source, with_sos(target))  # (B, T+1, V)
        return F.cross_entropy(logits.flatten(0, 1), with_eos(target).flatten()), logits

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss_and_logits(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        source, target = batch
        loss, logits = self._loss_and_logits(batch)
        # Greedy decoding reproduces a word exactly iff, fed the right prefix, the model's top choice is
        # right at every position: its prefix is then the right one all along. For a causal decoder that
        # is exactly what this teacher-forced pass computes, so it gives greedy decoding's word accuracy
        # at no extra cost. training/run.py decodes for real at the end and warns if the two disagree.
        right = (logits.argmax(dim=-1) == with_eos(target)).all(dim=1).float().mean()
        self.log("val_loss", loss, on_epoch=True, batch_size=source.shape[0], prog_bar=True)
        self.log("val_word_acc", right, on_epoch=True, batch_size=source.shape[0], prog_bar=True)

    def translate(self, words: list) -> list:
        """Greedy translations of lowercase words, each decoded on its own (any length mix)."""
        results = []
        with eval_mode(self.model):  # dropout off: the original starter forgot this
            for word in words:
                source = torch.tensor([VOCAB.encode(word)], device=self.device)
                tokens = greedy_decode(self.model, source, model_budget(self.model, len(word)))
                results.append(VOCAB.decode(tokens[0].tolist()))
        return results

    def configure_optimizers(self):
        config = self.config
        # All parameters: embeddings and the output layer too (the original trained only the middle).
        parameters = parameter_groups(self.model, config.weight_decay)
        # fused: one kernel per tensor instead of a dozen small operations; on a CPU, where torch does not
        # group tensors by itself, the step of the small Transformer's 92 tensors takes a quarter of the time.
        # Fused steps take real tensors only (the S4 family has complex ones).
        fused = all(parameter.is_floating_point() for parameter in self.model.parameters())
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(parameters, lr=config.lr, fused=fused)
        elif config.optimizer == "adam":
            optimizer = torch.optim.Adam(parameters, lr=config.lr, fused=fused)
        else:
            optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, fused=fused)

        total_steps = max(1, self.trainer.estimated_stepping_batches)
        warmup_steps = int(config.warmup_epochs * total_steps / max(1, config.epochs))

        def lr_factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            if config.scheduler == "constant":
                return 1.0
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        # The key is "lr_scheduler": the original used "scheduler", and Lightning never stepped it.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
