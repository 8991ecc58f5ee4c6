"""Model layer: load a causal LM and run it truncated at a decoder layer."""

from mona.models.dtype import DtypeChoice, parse_dtype, resolve_dtype
from mona.models.loader import DEFAULT_MODEL, load_lm, model_fingerprint, resolve_device
from mona.models.truncated import TokenBatch, Tokenized, TruncatedLM, decoder_layers

__all__ = ["DEFAULT_MODEL", "DtypeChoice", "TokenBatch", "Tokenized", "TruncatedLM", "decoder_layers", "load_lm",
           "model_fingerprint", "parse_dtype", "resolve_device", "resolve_dtype"]
