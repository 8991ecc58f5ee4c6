"""The options of `mona llm2vec train` and `mona llm2vec eval`, with their defaults (imports nothing heavy: the
command line builds its options from these classes). The training defaults are those of the shipped adapter
(src/mona/assets/llm2vec/.../MODEL_CARD.md says what they cost)."""

from __future__ import annotations

from dataclasses import dataclass

from mona.config import opt
from mona.errors import ConfigError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EVAL_VARIANTS = ("llm2vec", "mntp", "bidirectional", "causal")


@dataclass(frozen=True)
class Llm2VecTrainConfig:
    """LLM2Vec's three steps on the embedded model (bidirectional attention, MNTP LoRA, SimCSE LoRA on the merged
    MNTP one), trained on BIG-bench rows of the tasks not held out."""

    model: str | None = opt(None, "Model to adapt (default: the embedded SmolLM2-135M-Instruct).")
    mntp_steps: int = opt(180, "Masked next-token prediction steps (AdamW).")
    simcse_steps: int = opt(60, "Unsupervised SimCSE steps, after MNTP.")
    batch_size: int = opt(8, "MNTP rows per step.")
    simcse_batch_size: int = opt(16, "SimCSE rows per step (each passed twice: the positives; the other rows are "
                                     "the negatives).")
    max_length: int = opt(64, "Tokens per training row (longer rows are cut).")
    lora_rank: int = opt(8, "LoRA rank of each adapter (on the attention and MLP projections).")
    lora_alpha: float = opt(16.0, "LoRA alpha (scale alpha / rank).")
    lora_dropout: float = opt(0.05, "LoRA dropout.")
    mntp_lr: float = opt(5e-4, "MNTP peak learning rate (linear warm-up, cosine decay).")
    simcse_lr: float = opt(2e-4, "SimCSE peak learning rate (linear warm-up, cosine decay).")
    mask_fraction: float = opt(0.2, "MNTP: share of each row's tokens masked (of those, 80 % become the mask "
                                    "token, 10 % a random token, 10 % stay; LLM2Vec's BERT-style masking).")
    mask_token: str = opt("_", "MNTP: the text of the mask token (the model has none; LLM2Vec uses '_' for "
                               "LLaMA).")
    temperature: float = opt(0.05, "SimCSE: temperature of the InfoNCE loss over cosines.")
    simcse_dropout: float = opt(0.3, "SimCSE: attention dropout while training (the two passes' noise).")
    per_task: int = opt(40, "Training rows drawn from each BIG-bench task (its task files together).")
    heldout_fraction: float = opt(0.2, "Share of the BIG-bench tasks kept out of training, for `mona llm2vec "
                                       "eval`.")
    checkpoint_every: int = opt(5, "Steps between checkpoints (a killed run resumes from the last).")
    seed: int = opt(0, "Seed of the task split, the rows, the masks, dropout and the LoRA initialisation.")
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    lora_targets: tuple[str, ...] = LORA_TARGETS

    def check(self) -> None:
        """Refuse values the training cannot run with."""
        checks = [(self.mntp_steps >= 0 and self.simcse_steps >= 0, "step counts must be >= 0"),
                  (self.batch_size >= 1, "--batch-size must be at least 1"),
                  (self.simcse_batch_size >= 2, "--simcse-batch-size must be at least 2 (in-batch negatives)"),
                  (self.max_length >= 4, "--max-length must be at least 4"),
                  (self.lora_rank >= 1 and self.lora_alpha > 0, "LoRA rank and alpha must be positive"),
                  (0 <= self.lora_dropout < 1 and 0 <= self.simcse_dropout < 1, "dropouts must be in [0, 1)"),
                  (self.mntp_lr > 0 and self.simcse_lr > 0, "learning rates must be positive"),
                  (0 < self.mask_fraction < 1, "--mask-fraction must be in (0, 1)"),
                  (self.temperature > 0, "--temperature must be positive"),
                  (self.per_task >= 1, "--per-task must be at least 1"),
                  (0 < self.heldout_fraction < 1, "--heldout-fraction must be in (0, 1)"),
                  (self.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
                  (0 <= self.warmup_fraction < 1, "warmup_fraction must be in [0, 1)")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"llm2vec train: {message}")


@dataclass(frozen=True)
class Llm2VecEvalConfig:
    """How an LLM2Vec adapter is measured: held-out BIG-bench tasks (those its training kept out), a few rows
    each; cosine AUC of same-task vs other-task pairs and precision@k of same-task neighbours."""

    adapter: str | None = opt(None, "Adapter directory of `mona llm2vec train` (default: the shipped one).")
    variants: str = opt(",".join(EVAL_VARIANTS), "Comma-separated encoders to compare: llm2vec (bidirectional + "
                                                 "MNTP + SimCSE), mntp (bidirectional + MNTP), bidirectional "
                                                 "(untrained), causal (the plain model).")
    rows_per_task: int = opt(8, "Rows per held-out task (from one of its task files, seeded); precision@k uses "
                                "k = this - 1.")
    max_length: int = opt(128, "Tokens per row.")
    batch_size: int = opt(16, "Rows per forward pass.")
    seed: int = opt(0, "Seed of the task files and rows picked.")
    out_dir: str = opt("docs/benchmarks", "Where to write NAME.md and NAME.json.")
    name: str = opt("llm2vec", "Report name.")
    card: bool = opt(False, "Also rewrite the adapter's MODEL_CARD.md with these figures.")

    @property
    def variant_names(self) -> list[str]:
        """The encoders compared, in order (ConfigError for an unknown one)."""
        names = [v.strip() for v in self.variants.split(",") if v.strip()]
        for name in names:
            if name not in EVAL_VARIANTS:
                raise ConfigError(f"unknown llm2vec eval variant {name!r}; choose from {', '.join(EVAL_VARIANTS)}")
        if not names:
            raise ConfigError("--variants names no encoder")
        return names
