# shellcheck shell=bash
# Shared helpers for scripts/setup, scripts/test and scripts/demo. Source it, don't run it.

# Repository root: the parent of the folder holding this file, as an absolute path.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
TOOLS_BIN="$REPO_ROOT/.tools/bin"
export REPO_ROOT VENV TOOLS_BIN

# Progress lines go to stderr so that a wrapped command's stdout stays clean.
log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# "12s": seconds since $1, a value of bash's SECONDS taken earlier (default: the script's start).
since() { printf '%ss' "$((SECONDS - ${1:-0}))"; }
