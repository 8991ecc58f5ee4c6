#!/usr/bin/env bash
# The GPU checks of mona's bring-your-own-model path, in one go, on a machine with a CUDA GPU:
#   1. the tests that skip where torch sees no GPU: SAE encode on the GPU (fp32 and bf16 inputs) against the CPU,
#      the truncated model's residual stream and MLP / attention outputs in bf16 on the GPU against fp32 on the
#      CPU, `mona select --device cuda` (dtype auto: bf16) against `--device cpu --dtype fp32`, `mona finetune` and
#      `mona eval` on the GPU against the CPU (a GPU checkpoint resumed on the CPU); with them, the CPU tests of
#      the same files, which check the GPU machine's transformers and peft too;
#   2. scripts/gpu_bench.py: a LLaMA-3-8B-shaped model truncated at layer 30 plus the paper's SAE shape (131,072
#      latents, k = 192), seconds per million tokens.
#
# Prepare, where an index is reachable (the GPU machine reaches none):  PYTHON=.venv/bin/python bash scripts/gpu_check.sh --prepare
#   (wheels of what that machine's python lacks, into .whl/, ignored by git)
# Run on the GPU machine, from the repository root:                    bash scripts/gpu_check.sh [OUTDIR]
#   (OUTDIR: $OUT where set, else /tmp/mona-gpu-check: pytest.log, bench.json)
# The integration tests (the embedded SmolLM2, fetched from PyPI on first use) and the sae-lens reference tests
# are left out: neither the model nor sae-lens is on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# what the GPU machine's python (torch, transformers, typer, scipy, pytest, ...) lacks of mona's imports
WHEELS=("zstandard==0.25.0")

if [[ "${1:-}" == "--prepare" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    ls -l .whl
    echo "now: run(command=\"bash scripts/gpu_check.sh\", carry=[\".whl\"], timeout_s=540)"
    exit 0
fi

out="${1:-${OUT:-/tmp/mona-gpu-check}}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

python3 -c "import torch, transformers; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'; \
print('torch', torch.__version__, '| transformers', transformers.__version__, '|', torch.cuda.get_device_name(), \
'| bf16', torch.cuda.is_bf16_supported())"

status=0
python3 -m pytest -q -p no:cacheprovider -m "not integration" -rs \
    tests/test_sae_formats.py tests/test_truncated.py tests/test_finetune.py \
    2>&1 | tee "$out/pytest.log" || status=1
grep -E "^SKIPPED.*CUDA" "$out/pytest.log" && { echo "a CUDA test was skipped on a CUDA machine"; status=1; }
python3 scripts/gpu_bench.py --json "$out/bench.json" 2>&1 | grep -v FutureWarning || status=1
exit $status
