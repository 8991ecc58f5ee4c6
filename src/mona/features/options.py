"""The typed options of every method, with their defaults: the one place a method's settings are written.

This module imports nothing heavy (no torch, numpy or scipy), so the command line builds its options from these
classes without loading a model. Each class's docstring is the method's one-line description (`mona methods`).

Fields named like MethodOptions' shared knobs (pooling, k, top_m, similarity, prototype) are the method's
defaults for those knobs; `--pooling` and the others override them for whichever method runs. Every other field
declared with `opt` is a method-specific option: the command line offers it as `--<prefix>-<field>` (or the
flag given in `opt(cli=...)`), the Python API (`mona.select(..., field=value)`) by its field name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mona.config import DEVICES, opt
from mona.errors import ConfigError

POOLINGS = ("mean", "sum", "max")
DSIR_HASHES = ("murmur3", "sha256")
BM25_COMBINE = ("mean", "max")
DTYPES = ("auto", "fp32", "bf16", "fp16", "int8")

# mona's latents per sample vector (MonaOptions.row_latents), chosen on the hard relevance suite (docs/relevance.md)
ROW_LATENTS = 96
LAYER_HELP = ("Decoder layer to read (0-based; default: the shipped SAE's layer on the embedded model, else the "
              "penultimate).")


class MethodSettings(Protocol):
    """What a featurizer or scorer is built from: mona.selection.config.MethodOptions with every shared knob set
    (registry.with_defaults) and `params` an instance of the method's options class."""

    lm: LMConfig
    sae: str | None
    k: int | None
    pooling: str | None
    similarity: str | None
    prototype: str | None
    top_m: int | None
    seed: int
    params: Any


@dataclass(frozen=True)
class LMConfig:
    """How samples go through the selection model."""

    model: str | None = opt(None, "Selection model: hub id, local dir or .gguf (default: embedded "
                                  "SmolLM2-135M-Instruct).")
    layer: int | None = opt(None, LAYER_HELP)  # None: sae.topk.default_layer
    render: str = opt("chat", "LM input rendering: chat (model's template) or plain.")
    max_length: int = opt(512, "Tokens per sample; longer ones are truncated and counted.")
    # In the cache key as resolved (auto -> fp32 or bf16), so vectors of the two never mix
    dtype: str = opt("auto", "Selection model dtype: auto (bf16 on CUDA GPUs with native bf16 and on CPUs with "
                             "AMX or AVX512-BF16 where a probe matmul confirms it, else fp32), fp32, bf16, fp16 "
                             "or int8 (dynamic quantization, CPU only).")
    batch_tokens: int = opt(8192, "Padded tokens per forward batch (memory vs. speed; the selection does not "
                                  "change).")
    # Not in the cache key: vectors agree up to rounding on either device
    device: str = opt("auto", f"Where the selection model runs: {DEVICES}.")

    def check(self) -> None:
        """Refuse values no model run accepts (before any model is loaded)."""
        from mona.data.render import RENDER_MODES

        if self.render not in RENDER_MODES:
            raise ConfigError(f"unknown rendering {self.render!r}; choose one of {', '.join(RENDER_MODES)}")
        if self.batch_tokens < 1:
            raise ConfigError(f"--batch-tokens must be at least 1, got {self.batch_tokens}")
        if self.max_length < 2:
            raise ConfigError(f"--max-length must be at least 2, got {self.max_length}")
        if self.dtype.lower() not in (*DTYPES, "float32", "bfloat16", "float16"):
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")


@dataclass(frozen=True)
class MonaOptions:
    """SAE (monosemantic) features of the selection model: the 16 largest codes per token, max-pooled over the
    sample's tokens, each vector keeping its 96 largest latents, generalized Jaccard to the mean target
    (defaults chosen on the hard relevance suite, docs/relevance.md; mona-paper is the published variant)"""

    prefix: ClassVar[str] = "mona"
    # mona's defaults: change them here and nowhere else (the CLI, the API and `mona methods` read them)
    pooling: str = "max"
    # SAE codes kept per token, at most the SAE's k (an SAE with a smaller k keeps all of its own); None: the SAE's
    # k. `--k` overrides it, and must then be at most the SAE's k.
    codes: int | None = 16
    top_m: int = 4096  # compact storage of each pool vector's largest latents (0: whole vectors)
    similarity: str = "jaccard"
    prototype: str = "single"
    row_latents: int | None = opt(ROW_LATENTS, "mona: keep each sample vector's n largest latents, so long and "
                                               "short rows carry as many (0: all).")


@dataclass(frozen=True)
class MonaPaperOptions(MonaOptions):
    """MoNA exactly as published: mean pooling, generalized Jaccard to one mean-target prototype, the SAE's k,
    whole vectors"""

    pooling: str = "mean"
    codes: int | None = None
    top_m: int = 0
    row_latents: int | None = None


