"""LLM2Vec (BehnamGhader et al. 2024): a decoder LM turned into a text encoder (bidirectional attention, masked
next-token prediction, unsupervised SimCSE), mean-pooled; cosine to the mean target embedding.

By default nothing needs installing or fetching: the embedded selection model (SmolLM2-135M-Instruct) is switched
to bidirectional attention (mona.models.bidirectional) and the two LoRA adapters mona ships
(`assets/llm2vec/smollm2-135m-instruct/`: MNTP, then SimCSE on the merged MNTP model, trained by
`mona llm2vec train`, mona.features.llm2vec_train; its MODEL_CARD.md has the data, cost and held-out figures)
are merged into it; a sample's vector is the mean of its plain text's final hidden states (after the final norm,
padding and the fixed first token left out). The cache key holds the adapters' fingerprint.

`--llm2vec-model DIR` (Llm2VecOptions.model) instead embeds with the `llm2vec` package and one of McGill-NLP's
released models on disk (the hub is not reachable at run time). DIR is either a model directory (`config.json`,
as LLM2Vec's MNTP checkpoints: LLM2Vec merges an adapter stored beside it) or a PEFT adapter directory alone
(`adapter_config.json`, e.g. a supervised LLM2Vec adapter) whose base model path it names, which must then be
local too. Without the package that path stops with a DependencyError saying what to install."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mona.data.formats import Sample
from mona.errors import ConfigError, DependencyError, MissingFileError
from mona.features.base import FeatureBlock, Featurizer
from mona.features.options import MethodSettings
from mona.models import DEFAULT_MODEL, model_fingerprint
from mona.paths import package_asset

HOW_TO = ("the llm2vec method with --llm2vec-model needs the `llm2vec` package (`pip install llm2vec`) and a "
          "local LLM2Vec model directory (e.g. a downloaded copy of "
          "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-supervised, or an LLM2Vec PEFT adapter directory whose base "
          "model is also local): the model hub is not reachable from here; without --llm2vec-model mona uses its "
          "shipped adapter on the embedded model")
SHIPPED_ADAPTER = "smollm2-135m-instruct"
# the adapters of an LLM2Vec adapter directory, merged in this order (SimCSE was trained on the merged MNTP model)
ADAPTER_PARTS = ("mntp", "simcse")


def shipped_adapter_path(name: str = SHIPPED_ADAPTER) -> Path:
    """Directory of an LLM2Vec adapter shipped inside the package."""
    return package_asset("llm2vec", name)


def adapter_fingerprint(path: Path, parts: Sequence[str] = ADAPTER_PARTS) -> str:
    """A hash of the adapters' weights and configs (the cache key's, so vectors of another adapter never mix)."""
    digest = hashlib.sha256()
    for part in parts:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            file = Path(path) / part / name
            if not file.exists():
                raise MissingFileError(f"not an LLM2Vec adapter directory (no {part}/{name}; `mona llm2vec train` "
                                       "writes one)", path=str(path))
            digest.update(f"{part}/{name}\0".encode())
            digest.update(file.read_bytes() if name.endswith(".safetensors") else _canonical_config(file))
    return digest.hexdigest()[:16]


def _canonical_config(path: Path) -> bytes:
    """An adapter_config.json as bytes that do not depend on the order PEFT wrote it in (it keeps
    target_modules as a set, whose order changes from one process to the next)."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return json.dumps(config, sort_keys=True).encode()


def apply_adapters(model, path: Path, parts: Sequence[str] = ADAPTER_PARTS):
    """`model` with each PEFT LoRA adapter `path/part` merged into its weights, in order; returns the plain
    (unwrapped) model."""
    from peft import PeftModel

    for part in parts:
        model = PeftModel.from_pretrained(model, str(Path(path) / part)).merge_and_unload()
    return model


def adapter_base(path: Path) -> str:
    """The model an adapter directory was trained for (its adapters' base_model_name_or_path)."""
    config = Path(path) / ADAPTER_PARTS[0] / "adapter_config.json"
    if not config.exists():
        raise MissingFileError("not an LLM2Vec adapter directory (no mntp/adapter_config.json; `mona llm2vec "
                               "train` writes one)", path=str(path))
    return str(json.loads(config.read_text()).get("base_model_name_or_path") or DEFAULT_MODEL)


