"""The options of `mona sae train`, with their defaults (imports nothing heavy: the command line builds its options
from these classes)."""

from __future__ import annotations

from dataclasses import dataclass

from mona.config import opt
from mona.features.options import LAYER_HELP

DEFAULT_MIX = "bigbench-mix"


@dataclass(frozen=True)
class SaeBuildConfig:
    """What an SAE is trained on: the texts, the model and the layer read."""

    texts: str = opt(DEFAULT_MIX, f"Text file (any pool format) or '{DEFAULT_MIX}' (BIG-bench rows from every task "
                                  "file).")
    samples: int = opt(16000, "Number of texts to read.")
    model: str | None = opt(None, "Model (default: embedded SmolLM2-135M-Instruct).")
    layer: int | None = opt(None, LAYER_HELP)
    max_length: int = opt(256, "Tokens per text.")


@dataclass(frozen=True)
class SaeTrainConfig:
    """Hyper-parameters of `mona sae train` (defaults: the shipped SAE)."""

    expansion_factor: int = opt(16, "Latents = this x the model's hidden size.")
    k: int = opt(32, "Active latents per token.")
    epochs: int = opt(4, "Passes over the collected activations.")
    batch_tokens: int = 4096
    # sparsify's Adam rule (2e-4 / sqrt(latents / 2**14) = 2.7e-4 here) suits billions of tokens; on our few
    # million, 8e-4 reached held-out FVU 0.41 vs 0.54 after the same 20 steps (measured on one shard).
    lr: float | None = opt(8e-4, "Adam learning rate.")
    auxk_alpha: float = 1 / 32
    dead_tokens: int = 250_000  # a latent silent for this many tokens counts as dead (AuxK revives it)
    heldout_fraction: float = 0.05
    seed: int = opt(0, "Seed for the text sample, split and initialisation.")
