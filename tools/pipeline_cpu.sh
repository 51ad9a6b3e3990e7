#!/usr/bin/env bash
# The pretraining experiment of configs/pretrain/README.md, CPU-sized (about 15 minutes on 2
# cores, setup excluded). It claims nothing: the numbers of the comparison come from the GPU.
#
#   bash tools/pipeline_cpu.sh          (or `make pipeline`, which runs the setup first)
#
# 1. Fashion-MNIST from Debian's package into data/fashion_mnist
# 2. DDPM pretraining of the small 32x32 ADM U-Net
#    (configs/pretrain/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py, shrunk to a few minutes)
# 3. a DDIM sample grid of the pretrained U-Net (tools/sample.py), in a second process while
#    4 and 5 run (one thread each: the two cores)
# 4. linear probes of block 8 at t=10 (the demo's probe cell) on the frozen pretrained U-Net
#    and on the same arch at random init ('redraw'): tools/analysis/sweep_blocks_timesteps.py
#    with a one-cell grid (features pooled 4x4 and standardised, then a linear classifier)
# 5. a block x timestep linear-probe heatmap of the pretrained U-Net (the same tool)
# and prints both accuracies and where the heatmap and the sample grid are.
#
# Why standardised features: the pretrained U-Net's features are on another scale than the
# re-drawn random one's, and an SGD probe with one learning rate for both (the demo's
# mmpretrain config) compares step sizes as much as features.
#
# Sizes are environment variables (defaults in brackets): PRETRAIN_IMAGES [3200],
# PRETRAIN_BATCH [32], PRETRAIN_LR [1e-3], PROBE_TRAIN [5000], PROBE_TEST [2000],
# SWEEP_BLOCKS ["2 4 6 7 8 10"], SWEEP_TIMESTEPS ["10 100 300"], SWEEP_TRAIN [1000],
# SWEEP_TEST [500], SAMPLES [4], SAMPLE_STEPS [100, DDIM respaced]; OUT [work_dirs/pipeline],
# DATA [data/fashion_mnist],
# PYTHON [.venv/bin/python], OMP_NUM_THREADS [1].
set -euo pipefail
cd "$(dirname "$0")/.."

# One intra-op thread: on 2 shared cores a second thread mostly waits (measured: 4 s per
# pretraining iteration with 1 thread, 17 s with 2, while other jobs ran).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-work_dirs/pipeline}"
DATA="${DATA:-data/fashion_mnist}"
PRETRAIN_IMAGES="${PRETRAIN_IMAGES:-3200}"
PRETRAIN_BATCH="${PRETRAIN_BATCH:-32}"
PRETRAIN_LR="${PRETRAIN_LR:-1e-3}"
PROBE_TRAIN="${PROBE_TRAIN:-5000}"
PROBE_TEST="${PROBE_TEST:-2000}"
SWEEP_BLOCKS="${SWEEP_BLOCKS:-2 4 6 7 8 10}"
SWEEP_TIMESTEPS="${SWEEP_TIMESTEPS:-10 100 300}"
SWEEP_TRAIN="${SWEEP_TRAIN:-1000}"
SWEEP_TEST="${SWEEP_TEST:-500}"
SAMPLES="${SAMPLES:-4}"
SAMPLE_STEPS="${SAMPLE_STEPS:-100}"

PRETRAIN_CFG=configs/pretrain/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py
PROBE_CFG=configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py
CKPT="$OUT/pretrain/epoch_1.pth"
PRETRAINED=(model.backbone.checkpoint="$CKPT" model.backbone.checkpoint_prefix=unet.)
DATA_ROOTS=(train_dataloader.dataset.data_root="$DATA" val_dataloader.dataset.data_root="$DATA"
            test_dataloader.dataset.data_root="$DATA")

