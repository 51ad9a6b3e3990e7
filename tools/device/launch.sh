#!/usr/bin/env bash
# Starts a prepared device run: bash tools/device/launch.sh NAME [args of tools/device/NAME.py]
# (speed.sh and dense.sh call it; tools/device/README.md has the exact `run` calls).
# Environment: OUT (default work_dirs/device_NAME), SMOKE (the CPU smoke mode),
# PYTHON (default python3), WHEELS (default .whl: its *.whl are installed into SITE,
# default /tmp/site, first; empty: install nothing), LIMIT_S (hard limit of the Python run,
# default 270). logs.tar.gz in OUT gets the console output too, even after a timeout.
set -o pipefail
NAME=$1
shift
cd "$(dirname "$0")/../.." || exit 1
[ -f "tools/device/$NAME.py" ] || { echo "launch.sh: no tools/device/$NAME.py" >&2; exit 2; }
OUT=${OUT:-work_dirs/device_$NAME}
WHEELS=${WHEELS-.whl}
SITE=${SITE:-/tmp/site}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" || exit 1
LOGS=$(mktemp -d -t "${NAME}_logs.XXXXXX") || exit 1
if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:$PWD/tools${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LIMIT_S=${LIMIT_S:-270}
args=(--out "$OUT" --logs "$LOGS" --limit-s "$LIMIT_S")
[ -n "$SMOKE" ] && args+=(--smoke)
timeout -k 10 "$LIMIT_S" "$PYTHON" "tools/device/$NAME.py" "${args[@]}" "$@" 2>&1 \
    | tee "$LOGS/console.txt"
rc=$?
# again after the run: a run stopped by the timeout still brings its console log back
tar -czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" --transform "s,^$(basename "$LOGS"),logs," \
    "$(basename "$LOGS")"
rm -rf "$LOGS"
exit $rc
