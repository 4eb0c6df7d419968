#!/bin/bash
# The capacity model's held-out measurements (docs/model.md), fixed before any was made:
# each case a `--guests auto --repeat 3` search of the default game (tsai2009) on UML,
# seed 7 (the calibration runs played seed 1), up to about 50 guests per core the guests
# have (the most the testbed measured in calibration: at 107 per core, 64 guests on
# 0.6 of a core, the client could not sync with the starved guests), then the model
# check against predictions.json (committed before these runs).
#
#   bash benchmarks/model_check/held_out.sh OUT_DIR     # root; about an hour here
set -euo pipefail
out=${1:?usage: held_out.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
read -r -a gb <<< "${GAMEBED:-.venv/bin/gamebed}"  # e.g. ".venv/bin/python -m gamebed"
mkdir -p "$out"
run() {  # name, then gamebed run flags
    local name=$1; shift
    echo "== $name: gamebed run --guests auto --repeat 3 --seed 7 $*" >&2
    "${gb[@]}" run --guests auto --repeat 3 --seed 7 --out "$out/$name" "$@" --no-report
}
run k025 --guest-cpus 0.25 --max-guests 12
run k045 --guest-cpus 0.45 --max-guests 22
run k080 --guest-cpus 0.8 --max-guests 40
run dynamic --placement dynamic --max-guests 80
"${gb[@]}" predict --check "$here/predictions.json" --json "$out/check.json" \
    --measured 0.25="$out/k025" --measured 0.45="$out/k045" \
    --measured 0.8="$out/k080" --measured dynamic="$out/dynamic"
