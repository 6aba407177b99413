#!/usr/bin/env bash
# The GPU check (issue "Speed"): one script for one call on a lent GPU machine, under 8
# minutes, run from the repository root with the ml_collections wheel in .whl/, the CIFAR-10
# subset in .data/ and the reference AutoAttack package in .ref/ (all git-ignored, carried
# by the call):
#
#   mkdir -p .whl .data .ref && cp ../shared/data/cifar10_train_subset.npz .data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .whl ml_collections==1.1.0
#   # .ref/autoattack/: the autoattack/ folder of github.com/fra31/auto-attack (its *.py
#   # files; not on PyPI), e.g. git clone it elsewhere and copy the folder.
#   device run: bash benchmarks/gpu_check.sh   (carry .whl, .data and .ref)
#
# The machine's own python3 has jax (CUDA), flax, optax, orbax, torch; nothing else is
# installed. Everything it measures goes to $OUT (copy it to benchmarks/results/gpu_<gpu>/
# and commit it with this command):
#  A. training throughput, images/s of jaxat standard, PGD-AT and UIAT in float32 and
#     bfloat16 and of the PyTorch reference (benchmarks/torch_reference.py: standard and
#     PGD-AT, fp32 and AMP) on the same GPU, for ResNet-18 and PreAct ResNet-18 at batch 128
#     and 512: throughput_gpu_<model>_b<batch>.json;
#  B. AutoAttack standard, L-inf 8/255, on the 1000 held-out images of the CIFAR-10 subset,
#     on a PreAct ResNet-18 trained here for 10 epochs of PGD-AT, jaxat against the reference
#     package on the same weights (jaxat's PyTorch export), with per-example agreement:
#     autoattack_gpu_preact_resnet18.json.
# The four throughput processes compile at once on the host's cores and take turns on the
# GPU (throughput.py --timing_lock); B's training holds the same lock meanwhile, and B's
# attack runs once they are all done, so no timing shares the GPU with other work. Every
# process has its own time limit (the attack gets what is left of 465 s) and writes its own
# file: one that fails or runs out of time leaves the others'.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
LOCK=/tmp/jaxat_gpu_check.lock
export PYTHONUNBUFFERED=1
# Several JAX processes and PyTorch share the GPU: none may take 75% of it up front.
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
  nproc
} >"$OUT/environment.txt" 2>&1

note() { echo "== $(date -u +%T) $*" | tee -a "$LOG"; }
# `locked CMD...` runs CMD holding $LOCK (flock(1) where present; otherwise a Python lock).
locked() {
  if command -v flock >/dev/null 2>&1; then
    flock "$LOCK" "$@"
  else
    python3 -c 'import fcntl, subprocess, sys
with open(sys.argv[1], "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    sys.exit(subprocess.call(sys.argv[2:]))' "$LOCK" "$@"
  fi
}

START=$SECONDS
note "A. throughput: resnet18 and preact_resnet18 at batch 128 and 512 (4 processes)"
pids=()
for model in resnet18 preact_resnet18; do
  for batch in 128 512; do
    name="throughput_gpu_${model}_b${batch}"
    timeout 330 python3 benchmarks/throughput.py --model=$model --batch_size=$batch \
        --steps=20 --warmup=3 --methods=standard,pgd_at,uiat --dtypes=float32,bfloat16 \
        --torch_python=python3 --torch_device=cuda --torch_precisions=fp32,amp \
        --timing_lock="$LOCK" --out="$OUT/$name.json" >"$OUT/$name.log" 2>&1 &
    pids+=($!)
  done
done

note "B. AutoAttack: train a PreAct ResNet-18 (PGD-AT, 10 epochs, CIFAR-10 subset)"
RUN=/tmp/gpu_check_pgd_at_preact
rm -rf "$RUN"
timeout 150 bash -c "$(declare -f locked); LOCK=$LOCK; locked python3 -m jaxat.main \
    --config=configs/pgd_at.py:cifar10_subset --workdir=$RUN \
    --config.dataset.data_dir=.data/cifar10_train_subset.npz --config.dataset.val_size=0 \
    --config.num_epochs=10 --config.eval.every_epochs=10 --config.log.progress=plain" \
    >"$OUT/autoattack_train.log" 2>&1
note "B. training exit $?"
[ -f "$RUN/results.json" ] && cp "$RUN/results.json" "$OUT/autoattack_model_results.json"

for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  note "A. throughput process $i exit $?"
done
for f in "$OUT"/throughput_gpu_*.log; do
  echo "-- $(basename "$f")" >>"$LOG"
  grep -E "img/s|speed-up|written|Error|error" "$f" >>"$LOG"
done

LEFT=$((465 - (SECONDS - START)))
note "B. AutoAttack on 1000 images, jaxat then the reference package (CUDA), ${LEFT} s left"
if [ "$LEFT" -gt 30 ]; then
  PYTHONPATH=$PWD/.ref:$PYTHONPATH timeout "$LEFT" python3 benchmarks/autoattack_speed.py \
      --workdir=$RUN --n_images=1000 --eps=8/255 --batch_size=500 \
      --reference_python=python3 --reference_device=cuda \
      --output="$OUT/autoattack_gpu_preact_resnet18.json" >"$OUT/autoattack.log" 2>&1
  note "B. AutoAttack exit $?"
fi
note "done"
