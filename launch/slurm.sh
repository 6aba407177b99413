#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per GPU (srun), the coordinator is the first
# node of the allocation (jaxat reads SLURM_NTASKS / SLURM_PROCID / SLURM_STEP_NODELIST).
# Usage: launch/slurm.sh [--dry-run] [--nodes=2] [--gpus_per_node=4] [--time=24:00:00]
#                        [--config=configs/uiat.py:cifar10] [--workdir=runs/slurm]
# Submits itself with sbatch; --dry-run prints the sbatch command and the script instead.
set -euo pipefail
DRY_RUN=0
NODES=2
GPUS=4
TIME=24:00:00
CONFIG=configs/uiat.py:cifar10
WORKDIR=runs/slurm
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --nodes=*) NODES="${arg#*=}" ;;
    --gpus_per_node=*) GPUS="${arg#*=}" ;;
    --time=*) TIME="${arg#*=}" ;;
    --config=*) CONFIG="${arg#*=}" ;;
    --workdir=*) WORKDIR="${arg#*=}" ;;
    *) echo "error: unknown argument $arg (see the usage line at the top of $0)" >&2; exit 2 ;;
  esac
done
SCRIPT="#!/usr/bin/env bash
#SBATCH --job-name=jaxat
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=$GPUS
#SBATCH --gpus-per-task=1
#SBATCH --time=$TIME
#SBATCH --signal=TERM@120
export JAXAT_COORDINATOR_PORT=\${JAXAT_COORDINATOR_PORT:-12345}
srun python -m jaxat.main --config=$CONFIG --workdir=$WORKDIR"
if [ "$DRY_RUN" = 1 ]; then
  echo "+ sbatch  # $((NODES * GPUS)) processes, one per GPU, on $NODES node(s)"
  echo "$SCRIPT"
else
  echo "$SCRIPT" | sbatch
fi
