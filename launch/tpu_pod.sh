#!/usr/bin/env bash
# Text that expands on the workers / in the batch job is single-quoted on purpose:
# shellcheck disable=SC2016
# Train with jaxat on a Cloud TPU VM pod, end to end: create the pod, install jaxat on every
# worker, run the same `python -m jaxat.main ... --distributed_auto` on every worker, copy the
# run directory back from worker 0, and (optionally) delete the pod. `--help` for the flags;
# `--dry-run` prints every command and runs none. See launch/README.md and
# docs/scaling.md#launching.
set -euo pipefail

usage() {
  local text
  IFS= read -r -d '' text <<'EOF' || true
Usage: launch/tpu_pod.sh --name=NAME --zone=ZONE --config=CONFIG[:ARGS] --workdir=/ABS/PATH [options]
                         [--config.FIELD=VALUE ...] [-- JAXAT_FLAG ...]

Creates a Cloud TPU VM pod, installs jaxat on every worker (--worker=all), runs
  python -m jaxat.main --config=CONFIG --workdir=WORKDIR --distributed_auto [overrides]
on every worker, copies WORKDIR back from worker 0, and deletes the pod if asked.

Required:
  --name=NAME                 TPU VM name
  --zone=ZONE                 e.g. us-central2-b
  --config=CONFIG[:ARGS]      jaxat config, passed through unchanged (e.g. configs/uiat.py:cifar10)
  --workdir=/ABS/PATH         run directory, an absolute path that EVERY worker sees (the orbax
                              checkpoint is written by all workers): e.g. a gcsfuse-mounted bucket
                              (--bucket) or an NFS/Filestore mount

Options:
  --accelerator-type=TYPE     default v4-32
  --version=RUNTIME           TPU software version, default tpu-ubuntu2204-base
  --project=PROJECT           gcloud project (default: gcloud's configured project)
  --spot | --preemptible      create a Spot / preemptible TPU VM
  --bucket=gs://BUCKET        mount this bucket with gcsfuse at --mount on every worker
  --mount=/PATH               mount point for --bucket, default /mnt/jaxat
  --repo=URL                  git URL to clone on every worker (--ref=REF to check out);
                              default: upload this checkout's HEAD (git archive) with scp
  --ref=REF                   branch, tag or commit of --repo
  --python=PYTHON             interpreter (>= 3.11) for the venv on the workers, default python3.11
                              (installed with apt when missing)
  --env=NAME=VALUE            exported before jaxat runs on every worker (repeatable),
                              e.g. --env=TFDS_DATA_DIR=/mnt/jaxat/tfds
  --copy-to=DIR               local destination of the run directory, default ./<basename WORKDIR>
  --no-copy                   do not copy the run directory back
  --skip-create               reuse an existing, READY pod of that name
  --recreate                  delete the pod first (e.g. a preempted Spot pod), then create it
  --delete-after              delete the pod after a successful run and copy
  --dry-run                   print every command, one per line, and run nothing
  --config.FIELD=VALUE        jaxat config overrides, passed through unchanged
  -- ARGS...                  everything after -- is appended to the jaxat command unchanged

Resuming: jaxat resumes from the checkpoint in WORKDIR. After a preemption, run the same
command again (with --recreate if the pod was preempted, --skip-create if it is still READY).
EOF
  printf '%s' "$text"
}

LAUNCH_DIR=${BASH_SOURCE[0]%/*}
[[ ${BASH_SOURCE[0]} == */* ]] || LAUNCH_DIR=.
# shellcheck source=launch/common.sh
source "$LAUNCH_DIR/common.sh"

NAME="" ZONE="" CONFIG="" WORKDIR=""
ACCELERATOR=v4-32
VERSION=tpu-ubuntu2204-base
PROJECT="" SPOT="" BUCKET="" MOUNT=/mnt/jaxat REPO_URL="" REF="" PYTHON=python3.11
COPY_TO="" NO_COPY=0 SKIP_CREATE=0 RECREATE=0 DELETE_AFTER=0 DRY_RUN=0
ENVS=() OVERRIDES=()

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --name=*) NAME="${1#*=}" ;;
    --zone=*) ZONE="${1#*=}" ;;
    --config=*) CONFIG="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --accelerator-type=*) ACCELERATOR="${1#*=}" ;;
    --version=*) VERSION="${1#*=}" ;;
    --project=*) PROJECT="${1#*=}" ;;
    --spot) SPOT=--spot ;;
    --preemptible) SPOT=--preemptible ;;
    --bucket=*) BUCKET="${1#*=}" ;;
    --mount=*) MOUNT="${1#*=}" ;;
    --repo=*) REPO_URL="${1#*=}" ;;
    --ref=*) REF="${1#*=}" ;;
    --python=*) PYTHON="${1#*=}" ;;
    --env=*) ENVS+=("${1#*=}") ;;
    --copy-to=*) COPY_TO="${1#*=}" ;;
    --no-copy) NO_COPY=1 ;;
    --skip-create) SKIP_CREATE=1 ;;
    --recreate) RECREATE=1 ;;
    --delete-after) DELETE_AFTER=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --config.*=*) OVERRIDES+=("$1") ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    *) die "unknown argument $(quote "$1") (see launch/tpu_pod.sh --help)" ;;
  esac
  shift
done

for required in NAME ZONE CONFIG WORKDIR; do
  if [[ -z ${!required} ]]; then
    die "--${required,,}=... is required (see launch/tpu_pod.sh --help)"
  fi
