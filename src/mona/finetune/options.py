"""The options of `mona finetune`, with their defaults (imports nothing heavy: the command line builds its options
from this class)."""

from __future__ import annotations

from dataclasses import dataclass

from mona.config import opt
from mona.errors import ConfigError


@dataclass(frozen=True)
class FinetuneConfig:
    """Arguments of a fine-tuning run (all but `save_every` decide the result, so a checkpoint records them)."""

    model: str | None = opt(None, "Model to fine-tune (default: embedded SmolLM2).")
    epochs: int = opt(2, "Passes over the data.")
    lr: float = opt(2e-4, "Peak learning rate (5 % linear warm-up, then linear decay).")
    lora_r: int = opt(8, "LoRA rank (on q/k/v/o_proj).")
    lora_alpha: float = opt(16, "LoRA alpha.")
    max_length: int = opt(512, "Tokens per row; longer rows are cut.")
    batch_tokens: int = opt(2048, "Padded tokens per batch (rows of similar length).")
    grad_accum: int = opt(1, "Batches per optimizer step.")
    seed: int = opt(0, "Seed of the LoRA init and the batch order.")
    save_every: int = opt(50, "Checkpoint every N optimizer steps (and at the end).")
    text_field: str | None = opt(None, "Train on this field as plain text (loss on all tokens).")

    def check(self) -> None:
        for name in ("epochs", "lora_r", "max_length", "batch_tokens", "grad_accum", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0 or not self.lora_alpha > 0:
            raise ConfigError("--lr and --lora-alpha must be positive")
