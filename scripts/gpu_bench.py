"""What mona's GPU path costs per million tokens, measured: a LLaMA-3-8B-shaped model (random bf16 weights: the
speed does not depend on their values) run truncated at layer 30 by mona's TruncatedLM, capturing the residual
stream and the MLP output there, and the paper's SAE shape (131,072 latents over 4,096, TopK k = 192, fp32)
encoding those tokens with mona's encode. Each part is timed apart and together as the pipeline runs them
(activations come back to the CPU after the forward pass and go to the SAE's device to be encoded).

    python3 scripts/gpu_bench.py [--json OUT.json]        # on a CUDA GPU (scripts/gpu_check.sh runs it)
    .venv/bin/python scripts/gpu_bench.py --small --device cpu --batch-tokens 2048 --seq 128
                                                          # the same code on tiny shapes: a smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from mona.models.truncated import Tokenized, TruncatedLM
from mona.sae.spec import Sae, SaeSpec, Site
from mona.sae.topk import encode

# published shapes: meta-llama/Meta-Llama-3-8B's config.json; EleutherAI/sae-llama-3-8b-32x layers.30 cfg.json
LLAMA3_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0}
PAPER_SAE = {"num_latents": 131072, "k": 192, "layer": 30}
SMALL = ({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 1000}, {"num_latents": 512, "k": 16, "layer": 2})


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _model(shape: dict, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device(device):  # initialised where it runs: no 16 GB host copy
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval().requires_grad_(False)


def _sae(d_in: int, num_latents: int, k: int, layer: int, device: str) -> Sae:
    g = torch.Generator(device=device).manual_seed(0)
    w = torch.randn(num_latents, d_in, device=device, generator=g) / d_in ** 0.5
    spec = SaeSpec("sparsify", "topk", Site("resid", layer), Path(), k=k)
    return Sae(spec, W_enc=w, b_enc=torch.zeros(num_latents, device=device), W_dec=w.clone(),
               b_dec=torch.zeros(d_in, device=device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny shapes (a smoke test of this script)")
    ap.add_argument("--seq", type=int, default=512, help="tokens per row")
    ap.add_argument("--batch-tokens", type=int, default=32768, help="padded tokens per forward batch")
    ap.add_argument("--batches", type=int, default=6, help="timed batches (after one warm-up)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    shape, sae_shape = SMALL if args.small else (LLAMA3_8B, PAPER_SAE)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    layer = sae_shape["layer"]

    t0 = time.perf_counter()
    model = _model(shape, args.device, dtype)
    tokenizer = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0, all_special_ids=[0, 1, 2])
    lm = TruncatedLM(model, tokenizer, layer, batch_tokens=args.batch_tokens, sites=("mlp_out",))
    sae = _sae(shape["hidden_size"], sae_shape["num_latents"], sae_shape["k"], layer, args.device)
    built_s = time.perf_counter() - t0

    rows = args.batch_tokens // args.seq
    g = torch.Generator().manual_seed(1)
    tokenized = [Tokenized([1, *torch.randint(3, shape["vocab_size"], (args.seq - 1,), generator=g).tolist()],
                           [False] + [True] * (args.seq - 1), False) for _ in range(rows)]
    positions = list(range(rows))
    forward_s = encode_s = 0.0
    tokens = 0
    for step in range(args.batches + 1):
        _sync(args.device)
        t = time.perf_counter()
        batch = lm.forward(tokenized, positions)  # activations back on the CPU, fp32
        t_forward = time.perf_counter() - t
        x = batch.site("resid", layer)[batch.pool_mask]
        t = time.perf_counter()
        values, _indices = encode(sae, x)  # to the SAE's device and back
        _sync(args.device)
        t_encode = time.perf_counter() - t
        if step:  # the first batch warms up kernels and allocators
            forward_s += t_forward
            encode_s += t_encode
            tokens += int(batch.pool_mask.sum())
        assert values.shape == (x.shape[0], sae_shape["k"]) and batch.site("mlp_out", layer).shape == (
            rows, args.seq, shape["hidden_size"])
    per_million = 1e6 / tokens
    report = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "torch": torch.__version__, "model": "small" if args.small else "LLaMA-3-8B shape, random weights",
        "dtype": str(dtype), "layer_read": layer, "sae_latents": sae_shape["num_latents"], "k": sae_shape["k"],
        "batch_tokens": args.batch_tokens, "seq": args.seq, "timed_tokens": tokens, "build_s": round(built_s, 1),
        "forward_tokens_per_s": round(tokens / forward_s), "encode_tokens_per_s": round(tokens / encode_s),
        "s_per_million_tokens": {"forward": round(forward_s * per_million, 1),
                                 "encode": round(encode_s * per_million, 1),
                                 "total": round((forward_s + encode_s) * per_million, 1)},
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if args.device.startswith("cuda") else None,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