def _same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def load_encoder(model: str | None, adapter: Path | None, parts: Sequence[str] = ADAPTER_PARTS, *,
                 bidirectional: bool = True, dtype: str = "fp32", device: str = "cpu"):
    """(model, tokenizer): `model` (None: the embedded one), bidirectional unless told otherwise, with the
    adapters `parts` of `adapter` merged (None: none), then cast to `dtype` (int8: quantized) on `device`; in eval
    mode, frozen."""
    from mona.models import load_lm, parse_dtype
    from mona.models.bidirectional import enable_bidirectional
    from mona.models.loader import quantize_int8

    encoder, tokenizer = load_lm(model, "fp32", "cpu")  # merge in fp32, then cast
    if bidirectional:
        enable_bidirectional(encoder)
    if adapter is not None and parts:
        encoder = apply_adapters(encoder, adapter, parts)
    encoder.eval()
    encoder.requires_grad_(False)
    if dtype == "int8":
        if device != "cpu":
            raise ConfigError(f"dtype int8 (dynamic quantization) runs on the CPU only, not on {device}")
        return quantize_int8(encoder), tokenizer
    return encoder.to(parse_dtype(dtype)).to(device), tokenizer


class LLM2VecFeaturizer(Featurizer):
    """Dense LLM2Vec embeddings of each sample's plain text: an adapter of `mona llm2vec train` (default: the
    shipped one) on the selection model (default: the embedded one), or with `--llm2vec-model` the llm2vec
    package's (`PackageLLM2VecFeaturizer`)."""

    name = "llm2vec"

    def __init__(self, runner=None, *, adapter: str | Path | None = None, max_length: int = 512,
                 batch_tokens: int = 8192) -> None:
        from mona.features.lm import LMRunner
        from mona.features.options import LMConfig

        self.runner = runner if runner is not None else LMRunner(LMConfig())
        self.model = self.runner.config.model
        self.adapter = Path(adapter) if adapter is not None else shipped_adapter_path()
        base, selection = adapter_base(self.adapter), self.model or DEFAULT_MODEL
        if not _same_model(base, selection):
            raise ConfigError(f"the LLM2Vec adapter {self.adapter} was trained for {base}, not for the selection "
                              f"model {selection}; pass an adapter of that model (--llm2vec-adapter, `mona llm2vec "
                              "train`) or an LLM2Vec model of your own (--llm2vec-model)")
        self.fingerprint = adapter_fingerprint(self.adapter)
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self._model = None
        self._tokenizer = None

    @classmethod
    def from_options(cls, options: MethodSettings, runner) -> Featurizer:
        """The shipped adapter on the embedded model, or the llm2vec package's model named by --llm2vec-model."""
        if options.params.model:
            return PackageLLM2VecFeaturizer(options.params.model, max_length=options.lm.max_length)
        return cls(runner, adapter=options.params.adapter, max_length=options.lm.max_length,
                   batch_tokens=options.lm.batch_tokens)

    def dtype_choice(self):
        """The dtype the encoder runs in and why (the selection model's, resolved)."""
        return self.runner.resolved_dtype()

    def key_config(self) -> dict[str, Any]:
        return {"method": self.name, "model": model_fingerprint(self.model), "adapter": self.fingerprint,
                "attention": "bidirectional", "pooling": "mean", "max_length": self.max_length,
                "dtype": self.dtype_choice().dtype}

    def text_key(self, sample: Sample) -> str:
        return sample.plain_text()

    def encoder(self):
        """(model, tokenizer), loaded once."""
        if self._model is None:
            self._model, self._tokenizer = load_encoder(self.model, self.adapter, dtype=self.dtype_choice().dtype,
                                                        device=self.runner.device)
        return self._model, self._tokenizer

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        from mona.models.bidirectional import embed_batches

        model, tokenizer = self.encoder()
        texts = [s.plain_text() for s in samples]
        for positions, vectors, tokens, truncated in embed_batches(model, tokenizer, texts,
                                                                    max_length=self.max_length,
                                                                    batch_tokens=self.batch_tokens):
            self.runner.truncated += truncated
            yield FeatureBlock(positions, vectors.numpy(), tokens)


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


class PackageLLM2VecFeaturizer(Featurizer):
    """Dense LLM2Vec embeddings (LLM2Vec.encode, mean pooling) of each sample's plain text, by the `llm2vec`
    package from a model directory of the user's (`--llm2vec-model`)."""

    name = "llm2vec"

    def __init__(self, model: str | None, *, max_length: int = 512, batch_size: int = 16) -> None:
        self.base, self.peft = resolve_model(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self._encoder = None

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
