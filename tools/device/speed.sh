#!/usr/bin/env bash
# Device run 1 (issue 21): ADM feature-extraction speed and memory, ours vs guided-diffusion.
# On the device (tools/device/README.md has the exact `run` call):
#   bash tools/device/speed.sh                 # files in $OUT
# CPU smoke of the same path (tiny arch, batch 2, CPU): SMOKE=1 bash tools/device/speed.sh
# Extra arguments go to tools/device/speed.py (--rows, --deadline-s); the environment
# (OUT, SMOKE, PYTHON, WHEELS, SITE, LIMIT_S) is launch.sh's.
exec bash "$(dirname "$0")/launch.sh" speed "$@"
