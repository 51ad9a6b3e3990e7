#!/usr/bin/env bash
# Build the whole mmdiffssl stack into .venv/ at the repo root. Idempotent: a second run checks
# the imports and returns in seconds.
#
#   tools/setup_env.sh                      # online install (PyPI)
#   tools/setup_env.sh --fill-wheelhouse D  # download/build every wheel into folder D
#   MMDIFFSSL_WHEELHOUSE=D tools/setup_env.sh   # offline install, reads only from D
#
# Environment variables:
#   PYTHON               base interpreter for the venv (default python3)
#   VENV                 venv folder (default <repo>/.venv)
#   MMDIFFSSL_CACHE      where built mmcv wheels are kept, keyed by torch version, CUDA/CPU and
#                        Python tag (default ~/.cache/mmdiffssl)
#   MMDIFFSSL_WHEELHOUSE install offline from this folder (pip --no-index)
#   MMDIFFSSL_REUSE_TORCH=1  reuse the base interpreter's torch (system site packages). Done
#                        automatically when the base interpreter's torch sees a CUDA GPU.
#   MAX_JOBS, TORCH_CUDA_ARCH_LIST   passed to the mmcv build (CUDA ops are built when
#                        torch sees a GPU, for the GPUs present unless TORCH_CUDA_ARCH_LIST is set)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQ=$ROOT/requirements
VENV=${VENV:-$ROOT/.venv}
PY_BASE=${PYTHON:-python3}
CACHE=${MMDIFFSSL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdiffssl}
WHEELHOUSE=${MMDIFFSSL_WHEELHOUSE:-}
MMCV_VERSION=2.1.0
FASHION_MNIST=/usr/share/datasets/fashion-mnist

log() { printf '[setup_env] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FILL_WHEELHOUSE=""
case "${1:-}" in
  --fill-wheelhouse) FILL_WHEELHOUSE=${2:?--fill-wheelhouse needs a folder}; mkdir -p "$FILL_WHEELHOUSE"
                     FILL_WHEELHOUSE=$(cd "$FILL_WHEELHOUSE" && pwd) ;;
  "") ;;
  *) die "unknown argument '$1' (allowed: --fill-wheelhouse DIR)" ;;
esac

if [ -n "$WHEELHOUSE" ]; then
  [ -d "$WHEELHOUSE" ] || die "MMDIFFSSL_WHEELHOUSE=$WHEELHOUSE is not a folder"
  WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
  # --no-index: pip reads nothing but the wheelhouse, whatever pip.conf says.
  PIP_SOURCE=(--no-index --find-links "$WHEELHOUSE")
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELHOUSE"
else
  PIP_SOURCE=()
fi

# ---------------------------------------------------------------- venv and torch
base_has_gpu_torch() {
  "$PY_BASE" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}
if [ ! -x "$VENV/bin/python" ]; then
  if [ "${MMDIFFSSL_REUSE_TORCH:-}" = 1 ] || base_has_gpu_torch; then
    log "reusing the torch of $PY_BASE (venv with system site packages)"
    "$PY_BASE" -m venv --system-site-packages "$VENV"
  else
    "$PY_BASE" -m venv "$VENV"
  fi
fi
PY=$VENV/bin/python
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "${PIP_SOURCE[@]}" "$@"; }

if ! "$PY" -c 'import torch, torchvision' 2>/dev/null; then
  log "installing torch and torchvision ($(grep -v '^#' "$REQ/torch.txt" | xargs))"
  pip_install -r "$REQ/torch.txt"
fi
pip_install -r "$REQ/build.txt"

TORCH_TAG=$("$PY" -c '
import sys, torch
acc = "cu" + torch.version.cuda.replace(".", "") if torch.cuda.is_available() else "cpu"
version = torch.__version__.split("+")[0]
print(f"torch{version}-{acc}-py{sys.version_info[0]}{sys.version_info[1]}")')
log "environment key: $TORCH_TAG"

# ---------------------------------------------------------------- mmcv with ops
MMCV_CACHE=$CACHE/mmcv-$MMCV_VERSION/$TORCH_TAG

mmcv_ok() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; }

