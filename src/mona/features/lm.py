"""Representations read from the selection model's activations (mona, neurons, hidden). They share one
lazily loaded model and, when several are asked for at the same layer(s), one forward pass."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mona.data.formats import Sample
from mona.data.render import Rendered, render
from mona.errors import ConfigError
from mona.features.base import FeatureBlock, Featurizer, Matrix
from mona.features.options import LMConfig
from mona.models import DtypeChoice, TokenBatch, TruncatedLM, load_lm, model_fingerprint, resolve_device, resolve_dtype
from mona.sae.topk import default_layer


class LMRunner:
    """Loads the tokenizer at once and the model only when some sample is not cached."""

    def __init__(self, config: LMConfig) -> None:
        self.config = config
        self._tokenizer = None
        self._lm: TruncatedLM | None = None
        self._dtype: DtypeChoice | None = None
        self._capture_gate = False
        self.n_layers: int | None = None
        self.d_model: int | None = None
        self.truncated = 0

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from mona.models.loader import load_tokenizer

            self._tokenizer, model_config = load_tokenizer(self.config.model)
            self.n_layers = int(model_config.num_hidden_layers)
            self.d_model = int(model_config.hidden_size)
        return self._tokenizer

    def resolved_layer(self) -> int:
        _ = self.tokenizer
        assert self.n_layers is not None
        layer = self.config.layer if self.config.layer is not None else default_layer(self.config.model)
        resolved = layer if layer >= 0 else self.n_layers + layer
        if not 0 <= resolved < self.n_layers:
            raise ConfigError(f"layer {layer} out of range: the model has {self.n_layers} decoder layers "
                              f"(0..{self.n_layers - 1})")
        return resolved

    def lm(self, capture_gate: bool = False, sites: Iterable[str] = ()) -> TruncatedLM:
        """The truncated model, loaded once (again only to add the gate capture), capturing `sites` too."""
        if self._lm is None or (capture_gate and not self._capture_gate):
            layer = self.resolved_layer()  # loads the tokenizer and model config first
            model, tokenizer = load_lm(self.config.model, self.resolved_dtype().dtype, self.device)
            self._tokenizer = tokenizer
            self._lm = TruncatedLM(model, tokenizer, layer, max_length=self.config.max_length,
                                   batch_tokens=self.config.batch_tokens, capture_gate=capture_gate)
            self._capture_gate = capture_gate
        self._lm.capture(sites)
        return self._lm

    @property
    def device(self) -> str:
        """Where the model (and an SAE read from it) runs: `config.device` resolved."""
        return resolve_device(self.config.device)

    def resolved_dtype(self) -> DtypeChoice:
        """The dtype the model runs in on `device` and why (`config.dtype` resolved once per runner: auto picks
        bf16 or fp32, mona.models.dtype)."""
        if self._dtype is None:
            self._dtype = resolve_dtype(self.config.dtype, self.device)
        return self._dtype

    def render(self, sample: Sample) -> Rendered:
        return render(sample, self.tokenizer, self.config.render)

    def token_count(self, sample: Sample) -> int:
        """Tokens the model would read for the sample before truncation (rendered text plus a first token)."""
        return len(self.tokenizer(self.render(sample).text, add_special_tokens=False)["input_ids"]) + 1

    def base_key(self) -> dict[str, Any]:
        c = self.config
        return {"model": model_fingerprint(c.model), "layer": self.resolved_layer(), "render": c.render,
                "max_length": c.max_length, "dtype": self.resolved_dtype().dtype}


def text_key_of(rendered: Rendered) -> str:
    """Rendered text plus content spans: both decide what gets pooled."""
    return rendered.text + "\x00" + ",".join(f"{a}-{b}" for a, b in rendered.spans)


class LMFeaturizer(Featurizer):
    """Base of representations pooled from one TokenBatch."""

    needs_gate = False
    site = "resid"  # the activations pool() reads: TokenBatch.site(site, layer)

    def __init__(self, runner: LMRunner) -> None:
        self.runner = runner

    def text_key(self, sample: Sample) -> str:
        return text_key_of(self.runner.render(sample))

    def dtype_choice(self) -> DtypeChoice:
        """The dtype the selection model runs in for this representation, and why."""
        return self.runner.resolved_dtype()

    @abstractmethod
    def pool(self, batch: TokenBatch) -> Matrix:
        """Pooled vectors of the batch's rows, in batch order."""

    def featurize(self, samples: Sequence[Sample]) -> Iterator[FeatureBlock]:
        yield from run_lm_featurizers([self], samples)


def run_lm_featurizers(featurizers: Sequence[LMFeaturizer], samples: Sequence[Sample]
                       ) -> Iterator[FeatureBlock]:
    """One forward pass per batch feeding every featurizer (they must share a runner). Yields blocks whose
    matrix is the first featurizer's; use `run_lm_featurizers_multi` for all of them."""
    for blocks in run_lm_featurizers_multi(featurizers, samples):
        yield blocks[0]


def run_lm_featurizers_multi(featurizers: Sequence[LMFeaturizer], samples: Sequence[Sample]
                             ) -> Iterator[list[FeatureBlock]]:
    """Like run_lm_featurizers, yielding one block per featurizer for each batch."""
    runner = featurizers[0].runner
    if any(f.runner is not runner for f in featurizers):
        raise ValueError("featurizers sharing a forward pass must share one LMRunner")
    lm = runner.lm(capture_gate=any(f.needs_gate for f in featurizers), sites={f.site for f in featurizers})
    items = [runner.render(s) for s in samples]
    for batch in lm.run(items):
        yield [FeatureBlock(batch.positions, f.pool(batch), batch.n_tokens) for f in featurizers]
    runner.truncated += getattr(lm, "last_truncated", 0)
