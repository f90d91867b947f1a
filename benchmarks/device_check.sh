#!/usr/bin/env bash
# The device check from any directory: benchmarks/device_check.sh OUT_DIR [--quick] [--budget_s N]
# (see `python -m benchmarks.device_check --help`). Runs from the clone this script is in.
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: $0 OUT_DIR [--quick] [--budget_s N] [--stages a,b]" >&2; exit 2; fi
out="$(realpath -m "$1")"; shift
cd "$(dirname "$0")/.."
exec python -m benchmarks.device_check --out "$out" "$@"