@dataclass(frozen=True)
class NeuronOptions:
    """raw gated-MLP activations TopK(SiLU(W_gate x)) with the SAE's K, mean-pooled, generalized Jaccard (the
    paper's polysemantic ablation)"""

    prefix: ClassVar[str] = "neurons"
    pooling: str = "mean"  # K is the SAE's k (or --k)
    similarity: str = "jaccard"
    prototype: str = "single"


@dataclass(frozen=True)
class HiddenOptions:
    """raw hidden states of the selection layer, mean-pooled, cosine (DLRDS-LLM)"""

    prefix: ClassVar[str] = "hidden"
    pooling: str = "mean"
    similarity: str = "cosine"
    prototype: str = "single"


@dataclass(frozen=True)
class Bm25Options:
    """BM25 (bm25s) of each pool row against every target example, combined by mean or max (--bm25-combine)"""

    prefix: ClassVar[str] = "bm25"
    combine: str = opt("mean", "bm25: combine per-target-example scores by mean or max.")

    def check(self) -> None:
        """Refuse an unknown combination."""
        if self.combine not in BM25_COMBINE:
            raise ConfigError(f"unknown BM25 combination {self.combine!r}; choose one of {', '.join(BM25_COMBINE)}")


@dataclass(frozen=True)
class DsirOptions:
    """DSIR: log importance weight of unigram+bigram counts hashed into 10,000 buckets under target vs pool
    n-gram models, as data-selection's HashedNgramDSIR (--dsir-gumbel: Gumbel-top-k resampling)"""

    prefix: ClassVar[str] = "dsir"
    buckets: int = opt(10_000, "dsir: hash buckets (as data-selection).")
    ngrams: int = opt(2, "dsir: n-gram orders counted (1..n).")
    # sha256: the reference's buckets, so the reference's selection (murmur3's collisions differ: 0.76 overlap@50)
    hashing: str = opt("sha256", "dsir: sha256 (the data-selection package's buckets) or murmur3 (scikit-learn's "
                                 "hash).", cli="--dsir-hash")
    smoothing: float = opt(0.0, "dsir: additive smoothing of the bucket counts.")
    epsilon: float = opt(1e-8, "dsir: floor of the bucket probabilities (the reference's epsilon).")
    min_length: int = opt(0, "dsir: rank rows of fewer word/punctuation tokens after all others (data-selection "
                             "drops rows under 100; 0: off).")
    gumbel: bool = opt(False, "dsir: Gumbel-top-k resampling by the importance weights (seeded by --seed) instead "
                              "of plain top-k.")

    def check(self) -> None:
        """Refuse values the DSIR model cannot take."""
        if self.hashing not in DSIR_HASHES:
            raise ConfigError(f"dsir: unknown hashing {self.hashing!r}; choose one of {', '.join(DSIR_HASHES)}")
        if self.buckets < 1 or self.ngrams < 1:
            raise ConfigError(f"dsir: buckets and n-gram order must be at least 1, got {self.buckets} and "
                              f"{self.ngrams}")
        if not (self.smoothing >= 0 and self.epsilon >= 0):
            raise ConfigError(f"dsir: smoothing and epsilon must be >= 0, got {self.smoothing} and {self.epsilon}")
        if not self.smoothing + self.epsilon > 0:
            raise ConfigError("dsir: smoothing and epsilon cannot both be 0 (the log of an unseen bucket's "
                              "probability would be -inf)")
        if self.min_length < 0:
            raise ConfigError(f"dsir: the minimum length must be >= 0, got {self.min_length}")


@dataclass(frozen=True)
class DenseOptions:
    """sentence-transformers embeddings (default all-MiniLM-L6-v2, --embedder), long texts chunked and averaged,
    cosine to the mean target"""

    prefix: ClassVar[str] = "dense"
    embedder: str | None = opt(None, "dense: sentence-transformers model directory or cached hub id (default: "
                                     "bundled all-MiniLM-L6-v2).", cli="--embedder")
    similarity: str = "cosine"
    prototype: str = "single"


@dataclass(frozen=True)
class Llm2VecOptions:
    """LLM2Vec embeddings, mean-pooled, cosine to the mean target: by default the embedded model made
    bidirectional with mona's shipped MNTP + SimCSE adapters (offline, nothing to install); --llm2vec-model DIR
    uses the llm2vec package and a released LLM2Vec model instead"""

    prefix: ClassVar[str] = "llm2vec"
    model: str | None = opt(None, "llm2vec: local LLM2Vec model (or adapter) directory, embedded with the `llm2vec` "
                                  "package (default: the embedded model with mona's shipped adapter).",
                            cli="--llm2vec-model")
    adapter: str | None = opt(None, "llm2vec: adapter directory of `mona llm2vec train` for the selection model "
                                    "(default: the shipped one, for the embedded model).", cli="--llm2vec-adapter")
    similarity: str = "cosine"
    prototype: str = "single"


