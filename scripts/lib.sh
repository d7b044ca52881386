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

# pytest-xdist options for a suite run, as scripts/test runs it, into the array PYTEST_XDIST:
# PYTEST_WORKERS processes (2 by default), each test module whole in one of them (--dist
# loadfile: a module's tests keep their order and fixtures, and the official client's, which
# all serve on port 443, never overlap). Most tests wait on real time (speech, media, a
# process's start), so two workers take about half as long on two cores.
# PYTEST_WORKERS=0 runs everything in one process.
pytest_workers() {
    local workers="${PYTEST_WORKERS:-2}"
    [[ "$workers" =~ ^[0-9]+$ ]] || die "PYTEST_WORKERS must be a number, not '$workers'"
    PYTEST_XDIST=()
    [ "$workers" -eq 0 ] || PYTEST_XDIST=(-n "$workers" --dist loadfile)
}
