#!/usr/bin/env bash
# The GPU check: run on a machine with one CUDA GPU (about 3-5 minutes on an H200, under 8 by
# design). Prints one Markdown table on stderr and the full results as JSON on stdout; exits
# non-zero when an attention backend disagrees with the float64 reference.
#   scripts/gpu_check.sh > gpu_check.json
# Without a GPU, `scripts/gpu_check.sh --device cpu --tiny` runs the same check on tiny shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done
out=$(jukelite bench gpu --device "$device" --repeats 2 "${extra[@]}")
echo "$out"
python -c 'import json, sys; sys.exit(0 if json.loads(sys.stdin.read())["ok"] else 1)' <<< "$out"