done
[[ $WORKDIR == /* ]] || die "--workdir=$(quote "$WORKDIR") must be an absolute path on storage every worker shares"
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name=$(quote "$NAME"): lower-case letters, digits and hyphens, starting with a letter"
[[ -z $BUCKET || $BUCKET == gs://* ]] || die "--bucket=$(quote "$BUCKET") must start with gs://"
[[ $MOUNT == /* ]] || die "--mount=$(quote "$MOUNT") must be an absolute path"
[[ -z $REF || -n $REPO_URL ]] || die "--ref needs --repo"
((SKIP_CREATE + RECREATE < 2)) || die "--skip-create and --recreate exclude each other"
for env in "${ENVS[@]+"${ENVS[@]}"}"; do
  [[ $env =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env=$(quote "$env"): expected NAME=VALUE"
done
if [[ -n $BUCKET && $WORKDIR != "$MOUNT"/* ]]; then
  die "--workdir=$(quote "$WORKDIR") is not under the bucket's mount point $MOUNT (--mount)"
fi
if ((!DRY_RUN)) && ! command -v gcloud >/dev/null 2>&1; then
  echo "error: gcloud not found on PATH (install the Google Cloud CLI, or use --dry-run)" >&2
  exit 127
fi

: "${COPY_TO:=./${WORKDIR##*/}}"
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
[[ -z $PROJECT ]] || WHERE+=(--project="$PROJECT")

# Runs a command, or prints it (one line, shell-quoted) with --dry-run.
run() {
  echo "+ $(quote_all "$@")"
  if ((!DRY_RUN)); then "$@"; fi
}
on_all_workers() {
  run "${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command="$1"
}

# 1. The pod.
if ((RECREATE)); then
  run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
fi
if ((!SKIP_CREATE)); then
  run "${GCLOUD[@]}" create "$NAME" "${WHERE[@]}" --accelerator-type="$ACCELERATOR" \
    --version="$VERSION" ${SPOT:+"$SPOT"}
fi

# 2. jaxat on every worker: the source (git clone, or this checkout's HEAD uploaded), a venv
#    with jaxat[tpu], and the bucket mounted with gcsfuse.
VENV='$HOME/jaxat-venv'
SRC='$HOME/jaxat'
if [[ -n $REPO_URL ]]; then
  fetch="if [ -d $SRC/.git ]; then git -C $SRC fetch --quiet origin; else git clone --quiet $(quote "$REPO_URL") $SRC; fi"
  [[ -z $REF ]] || fetch+=" && git -C $SRC checkout --quiet $(quote "$REF")"
else
  TARBALL="${TMPDIR:-/tmp}/jaxat-$NAME.tar.gz"
  run git -C "$REPO_DIR" archive --format=tar.gz --output="$TARBALL" HEAD
  run "${GCLOUD[@]}" scp "$TARBALL" "$NAME:jaxat.tar.gz" "${WHERE[@]}" --worker=all
  fetch="rm -rf $SRC && mkdir -p $SRC && tar -xzf \$HOME/jaxat.tar.gz -C $SRC"
fi
PY=$(quote "$PYTHON")
install="set -e; $fetch"
install+="; command -v $PY >/dev/null || { sudo apt-get update -qq && sudo apt-get install -y -qq $PY $PY-venv; }"
install+="; [ -x $VENV/bin/python ] || $PY -m venv $VENV"
install+="; $VENV/bin/pip install --quiet --upgrade pip"
install+="; $VENV/bin/pip install --quiet -e \"${SRC}[tpu]\" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
if [[ -n $BUCKET ]]; then
  # gcsfuse from Google's apt repository; --rename-dir-limit lets orbax rename its temporary
  # checkpoint directories; --implicit-dirs shows folders written by other workers.
  install+="; if ! command -v gcsfuse >/dev/null; then"
  install+=" curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null"
  install+=" && echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null"
  install+=" && sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse; fi"
  install+="; sudo mkdir -p $(quote "$MOUNT") && sudo chown \"\$USER\" $(quote "$MOUNT")"
  install+="; mountpoint -q $(quote "$MOUNT") || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $(quote "${BUCKET#gs://}") $(quote "$MOUNT")"
fi
on_all_workers "$install"

# 3. The same command on every worker: jax.distributed detects the pod (--distributed_auto).
#    jaxat resumes from WORKDIR's checkpoint when there is one.
JAXAT=(python -m jaxat.main --config="$CONFIG" --workdir="$WORKDIR" --distributed_auto)
JAXAT+=("${OVERRIDES[@]+"${OVERRIDES[@]}"}")
command="cd $SRC"
for env in "${ENVS[@]+"${ENVS[@]}"}"; do command+=" && export ${env%%=*}=$(quote "${env#*=}")"; done
command+=" && $VENV/bin/$(quote_all "${JAXAT[@]}")"
status=0
on_all_workers "$command" || status=$?
if ((status)); then
  echo "error: the run stopped with status $status ($( ((status == 143)) && echo "preempted: jaxat saved a checkpoint" || echo "see the output above")); run this same command again to resume from $WORKDIR (add --recreate if the pod was preempted, --skip-create if it is still READY)" >&2
  exit "$status"
fi

# 4. Results: worker 0 (jaxat's process 0) sees the whole run directory.
if ((!NO_COPY)); then
  run "${GCLOUD[@]}" scp --recurse "$NAME:$WORKDIR" "$COPY_TO" "${WHERE[@]}" --worker=0
fi

# 5. Optionally the pod goes.
if ((DELETE_AFTER)); then
  run "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
fi
