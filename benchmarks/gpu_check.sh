#!/usr/bin/env bash
# Everything irdeploy checks on an NVIDIA GPU, in one command, from the repository root:
# installs the test extra (TensorRT-RTX, cuda-bindings) plus data-centre TensorRT when asked and
# onnxruntime-gpu in place of the CPU wheel, runs the GPU test suite (real engines: every
# precision of the tiny models, dynamic shapes, save/load, parity thresholds), then the GPU
# benchmarks: every backend (torch, torch-compile, ONNX Runtime, TensorRT) and precision of each
# model, with the matmul/copy ceilings, compute-only and end-to-end latencies. Writes what it ran
# on and the test log to benchmarks/results/gpu_check-<date>.txt and each model's results to
# benchmarks/results/gpu-<date>/<model>/ (then `python benchmarks/readme_table.py` puts them in
# the README), then benchmarks/gpu_torch.py and benchmarks/rtx_jit_probe.py.
#   bash benchmarks/gpu_check.sh                         # TensorRT-RTX (RTX GPUs)
#   TRT=tensorrt bash benchmarks/gpu_check.sh            # data-centre TensorRT (H100-class GPUs)
#   MODELS=m3snet-32 SHAPES=1x3x256x256 bash benchmarks/gpu_check.sh   # a shorter benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/pip install -q -e ".[test]"
if [ "${TRT:-rtx}" = "tensorrt" ]; then .venv-gpu/bin/pip install -q tensorrt; fi
# onnxruntime and onnxruntime-gpu share the onnxruntime/ folder: leave only the GPU build.
.venv-gpu/bin/pip uninstall -q -y onnxruntime onnxruntime-gpu && .venv-gpu/bin/pip install -q onnxruntime-gpu
stamp=$(date -u +%Y-%m-%d)
out="benchmarks/results/gpu_check-${stamp}.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: unavailable"
  .venv-gpu/bin/python -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.version.cuda); print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
  .venv-gpu/bin/python -m pytest tests/gpu -v -s -rs 2>&1
} | tee "$out"
for model in ${MODELS:-m3snet-32 mprnet-derain mhnet}; do
  .venv-gpu/bin/irdeploy bench --model "$model" --device cuda --backends torch,torch-compile,ort,trt \
    --precisions fp32,fp16,bf16 --shapes "${SHAPES:-1x3x256x256,1x3x720x1280}" --iterations "${ITERATIONS:-50}" \
    --out "benchmarks/results/gpu-${stamp}/${model}" 2>&1 | tee -a "$out"
done
# The torch GPU paths (fp16/bf16 parity per module family, torch.compile, CUDA graphs) and what
# TensorRT-RTX's just-in-time step does on this GPU (Hopper is not in its supported list).
.venv-gpu/bin/python benchmarks/gpu_torch.py 2>&1 | tee -a "$out"
.venv-gpu/bin/python benchmarks/rtx_jit_probe.py 2>&1 | tee -a "$out"
