#!/usr/bin/env bash
# Everything irdeploy checks on an NVIDIA GPU, in one command, from the repository root:
# installs the test extra (TensorRT-RTX, cuda-bindings) plus data-centre TensorRT when asked,
# runs the GPU test suite (real engines: every precision of the tiny models, dynamic shapes,
# save/load, parity thresholds) and writes what it ran on to benchmarks/results/.
#   bash benchmarks/gpu_check.sh            # TensorRT-RTX (RTX GPUs)
#   TRT=tensorrt bash benchmarks/gpu_check.sh  # data-centre TensorRT (H100-class GPUs)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/pip install -q -e ".[test]"
if [ "${TRT:-rtx}" = "tensorrt" ]; then .venv-gpu/bin/pip install -q tensorrt; fi
stamp=$(date -u +%Y-%m-%d)
out="benchmarks/results/gpu_check-${stamp}.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: unavailable"
  .venv-gpu/bin/python -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.version.cuda); print('onnxruntime', onnxruntime.__version__)"
  .venv-gpu/bin/python -m pytest tests/gpu -v -s -rs 2>&1
} | tee "$out"
