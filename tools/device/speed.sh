#!/usr/bin/env bash
# Device run 1 (issue 21): ADM feature-extraction speed and memory, ours vs guided-diffusion.
# On the device (tools/device/README.md has the exact `run` call):
#   bash tools/device/speed.sh                 # files in $OUT
# CPU smoke of the same path (tiny arch, batch 2, CPU): SMOKE=1 bash tools/device/speed.sh
# Extra arguments go to tools/device/speed.py (--rows, --deadline-s).
# Environment: OUT (default work_dirs/device_speed), SMOKE, PYTHON (default python3),
# WHEELS (default .whl: its *.whl are installed into SITE, default /tmp/site, first;
# empty: install nothing), LIMIT_S (hard limit of the Python run, default 270).
set -o pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-work_dirs/device_speed}
WHEELS=${WHEELS-.whl}
SITE=${SITE:-/tmp/site}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" || exit 1
LOGS=$(mktemp -d -t speed_logs.XXXXXX) || exit 1
if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:$PWD/tools${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LIMIT_S=${LIMIT_S:-270}
args=(--out "$OUT" --logs "$LOGS" --limit-s "$LIMIT_S")
[ -n "$SMOKE" ] && args+=(--smoke)
timeout -k 10 "$LIMIT_S" "$PYTHON" tools/device/speed.py "${args[@]}" "$@" 2>&1 \
    | tee "$LOGS/console.txt"
rc=$?
# again after the run: a run stopped by the timeout still brings its console log back
tar -czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" --transform "s,^$(basename "$LOGS"),logs," \
    "$(basename "$LOGS")"
rm -rf "$LOGS"
exit $rc
