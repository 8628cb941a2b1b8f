#!/usr/bin/env bash
# Every GPU figure of the PAP II issue in one call (~10 minutes on one H100/H200), results under $OUT:
#   propagation.jsonl  pap_propagation.py on CUDA at the paper's three scales, every exact path and auto,
#                      forward and training passes, float32 and bf16 autocast;
#   overhead.jsonl     models.py at 480x640 (batch 4): the multi-task baseline, then PAP with the dense and
#                      the fused path, float32 and bf16 (PAP's whole-network overhead over the baseline).
# Run from the repository root with a Python that has torch; the package is read from src/ (PYTHONPATH),
# so nothing is installed. Packages the device image lacks (pydantic, ...) travel as wheels (see the device
# tool's README). PYTHON, OUT, SIZES, REPEATS override the defaults.
set -uo pipefail
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu_results}
SIZES=${SIZES:-30x40 60x80 120x160}
REPEATS=${REPEATS:-5}
DEVICE=${DEVICE:-cuda}
TRAIN_SIZE=${TRAIN_SIZE:-480x640}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
status=0
"$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" \
    | tee "$OUT/device.txt" || status=1
for autocast in none bf16; do
    # shellcheck disable=SC2086  # SIZES is a list
    "$PYTHON" benchmarks/pap_propagation.py --device "$DEVICE" --sizes $SIZES --repeats "$REPEATS" \
        --autocast "$autocast" --timeout 300 | tee -a "$OUT/propagation.jsonl" || status=1
done
for precision in 32 bf16; do
    "$PYTHON" benchmarks/models.py --device "$DEVICE" --models mtl_baseline --train-size "$TRAIN_SIZE" \
        --train-batch 4 --precision "$precision" --repeats "$REPEATS" | tee -a "$OUT/overhead.jsonl" || status=1
    for mode in dense fused; do
        "$PYTHON" benchmarks/models.py --device "$DEVICE" --models pap --model-arg "mode=$mode" \
            --train-size "$TRAIN_SIZE" --train-batch 4 --precision "$precision" --repeats "$REPEATS" \
            | tee -a "$OUT/overhead.jsonl" || status=1
    done
done
exit $status
