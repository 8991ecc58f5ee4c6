"""The options of `mona explain`, `mona features label`, `mona judge` and `mona plot profiles`, with their defaults
(imports nothing heavy: the command line builds its options from these classes)."""

from __future__ import annotations

from dataclasses import dataclass

from mona.config import opt
from mona.errors import ConfigError
from mona.sae.options import DEFAULT_MIX


@dataclass(frozen=True)
class ExplainConfig:
    """How much of a selection `mona explain` explains."""

    top: int = opt(5, "Rows of --selection to explain.")
    latents: int = opt(5, "Latents shown per row.")


@dataclass(frozen=True)
class LabelConfig:
    """Which SAE `mona features label` labels, on which texts."""

    sae: str | None = opt(None, "SAE directory (default: the shipped SAE).")
    model: str | None = opt(None, "Model (default: embedded SmolLM2-135M-Instruct).")
    texts: str = opt(DEFAULT_MIX, f"Text file (any pool format) or '{DEFAULT_MIX}'.")
    samples: int = opt(2000, "Number of texts to read.")
    top_n: int = opt(8, "Contexts kept per latent.")
    layer: int | None = opt(None, "Decoder layer (default: the one the SAE reads; picks one SAE of a release "
                                  "folder).")


@dataclass(frozen=True)
class JudgeConfig:
    """Who judges a selection and how many of its rows."""

    n: int = opt(20, "Rows rated per selection (seeded random sample).")
    n_targets: int = opt(5, "Target examples shown to the judge.")
    seed: int = opt(0, "Seed of the samples.")
    model: str | None = opt(None, "Local judge model (default: embedded SmolLM2-Instruct).")
    api_base: str | None = opt(None, "OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    api_model: str | None = opt(None, "Model name at --api-base.")

    def check(self) -> None:
        """Refuse an endpoint without a model name or the reverse."""
        if (self.api_base is None) != (self.api_model is None):
            raise ConfigError("--api-base and --api-model go together")


@dataclass(frozen=True)
class ProfilesConfig:
    """What the activation-profile figure (the paper's Figure 4) draws."""

    n: int = opt(50, "Samples per set (seeded).")
    units: int = opt(100, "Most variant units per panel.")
    seed: int = opt(0, "Seed of the samples drawn.")
