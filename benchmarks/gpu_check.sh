#!/usr/bin/env bash
# The GPU check: one short script for one call on a lent GPU machine (issue "Speed"), run
# from the repository root with the ml_collections wheel in .whl/ and the CIFAR-10 subset in
# .data/ (both git-ignored, carried by the call):
#
#   mkdir -p .whl .data && cp ../shared/data/cifar10_train_subset.npz .data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .whl ml_collections==1.1.0
#   device run: bash benchmarks/gpu_check.sh   (carry .whl and .data)
#
# The machine's own python3 has jax (CUDA), flax, optax, orbax, torch; nothing else is
# installed. Every section has its own time limit and writes into $OUT, so a section that
# fails or runs out of time leaves the others' results. Sections:
#  1. training throughput on PreAct ResNet-18, batch 128: jaxat (standard, PGD-AT, TRADES,
#     UIAT, FGSM-RS) and the PyTorch reference (standard, PGD-AT) on the same GPU;
#  2. the catastrophic-overfitting guard on a real collapse: FGSM-RS at eps = 16/255 on the
#     CIFAR-10 subset, PreAct ResNet-18, 15 epochs, train.overfitting_guard=stop.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1
# JAX and PyTorch share the GPU in section 1: JAX must not take 75% of it up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, jax, flax, optax, torch; print(sys.version.split()[0], 'jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, torch.cuda.is_available())"
  git log -1 --format='commit %H' 2>/dev/null || true
} >"$OUT/environment.txt" 2>&1

section() { echo "== $(date -u +%T) $1" | tee -a "$LOG"; }

section "1. throughput, PreAct ResNet-18, batch 128"
timeout 200 python3 benchmarks/throughput.py --model=preact_resnet18 --batch_size=128 \
    --steps=20 --warmup=3 --methods=standard,pgd_at,trades,uiat,fgsm_rs \
    --torch_python=python3 --torch_device=cuda \
    --out="$OUT/throughput_gpu_preact_resnet18_b128.json" >>"$LOG" 2>&1
echo "exit $?" >>"$LOG"

section "2. overfitting guard: FGSM-RS eps 16/255, CIFAR-10 subset, PreAct ResNet-18"
RUN=/tmp/guard_fgsm_rs_eps16
rm -rf "$RUN"
timeout 200 python3 -m jaxat.main --config=configs/fgsm_rs.py:cifar10_subset,eps16 \
    --workdir="$RUN" --config.dataset.data_dir=.data/cifar10_train_subset.npz \
    --config.dataset.val_size=0 --config.train.overfitting_guard=stop \
    --config.log.progress=plain >>"$LOG" 2>&1
echo "exit $?" >>"$LOG"
for f in metrics.jsonl results.json; do
  [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/guard_$f"
done
section "done"
