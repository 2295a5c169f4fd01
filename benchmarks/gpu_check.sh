#!/usr/bin/env bash
# The one-shot GPU check (benchmarks/gpu_check.py): every stage in its own process with its own
# time limit, all stages run even when one fails, a JSON summary and log in benchmarks/results/.
#   bash benchmarks/gpu_check.sh --wheels wheels/     # on the GPU machine, offline
#   bash benchmarks/gpu_check.sh --dry-run            # anywhere: the same stages against the simulator
cd "$(dirname "$0")/.." && exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