@dataclass(frozen=True)
class LessOptions:
    """LESS: LoRA warm-up on a seeded 5 % of the pool, per-sample LoRA gradients (Adam-preconditioned for the
    pool) randomly projected (--less-dim), max cosine over the targets"""

    prefix: ClassVar[str] = "less"
    warmup_samples: int | None = opt(None, "less: pool rows in the LoRA warm-up (default: --less-warmup-fraction "
                                           "of the pool, at most --less-warmup-cap).", cli="--less-warmup")
    warmup_fraction: float = opt(0.05, "less: share of the pool in the warm-up.")
    warmup_cap: int = opt(64, "less: most rows in the warm-up.")
    epochs: int = opt(1, "less: warm-up epochs.")
    batch_size: int = opt(4, "less: warm-up rows per AdamW step.")
    # higher than LESS's 2e-5: a few dozen steps must move the adapter at all
    lr: float = opt(5e-4, "less: warm-up learning rate.")
    lora_rank: int = opt(8, "less: LoRA rank (q_proj, v_proj).", cli="--less-rank")
    lora_alpha: float | None = opt(None, "less: LoRA alpha (default: 4 x rank; LESS: rank 128, alpha 512).")
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    proj_dim: int = opt(1024, "less: random projection dimension of the gradients.", cli="--less-dim")
    # SmolLM2: ~3 GB peak; 2048: ~4.4 GB, no faster
    batch_tokens: int = opt(1024, "less: padded tokens per gradient batch.")
    max_batch_size: int = 16
    project_rows: int = 64  # gradients projected (and cached) this many rows at a time: fewer passes over R
    similarity: str = "cosine"

    def check(self) -> None:
        """Refuse sizes the LESS pipeline cannot run with."""
        checks = [(self.warmup_samples is None or self.warmup_samples >= 1, "--less-warmup must be at least 1"),
                  (0 < self.warmup_fraction <= 1, "--less-warmup-fraction must be in (0, 1]"),
                  (self.warmup_cap >= 1, "--less-warmup-cap must be at least 1"),
                  (self.epochs >= 1, "--less-epochs must be at least 1"),
                  (self.batch_size >= 1, "--less-batch-size must be at least 1"),
                  (self.lr > 0, "--less-lr must be positive"),
                  (self.lora_rank >= 1, "--less-rank must be at least 1"),
                  (self.proj_dim >= 1, "--less-dim must be at least 1"),
                  (self.batch_tokens >= 2 and self.max_batch_size >= 1 and self.project_rows >= 1,
                   "LESS batch sizes must be positive"),
                  (bool(self.lora_targets), "LESS lora_targets must name at least one module")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message}, got {self}")

    @property
    def alpha(self) -> float:
        """LoRA alpha: as given, else 4 x rank."""
        return float(self.lora_alpha) if self.lora_alpha is not None else 4.0 * self.lora_rank

    def n_warmup(self, pool_size: int) -> int:
        """Rows of a pool of this size that go into the warm-up."""
        if self.warmup_samples is not None:
            return min(self.warmup_samples, pool_size)
        return min(pool_size, self.warmup_cap, max(1, round(self.warmup_fraction * pool_size)))


@dataclass(frozen=True)
class RdsOptions:
    """RDS+ (Ivison et al. 2025): the selection model's final hidden states (after its final norm),
    position-weighted mean pooling, max cosine over the target examples, round-robin over target subtasks"""

    prefix: ClassVar[str] = "rds"
    similarity: str = "cosine"
    prototype: str = "per-subtask"  # with rds_scorer: max cosine within each subtask, picked round-robin


@dataclass(frozen=True)
class MatesOptions:
    """MATES (Yu et al. 2024), adapted: oracle influence (target-loss drop after one AdamW step from LESS's
    warm-up state) probed on a seeded sample of pool rows, a ridge regressor on pooled hidden states fitted to it,
    the pool ranked by its predictions (--mates-gumbel: Gumbel top-k)"""

    prefix: ClassVar[str] = "mates"
    probes: int = opt(200, "mates: pool rows whose oracle influence is probed (seeded by --seed).")
    reference_rows: int = opt(8, "mates: target rows in the reference loss (a seeded sample when there are more).")
    gumbel: bool = opt(False, "mates: Gumbel top-k on the predicted influence (seeded by --seed) instead of top-k.")
    temperature: float = opt(0.5, "mates: temperature of --mates-gumbel (MATES' --temp).")
    holdout: float = 0.1  # share of the probes held out to choose the regressor and report its Spearman (MATES)
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge penalties tried

    def check(self) -> None:
        """Refuse sizes the influence model cannot be fitted with."""
        if self.probes < 10:
            raise ConfigError(f"--mates-probes must be at least 10 (some are held out), got {self.probes}")
        if self.reference_rows < 1:
            raise ConfigError(f"--mates-reference-rows must be at least 1, got {self.reference_rows}")
        if not self.temperature > 0:
            raise ConfigError(f"--mates-temperature must be positive, got {self.temperature}")


@dataclass(frozen=True)
class RandomOptions:
    """seeded uniform sample"""

    prefix: ClassVar[str] = "random"
