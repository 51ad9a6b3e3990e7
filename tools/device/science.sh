#!/usr/bin/env bash
# Device run 3 (issue 23): the README's pretraining experiment (tools/pipeline.py) at GPU scale.
# On the device (tools/device/README.md, "Run 3", has the exact `run` call):
#   bash tools/device/science.sh                 # files in $OUT
# CPU smoke of the same path (toy sizes, fp32): SMOKE=1 bash tools/device/science.sh
# Extra arguments go to tools/device/science.py (--pretrain-s, --limit-s, -- PIPELINE_ARGS).
# Environment: OUT (default work_dirs/device_science), SMOKE, PYTHON (default python3),
# WHEELS (default .whl: its *.whl are installed into SITE, default /tmp/site, first;
# empty: install nothing), DATA_SOURCE (Fashion-MNIST's .gz files, default
# data/fashion_mnist_gz), LIMIT_S (hard limit of the Python run, default 270).
set -o pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-work_dirs/device_science}
WHEELS=${WHEELS-.whl}
SITE=${SITE:-/tmp/site}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" || exit 1
LOGS=$(mktemp -d -t science_logs.XXXXXX) || exit 1
if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:$PWD/tools${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LIMIT_S=${LIMIT_S:-270}
args=(--out "$OUT" --logs "$LOGS" --limit-s "$LIMIT_S"
      --data-source "${DATA_SOURCE:-data/fashion_mnist_gz}")
[ -n "$SMOKE" ] && args+=(--smoke)
timeout -k 10 "$LIMIT_S" "$PYTHON" tools/device/science.py "${args[@]}" "$@" 2>&1 \
    | tee "$LOGS/console.txt"
rc=$?
# again after the run: a run stopped by the timeout still brings its console log back
tar -czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" --transform "s,^$(basename "$LOGS"),logs," \
    "$(basename "$LOGS")"
rm -rf "$LOGS"
exit $rc
