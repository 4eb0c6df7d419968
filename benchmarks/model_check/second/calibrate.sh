#!/bin/bash
# The capacity model's second check, step 1: the calibration runs (docs/model.md,
# "The second check"), on the players' SLA: the default game (tsai2009) on UML, seed 1,
# a `--guests auto --repeat 3` search on a whole guest core and on 0.6 of one.
#
#   bash benchmarks/model_check/second/calibrate.sh OUT_DIR   # root; ~25 min here
set -euo pipefail
out=${1:?usage: calibrate.sh OUT_DIR}
read -r -a gb <<< "${GAMEBED:-.venv/bin/gamebed}"
mkdir -p "$out"
"${gb[@]}" run --guests auto --repeat 3 --out "$out/cal-k100" --no-report
"${gb[@]}" run --guests auto --repeat 3 --guest-cpus 0.6 --out "$out/cal-k060" --no-report
