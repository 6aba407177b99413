# shellcheck shell=bash
# Shared by launch/tpu_pod.sh and launch/slurm.sh (sourced, not run): one-line errors,
# shell quoting for the printed plan and remote command lines, and the repository's folder.

die() { echo "error: $*" >&2; exit 2; }

# Shell-quotes one word for display and for the remote command line (safe words stay bare).
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:,=+@%^-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}
quote_all() {
  local out="" word
  for word in "$@"; do out+="${out:+ }$(quote "$word")"; done
  printf '%s' "$out"
}

# shellcheck disable=SC2034  # read by the scripts that source this file
REPO_DIR=$(cd "$LAUNCH_DIR/.." && pwd)
