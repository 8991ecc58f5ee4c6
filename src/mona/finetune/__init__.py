"""Fine-tune the selection model on selected data (LoRA) and evaluate it on held-out rows."""

from mona.finetune.evaluate import evaluate, parse_options, run_lm_eval
from mona.finetune.sft import FinetuneConfig, finetune

__all__ = ["FinetuneConfig", "evaluate", "finetune", "parse_options", "run_lm_eval"]
