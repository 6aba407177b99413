#!/usr/bin/env bash
# Text that expands on the workers / in the batch job is single-quoted on purpose:
# shellcheck disable=SC2016
# Multi-node GPU training with jaxat under SLURM: one process per GPU (srun), writes an sbatch
# script and submits it (or runs srun inside the current allocation with --in-allocation).
# jaxat reads SLURM_NTASKS, SLURM_PROCID and SLURM_STEP_NODELIST itself (the first node is the
# coordinator, port JAXAT_COORDINATOR_PORT), so no distributed flags are passed. `--help` for
# the flags; `--dry-run` prints the sbatch file and every command and runs none. See
# launch/README.md and docs/scaling.md#launching.
set -euo pipefail

usage() {
  local text
  IFS= read -r -d '' text <<'EOF' || true
Usage: launch/slurm.sh --config=CONFIG[:ARGS] --workdir=DIR [options]
                       [--config.FIELD=VALUE ...] [-- JAXAT_FLAG ...]

Writes an sbatch script that runs, one task per GPU on every node,
  srun --nodes=N --ntasks-per-node=G --gpus-per-task=1 python -m jaxat.main --config=CONFIG --workdir=DIR [overrides]
and submits it with sbatch (or runs the srun line in the current allocation: --in-allocation).

Required:
  --config=CONFIG[:ARGS]      jaxat config, passed through unchanged (e.g. configs/uiat.py:cifar10)
  --workdir=DIR               run directory on a file system every node sees at the same path
                              (relative paths are relative to --chdir)

Options:
  --nodes=N                   default 1
  --gpus-per-node=G           processes (= GPUs) per node, default 4
  --cpus-per-task=C           CPU cores per process (default: SLURM's)
  --time=D-HH:MM:SS           time limit, default 24:00:00
  --partition=P  --account=A  --qos=Q   passed to sbatch when given
  --job-name=NAME             default jaxat
  --chdir=DIR                 where jaxat runs (config paths are relative to it), default this
                              repository's root
  --setup=CMD                 shell line run before srun (repeatable), e.g.
                              --setup='module load cuda/12.4' --setup='source ~/venvs/jaxat/bin/activate'
  --venv=DIR                  shorthand for --setup='source DIR/bin/activate'
  --python=PYTHON             default python
  --port=PORT                 JAXAT_COORDINATOR_PORT, default 12345 + SLURM_JOB_ID % 20000
  --requeue                   requeueable job: SIGTERM 120 s before the time limit makes jaxat
                              checkpoint and exit 143, and the job requeues itself
                              (scontrol requeue); a preempted job is requeued by SLURM
  --max-restarts=K            with --requeue: stop requeueing after K restarts, default 20
  --output=PATH               sbatch --output (default: slurm-%j.out in --chdir)
  --sbatch-file=PATH          where the sbatch script is written, default ./jaxat-JOBNAME.sbatch
  --no-submit                 write the sbatch script, do not submit it
  --in-allocation             run the srun line now, inside an existing allocation (salloc)
  --dry-run                   print the sbatch file and every command, run nothing
  --config.FIELD=VALUE        jaxat config overrides, passed through unchanged
  -- ARGS...                  everything after -- is appended to the jaxat command unchanged

Resuming: jaxat resumes from the checkpoint in WORKDIR; resubmitting the same command (or a
requeue) continues the run.
EOF
  printf '%s' "$text"
}

LAUNCH_DIR=${BASH_SOURCE[0]%/*}
[[ ${BASH_SOURCE[0]} == */* ]] || LAUNCH_DIR=.
# shellcheck source=launch/common.sh
source "$LAUNCH_DIR/common.sh"