build_mmcv_wheel() {  # builds into $MMCV_CACHE from PyPI's sdist (or the wheelhouse's)
  local work; work=$(mktemp -d)
  if [ -n "$WHEELHOUSE" ]; then
    cp "$WHEELHOUSE"/mmcv-$MMCV_VERSION.tar.gz "$work"/ 2>/dev/null \
      || die "no mmcv-$MMCV_VERSION.tar.gz and no mmcv wheel for $TORCH_TAG in $WHEELHOUSE"
  else
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$MMCV_VERSION" -d "$work"
  fi
  tar xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
  local src=$work/mmcv-$MMCV_VERSION
  # torch >= 2.14 headers need C++20; mmcv's setup.py forces C++17.
  if "$PY" -c 'import torch,sys; v=tuple(map(int,torch.__version__.split("+")[0].split(".")[:2])); sys.exit(0 if v>=(2,14) else 1)'; then
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  fi
  local cuda_env=()
  if "$PY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    local arch; arch=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c '
import torch
print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))')}
    cuda_env=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$arch")
    log "building mmcv $MMCV_VERSION with CUDA ops for $arch"
  else
    log "building mmcv $MMCV_VERSION with CPU ops (15-25 minutes on 2 cores; built once per torch version, then cached in $MMCV_CACHE)"
  fi
  mkdir -p "$MMCV_CACHE"
  (cd "$src" && env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${cuda_env[@]}" \
     "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$work/dist" .)
  mv "$work"/dist/mmcv-*.whl "$MMCV_CACHE"/
  rm -rf "$work"
}

if ! mmcv_ok; then
  pip_install -r "$REQ/runtime.txt"   # mmcv's build imports mmengine
  wheel=""
  if [ -n "$WHEELHOUSE" ] && [ -d "$WHEELHOUSE/mmcv-$TORCH_TAG" ]; then
    wheel=$(ls "$WHEELHOUSE/mmcv-$TORCH_TAG"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
  fi
  [ -n "$wheel" ] || wheel=$(ls "$MMCV_CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    build_mmcv_wheel
    wheel=$(ls "$MMCV_CACHE"/mmcv-$MMCV_VERSION-*.whl | head -1)
  else
    log "using cached mmcv wheel $wheel"
  fi
  pip_install --no-deps --force-reinstall "$wheel"
  mmcv_ok || die "mmcv $MMCV_VERSION installed from $wheel but 'import mmcv.ops' fails"
fi

# ---------------------------------------------------------------- the rest + mmdiffssl
# requirements/sd.txt: diffusers + transformers for the Stable Diffusion backbones (optional
# for users, installed here so the tests cover them)
pip_install -r "$REQ/runtime.txt" -r "$REQ/mm.txt" -r "$REQ/tests.txt" -r "$REQ/sd.txt"
pip_install --no-deps --no-build-isolation -e "$ROOT"

"$PY" -c 'import mmcv.ops, mmdet, mmseg, mmpretrain.models, mmdiffssl, diffusers, transformers' \
  || die "the stack does not import; see the messages above"
log "stack ready: $("$PY" -c 'import torch, mmcv, mmdet, mmseg, mmpretrain, mmengine
mods = dict(torch=torch, mmengine=mmengine, mmcv=mmcv, mmdet=mmdet, mmseg=mmseg, mmpretrain=mmpretrain)
print(", ".join(f"{k} {m.__version__}" for k, m in mods.items()))')"

# ---------------------------------------------------------------- real data (Fashion-MNIST)
if [ ! -d "$FASHION_MNIST" ]; then
  if [ -z "$WHEELHOUSE" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing Debian's dataset-fashion-mnist"
    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }) \
      || log "could not install dataset-fashion-mnist; mmpretrain will try to download Fashion-MNIST"
  else
    log "no $FASHION_MNIST: 'apt-get install dataset-fashion-mnist' as root, or mmpretrain downloads it"
  fi
fi

# ---------------------------------------------------------------- optional: fill a wheelhouse
if [ -n "$FILL_WHEELHOUSE" ]; then
  log "filling wheelhouse $FILL_WHEELHOUSE"
  "$PY" -m pip download -q -d "$FILL_WHEELHOUSE" -r "$REQ/torch.txt" -r "$REQ/build.txt" \
    -r "$REQ/runtime.txt" -r "$REQ/mm.txt" -r "$REQ/tests.txt" -r "$REQ/sd.txt"
  "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
    "mmcv==$MMCV_VERSION" -d "$FILL_WHEELHOUSE"
  # sdists among the downloads (e.g. guided-diffusion-sdk) become wheels so the offline
  # install needs no build backend beyond what the wheelhouse holds.
  for sdist in "$FILL_WHEELHOUSE"/*.tar.gz; do
    case "$sdist" in */mmcv-*) continue ;; esac
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$FILL_WHEELHOUSE" "$sdist" && rm -f "$sdist"
  done
  mkdir -p "$FILL_WHEELHOUSE/mmcv-$TORCH_TAG"
  cp "$MMCV_CACHE"/mmcv-$MMCV_VERSION-*.whl "$FILL_WHEELHOUSE/mmcv-$TORCH_TAG"/
  log "wheelhouse ready: $(ls "$FILL_WHEELHOUSE" | wc -l) files"
fi
