#!/usr/bin/env bash
# Device run 3 (issue 23): the README's pretraining experiment (tools/pipeline.py) at GPU scale.
# On the device (tools/device/README.md, "Run 3", has the exact `run` call):
#   bash tools/device/science.sh                 # files in $OUT
# CPU smoke of the same path (toy sizes, fp32): SMOKE=1 bash tools/device/science.sh
# Extra arguments go to tools/device/science.py (--pretrain-s, -- PIPELINE_ARGS); DATA_SOURCE
# names Fashion-MNIST's .gz files (default data/fashion_mnist_gz); the rest of the
# environment (OUT, SMOKE, PYTHON, WHEELS, SITE, LIMIT_S) is launch.sh's.
exec bash "$(dirname "$0")/launch.sh" science --data-source "${DATA_SOURCE:-data/fashion_mnist_gz}" "$@"
