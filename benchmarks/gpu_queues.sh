#!/usr/bin/env bash
# Run one queue of benchmark commands per GPU, in parallel, each queue pinned to its own GPU.
#
# Usage: benchmarks/gpu_queues.sh LOG SECONDS "QUEUE0" "QUEUE1" ...
#   QUEUEi  commands separated by ';' run one after another with CUDA_VISIBLE_DEVICES=i
#   SECONDS each queue is stopped after this long (finished cells/runs are already saved,
#           since the benchmark scripts write their results file after every cell)
#   LOG     one log for all queues, each line prefixed with [gpuI]
#
# Example (two Table 1 cells on two GPUs of one host, KERAS_BACKEND=jax):
#   benchmarks/gpu_queues.sh run.log 570 \
#     'python benchmarks/subtomo_table1.py --cells "snr=0.1,tilt=50" --results a.json' \
#     'python benchmarks/subtomo_table1.py --cells "snr=0.1,tilt=40" --results b.json'
set -u
log=$1
seconds=$2
shift 2
gpu=0
for queue in "$@"; do
  (CUDA_VISIBLE_DEVICES=$gpu timeout "$seconds" bash -c "$queue" 2>&1 | sed -u "s/^/[gpu$gpu] /" >> "$log") &
  gpu=$((gpu + 1))
done
wait
