#!/usr/bin/env bash
# The prepared GPU check (under 8 minutes on one GPU): prints one table of the GPU code paths and
# speed goals (scripts/gpu_check.py says what each row runs). --dry-run runs the same rows on the
# CPU at tiny sizes (under 5 minutes; CI runs it). --json FILE also writes the rows.
#   scripts/gpu_check.sh [--dry-run] [--json experiments/results/gpu-check.json]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" scripts/gpu_check.py "$@"