CONFIG="" WORKDIR="" NODES=1 GPUS=4 CPUS="" TIME=24:00:00 PARTITION="" ACCOUNT="" QOS=""
JOB_NAME=jaxat CHDIR="$REPO_DIR" PYTHON=python PORT="" REQUEUE=0 MAX_RESTARTS=20 OUTPUT=""
SBATCH_FILE="" NO_SUBMIT=0 IN_ALLOCATION=0 DRY_RUN=0
SETUP=() OVERRIDES=()

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --config=*) CONFIG="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --nodes=*) NODES="${1#*=}" ;;
    --gpus-per-node=*) GPUS="${1#*=}" ;;
    --cpus-per-task=*) CPUS="${1#*=}" ;;
    --time=*) TIME="${1#*=}" ;;
    --partition=*) PARTITION="${1#*=}" ;;
    --account=*) ACCOUNT="${1#*=}" ;;
    --qos=*) QOS="${1#*=}" ;;
    --job-name=*) JOB_NAME="${1#*=}" ;;
    --chdir=*) CHDIR="${1#*=}" ;;
    --setup=*) SETUP+=("${1#*=}") ;;
    --venv=*)
      venv="${1#*=}"
      # shellcheck disable=SC2088  # a literal "~/" typed in quotes: the job's $HOME
      if [[ $venv == "~/"* ]]; then
        SETUP+=("source \"\$HOME\"/$(quote "${venv#"~/"}/bin/activate")")
      else
        SETUP+=("source $(quote "$venv/bin/activate")")
      fi ;;
    --python=*) PYTHON="${1#*=}" ;;
    --port=*) PORT="${1#*=}" ;;
    --requeue) REQUEUE=1 ;;
    --max-restarts=*) MAX_RESTARTS="${1#*=}" ;;
    --output=*) OUTPUT="${1#*=}" ;;
    --sbatch-file=*) SBATCH_FILE="${1#*=}" ;;
    --no-submit) NO_SUBMIT=1 ;;
    --in-allocation) IN_ALLOCATION=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --config.*=*) OVERRIDES+=("$1") ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    *) die "unknown argument $(quote "$1") (see launch/slurm.sh --help)" ;;
  esac
  shift
done

