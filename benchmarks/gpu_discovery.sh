#!/usr/bin/env bash
# Discovery (22 leave-one-out runs) at the paper's noise on ONE GPU host, piece by piece.
#
# Usage (repository root, on the device machine, KERAS_BACKEND=jax):
#   [DSRF=1] [RESULTS=path.json] benchmarks/gpu_discovery.sh SECONDS QUEUE [QUEUE ...]
#     SECONDS  the whole call's budget (simulation included); finished leave-outs are saved
#     QUEUE    a complex to leave out ("1bxn"), several ("1bxn,3cf3": one after another), or
#              "sizes:1bxn" (the cluster-size comparison first, then 1bxn if time allows)
# The results file is TRACKED (benchmarks/results/...), so runs carry over between device
# sessions: commit it after each call, and a later call skips what it holds. The simulated set
# (23,000 × 40³, 5.9 GB) is made once per machine in outputs/ (25 s on 16 cores).
#
# Lessons from session 10 (one H200, 16 cores, 128 GB): eight queues at once finished nothing
# in 505 s (eight Inception3D fits share the GPU, ~70 s each alone); four queues finish one
# leave-out each in 265-415 s. Plan ~4 leave-outs per 9-minute call.
#
# Setup on a fresh device machine: take .whl/ (../shared/tools/gpu-wheels.sh platformdirs pooch)
# and the reference structures (.gpu/ref/structures/{maps_10A,pdb}) along in `carry`.
set -u
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax || exit 1
fi
export CRYOML_REFERENCE_DATA=${CRYOML_REFERENCE_DATA:-$PWD/.gpu/ref}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
total=${1:?usage: gpu_discovery.sh SECONDS QUEUE [QUEUE ...]}; shift
queues=("$@")
[ ${#queues[@]} -ge 1 ] || { echo "name at least one queue"; exit 2; }
start=$(date +%s)
work=outputs/discovery_gpu; mkdir -p "$work"
set_file=$work/set.npz
if [ -n "${DSRF:-}" ]; then
  model=(--model dsrf3d --classifier-options
         '{"recipe": "modern", "learning_rate": 1e-4, "augment": null, "model_options": {"dropout": 0}}')
  results=${RESULTS:-benchmarks/results/subtomo_discovery_paper_noise_dsrf3d.json}
else
  model=(--model inception3d --raw)
  results=${RESULTS:-benchmarks/results/subtomo_discovery_paper_noise_inception3d.json}
fi
if [ ! -f "$set_file" ]; then
  python3 benchmarks/subtomo_discovery.py "${model[@]}" --simulated "$set_file" \
    --simulate-only --n-jobs 16 > "$work/simulate.log" 2>&1 || { tail -20 "$work/simulate.log"; exit 1; }
fi
budget=$(( total - ($(date +%s) - start) - 15 ))
n=${#queues[@]}
threads=$(( 16 / n )); [ $threads -lt 2 ] && threads=2
echo "set ready after $(( $(date +%s) - start )) s; $n queues, $budget s each, $threads threads"
commands=()
for spec in "${queues[@]}"; do
  if [ "${spec%%:*}" = sizes ]; then args=(--classes ${spec#sizes:})
  else args=(--skip-cluster-sizes --classes ${spec//,/ }); fi
  command=(python3 benchmarks/subtomo_discovery.py "${model[@]}" --simulated "$set_file"
           --results "$results" "${args[@]}" --n-jobs $threads --budget-s $budget)
  commands+=("$(printf '%q ' "${command[@]}")")
done
# every queue on the one GPU, each with its share of the memory (gpu_queues.sh)
QUEUES_PER_GPU=$n benchmarks/gpu_queues.sh "$work/queues.log" $((budget + 10)) "${commands[@]}"
grep -h " nm \|cluster sizes\|budget of\|Error" "$work/queues.log" | tail -30
[ -n "${OUT:-}" ] && cp "$results" "$work"/*.log "$OUT"/ 2>/dev/null
echo "results: $results (commit it)"