step() { printf '\n== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

probe() {   # probe WORK_DIR TRAIN TEST BLOCKS TIMESTEPS [cfg-options...]
    local work="$1" train="$2" test="$3" blocks="$4" timesteps="$5"; shift 5
    # shellcheck disable=SC2086  # the block and timestep lists are meant to split
    "$PY" tools/analysis/sweep_blocks_timesteps.py "$PROBE_CFG" --blocks $blocks \
        --timesteps $timesteps --pool 4 --work-dir "$work" --cache-root "$OUT/feature_cache" \
        --cfg-options "${DATA_ROOTS[@]}" train_dataloader.dataset.indices="$train" \
        val_dataloader.dataset.indices="$test" "$@"
}

top1() {   # top1 SWEEP_CSV BLOCK T
    awk -F, -v b="$2" -v t="$3" '$1 == b && $2 == t {print $3}' "$1"
}

# results of an earlier run are replaced (the feature caches are keyed by the weights: kept)
rm -rf "$OUT/pretrain" "$OUT"/probe_* "$OUT/sweep" "$OUT"/samples.*

step "1/5 Fashion-MNIST -> $DATA"
"$PY" tools/dataset_converters/fashion_mnist.py "$DATA"

step "2/5 DDPM pretraining: $PRETRAIN_IMAGES images, batch $PRETRAIN_BATCH, AdamW lr $PRETRAIN_LR"
# EMA momentum 0.05 (rate 0.95) instead of 1e-4: over a hundred iterations an EMA of rate
# 0.9999 would still be the initial weights.
"$PY" tools/train.py "$PRETRAIN_CFG" --work-dir "$OUT/pretrain" --cfg-options \
    train_dataloader.dataset.data_root="$DATA" train_dataloader.dataset.indices="$PRETRAIN_IMAGES" \
    train_dataloader.batch_size="$PRETRAIN_BATCH" train_cfg.max_epochs=1 \
    optim_wrapper.optimizer.lr="$PRETRAIN_LR" custom_hooks.0.momentum=0.05 \
    default_hooks.logger.interval=10

step "3/5 $SAMPLES DDIM samples of the pretrained U-Net, in the background -> $OUT/samples.log"
"$PY" tools/sample.py "$PRETRAIN_CFG" "$CKPT" "$OUT/samples.png" --method ddim --num "$SAMPLES" \
    --steps "$SAMPLE_STEPS" > "$OUT/samples.log" 2>&1 &
SAMPLER=$!
trap 'kill "$SAMPLER" 2> /dev/null || true' EXIT   # a failed step stops the sampler too

step "4/5 linear probes: block 8, t=10, $PROBE_TRAIN training / $PROBE_TEST test images"
probe "$OUT/probe_pretrained" "$PROBE_TRAIN" "$PROBE_TEST" 8 10 "${PRETRAINED[@]}"
probe "$OUT/probe_random" "$PROBE_TRAIN" "$PROBE_TEST" 8 10

step "5/5 block x timestep heatmap of the pretrained U-Net ($SWEEP_TRAIN / $SWEEP_TEST images)"
probe "$OUT/sweep" "$SWEEP_TRAIN" "$SWEEP_TEST" "$SWEEP_BLOCKS" "$SWEEP_TIMESTEPS" \
    "${PRETRAINED[@]}"

step "waiting for the sampler"
if ! wait "$SAMPLER"; then
    cat "$OUT/samples.log" >&2
    echo "tools/sample.py failed (log above)" >&2
    exit 1
fi

step "done"
cat <<EOF
linear probe top-1 (%), block 8, t=10, $PROBE_TRAIN training / $PROBE_TEST test images:
  pretrained U-Net ($CKPT): $(top1 "$OUT/probe_pretrained/sweep.csv" 8 10)
  random U-Net (re-drawn):  $(top1 "$OUT/probe_random/sweep.csv" 8 10)
heatmap:     $OUT/sweep/sweep.png (values in $OUT/sweep/sweep.csv)
sample grid: $OUT/samples.png
A CPU-sized run ($PRETRAIN_IMAGES pretraining images): it shows the pipeline works, not how
good diffusion features are (configs/pretrain/README.md).
EOF
