#!/usr/bin/env bash
# Device run 2 (issue 22): Mask R-CNN (1024 x 1024) and UPerNet (512 x 512) training steps on
# adm-256-uncond, batch 2: seconds per iteration and peak memory.
# On the device (tools/device/README.md has the exact `run` call):
#   bash tools/device/dense.sh                 # files in $OUT
# CPU smoke of the same path (narrowed U-Net, 64 px, fp32): SMOKE=1 bash tools/device/dense.sh
# Extra arguments go to tools/device/dense.py (--rows, --deadline-s); the environment
# (OUT, SMOKE, PYTHON, WHEELS, SITE, LIMIT_S) is launch.sh's.
exec bash "$(dirname "$0")/launch.sh" dense "$@"
