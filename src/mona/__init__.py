"""mona: task-specific instruction-tuning data selection from monosemantic (SAE) features."""

__version__ = "0.1.0"
