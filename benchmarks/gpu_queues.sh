#!/usr/bin/env bash
# Run queues of benchmark commands in parallel, each queue pinned to one GPU.
#
# Usage: [QUEUES_PER_GPU=K] benchmarks/gpu_queues.sh LOG SECONDS "QUEUE0" "QUEUE1" ...
#   QUEUEi  commands separated by ';' run one after another on GPU i / K
#           (CUDA_VISIBLE_DEVICES); with K > 1 each JAX process may take 0.9 / K of that
#           GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION), so K queues share one GPU — useful
#           when a queue leaves the GPU idle for long CPU phases (the discovery's alignment)
#   SECONDS each queue is stopped after this long (finished cells/runs are already saved,
#           since the benchmark scripts write their results file after every cell)
#   LOG     one log for all queues, each line prefixed with [qI/gpuJ]
#
# Example (two Table 1 cells on two GPUs of one host, KERAS_BACKEND=jax):
#   benchmarks/gpu_queues.sh run.log 570 \
#     'python benchmarks/subtomo_table1.py --cells "snr=0.1,tilt=50" --results a.json' \
#     'python benchmarks/subtomo_table1.py --cells "snr=0.1,tilt=40" --results b.json'
set -u
log=$1
seconds=$2
shift 2
per_gpu=${QUEUES_PER_GPU:-1}
fraction=$(awk -v k="$per_gpu" 'BEGIN { printf "%.2f", (k > 1 ? 0.9 / k : 0.75) }')
queue_index=0
for queue in "$@"; do
  gpu=$((queue_index / per_gpu))
  (CUDA_VISIBLE_DEVICES=$gpu XLA_PYTHON_CLIENT_MEM_FRACTION=$fraction \
     timeout "$seconds" bash -c "$queue" 2>&1 | sed -u "s/^/[q$queue_index\/gpu$gpu] /" >> "$log") &
  queue_index=$((queue_index + 1))
done
wait
