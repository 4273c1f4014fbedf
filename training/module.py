"""What every training run trains with: the model a config asks for, and `TrainingModule`, the
LightningModule that holds a run's config, its model and its optimizer and schedule, so that Pig Latin
(training/piglatin.py: Seq2SeqModule) and the synthetic tasks (training/synthetic.py: SyntheticModule) train
alike.
"""

import math

import lightning as L
import torch
from torch import nn

from data.vocab import VOCAB
from models import FamilySeq2Seq, MambaSeq2Seq, RNNSeq2Seq, TransformerSeq2Seq
from training.config import FAMILY_MODELS, Config


def mamba_options(config: Config) -> dict:
    """The MambaBlock options a config sets: the same for Pig Latin and the synthetic tasks."""
    return dict(state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel,
                discretization=config.discretization, alpha=config.alpha, scan=config.scan, A_init=config.A_init,
                dt_min=config.dt_min, dt_max=config.dt_max)


def family_options(config: Config) -> dict:
    """The options of a state-space family member (models/family.py) a config sets, besides its length."""
    return dict(hidden_size=config.hidden_size, num_layers=config.num_layers, dropout=config.dropout,
                state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel, scan=config.scan,
                dt_min=config.dt_min, dt_max=config.dt_max)


def build_model(config: Config) -> nn.Module:
    """The sequence model a config asks for."""
    if config.model == "transformer":
        return TransformerSeq2Seq(
            len(VOCAB), hidden_size=config.hidden_size, num_heads=config.num_heads,
            num_encoder_layers=config.num_encoder_layers, num_decoder_layers=config.num_decoder_layers,
            dropout=config.dropout, max_length=config.max_length, positional=config.positional,
        )
    if config.model in ("lstm", "gru"):
        return RNNSeq2Seq(len(VOCAB), cell=config.model, hidden_size=config.hidden_size,
                          num_encoder_layers=config.num_encoder_layers, num_decoder_layers=config.num_decoder_layers,
                          dropout=config.dropout)
    if config.model in FAMILY_MODELS:
        return FamilySeq2Seq(config.model, len(VOCAB), VOCAB.EOS, max_length=config.max_length, **family_options(config))
    return MambaSeq2Seq(len(VOCAB), VOCAB.EOS, hidden_size=config.hidden_size, num_layers=config.num_layers,
                        dropout=config.dropout, layout=config.layout, **mamba_options(config))


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


class TrainingModule(L.LightningModule):
    """A run's model, its config (saved in every checkpoint) and its optimizer and schedule. A subclass gives
    `make_model(config)`, the model it trains, and `loss(batch)`, what it trains on (checked once before training)."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = Config(**config)
        self.model = self.make_model(self.config)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

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
