# Sourced by slurm/*.slurm (not a job itself): the repository root, the venv, argument quoting,
# the dry run and the node list. Environment, each with its default:
#   R1_ROOT    the repository checkout (default: $SLURM_SUBMIT_DIR, i.e. submit from the repo root;
#              outside Slurm, the folder above slurm/)
#   R1_VENV    the virtual environment, relative to R1_ROOT or absolute (default: .venv)
#   R1_SETUP   a shell command run first on every node, e.g. "module load cuda/12.4" (default: none)
#   SRUN_ARGS  extra flags for every srun step, e.g. "--gpus-per-node=8" (default: none)
# Every srun step asks for --cpus-per-task: since Slurm 22.05 a step no longer inherits sbatch's -c, and one
# task per node would otherwise get one CPU (data loading, vLLM's workers and the verifiers starve). The
# count: SLURM_CPUS_PER_TASK (sbatch -c) when set, else all of the node's CPUs (SLURM_CPUS_ON_NODE; the jobs
# run one task per node with --exclusive).
# shellcheck shell=bash disable=SC2034  # the variables set here are the jobs'

R1_ROOT="${R1_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
cd "$R1_ROOT" || { echo "slurm: cannot enter R1_ROOT=$R1_ROOT" >&2; exit 2; }
VENV="${R1_VENV:-.venv}"
PY="$VENV/bin/python"
R1="$VENV/bin/r1-recipe"
SRUN_EXTRA=()
read -ra SRUN_EXTRA <<< "${SRUN_ARGS:-}"
SRUN_CPUS=()
if [[ -n "${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-}}" ]]; then
  SRUN_CPUS=("--cpus-per-task=${SLURM_CPUS_PER_TASK:-$SLURM_CPUS_ON_NODE}")
fi
DRY_RUN=0
JOB_NAME="${SLURM_JOB_NAME:-r1}"
JOB_ID="${SLURM_JOB_ID:-local}"

die() {
  echo "$SCRIPT: $*" >&2
  exit 2
}

# The arguments as one line a shell reads back as the same words: what the dry run prints, and
# what `srun bash -c` receives.
quote() {
  local out=() a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

# Run a command, or print it (quoted) in a dry run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    quote "$@"
  else
    "$@"
  fi
}

# The command line a node runs: R1_SETUP first, then the command.
on_node() {
  echo "${R1_SETUP:+$R1_SETUP && }$*"
}

# The job's hosts, one per line (scontrol expands "node[01-03]"; no Slurm: this machine).
job_hosts() {
  if [[ -n "${SLURM_JOB_NODELIST:-}" ]]; then
    scontrol show hostnames "$SLURM_JOB_NODELIST" || die "scontrol could not expand SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST"
  else
    hostname
  fi
}

# The stage a training step runs: the Makefile's target names are accepted as aliases.
train_stage() {
  case "$1" in
    stage1 | stage2) echo sft ;;
    rl1 | rl2 | zero) echo grpo ;;
    *) echo "$1" ;;
  esac
}
