"""LLM2Vec baseline (BehnamGhader et al. 2024): a decoder LM turned into a text encoder (bidirectional attention,
masked next-token prediction, contrastive training), mean-pooled; cosine to the mean target embedding.

It needs the `llm2vec` package and an LLM2Vec model on disk (the hub is not reachable at run time): pass the
model directory with `--llm2vec-model DIR` (Llm2VecOptions.model). DIR is either a model directory
(`config.json`, as LLM2Vec's MNTP checkpoints: LLM2Vec merges an adapter stored beside it) or a PEFT adapter
directory alone (`adapter_config.json`, e.g. a supervised LLM2Vec adapter) whose base model path it names, which
must then be local too. Nothing of this is installed by default; without it the method stops with a DependencyError
saying what to install and pass."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mona.data.formats import Sample
from mona.errors import DependencyError
from mona.features.base import FeatureBlock, Featurizer
from mona.features.options import MethodSettings
from mona.models import model_fingerprint

HOW_TO = ("the llm2vec method needs the `llm2vec` package (`pip install llm2vec`) and a local LLM2Vec model "
          "directory passed with --llm2vec-model DIR (e.g. a downloaded copy of "
          "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-supervised, or an LLM2Vec PEFT adapter directory whose base "
          "model is also local): the model hub is not reachable from here")


def llm2vec_available() -> bool:
    return importlib.util.find_spec("llm2vec") is not None


def resolve_model(path: str | None) -> tuple[str, str | None]:
    """(base model path, PEFT adapter path or None) of `--llm2vec-model`; DependencyError if unusable."""
    if not llm2vec_available():
        raise DependencyError(f"`llm2vec` is not installed: {HOW_TO}")
    if not path:
        raise DependencyError(f"no LLM2Vec model given: {HOW_TO}")
    p = Path(path)
    if not p.is_dir():
        raise DependencyError(f"LLM2Vec model directory not found: {path} ({HOW_TO})")
    adapter = p / "adapter_config.json"
    if adapter.exists() and not (p / "config.json").exists():  # an adapter alone (a model dir may hold both)
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base or not Path(base).is_dir():
            raise DependencyError(f"the LLM2Vec adapter {path} names base model {base!r}, which is not a local "
                                  f"directory; download it and set base_model_name_or_path ({HOW_TO})")
        return str(base), str(p)
    return str(p), None


class LLM2VecFeaturizer(Featurizer):
    """Dense LLM2Vec embeddings (LLM2Vec.encode, mean pooling) of each sample's plain text."""

    name = "llm2vec"

    def __init__(self, model: str | None, *, max_length: int = 512, batch_size: int = 16) -> None:
        self.base, self.peft = resolve_model(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self._encoder = None

    @classmethod
    def from_options(cls, options: MethodSettings, _runner) -> LLM2VecFeaturizer:
        """The LLM2Vec model the options name, at the selection model's max_length."""
        return cls(options.params.model, max_length=options.lm.max_length)

    def key_config(self) -> dict[str, Any]:
        return {"method": self.name, "model": model_fingerprint(self.base),
                "peft": model_fingerprint(self.peft) if self.peft else None, "pooling": "mean",
                "max_length": self.max_length}

    def text_key(self, sample: Sample) -> str:
        return sample.plain_text()

    def _load(self):
        if self._encoder is None:
            import torch
            from llm2vec import LLM2Vec

            self._encoder = LLM2Vec.from_pretrained(self.base, peft_model_name_or_path=self.peft,
                                                    merge_peft=True, pooling_mode="mean",
                                                    max_length=self.max_length, torch_dtype=torch.float32)
        return self._encoder

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        encoder = self._load()
        for start in range(0, len(samples), self.batch_size):
            chunk = [s.plain_text() for s in samples[start: start + self.batch_size]]
            emb = encoder.encode(chunk, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True,
                                 device="cpu")
            yield FeatureBlock(list(range(start, start + len(chunk))), np.asarray(emb, dtype=np.float32))
