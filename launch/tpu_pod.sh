#!/usr/bin/env bash
# Train on a Cloud TPU VM pod: create the pod, install jaxat on every worker, run the same
# command on every worker (jax.distributed detects the pod itself), copy results back.
# Usage: launch/tpu_pod.sh [--dry-run] [--name=NAME] [--zone=ZONE] [--type=v4-32]
#                          [--config=configs/uiat.py:cifar10] [--workdir=runs/pod] [--repo=URL]
# --dry-run prints every command instead of running it. See launch/README.md.
set -euo pipefail
DRY_RUN=0
NAME=jaxat-pod
ZONE=us-central2-b
TYPE=v4-32
VERSION=tpu-ubuntu2204-base
CONFIG=configs/uiat.py:cifar10
WORKDIR=runs/pod
REPO=https://github.com/jaxat/jaxat.git
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --name=*) NAME="${arg#*=}" ;;
    --zone=*) ZONE="${arg#*=}" ;;
    --type=*) TYPE="${arg#*=}" ;;
    --config=*) CONFIG="${arg#*=}" ;;
    --workdir=*) WORKDIR="${arg#*=}" ;;
    --repo=*) REPO="${arg#*=}" ;;
    *) echo "error: unknown argument $arg (see the usage line at the top of $0)" >&2; exit 2 ;;
  esac
done
run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}
SSH=(gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command)
run gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --accelerator-type="$TYPE" --version="$VERSION"
run "${SSH[@]}" "git clone $REPO jaxat && cd jaxat && pip install -e . 'jax[tpu]'"
# Same command on every worker; the TPU runtime tells jax.distributed the coordinator and ids.
run "${SSH[@]}" "cd jaxat && python -m jaxat.main --config=$CONFIG --workdir=$WORKDIR --distributed_auto"
# Process 0 (worker 0) writes metrics and results; checkpoints are on every worker's disk slice.
run gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=0 "$NAME:jaxat/$WORKDIR" "./$(basename "$WORKDIR")"