[[ -n $CONFIG ]] || die "--config=... is required (see launch/slurm.sh --help)"
[[ -n $WORKDIR ]] || die "--workdir=... is required (see launch/slurm.sh --help)"
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "--$1=$(quote "$2") must be a positive integer"; }
positive nodes "$NODES"
positive gpus-per-node "$GPUS"
[[ -z $CPUS ]] || positive cpus-per-task "$CPUS"
[[ -z $PORT ]] || positive port "$PORT"
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || die "--max-restarts=$(quote "$MAX_RESTARTS") must be a non-negative integer"
[[ $JOB_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "--job-name=$(quote "$JOB_NAME"): letters, digits, _ . - only"
((!(IN_ALLOCATION && REQUEUE))) || die "--requeue needs a batch job; drop --in-allocation (an salloc allocation cannot be requeued)"
((!(IN_ALLOCATION && NO_SUBMIT))) || die "--no-submit writes an sbatch script; --in-allocation runs srun instead"
for arg in "${OVERRIDES[@]+"${OVERRIDES[@]}"}"; do
  case "$arg" in
    --coordinator_address*|--num_processes*|--process_id*|--distributed_auto*|--nodistributed_auto)
      die "$(quote "$arg"): jaxat takes the process layout from SLURM's variables; drop it" ;;
  esac
done
: "${SBATCH_FILE:=./jaxat-$JOB_NAME.sbatch}"
if ((!DRY_RUN)); then
  tool=sbatch
  if ((IN_ALLOCATION)); then tool=srun; fi
  if ((!NO_SUBMIT || IN_ALLOCATION)) && ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool not found on PATH (run this on a SLURM login node, or use --dry-run)" >&2
    exit 127
  fi
  if ((IN_ALLOCATION)) && [[ -z ${SLURM_JOB_ID:-} ]]; then
    echo "error: --in-allocation needs an allocation (SLURM_JOB_ID is unset; use salloc, or drop --in-allocation to submit a batch job)" >&2
    exit 2
  fi
fi

# The training command: the same on every task; jaxat finds its rank in SLURM's variables.
JAXAT=("$PYTHON" -m jaxat.main --config="$CONFIG" --workdir="$WORKDIR")
JAXAT+=("${OVERRIDES[@]+"${OVERRIDES[@]}"}")
SRUN=(srun --nodes="$NODES" --ntasks-per-node="$GPUS" --gpus-per-task=1 --kill-on-bad-exit=1)
[[ -z $CPUS ]] || SRUN+=(--cpus-per-task="$CPUS")
SRUN_LINE="$(quote_all "${SRUN[@]}" "${JAXAT[@]}")"
if [[ -n $PORT ]]; then
  PORT_LINE="export JAXAT_COORDINATOR_PORT=$PORT"
else
  PORT_LINE='export JAXAT_COORDINATOR_PORT=${JAXAT_COORDINATOR_PORT:-$((12345 + ${SLURM_JOB_ID:-0} % 20000))}'
fi

sbatch_file() {
  echo "#!/usr/bin/env bash"
  echo "#SBATCH --job-name=$JOB_NAME"
  echo "#SBATCH --nodes=$NODES"
  echo "#SBATCH --ntasks-per-node=$GPUS"
  echo "#SBATCH --gpus-per-task=1"
  [[ -z $CPUS ]] || echo "#SBATCH --cpus-per-task=$CPUS"
  echo "#SBATCH --time=$TIME"
  echo "#SBATCH --chdir=$CHDIR"
  [[ -z $PARTITION ]] || echo "#SBATCH --partition=$PARTITION"
  [[ -z $ACCOUNT ]] || echo "#SBATCH --account=$ACCOUNT"
  [[ -z $QOS ]] || echo "#SBATCH --qos=$QOS"
  [[ -z $OUTPUT ]] || echo "#SBATCH --output=$OUTPUT"
  # SIGTERM to the tasks (not the batch shell) 120 s before the time limit: jaxat saves the
  # checkpoint of the current step on every process and exits 143.
  echo "#SBATCH --signal=TERM@120"
  if ((REQUEUE)); then
    echo "#SBATCH --requeue"
    echo "#SBATCH --open-mode=append"
  fi
  # The environment (module loads, venv) must load; the training's status is handled below.
  echo "set -eo pipefail"
  local line
  for line in "${SETUP[@]+"${SETUP[@]}"}"; do echo "$line"; done
  echo "set +e"
  echo "$PORT_LINE"
  echo 'echo "jaxat: job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0}: ${SLURM_NTASKS:-?} processes, coordinator ${SLURM_JOB_NODELIST:-?} port $JAXAT_COORDINATOR_PORT" >&2'
  # srun in the background so that a SIGTERM to the batch shell (preemption) does not end
  # it before the tasks have saved: the trap only notes it, and the loop waits for srun.
  echo 'trap '\''echo "jaxat: batch script got SIGTERM; waiting for the tasks to checkpoint" >&2'\'' TERM'
  echo "$SRUN_LINE &"
  echo 'srun_pid=$!'
  echo 'while :; do wait "$srun_pid"; status=$?; kill -0 "$srun_pid" 2>/dev/null || break; done'
  if ((REQUEUE)); then
    # 143: jaxat checkpointed on SIGTERM (time limit or preemption). Requeue unless SLURM
    # already does (a preempted job in a PreemptMode=REQUEUE partition) or too many restarts.
    echo 'if [ "$status" -eq 143 ]; then'
    echo "  if [ \"\${SLURM_RESTART_COUNT:-0}\" -lt $MAX_RESTARTS ]; then"
    echo '    echo "jaxat: checkpointed on SIGTERM; requeueing job $SLURM_JOB_ID" >&2'
    echo '    scontrol requeue "$SLURM_JOB_ID" || echo "jaxat: scontrol requeue failed (already requeued?); resubmit to resume" >&2'
    echo '  else'
    echo "    echo \"jaxat: $MAX_RESTARTS restarts reached; resubmit to resume\" >&2"
    echo '  fi'
    echo 'fi'
  fi
  echo 'exit "$status"'
}

if ((IN_ALLOCATION)); then
  # Under salloc: the same environment as the batch script, then srun.
  for line in "${SETUP[@]+"${SETUP[@]}"}"; do
    echo "+ $line"
    if ((!DRY_RUN)); then eval "$line"; fi
  done
  echo "+ $PORT_LINE"
  eval "$PORT_LINE"
  echo "+ cd $(quote "$CHDIR")"
  echo "+ $SRUN_LINE"
  if ((!DRY_RUN)); then
    cd "$CHDIR"
    exec "${SRUN[@]}" "${JAXAT[@]}"
  fi
  exit 0
fi

if ((DRY_RUN)); then
  echo "# sbatch file $SBATCH_FILE:"
  sbatch_file
  echo "# end of $SBATCH_FILE"
else
  sbatch_file >"$SBATCH_FILE"
  echo "wrote $SBATCH_FILE"
fi
if ((!NO_SUBMIT)); then
  echo "+ sbatch $(quote "$SBATCH_FILE")"
  if ((!DRY_RUN)); then sbatch "$SBATCH_FILE"; fi
fi
