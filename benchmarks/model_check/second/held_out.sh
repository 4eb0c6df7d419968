#!/bin/bash
# The capacity model's second check, step 3 (docs/model.md, "The second check"): the
# held-out runs, after predictions.json and its frozen scorer were committed and
# tagged (step 2: `gamebed predict CAL_K100 CAL_K060 --guest-cpus 0.25,0.45,0.8,dynamic
# --register benchmarks/model_check/second/predictions.json`).  Each case is a
# `--guests auto --repeat 3` search of the default game on UML with seed 13 (calibration:
# seed 1; the first check: seed 7), its --max-guests at least 1.5 times the top of the
# case's widest predicted interval, so that a prediction can fail; then the check,
# scored by the registered scorer.
#
#   bash benchmarks/model_check/second/held_out.sh OUT_DIR   # root; about an hour here
set -euo pipefail
out=${1:?usage: held_out.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
read -r -a gb <<< "${GAMEBED:-.venv/bin/gamebed}"
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
max_guests() {  # case name -> ceil(1.5 × the top of its predicted intervals)
    "$py" -c 'import json, math, sys
p = json.load(open(sys.argv[1]))
c = next(c for c in p["cases"] if c["case"]["name"] == sys.argv[2])
print(max(math.ceil(1.5 * m["hi"]) for m in c["modes"].values()))' \
        "$here/predictions.json" "$1"
}
run() {  # name, case, then gamebed run flags
    local name=$1 case=$2; shift 2
    local top; top=$(max_guests "$case")
    echo "== $name: gamebed run --guests auto --repeat 3 --seed 13 --max-guests $top $*" >&2
    "${gb[@]}" run --guests auto --repeat 3 --seed 13 --max-guests "$top" \
        --out "$out/$name" "$@" --no-report
}
run k025 0.25 --guest-cpus 0.25
run k045 0.45 --guest-cpus 0.45
run k080 0.8 --guest-cpus 0.8
run dynamic dynamic --placement dynamic
"${gb[@]}" predict --check "$here/predictions.json" --json "$out/check.json" \
    --measured 0.25="$out/k025" --measured 0.45="$out/k045" \
    --measured 0.8="$out/k080" --measured dynamic="$out/dynamic"
