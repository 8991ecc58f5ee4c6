"""The options of `mona finetune` and `mona eval`, with their defaults (imports nothing heavy: the command line
builds its options from these classes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mona.config import DEVICES, opt
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
    dtype: str = opt("auto", "Training precision: auto (bf16 autocast where the device runs bf16 faster, as "
                             "`mona select --dtype auto` decides; else fp32), fp32 or bf16. Weights and optimizer stay "
                             "fp32.")
    # where it runs does not decide the result (run_fingerprint leaves it out, as it does save_every)
    device: str = opt("auto", f"Where training runs: {DEVICES}.")

    def check(self) -> None:
        for name in ("epochs", "lora_r", "max_length", "batch_tokens", "grad_accum", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0 or not self.lora_alpha > 0:
            raise ConfigError("--lr and --lora-alpha must be positive")


@dataclass(frozen=True)
class EvalConfig:
    """What `mona eval` scores: a model (and adapter) on held-out rows, or on lm-evaluation-harness tasks."""

    data: Path | None = opt(None, "Held-out rows with a reference output.")
    model: str | None = opt(None, "Base model (default: embedded SmolLM2).")
    adapter: Path | None = opt(None, "LoRA adapter (DIR/adapter of `mona finetune`).")
    max_new_tokens: int = opt(32, "Greedy answer length for exact match on rows without options (0: no "
                                  "generation).")
    limit: int | None = opt(None, "Evaluate only the first N rows (per task for lm-eval).")
    lm_eval_tasks: str | None = opt(None, "Run these lm-evaluation-harness tasks instead (comma-separated; needs "
                                          "mona\\[lm-eval]).")
    device: str = opt("auto", f"Where the model runs: {DEVICES}. Scores are fp32 on every device.")

    def check(self) -> None:
        """Refuse a run that names both kinds of evaluation data, or neither."""
        if (self.data is None) == (self.lm_eval_tasks is None):
            raise ConfigError("give exactly one of --data or --lm-eval-tasks")
